"""Sessions: DIMSE messages over a pair of Connections, in memory.

C-ECHO and C-STORE both ways, streamed data sets, PDUs that respect the peer's maximum length
and never mix a command with a data set nor two messages, a peer's DIMSE violation answered with
an A-ABORT, and the asynchronous operations window (PS3.7 D.3.3.3) with responses out of order.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dul
from dimse_peer import SessionPair, next_events
from dul import AsyncOpsWindow, LocalProtocolError, PData, RemoteProtocolError
from dul import PresentationDataValue as PDV
from dul.dimse import (
    VERIFICATION_SOP_CLASS,
    AcceptorPolicy,
    CCancelRequest,
    CEchoRequest,
    CEchoResponse,
    CFindRequest,
    CFindResponse,
    CStoreRequest,
    CStoreResponse,
    DatasetChunk,
    MessageReceived,
    NEventReportRequest,
    Request,
    Session,
    decode_message,
    encode_message,
)
from helpers import CT_IMAGE_STORAGE, EXPLICIT_LE, FEEDS, IMPLICIT_LE, Feed, make_request
from peers import split_pdus

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CONTEXTS = (
    dul.PresentationContext(
        context_id=1, abstract_syntax=VERIFICATION_SOP_CLASS, transfer_syntaxes=(IMPLICIT_LE,)
    ),
    dul.PresentationContext(
        context_id=3, abstract_syntax=CT_IMAGE_STORAGE, transfer_syntaxes=(EXPLICIT_LE,)
    ),
    dul.PresentationContext(
        context_id=5, abstract_syntax=STUDY_ROOT_FIND, transfer_syntaxes=(IMPLICIT_LE,)
    ),
)
POLICY = AcceptorPolicy(
    contexts={VERIFICATION_SOP_CLASS: (), CT_IMAGE_STORAGE: (), STUDY_ROOT_FIND: ()}
)


def window(invoked: int, performed: int) -> AsyncOpsWindow:
    """An asynchronous operations window item; 0 means unlimited."""
    return AsyncOpsWindow(invoked=invoked, performed=performed)


def request(
    *, window: AsyncOpsWindow | None = None, maximum_length: int = 16384
) -> dul.AssociateRequest:
    """Verification (1), CT storage (3) and Study Root C-FIND (5)."""
    rq = make_request(contexts=CONTEXTS, maximum_length=maximum_length)
    info = attrs.evolve(rq.user_information, async_ops_window=window)
    return attrs.evolve(rq, user_information=info)


def associated(
    *,
    how: Feed = "whole",
    window: AsyncOpsWindow | None = None,
    offered: AsyncOpsWindow | None = None,
    acceptor_maximum: int = 16384,
    requestor_maximum: int = 16384,
    whole_datasets: bool = False,
) -> SessionPair:
    """A Session pair, associated; ``window`` is what the requestor asks, ``offered`` what the
    acceptor's policy would grant."""
    pair = SessionPair(
        how=how,
        requestor=Session(dul.Connection(dul.Role.REQUESTOR), whole_datasets=whole_datasets),
        acceptor=Session(dul.Connection(dul.Role.ACCEPTOR), whole_datasets=whole_datasets),
    )
    policy = attrs.evolve(POLICY, maximum_length=acceptor_maximum, async_ops_window=offered)
    pair.associate(request(window=window, maximum_length=requestor_maximum), policy)
    return pair


def store(message_id: int, uid: str = "1.2.3.4") -> CStoreRequest:
    return CStoreRequest(
        message_id=message_id,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid=uid,
    )


def echo_rsp(message_id: int) -> CEchoResponse:
    return CEchoResponse(message_id_being_responded_to=message_id)


