"""dul.testing's whole association streams, DIMSE messages as P-DATA-TF, and layer mutations.

Each thing is checked for what it claims: plans' streams decode, as a dul acceptor reads them,
into the plan's request, messages and data sets (pydicom reads the data sets); the scripted
requestor follows an answer that rejects contexts; ``message_pdata`` frames like a Session;
and each layer's mutation keeps the layers below it framed while changing its own. Against a
live DCMTK storescp: tests/test_interop_streams.py.
"""

from __future__ import annotations

import random
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

import dul
from dul import dimse
from dul.testing import (
    DEFLATED_EXPLICIT_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    STORAGE_SOP_CLASSES,
    AssociationPlan,
    DataElement,
    PlannedMessage,
    association_plans,
    association_streams,
    datasets,
    default_request,
    dimse_messages,
    dimse_pdata,
    encode_dataset,
    feed,
    layered_mutations,
    message_pdata,
    mutate_command_set,
    mutate_commands,
    mutate_datasets,
    mutate_items,
    pdu_spans,
    random_pick,
)

SYNTAXES = (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_EXPLICIT_LE, "1.2.840.10008.1.2.4.50")
#: Drawing a whole association costs: a quarter of the profile's examples keeps dev and ci fast.
SLOW = settings(
    max_examples=max(10, settings().max_examples // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def pydicom_read(data: bytes, transfer_syntax: str) -> object:
    """The data set as pydicom reads it in ``transfer_syntax``."""
    if transfer_syntax == DEFLATED_EXPLICIT_LE:
        data = zlib.decompress(data, -15)
    fp = DicomBytesIO(data)
    fp.is_little_endian = transfer_syntax != EXPLICIT_BE
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    return read_dataset(fp, fp.is_implicit_VR, fp.is_little_endian)


def pydicom_values(data: bytes, transfer_syntax: str) -> dict[int, object]:
    ds = pydicom_read(data, transfer_syntax)
    return {int(elem.tag): elem.value for elem in ds}  # type: ignore[attr-defined]


def expected_value(element: DataElement) -> object:
    """What pydicom gives back for ``element``: text unpadded, IS as int, PN as str."""
    value = element.value
    if element.vr == "IS":
        return int(str(value))
    return value


# -- data sets ---------------------------------------------------------------------------------


@SLOW
@given(datasets(), st.sampled_from(SYNTAXES))
def test_datasets_read_back_in_pydicom(elements: tuple[DataElement, ...], syntax: str) -> None:
    """Every drawn data set, in every transfer syntax, reads back in pydicom, value by value."""
    read = pydicom_values(encode_dataset(elements, syntax), syntax)
    assert list(read) == sorted(e.tag for e in elements)
    for element in elements:
        got = read[element.tag]
        got = str(got) if element.vr == "PN" else got
        assert got == expected_value(element), hex(element.tag)


def test_dataset_encoding_by_hand() -> None:
    """The bytes themselves, for one element of a short and one of a long explicit VR."""
    elements = (DataElement(0x0008_0016, "UI", "1.2.3"), DataElement(0x0009_0010, "OB", b"\1"))
    assert encode_dataset(elements, IMPLICIT_LE) == (
        bytes.fromhex("08001600 06000000") + b"1.2.3\0" + bytes.fromhex("09001000 02000000 0100")
    )
    assert encode_dataset(elements, EXPLICIT_BE) == (
        bytes.fromhex("00080016") + b"UI\x00\x06" + b"1.2.3\0"
        + bytes.fromhex("00090010") + b"OB\0\0" + bytes.fromhex("00000002 0100")
    )  # fmt: skip


# -- plans and their streams --------------------------------------------------------------------


class Acceptor:
    """A dul acceptor with AcceptorPolicy that answers every request with success."""

    def __init__(self, policy: dimse.AcceptorPolicy) -> None:
        self.policy = policy
        self.session = dimse.Session(dul.Connection(dul.Role.ACCEPTOR), whole_datasets=True)
        self.received: list[dimse.MessageReceived] = []
        self.events: list[object] = []

    def receive(self, data: bytes) -> bytes:
        out: list[bytes | memoryview] = []
        self.session.receive_data(data)
        while (event := self.session.next_event()) is not dul.NEED_DATA:
            self.events.append(event)
            if isinstance(event, dul.AssociateRequest):
                out.append(self.session.send(self.policy.evaluate(event)))
            elif isinstance(event, dimse.MessageReceived):
                self.received.append(event)
                out += self.session.send_message(
                    respond(event.message), context_id=event.context_id
                )
            elif isinstance(event, dul.ReleaseRequest):
                out.append(self.session.send(event.response()))
        return b"".join(out)


def respond(message: dimse.Message) -> dimse.Response:
    if isinstance(message, dimse.CEchoRequest):
        return dimse.CEchoResponse(message_id_being_responded_to=message.message_id)
    assert isinstance(message, dimse.CStoreRequest)
    return dimse.CStoreResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
    )


def accept_everything(plan: AssociationPlan) -> dimse.AcceptorPolicy:
    syntaxes = {s for c in plan.request.presentation_contexts for s in c.transfer_syntaxes}
    abstracts = {c.abstract_syntax for c in plan.request.presentation_contexts}
    return dimse.AcceptorPolicy(
        contexts={a: sorted(syntaxes) for a in abstracts}, refuse_blank_calling_ae=False
    )


def check_received(plan: AssociationPlan, acceptor: Acceptor, accepted: dict[int, str]) -> None:
    """The acceptor got the plan's messages on accepted contexts, data sets as planned."""
    wanted = [m for m in plan.messages if m.context_id in accepted]
    assert [(r.context_id, r.message) for r in acceptor.received] == [
        (m.context_id, m.message) for m in wanted
    ]
    for got, planned in zip(acceptor.received, wanted, strict=True):
        assert got.has_dataset is (planned.dataset is not None)
        if planned.dataset is not None:
            assert got.dataset == planned.encoded_dataset(accepted[planned.context_id])
            read = pydicom_values(got.dataset, accepted[planned.context_id])
            assert read[0x0008_0018] == planned.message.affected_sop_instance_uid  # type: ignore[attr-defined]


@SLOW
@given(association_plans(transfer_syntaxes=SYNTAXES))
def test_plan_stream_is_what_an_acceptor_reads(plan: AssociationPlan) -> None:
    """plan.stream(), fed whole to a dul acceptor that accepts every context in its first
    transfer syntax: the request, each message with its data set, the release, in order."""
    acceptor = Acceptor(accept_everything(plan))  # one transfer syntax per context
    acceptor.receive(plan.stream())
    assert acceptor.events[0] == plan.request
    assert isinstance(acceptor.events[-1], dul.ReleaseRequest)
    accepted = {c.context_id: c.transfer_syntaxes[0] for c in plan.request.presentation_contexts}
    check_received(plan, acceptor, accepted)


@SLOW
@given(association_plans(syntaxes_per_context=3), st.data())
def test_scripted_requestor_follows_the_answer(plan: AssociationPlan, data: st.DataObject) -> None:
    """Against a dul acceptor that supports only some of the proposed SOP classes and prefers
    its own transfer syntax, the scripted requestor sends messages on the accepted contexts
    only, data sets in the accepted syntax, waits for each response, and is released."""
    abstracts = sorted({c.abstract_syntax for c in plan.request.presentation_contexts})
    supported = data.draw(st.lists(st.sampled_from(abstracts), unique=True), label="supported")
    policy = dimse.AcceptorPolicy(
        contexts={a: [EXPLICIT_LE, IMPLICIT_LE] for a in supported}, refuse_blank_calling_ae=False
    )
    requestor, acceptor = plan.requestor(), Acceptor(policy)
    to_acceptor = requestor.start()
    while not requestor.done:
        # A window of one: the acceptor never holds two requests unanswered.
        to_requestor = acceptor.receive(to_acceptor)
        assert len(requestor.session.outstanding) <= 1
        to_acceptor = requestor.receive_data(to_requestor)
        if not to_acceptor and not requestor.done:
            to_acceptor = b""
            requestor.receive_data(acceptor.receive(b""))
    assert requestor.error is None
    assert requestor.released
    accepted = dict(requestor.accepted)
    assert {
        c.context_id for c in plan.request.presentation_contexts if c.abstract_syntax in supported
    } == set(accepted)
    check_received(plan, acceptor, accepted)
    assert [r.status for r in requestor.responses] == [0] * len(acceptor.received)


def test_scripted_requestor_after_a_reject() -> None:
    """Rejected: done, not released, nothing more to send."""
    plan = AssociationPlan(default_request())
    requestor = plan.requestor()
    requestor.start()
    assert requestor.receive_data(dul.encode(plan.request.reject())) == b""
    assert requestor.done and not requestor.released
    assert isinstance(requestor.events[0], dul.AssociateReject)


def test_scripted_requestor_after_a_protocol_error() -> None:
    """An A-ASSOCIATE-AC of garbage: the error is kept, the A-ABORT is returned, done."""
    plan = AssociationPlan(default_request())
    requestor = plan.requestor()
    requestor.start()
    out = requestor.receive_data(b"\x02\x00\x00\x00\x00\x04abcd")
    assert requestor.error is not None and requestor.done
    assert dul.decode(out) == [requestor.error.reply]


def test_plan_refuses_a_message_on_a_context_never_proposed() -> None:
    with pytest.raises(ValueError, match="context 99"):
        AssociationPlan(default_request(), (PlannedMessage(99, dimse.CEchoRequest(message_id=1)),))


@SLOW
@given(association_streams())
def test_association_streams_frame(stream: bytes) -> None:
    """The bytes of a stream: A-ASSOCIATE-RQ, P-DATA-TF, A-RELEASE-RQ, all decodable."""
    types = [stream[s] for s, _ in pdu_spans(stream)]
    assert types[0] == 1 and types[-1] == 5 and set(types[1:-1]) <= {4}
    assert len(dul.decode(stream)) == len(types)


# -- DIMSE messages as P-DATA-TF ------------------------------------------------------------------


@SLOW
@given(dimse_messages(), st.binary(min_size=1, max_size=3000), st.integers(0, 5000), st.data())
def test_message_pdata_frames_like_a_session(
    drawn: tuple[dimse.Message, bool], body: bytes, max_length: int, data: st.DataObject
) -> None:
    """message_pdata(): one PDV per P-DATA-TF within max_length, even fragments but the last,
    command first, and a Session on a negotiated association writes the same bytes."""
    message, has_dataset = drawn
    max_length = 0 if max_length < 8 else max_length
    context_id = data.draw(st.sampled_from([1, 3, 255]))
    dataset = body if has_dataset else None
    stream = message_pdata(message, dataset, context_id=context_id, max_length=max_length)
    pdus = dul.decode(stream)
    for pdu, (start, end) in zip(pdus, pdu_spans(stream), strict=True):
        assert isinstance(pdu, dul.PDataReceived) and len(pdu.values) == 1
        assert max_length == 0 or end - start - 6 <= max_length
    values = [p.values[0] for p in pdus]  # type: ignore[union-attr]
    command = b"".join(bytes(v.data) for v in values if v.is_command)
    assert dimse.decode_message(command) == (message, has_dataset)
    assert b"".join(bytes(v.data) for v in values if not v.is_command) == (dataset or b"")
    assert all(v.context_id == context_id for v in values)
    # The same as a Session writes once the context is negotiated.
    request = dul.AssociateRequest(
        called_ae_title="A",
        calling_ae_title="B",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=context_id, abstract_syntax="1.2", transfer_syntaxes=(IMPLICIT_LE,)
            ),
        ),
    )
    session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
    session.send(request)
    accept = request.accept(
        (dul.PresentationContextAC(context_id=context_id, transfer_syntax=IMPLICIT_LE),),
        dul.UserInformation(maximum_length=max_length),
    )
    session.receive_data(dul.encode(accept))
    assert isinstance(session.next_event(), dul.AssociateAccept)
    sent = session.send_message(message, context_id=context_id, dataset=dataset)
    assert b"".join(sent) == stream