# -- messages both ways ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", FEEDS)
def test_echo(how: Feed) -> None:
    pair = associated(how=how)
    rq = CEchoRequest(message_id=pair.requestor.next_message_id())
    pair.send_message(pair.requestor, rq, context_id=1)
    assert pair.requestor.outstanding == {rq.message_id: rq}
    assert pair.deliver(pair.requestor) == [
        MessageReceived(context_id=1, message=rq, has_dataset=False)
    ]
    pair.send_message(pair.acceptor, echo_rsp(rq.message_id), context_id=1)
    assert pair.deliver(pair.acceptor) == [
        MessageReceived(
            context_id=1, message=echo_rsp(rq.message_id), has_dataset=False, request=rq
        )
    ]
    assert pair.requestor.outstanding == {}
    pair.release()


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_store_with_dataset(how: Feed, whole: bool) -> None:
    pair = associated(how=how, whole_datasets=whole)
    dataset = bytes(range(256)) * 100 + b"odd"  # 25,603 bytes: two PDUs of 16 KiB
    rq = store(7)
    pair.send_message(pair.requestor, rq, context_id=3, dataset=dataset)
    events = pair.deliver(pair.requestor)
    if whole:
        assert events == [
            MessageReceived(context_id=3, message=rq, has_dataset=True, dataset=dataset)
        ]
    else:
        assert events[0] == MessageReceived(context_id=3, message=rq, has_dataset=True)
        assert all(isinstance(e, DatasetChunk) and e.context_id == 3 for e in events[1:])
        assert b"".join(bytes(e.data) for e in events[1:]) == dataset  # type: ignore[union-attr]
        assert [e.is_last for e in events[1:]] == [False, True]  # type: ignore[union-attr]

    rsp = CStoreResponse(
        message_id_being_responded_to=7,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid="1.2.3.4",
    )
    pair.send_message(pair.acceptor, rsp, context_id=3)
    (answer,) = pair.deliver(pair.acceptor)
    assert answer == MessageReceived(context_id=3, message=rsp, has_dataset=False, request=rq)


@pytest.mark.parametrize("explicit_end", [False, True], ids=["last-piece", "end_dataset"])
def test_streamed_send(explicit_end: bool) -> None:
    """``dataset_follows=True``, then the data set in pieces of any length: what arrives is the
    concatenation. Nothing else goes out until the end (messages never interleave, PS3.7
    §6.3.1), neither a release (it would cut the message), and a piece needs a data set
    announced on its context. The end rides on the last piece or comes alone."""
    pair = associated(acceptor_maximum=4096)
    sender = pair.requestor
    pieces = [b"ab" * 1000, b"c" * 3001, b"e" * 4093, b"f"]
    with pytest.raises(LocalProtocolError, match="no data set was announced"):
        sender.send_dataset(3, pieces[0], is_last=False)
    pair.send_message(sender, store(1), context_id=3, dataset_follows=True)
    cancel = CCancelRequest(message_id_being_responded_to=1)  # not bound by the window
    for i, piece in enumerate(pieces):
        with pytest.raises(LocalProtocolError, match="announced with dataset_follows=True"):
            sender.send_message(cancel, context_id=1)
        with pytest.raises(LocalProtocolError, match=r"no data set was announced on .* 1"):
            sender.send_dataset(1, piece, is_last=False)
        with pytest.raises(LocalProtocolError, match="ReleaseRequest: the data set announced"):
            sender.send(dul.ReleaseRequest())
        pair.send_dataset(sender, 3, piece, is_last=not explicit_end and i == len(pieces) - 1)
    if explicit_end:
        pair.write(sender, sender.end_dataset(3))
    events = pair.deliver(sender)
    assert events[0] == MessageReceived(context_id=3, message=store(1), has_dataset=True)
    assert b"".join(bytes(e.data) for e in events[1:]) == b"".join(pieces)  # type: ignore[union-attr]
    assert [e.is_last for e in events[1:]].count(True) == 1  # type: ignore[union-attr]
    # the data set is complete: the next message may go, and no more of the data set
    with pytest.raises(LocalProtocolError, match="no data set was announced"):
        sender.send_dataset(3, b"more", is_last=True)
    pair.send_message(sender, cancel, context_id=1)
    (event,) = pair.deliver(sender)
    assert isinstance(event, MessageReceived) and event.message == cancel