@SLOW
@given(dimse_pdata(max_length=st.just(16384)))
def test_dimse_pdata_decodes(stream: bytes) -> None:
    values = [v for pdu in dul.decode(stream) for v in pdu.values]  # type: ignore[union-attr]
    message, _ = dimse.decode_message(b"".join(bytes(v.data) for v in values if v.is_command))
    assert isinstance(message, dimse.Message)


# -- layer mutations --------------------------------------------------------------------------


def frames(stream: bytes) -> list[tuple[int, int]]:
    """The PDU spans of a stream that frames whole (each header's length fits), else fail."""
    spans = pdu_spans(stream)
    for start, end in spans:
        assert (
            end - start >= 6
            and int.from_bytes(stream[start + 2 : start + 6], "big") == end - start - 6
        )
    return spans


def pdvs(stream: bytes) -> list[dul.PresentationDataValue]:
    """Every PDV of the stream's P-DATA-TFs, which must decode."""
    out = []
    for start, end in pdu_spans(stream):
        if stream[start] == 4:
            (pdu,) = dul.decode(stream[start:end])
            assert isinstance(pdu, dul.PDataReceived)
            out += pdu.values
    return out


def command_sets(stream: bytes) -> list[bytes]:
    out, current = [], b""
    for value in pdvs(stream):
        if value.is_command:
            current += bytes(value.data)
            if value.is_last:
                out.append(current)
                current = b""
    return out