def test_command_needs_its_dataset_rules() -> None:
    pair = associated()
    with pytest.raises(LocalProtocolError, match="requires a data set"):
        pair.requestor.send_message(store(1), context_id=3)
    with pytest.raises(LocalProtocolError, match="carries no data set"):
        pair.requestor.send_message(CEchoRequest(message_id=1), context_id=1, dataset=b"xx")
    with pytest.raises(LocalProtocolError, match="not accepted"):
        pair.requestor.send_message(CEchoRequest(message_id=1), context_id=7)
    assert pair.requestor.outstanding == {}  # nothing was sent
    assert pair.wire_bytes(pair.requestor) == b""


# -- what goes on the wire -------------------------------------------------------------------------


def check_pdus(data: bytes, maximum: int, dataset_size: int) -> None:
    """One message's PDUs: P-DATA-TFs within ``maximum`` (0: no limit), one PDV each, the
    command's first, then the data set's; even fragments but the last of each."""
    pdus = split_pdus(data)
    assert all(pdu_type == 0x04 for pdu_type, _ in pdus)
    if maximum:
        assert all(len(body) <= maximum for _, body in pdus)
    fragments: dict[bool, list[tuple[int, bool]]] = {True: [], False: []}
    kinds = []
    for event in dul.decode(data):
        assert isinstance(event, dul.PDataReceived)
        (value,) = event.values
        kinds.append(value.is_command)
        fragments[value.is_command].append((len(value.data), value.is_last))
    assert kinds == sorted(kinds, reverse=True)  # the command, then the data set
    for stream in fragments.values():
        if stream:
            assert [last for _, last in stream] == [False] * (len(stream) - 1) + [True]
            assert all(length % 2 == 0 for length, _ in stream[:-1])
    assert sum(length for length, _ in fragments[False]) == dataset_size