PICKS = st.integers(0, 2**32 - 1).map(lambda seed: random_pick(random.Random(seed)))


@SLOW
@given(association_plans(), PICKS)
def test_item_mutation_keeps_the_pdu_framed(plan: AssociationPlan, pick: object) -> None:
    """An item-layer mutation changes one A-ASSOCIATE-RQ (or -AC), which still frames: same
    PDU type, length consistent; every other PDU is byte-exact."""
    stream = plan.stream()
    accept = dul.encode(accept_everything(plan).evaluate(plan.request), strict=False)
    for original in (stream, accept + dul.encode(dul.ReleaseResponse())):
        mutated = mutate_items(original, pick)  # type: ignore[arg-type]
        assert mutated != original
        before, after = pdu_spans(original), frames(mutated)
        assert len(after) == len(before)
        assert mutated[after[0][1] :] == original[before[0][1] :]
        assert mutated[0] == original[0]


@SLOW
@given(association_plans(), PICKS)
def test_item_mutations_into_a_dul_acceptor_keep_the_promises(
    plan: AssociationPlan, pick: object
) -> None:
    """What a dul acceptor does with an item-mutated request: only RemoteProtocolError, valid
    replies (feed's checks)."""
    conn = dul.Connection(dul.Role.ACCEPTOR)
    feed(conn, [mutate_items(plan.stream(), pick)], respond=True, close=True)  # type: ignore[arg-type]