@settings(max_examples=25, deadline=None)  # a 13-byte maximum length makes thousands of PDUs
@given(
    maximum=st.one_of(st.sampled_from([0, 4096, 16384]), st.integers(13, 5000)),
    sizes=st.lists(st.integers(0, 20_000), min_size=1, max_size=4),
)
def test_pdus_fit_and_never_mix(maximum: int, sizes: list[int]) -> None:
    """Every P-DATA-TF fits the maximum length the peer announced (PS3.8 Annex D.1: it bounds
    the variable field), holds one PDV, and so never a command with a data set, nor two
    messages; fragments but the last of each stream have an even length."""
    pair = associated(acceptor_maximum=maximum)
    for message_id, size in enumerate(sizes, start=1):
        rq: Request
        if size:
            rq, context_id = store(message_id), 3
            rsp: dul.dimse.Response = CStoreResponse(message_id_being_responded_to=message_id)
            dataset: bytes | None = bytes(range(256)) * (size // 256) + bytes(size % 256)
        else:
            rq, context_id, rsp, dataset = (
                CEchoRequest(message_id=message_id),
                1,
                echo_rsp(message_id),
                None,
            )
        buffers = pair.send_message(pair.requestor, rq, context_id=context_id, dataset=dataset)
        check_pdus(b"".join(buffers), maximum, size)
        events = pair.deliver(pair.requestor)
        assert events[0] == MessageReceived(
            context_id=context_id, message=rq, has_dataset=bool(size)
        )
        assert b"".join(bytes(e.data) for e in events[1:]) == (dataset or b"")  # type: ignore[union-attr]
        pair.send_message(pair.acceptor, rsp, context_id=context_id)
        (answer,) = pair.deliver(pair.acceptor)
        assert answer.request == rq  # type: ignore[union-attr]


def test_a_message_is_one_gather_write() -> None:
    """``send_message`` hands back the buffers of all the message's PDUs at once, header and
    payload alike, the payload sliced from the caller's bytes, not copied."""
    pair = associated(acceptor_maximum=4096)
    dataset = bytearray(b"x" * 10_000)
    buffers = pair.requestor.send_message(store(1), context_id=3, dataset=dataset)
    payloads = [b for b in buffers if isinstance(b, memoryview) and b.obj is dataset]
    assert sum(len(b) for b in payloads) == len(dataset)
    assert len(split_pdus(b"".join(buffers))) == 1 + 3  # the command; 4090 + 4090 + 1820


# -- the peer breaks DIMSE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            (PDV(context_id=1, is_command=False, is_last=True, data=b"\0\0"),),
            id="dataset-without-command",
        ),
        pytest.param(
            (PDV(context_id=1, is_command=True, is_last=True, data=b"\0" * 12),),
            id="malformed-command",
        ),
        pytest.param(
            (PDV(context_id=3, is_command=True, is_last=True, data=encode_message(store(1), True)),
             PDV(context_id=1, is_command=False, is_last=True, data=b"\0\0")),
            id="context-switch",
        ),
    ],
)  # fmt: skip
def test_violation_aborts(values: tuple[PDV, ...]) -> None:
    """A peer's DIMSE violation: RemoteProtocolError, and an A-ABORT (service user) waiting in
    ``data_to_send()``; the peer sees the abort."""
    pair = associated()
    # One PDU per PDV: a P-DATA-TF carrying two messages is the codec's to refuse.
    data = b"".join(pair.acceptor.connection.send(PData(values=(v,))) for v in values)
    pair.requestor.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=r"DIMSE|command set") as info:
        while pair.requestor.next_event() is not dul.NEED_DATA:
            pass
    assert info.value.reply == dul.Abort(source=0, reason=0)
    out = pair.requestor.data_to_send()
    assert out == dul.encode(dul.Abort(source=0, reason=0))
    assert pair.requestor.connection.state is dul.State.AWAITING_TRANSPORT_CLOSE
    pair.acceptor.receive_data(out)
    assert next_events(pair.acceptor) == [
        dul.Abort(source=0, reason=0),
        dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PEER),
    ]
    with pytest.raises(LocalProtocolError):  # nothing more goes out after the abort
        pair.requestor.send_message(CEchoRequest(message_id=9), context_id=1)


# -- asynchronous operations window (PS3.7 D.3.3.3) ------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5])
def test_window_bounds_outstanding_requests(n: int) -> None:
    """With a window of N the requestor has N requests outstanding; the N+1th is refused
    before anything is written; a response makes room again."""
    pair = associated(window=AsyncOpsWindow(invoked=n, performed=1), offered=window(0, 0))
    for message_id in range(1, n + 1):
        assert pair.requestor.can_invoke
        pair.send_message(pair.requestor, CEchoRequest(message_id=message_id), context_id=1)
    assert not pair.requestor.can_invoke
    before = pair.wire_bytes(pair.requestor)
    with pytest.raises(LocalProtocolError, match=rf"window \({n}\) is full"):
        pair.requestor.send_message(CEchoRequest(message_id=n + 1), context_id=1)
    assert pair.wire_bytes(pair.requestor) == before
    assert sorted(pair.requestor.outstanding) == list(range(1, n + 1))
    # C-CANCEL is not an operation: it goes even when the window is full
    pair.send_message(pair.requestor, CCancelRequest(message_id_being_responded_to=1), context_id=1)

    pair.deliver(pair.requestor)
    pair.send_message(pair.acceptor, echo_rsp(n), context_id=1)
    pair.deliver(pair.acceptor)
    assert pair.requestor.can_invoke
    pair.send_message(pair.requestor, CEchoRequest(message_id=n + 1), context_id=1)