@SLOW
@given(association_plans(max_messages=4).filter(lambda p: bool(p.messages)), PICKS)
def test_command_mutation_frames_but_changes_the_command(
    plan: AssociationPlan, pick: object
) -> None:
    """A command-layer mutation: the stream still frames, every P-DATA-TF decodes, data sets
    are byte-exact, and one command set is bad or different (or its group length lies)."""
    stream = plan.stream()
    mutated = mutate_commands(stream, pick)  # type: ignore[arg-type]
    frames(mutated)
    assert [bytes(v.data) for v in pdvs(mutated) if not v.is_command] == [
        bytes(v.data) for v in pdvs(stream) if not v.is_command
    ]
    before, after = command_sets(stream), command_sets(mutated)
    assert len(before) == len(after)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert len(changed) == 1
    old, new = changed[0]
    try:
        decoded = dimse.decode_message(new)
    except dul.RemoteProtocolError:
        return  # bad
    group_length = int.from_bytes(new[8:12], "little") if new[:4] == b"\0\0\0\0" else None
    lies = group_length is not None and group_length != len(new) - 12
    assert decoded != dimse.decode_message(old) or lies


@SLOW
@given(association_plans(max_messages=4), PICKS)
def test_dataset_mutation_changes_only_a_dataset(plan: AssociationPlan, pick: object) -> None:
    """A data-set-layer mutation: frames, command sets byte-exact, one data set fragment
    changed (none when the stream holds no data set)."""
    stream = plan.stream()
    mutated = mutate_datasets(stream, pick)  # type: ignore[arg-type]
    frames(mutated)
    assert command_sets(mutated) == command_sets(stream)
    before = [bytes(v.data) for v in pdvs(stream) if not v.is_command]
    after = [bytes(v.data) for v in pdvs(mutated) if not v.is_command]
    assert len(after) == len(before)
    assert sum(b != a for b, a in zip(before, after, strict=True)) == (1 if before else 0)


def test_command_set_mutation_by_hand() -> None:
    """Every kind of command-set mutation, driven by a fixed pick, changes the bytes."""
    command = dimse.encode_message(dimse.CEchoRequest(message_id=7), False)
    for kind in range(10):
        picks = iter([0, kind])

        def pick(lo: int, hi: int, picks=picks) -> int:  # type: ignore[no-untyped-def]
            return max(lo, min(hi, next(picks, lo)))

        assert mutate_command_set(command, pick) != command, kind


@SLOW
@given(layered_mutations(association_streams()))
def test_layered_mutations_into_a_dul_acceptor(stream: bytes) -> None:
    """Mutations at every layer, fed to a dul acceptor that answers: feed's checks hold."""
    feed(dul.Connection(dul.Role.ACCEPTOR), [stream], respond=True)


def test_storage_sop_classes_are_storage() -> None:
    """The default SOP classes are PS3.4 storage SOP classes, as pydicom names them."""
    from pydicom.uid import UID

    for uid in STORAGE_SOP_CLASSES:
        assert "Storage" in UID(uid).name, uid


def test_docs_examples_run() -> None:
    """The Python blocks of docs/testing.md run as printed (the live-peer one is run against
    storescp in tests/test_interop_streams.py)."""
    namespace = docs_examples()
    namespace["test_round_trip"]()
    settings(max_examples=5)(namespace["test_peer_survives"])()
    settings(max_examples=2)(namespace["test_any_bytes"])()


def docs_examples() -> dict[str, Any]:
    """The names the Python blocks of docs/testing.md define, run in order."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", page, re.S):
        exec(compile(block, "docs/testing.md", "exec"), namespace)
    return namespace