def test_responses_out_of_order_reach_their_requests() -> None:
    """Four requests of three kinds outstanding; answered in reverse order, each response is
    matched to its request by Message ID."""
    pair = associated(window=window(4, 4), offered=window(8, 8))
    requests: list[Request] = [
        CEchoRequest(message_id=11),
        store(12),
        CFindRequest(message_id=13, affected_sop_class_uid=STUDY_ROOT_FIND),
        CEchoRequest(message_id=14),
    ]
    contexts = {CEchoRequest: 1, CStoreRequest: 3, CFindRequest: 5}
    for rq in requests:
        dataset = None if isinstance(rq, CEchoRequest) else b"identifier or image"
        pair.send_message(pair.requestor, rq, context_id=contexts[type(rq)], dataset=dataset)
    received = [e for e in pair.deliver(pair.requestor) if isinstance(e, MessageReceived)]
    assert [e.message for e in received] == requests

    responses = {
        11: echo_rsp(11),
        12: CStoreResponse(message_id_being_responded_to=12),
        13: CFindResponse(message_id_being_responded_to=13),
        14: echo_rsp(14),
    }
    answered = []
    for rq in reversed(requests):
        pair.send_message(pair.acceptor, responses[rq.message_id], context_id=contexts[type(rq)])
        (event,) = pair.deliver(pair.acceptor)
        assert isinstance(event, MessageReceived)
        answered.append(event)
    assert [(e.message, e.request) for e in answered] == [
        (responses[rq.message_id], rq) for rq in reversed(requests)
    ]
    assert pair.requestor.outstanding == {}


@pytest.mark.parametrize(
    ("asked", "offered"),
    [
        (None, window(5, 5)),  # not asked: never answered
        (window(5, 5), None),  # asked, not granted
        (None, None),
    ],
    ids=["not-asked", "not-offered", "neither"],
)
def test_window_is_one_one_without_the_item(
    asked: AsyncOpsWindow | None, offered: AsyncOpsWindow | None
) -> None:
    pair = associated(window=asked, offered=offered)
    assert pair.requestor.connection.accept is not None
    assert pair.requestor.connection.accept.user_information.async_ops_window is None
    pair.send_message(pair.requestor, CEchoRequest(message_id=1), context_id=1)
    with pytest.raises(LocalProtocolError, match=r"window \(1\) is full"):
        pair.requestor.send_message(CEchoRequest(message_id=2), context_id=1)
    pair.send_message(
        pair.acceptor,
        NEventReportRequest(
            message_id=1,
            affected_sop_class_uid="1.2.3",
            affected_sop_instance_uid="4.5",
            event_type_id=1,
        ),
        context_id=1,
    )
    with pytest.raises(LocalProtocolError, match=r"window \(1\) is full"):
        pair.acceptor.send_message(CEchoRequest(message_id=2), context_id=1)


def test_acceptor_requests_are_bounded_by_operations_performed() -> None:
    """The acceptor's own requests (an N-EVENT-REPORT, the C-STOREs of a C-GET) count against
    the maximum number of operations performed; the requestor's against those invoked."""
    pair = associated(window=window(3, 2), offered=window(0, 0))
    for message_id in (1, 2):
        pair.send_message(pair.acceptor, store(message_id), context_id=3, dataset=b"image!")
    with pytest.raises(LocalProtocolError, match=r"window \(2\) is full"):
        pair.acceptor.send_message(store(3), context_id=3, dataset=b"image!")
    for message_id in (1, 2, 3):
        pair.send_message(pair.requestor, CEchoRequest(message_id=message_id), context_id=1)
    assert not pair.requestor.can_invoke


def test_unlimited_window() -> None:
    pair = associated(window=window(0, 0), offered=window(0, 0))
    for message_id in range(1, 201):
        pair.send_message(pair.requestor, CEchoRequest(message_id=message_id), context_id=1)
    assert len(pair.requestor.outstanding) == 200 and pair.requestor.can_invoke


def test_pending_find_responses_keep_the_request_outstanding() -> None:
    """C-FIND's Pending responses (each with a match) are not final: the request stays
    outstanding, and with a window of 1 nothing else may be invoked, until the final one."""
    pair = associated(how="random")
    rq = CFindRequest(
        message_id=pair.requestor.next_message_id(), affected_sop_class_uid=STUDY_ROOT_FIND
    )
    pair.send_message(pair.requestor, rq, context_id=5, dataset=b"query\0")
    pair.deliver(pair.requestor)
    for i, status in enumerate([0xFF00, 0xFF01, 0xFF00]):
        pending = CFindResponse(message_id_being_responded_to=rq.message_id, status=status)
        pair.send_message(pair.acceptor, pending, context_id=5, dataset=b"match %d" % i)
        events = pair.deliver(pair.acceptor)
        assert events[0] == MessageReceived(
            context_id=5, message=pending, has_dataset=True, request=rq
        )
        assert b"".join(bytes(e.data) for e in events[1:]) == b"match %d" % i  # type: ignore[union-attr]
        assert pair.requestor.outstanding == {rq.message_id: rq}
        with pytest.raises(LocalProtocolError, match="window"):
            pair.requestor.send_message(CEchoRequest(message_id=99), context_id=1)
    final = CFindResponse(message_id_being_responded_to=rq.message_id)
    pair.send_message(pair.acceptor, final, context_id=5)
    assert pair.deliver(pair.acceptor) == [
        MessageReceived(context_id=5, message=final, has_dataset=False, request=rq)
    ]
    assert pair.requestor.outstanding == {} and pair.requestor.can_invoke


def test_message_ids() -> None:
    """IDs count 1 to 65535 and wrap, skipping outstanding ones; an ID in use is refused."""
    pair = associated(window=window(0, 0), offered=window(0, 0))
    session = pair.requestor
    assert [session.next_message_id() for _ in range(3)] == [1, 2, 3]
    pair.send_message(session, CEchoRequest(message_id=5), context_id=1)
    with pytest.raises(LocalProtocolError, match="message ID 5 is outstanding"):
        session.send_message(CEchoRequest(message_id=5), context_id=1)
    assert session.next_message_id() == 4
    assert session.next_message_id() == 6  # 5 is outstanding
    session._next_id = 0xFFFE
    assert [session.next_message_id() for _ in range(3)] == [0xFFFF, 1, 2]


def test_responses_to_unknown_requests_pass_unmatched() -> None:
    pair = associated()
    pair.send_message(pair.acceptor, echo_rsp(42), context_id=1)
    assert pair.deliver(pair.acceptor) == [
        MessageReceived(context_id=1, message=echo_rsp(42), has_dataset=False, request=None)
    ]


# -- what was negotiated ---------------------------------------------------------------------------


def test_contexts_and_context_for() -> None:
    pair = associated()
    assert pair.requestor.contexts == pair.acceptor.contexts
    assert sorted(pair.requestor.contexts) == [1, 3, 5]
    assert pair.requestor.context_for(CT_IMAGE_STORAGE) == 3
    assert pair.requestor.context_for(CT_IMAGE_STORAGE, EXPLICIT_LE) == 3
    with pytest.raises(LocalProtocolError, match="no accepted presentation context"):
        pair.requestor.context_for(CT_IMAGE_STORAGE, IMPLICIT_LE)
    with pytest.raises(LocalProtocolError, match="no accepted presentation context"):
        pair.requestor.context_for("1.2.3")


def test_upper_layer_events_pass_through() -> None:
    """A-RELEASE and A-ABORT reach the Session's user as the Connection's events."""
    pair = associated()
    pair.send(pair.acceptor, dul.Abort())
    assert pair.deliver(pair.acceptor) == [
        dul.Abort(source=0, reason=0),
        dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PEER),
    ]


def test_decode_of_what_sessions_send() -> None:
    """The command a Session writes is the message's encoding (CommandDataSetType included)."""
    pair = associated()
    buffers = pair.requestor.send_message(store(3), context_id=3, dataset=b"\0\0")
    command, _dataset = dul.decode(b"".join(buffers))
    assert isinstance(command, dul.PDataReceived)
    (value,) = command.values
    assert decode_message(value.data) == (store(3), True)
