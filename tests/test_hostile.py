"""Hostile sizes: each is refused, or handled, in bounded time and memory.

Peaks are measured with tracemalloc and printed (``pytest -s`` shows them); the bounds asserted
are generous, a few times what was measured, so that they catch a change of order (a buffer
that grows with the declared length, objects built for bytes nobody will read), not noise.
"""

from __future__ import annotations

import gc
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import attrs
import pytest

import dul
from dul import (
    Abort,
    AbortReason,
    AbortSource,
    AssociateRequest,
    Connection,
    LocalProtocolError,
    PDataReceived,
    PresentationContext,
    RemoteProtocolError,
    Role,
    State,
    UserIdentity,
    UserInformation,
)
from dul._connection import DEFAULT_ASSOCIATE_LENGTH_LIMIT, DEFAULT_PDU_LENGTH_LIMIT
from dul._pdu import decode_pdu
from dul.dimse import AcceptorPolicy, CStoreRequest, MessageReceived, Session, encode_message
from dul.dimse._assembler import MAX_COMMAND_LENGTH
from dul.testing import Scenario, connection_in, default_accept, default_request, length_fields

T = TypeVar("T")
KB = 1024
MB = 1024 * 1024
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
#: What an acceptor in Sta2 answers to anything but a valid A-ASSOCIATE-RQ: AA-1's A-ABORT.
AA_1 = Abort(source=AbortSource.SERVICE_USER, reason=0)


@attrs.define
class Measure:
    """What :func:`measured` found: wall time, the tracemalloc peak above the start, and what
    is still allocated at the end (held)."""

    seconds: float = 0.0
    peak: int = 0
    held: int = 0


@contextmanager
def measured(what: str) -> Iterator[Measure]:
    """Time and tracemalloc peak of the block (allocations made before it do not count)."""
    result = Measure()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
        result.peak, result.held = peak - base, held - base
        tracemalloc.stop()
        print(
            f"\n{what}: {result.seconds * 1000:.1f} ms, peak {result.peak / KB:.1f} KiB, "
            f"held {result.held / KB:.1f} KiB"
        )


def raises_remote(call: Callable[[], T]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        call()
    return caught.value


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BxL", pdu_type, len(body)) + body


def request(
    contexts: int = 1, transfer_syntaxes: tuple[str, ...] = (IMPLICIT_LE,)
) -> AssociateRequest:
    """An A-ASSOCIATE-RQ proposing ``contexts`` contexts with odd IDs 1, 3, 5..."""
    return AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        presentation_contexts=tuple(
            PresentationContext(
                context_id=2 * i + 1,
                abstract_syntax=CT_IMAGE_STORAGE if i else VERIFICATION,
                transfer_syntaxes=transfer_syntaxes,
            )
            for i in range(contexts)
        ),
    )


def unlimited_requestor() -> Connection:
    """A requestor in Sta6 that announced maximum length 0: only pdu_length_limit bounds it."""
    rq = attrs.evolve(default_request(), user_information=UserInformation(maximum_length=0))
    return connection_in(Scenario(Role.REQUESTOR, State(6)), rq)


# -- declared lengths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "pdu_type"),
    [
        (Scenario(Role.ACCEPTOR, State(2)), 0x01),
        (Scenario(Role.ACCEPTOR, State(2)), 0x04),
        (Scenario(Role.REQUESTOR, State(5)), 0x02),
        (Scenario(Role.REQUESTOR, State(6)), 0x04),
        (Scenario(Role.ACCEPTOR, State(6)), 0x05),
        (Scenario(Role.ACCEPTOR, State(13), "release"), 0x07),
    ],
    ids=lambda v: str(v) if isinstance(v, Scenario) else f"type {v:02X}H",
)
def test_4_gib_pdu_is_refused_from_its_header(scenario: Scenario, pdu_type: int) -> None:
    """A PDU declaring 0xFFFFFFFF bytes is refused as soon as its 6-byte header is complete:
    not one more byte is waited for or buffered (reason 6, offset 2: the length field)."""
    conn = connection_in(scenario)
    following = bytes(MB)
    with measured(f"4 GiB {pdu_type:02X}H to {scenario}") as m:
        conn.receive_data(bytes((pdu_type, 0)) + b"\xff\xff\xff\xff")
        if scenario.state is State(13):  # AA-7: answered, silently
            assert conn.next_event() is dul.NEED_DATA
            assert dul.decode(conn.data_to_send())[0].source == AbortSource.SERVICE_PROVIDER
        else:
            error = raises_remote(conn.next_event)
            assert (error.reason, error.offset) == (INVALID, 2)
            assert dul.encode(error.reply) == conn.data_to_send()
        conn.receive_data(following)  # what follows is discarded, not buffered
        assert conn.next_event() is dul.NEED_DATA
        assert len(conn._buffer) == 0
    assert conn.state is State.AWAITING_TRANSPORT_CLOSE
    assert m.peak < 64 * KB
    assert m.seconds < 1


def test_a_header_alone_allocates_nothing_like_its_length() -> None:
    """A P-DATA-TF header declaring 16 MiB (the cap, before any association) and 1000 bytes:
    the body is not allocated until an eighth of it has arrived. Regression: in-place assembly
    of large PDUs allocated the declared length on the header (20 such connections, 7 bytes
    each: 336 MB)."""
    conn = Connection(Role.ACCEPTOR)
    header = b"\x04\x00" + DEFAULT_PDU_LENGTH_LIMIT.to_bytes(4, "big")
    following = bytes(1000)
    with measured("a header declaring 16 MiB, then 1000 bytes") as m:
        conn.receive_data(header + following)
        assert conn.next_event() is dul.NEED_DATA
    assert m.peak < 64 * KB
    eighth = bytes(DEFAULT_PDU_LENGTH_LIMIT // 8)
    with measured("then an eighth of it") as m:
        conn.receive_data(eighth)
        assert conn.next_event() is dul.NEED_DATA
    # Now assembled in place: the declared length, 8 times what arrived (plus a transient copy).
    assert m.peak < DEFAULT_PDU_LENGTH_LIMIT + 2 * len(eighth) + MB


def _set_length(data: bytes, offset: int, width: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(width, "big") + data[offset + width :]


ECHO_RQ = dul.encode(request(transfer_syntaxes=(IMPLICIT_LE, "1.2.840.10008.1.2.1")))
ECHO_RQ_FIELDS = length_fields(ECHO_RQ)[1:]  # every item and sub-item length, not the PDU's


@pytest.mark.parametrize(("offset", "width"), ECHO_RQ_FIELDS, ids=lambda v: str(v))
@pytest.mark.parametrize("value", ["+1", "0xFFFF"])
def test_item_longer_than_its_parent(offset: int, width: int, value: str) -> None:
    """Each item and sub-item length of an A-ASSOCIATE-RQ set past the end of its parent
    (0xFFFF), or one byte longer (it then eats the next item's header): the request is refused
    (reason 6), and nothing is read past the PDU."""
    length = int.from_bytes(ECHO_RQ[offset : offset + width], "big")
    new = 0xFFFF if value == "0xFFFF" else length + 1
    data = _set_length(ECHO_RQ, offset, width, new)
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(data + dul.encode(dul.ReleaseRequest()))
    error = raises_remote(conn.next_event)
    assert error.reason == INVALID
    assert error.offset is not None
    if value == "0xFFFF":  # found at the item that overruns
        assert error.offset <= offset + width
    assert error.reply == AA_1
    assert conn.next_event() is dul.NEED_DATA  # framing lost: the A-RELEASE-RQ is dropped


def test_pdv_longer_than_its_pdu() -> None:
    """A PDV item length past the end of the P-DATA-TF (up to 0xFFFFFFFF): reason 6."""
    for length in (4, 0x1_0000, 0xFFFF_FFFF):
        conn = connection_in(Scenario(Role.ACCEPTOR, State(6)))
        conn.receive_data(pdu(0x04, struct.pack(">LBB", length, 1, 3) + b"\0"))
        error = raises_remote(conn.next_event)
        assert (error.reason, error.reply) == (INVALID, Abort(source=2, reason=INVALID))


# -- presentation contexts -------------------------------------------------------------------


def test_all_128_context_ids_are_accepted() -> None:
    """An A-ASSOCIATE-RQ with every odd ID, 1 to 255 (~10 KB, as DCMTK's storescu sends)."""
    rq = request(contexts=128, transfer_syntaxes=(EXPLICIT_LE, IMPLICIT_LE))
    data = dul.encode(rq)
    assert 9 * KB < len(data) < 12 * KB
    conn = Connection(Role.ACCEPTOR)
    policy = AcceptorPolicy(contexts={VERIFICATION: (), CT_IMAGE_STORAGE: ()})
    with measured(f"128 contexts, {len(data)} bytes, decoded and answered") as m:
        conn.receive_data(data)
        received = conn.next_event()
        assert isinstance(received, AssociateRequest)
        conn.send(policy.evaluate(received))
    assert [c.context_id for c in received.presentation_contexts] == list(range(1, 256, 2))
    assert conn.state is State.ESTABLISHED
    assert len(conn.accepted_contexts) == 128
    assert m.peak < 2 * MB


def test_duplicate_context_ids_are_refused() -> None:
    """The same 128 contexts, but ID 255 is ID 1 again: refused with reason 6 (the exception's
    diagnostic); in Sta2 the A-ABORT on the wire is AA-1's (service user, reason 0)."""
    rq = request(contexts=128)
    contexts = (
        *rq.presentation_contexts[:-1],
        attrs.evolve(rq.presentation_contexts[-1], context_id=1),
    )
    data = dul.encode(attrs.evolve(rq, presentation_contexts=contexts), strict=False)
    with pytest.raises(LocalProtocolError, match="unique"):
        dul.encode(attrs.evolve(rq, presentation_contexts=contexts))  # never sent by dul
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(data)
    error = raises_remote(conn.next_event)
    assert error.reason == INVALID
    assert "twice" in str(error)
    assert error.reply == AA_1
    assert dul.decode(conn.data_to_send()) == [AA_1]


# -- user identity ---------------------------------------------------------------------------


def _identity_info(primary: int) -> UserInformation:
    return UserInformation(
        user_identity=UserIdentity(identity_type=2, primary=b"u" * primary, secondary=b"")
    )


def test_largest_user_identity_that_fits() -> None:
    """A user identity as large as the user information item allows (its length is 16 bits:
    65535) is accepted; one byte more cannot be encoded."""
    base = dul.encode(attrs.evolve(request(), user_information=_identity_info(1)))
    at = base.index(b"\x50\x00", 74)
    room = 0xFFFF - int.from_bytes(base[at + 2 : at + 4], "big")
    largest = 1 + room
    data = dul.encode(attrs.evolve(request(), user_information=_identity_info(largest)))
    at = data.index(b"\x50\x00", 74)
    assert data[at + 2 : at + 4] == b"\xff\xff"
    conn = Connection(Role.ACCEPTOR)
    with measured(f"user identity of {largest} bytes") as m:
        conn.receive_data(data)
        received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    identity = received.user_information.user_identity
    assert isinstance(identity, UserIdentity)
    assert len(identity.primary) == largest
    assert m.peak < 1 * MB
    with pytest.raises(LocalProtocolError, match="65535"):
        dul.encode(attrs.evolve(request(), user_information=_identity_info(largest + 1)))


@pytest.mark.parametrize("field", ["primary", "secondary", "sub-item"])
def test_user_identity_lengths_that_claim_more(field: str) -> None:
    """The largest user identity, with its primary or secondary field length, or its sub-item
    length, claiming more than there is: refused, reason 6."""
    data = dul.encode(attrs.evolve(request(), user_information=_identity_info(60_000)))
    at = data.index(b"\x58\x00", 74)  # the user identity sub-item (58H)
    if field == "sub-item":
        data = _set_length(data, at + 2, 2, int.from_bytes(data[at + 2 : at + 4], "big") + 1)
    elif field == "primary":
        data = _set_length(data, at + 6, 2, 60_001)
    else:
        data = _set_length(data, at + 8 + 60_000, 2, 1)
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(data)
    error = raises_remote(conn.next_event)
    assert error.reason == INVALID
    assert error.reply == AA_1


# -- large requests, and the caps --------------------------------------------------------------


def _large_request() -> AssociateRequest:
    """128 contexts, each proposing 15 transfer syntaxes of 64 characters: about 135 KB."""
    syntaxes = tuple(f"1.2.3.{n}.".ljust(64, "9") for n in range(15))
    return request(contexts=128, transfer_syntaxes=syntaxes)


def test_130_kb_request_fits_under_the_associate_cap() -> None:
    data = dul.encode(_large_request())
    assert 130 * KB < len(data) < DEFAULT_ASSOCIATE_LENGTH_LIMIT
    conn = Connection(Role.ACCEPTOR)
    with measured(f"A-ASSOCIATE-RQ of {len(data)} bytes") as m:
        conn.receive_data(data)
        received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    assert sum(len(c.transfer_syntaxes) for c in received.presentation_contexts) == 128 * 15
    assert m.peak < 4 * MB
    assert m.seconds < 2


def test_130_kb_request_is_refused_under_a_smaller_cap() -> None:
    """With associate_length_limit below its length, refused from the header alone."""
    data = dul.encode(_large_request())
    conn = Connection(Role.ACCEPTOR, associate_length_limit=64 * KB)
    conn.receive_data(data[:6])
    error = raises_remote(conn.next_event)
    assert (error.reason, error.offset, error.reply) == (INVALID, 2, AA_1)
    assert "65536" in str(error)


def _padded_request(size: int) -> tuple[bytes, int]:
    """An A-ASSOCIATE-RQ padded to ``size`` bytes after its header with empty items of an
    unknown type (7FH), and how many there are."""
    data = dul.encode(request())
    count = (size - len(data) + 6) // 4
    return pdu(0x01, data[6:] + struct.pack(">BxH", 0x7F, 0) * count), count


def test_request_of_empty_unknown_items() -> None:
    """An A-ASSOCIATE-RQ padded to the 1 MiB cap with empty items of an unknown type (262,090
    of them): the first MAX_UNKNOWN_ITEMS are kept (PS3.8 §9.3.1 lets them all be skipped), the
    rest counted. Regression: each became an UnknownItem, ~54 MB (50 times the PDU) and 0.5 s.
    The peak is measured on 64 KiB of them (tracemalloc makes the loop over a million slow)."""
    data, count = _padded_request(DEFAULT_ASSOCIATE_LENGTH_LIMIT)
    assert len(data) - 6 <= DEFAULT_ASSOCIATE_LENGTH_LIMIT
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(data)
    received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    assert len(received.unknown_items) == dul.MAX_UNKNOWN_ITEMS
    assert received.unknown_items_skipped == count - dul.MAX_UNKNOWN_ITEMS
    del received
    data, count = _padded_request(64 * KB)
    conn = Connection(Role.ACCEPTOR)
    with measured(f"A-ASSOCIATE-RQ with {count} empty unknown items ({len(data)} bytes)") as m:
        conn.receive_data(data)
        received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    assert received.unknown_items_skipped == count - dul.MAX_UNKNOWN_ITEMS
    assert m.peak < 2 * len(data)  # the body's copy, and nothing per item


def test_user_information_of_empty_unknown_sub_items() -> None:
    """The same inside the user information item (64 KiB of empty sub-items of type 7FH)."""
    data = dul.encode(request())
    at = data.index(b"\x50\x00", 74)  # the user information item
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    count = (0xFFFF - length) // 4
    padded = data[at + 4 : at + 4 + length] + struct.pack(">BxH", 0x7F, 0) * count
    item = struct.pack(">BxH", 0x50, len(padded)) + padded
    data = pdu(0x01, data[6:at] + item + data[at + 4 + length :])
    conn = Connection(Role.ACCEPTOR)
    with measured(f"user information with {count} empty unknown sub-items") as m:
        conn.receive_data(data)
        received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    info = received.user_information
    assert len(info.unknown_items) == dul.MAX_UNKNOWN_ITEMS
    assert info.unknown_items_skipped == count - dul.MAX_UNKNOWN_ITEMS
    assert m.peak < 4 * len(data)


def test_caps_are_configurable_and_exact() -> None:
    """A PDU of exactly the cap passes framing; one byte more is refused."""
    data = dul.encode(request())
    body = len(data) - 6
    conn = Connection(Role.ACCEPTOR, associate_length_limit=body)
    conn.receive_data(data)
    assert isinstance(conn.next_event(), AssociateRequest)
    conn = Connection(Role.ACCEPTOR, associate_length_limit=body - 1)
    conn.receive_data(data)
    assert raises_remote(conn.next_event).offset == 2

    for limit, size, refused in ((1000, 1000, False), (1000, 1001, True)):
        rq = attrs.evolve(default_request(), user_information=UserInformation(maximum_length=0))
        conn = connection_in(Scenario(Role.REQUESTOR, State(6)), rq, pdu_length_limit=limit)
        conn.receive_data(pdu(0x04, struct.pack(">LBB", size - 4, 1, 3) + bytes(size - 6)))
        if refused:
            assert raises_remote(conn.next_event).offset == 2
        else:
            assert isinstance(conn.next_event(), PDataReceived)


@pytest.mark.parametrize(
    ("announced", "cap", "limit"), [(4096, 1 << 20, 4096), (1 << 20, 4096, 4096)]
)
def test_announced_maximum_length_and_cap_the_smaller_wins(
    announced: int, cap: int, limit: int
) -> None:
    """What we receive is bounded by the maximum length we announced and by the cap."""
    rq = attrs.evolve(default_request(), user_information=UserInformation(maximum_length=announced))
    for size, refused in ((limit, False), (limit + 1, True)):
        conn = connection_in(Scenario(Role.REQUESTOR, State(6)), rq, pdu_length_limit=cap)
        conn.receive_data(pdu(0x04, struct.pack(">LBB", size - 4, 1, 3) + bytes(size - 6)))
        if refused:
            assert raises_remote(conn.next_event).offset == 2
        else:
            assert isinstance(conn.next_event(), PDataReceived)


def test_defaults() -> None:
    conn = Connection(Role.ACCEPTOR)
    assert (conn.pdu_length_limit, conn.associate_length_limit) == (DEFAULT_PDU_LENGTH_LIMIT, MB)
    assert DEFAULT_PDU_LENGTH_LIMIT == 16 * MB


# -- many tiny PDVs --------------------------------------------------------------------------


def _tiny_pdvs(count: int) -> bytes:
    """A P-DATA-TF of ``count`` PDVs of one data byte each, on context 1 (7 bytes each)."""
    return pdu(0x04, struct.pack(">LBBB", 3, 1, 0, 0x55) * count)


def test_100_000_tiny_pdvs_are_handled() -> None:
    """One P-DATA-TF of 100 000 one-byte PDVs (700 KB) to a connection that announced no limit:
    fragments of one data set, delivered as one PDV holding their 100 000 bytes, joined.

    Regression: every PDV became an object holding a view of the PDU, about 260 bytes each, 40
    times the wire size (peak ~27 MB, 0.5 s).
    """
    data = _tiny_pdvs(100_000)
    assert len(data) == 6 + 700_000
    conn = unlimited_requestor()
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, PDataReceived)
    [value] = event.values
    assert (value.context_id, value.is_command, value.is_last) == (1, False, False)
    assert bytes(value.data) == b"\x55" * 100_000
    del event, value
    data = _tiny_pdvs(10_000)  # measured on fewer: tracemalloc slows the loop tenfold
    conn = unlimited_requestor()
    with measured("10 000 tiny PDVs, decoded") as m:
        conn.receive_data(data)
        event = conn.next_event()
        del event
    assert m.peak < 2 * len(data)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(Role.ACCEPTOR, State(2)),
        Scenario(Role.REQUESTOR, State(5)),
        Scenario(Role.ACCEPTOR, State(13), "release"),
    ],
    ids=str,
)
def test_tiny_pdvs_where_pdata_is_not_delivered_build_nothing(scenario: Scenario) -> None:
    """Before the association (or once it is ending), a P-DATA-TF is only validated: its PDVs
    are never built. Regression: a 16 MiB P-DATA-TF of empty PDVs sent to a fresh acceptor,
    before any A-ASSOCIATE-RQ, cost 842 MB and 24 s to decode, then was refused (AA-1)."""
    count = 256 * KB // 6
    data = pdu(0x04, struct.pack(">LBB", 2, 1, 0) * count)
    # Both sides announce no maximum length: only pdu_length_limit (16 MiB) bounds the PDU.
    unlimited = UserInformation(maximum_length=0)
    rq = attrs.evolve(default_request(), user_information=unlimited)
    conn = connection_in(scenario, rq, attrs.evolve(default_accept(rq), user_information=unlimited))
    assert conn._limit == DEFAULT_PDU_LENGTH_LIMIT
    with measured(f"256 KiB of empty PDVs ({count}) to {scenario}") as m:
        conn.receive_data(data)
        if scenario.state is State(13):
            assert conn.next_event() is dul.NEED_DATA  # AA-6: ignored
        else:
            raises_remote(conn.next_event)
    assert m.peak < 256 * KB  # was 11 MB: 45 times the PDU's size


def test_invalid_pdata_is_still_refused_where_not_delivered() -> None:
    """Validation without building still finds a bad PDV: in Sta13, Evt19 (AA-7) and not
    Evt10 (AA-6, ignored)."""
    conn = connection_in(Scenario(Role.ACCEPTOR, State(13), "release"))
    conn.receive_data(pdu(0x04, struct.pack(">LBB", 2, 1, 0) * 1000 + struct.pack(">LBB", 2, 2, 0)))
    assert conn.next_event() is dul.NEED_DATA
    assert dul.decode(conn.data_to_send()) == [Abort(source=2, reason=INVALID)]


# -- a peer that stops reading ---------------------------------------------------------------


def test_send_side_keeps_nothing() -> None:
    """The core has no send buffer: send() and send_data() hand the bytes over and keep none,
    so a peer that stops reading can only fill what the driver buffers. (Drivers: write with
    back-pressure, and give up on a peer that does not read within a timeout.)"""
    rq = attrs.evolve(default_request(), user_information=UserInformation(maximum_length=0))
    conn = connection_in(Scenario(Role.REQUESTOR, State(6)), rq)
    payload = bytes(16 * KB)
    with measured("2000 x 16 KB send_data, output dropped") as m:
        for _ in range(2000):
            buffers = conn.send_data(1, payload, is_command=False)
            assert all(b.obj is payload for b in buffers[1::2])  # views: not copied
            del buffers
            data = conn.send(
                dul.PData(
                    values=(
                        dul.PresentationDataValue(
                            context_id=1, is_command=True, is_last=True, data=b"x" * 100
                        ),
                    )
                )
            )
            del data
        assert conn.data_to_send() == b""
        assert not conn._outgoing
    assert m.peak < 256 * KB  # 32 MB went out


def test_data_to_send_holds_at_most_a_reply() -> None:
    """What the protocol itself queues is bounded: after a protocol error, framing is lost and
    the rest of the input is discarded, whatever its size."""
    conn = Connection(Role.ACCEPTOR)
    junk = bytes((0x09, 0, 0, 0, 0, 0)) * (MB // 6)
    conn.receive_data(junk)
    raises_remote(conn.next_event)
    for _ in range(100):
        conn.receive_data(junk[: 64 * KB])
        assert conn.next_event() is dul.NEED_DATA
    assert dul.decode(conn.data_to_send()) == [AA_1]


# -- bounded by the input: runs of empty and tiny PDVs (issue 17) ---------------------------------
# A PDV item length of 2 is a PDV of no data (PS3.8 §9.3.5: the length counts the 2-byte header).
# Received, such PDVs and tiny ones are not one object each: the PDVs of a P-DATA-TF carry one
# message (Annex E.1), so a P-DATA-TF yields at most two PDVs, its fragments of each stream joined.


def _pdvs(count: int, control: int, data: bytes = b"", context_id: int = 1) -> bytes:
    """``count`` PDV items, each holding ``data`` (none: item length 2)."""
    return (struct.pack(">LBB", len(data) + 2, context_id, control) + data) * count


def _session(role: Role = Role.ACCEPTOR, **options: object) -> Session:
    """A Session over a connection of ``role`` in Sta6 that announced 256 KiB (the default)."""
    announced = UserInformation()
    rq = attrs.evolve(default_request(), user_information=announced)
    conn = connection_in(
        Scenario(role, State(6)), rq, attrs.evolve(default_accept(rq), user_information=announced)
    )
    assert conn.max_receive_length == dul.DEFAULT_MAXIMUM_LENGTH
    return Session(conn, **options)  # type: ignore[arg-type]


def _drain(session: Session) -> list[object]:
    events = []
    while (event := session.next_event()) is not dul.NEED_DATA:
        events.append(event)
    return events


def operations(call: Callable[[], object]) -> int:
    """How many Python and C function calls ``call`` makes: a count, not a time, so that a
    linearity check is exact on any machine."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        count += 1

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize("role", [Role.ACCEPTOR, Role.REQUESTOR], ids=lambda r: r.value)
def test_empty_command_fragments_hold_nothing_and_meet_the_command_cap(role: Role) -> None:
    """20 P-DATA-TF PDUs of 256 KiB of empty command fragments (00 00 00 02 01 01 repeated,
    5 MB) to the default Session: nothing is held, and each fragment counts its 6-byte header
    against the 64 KiB command-set cap, so a stream of them is refused. Regression: the cap
    counted data bytes only, and the 5 MB left 168 MB held in 873,800 fragments, unbounded."""
    session = _session(role)
    data = pdu(0x04, _pdvs(dul.DEFAULT_MAXIMUM_LENGTH // 6, control=0x01))
    for _ in range(18):
        session.receive_data(data)
        assert _drain(session) == []
    with measured(f"2 more PDUs of {len(data)} bytes of empty command fragments") as m:
        for _ in range(2):  # measured on two: tracemalloc slows the loop over PDVs tenfold
            session.receive_data(data)
            assert _drain(session) == []
    assert m.held < 16 * KB
    assert m.peak < 64 * KB
    # Each PDU's fragments are one PDV: one header counted per PDU. Small PDUs reach the cap.
    small = pdu(0x04, _pdvs(1, control=0x01))
    room = MAX_COMMAND_LENGTH // 6 - 20
    session.receive_data(small * room)
    assert _drain(session) == []
    session.receive_data(small)
    error = raises_remote(session.next_event)
    assert "command set longer than 65536 bytes (fragment headers included)" in str(error)
    assert error.reply == Abort(source=AbortSource.SERVICE_USER, reason=0)


def test_empty_and_tiny_dataset_fragments_cannot_bypass_max_dataset_length() -> None:
    """Session(whole_datasets=True, max_dataset_length=1 MB): 20 PDUs of empty data set
    fragments (5 MB) hold nothing; 5,000 PDUs of 2-byte fragments (70 KB) hold their 10 KB
    copied, not 5,000 views of their PDUs; the data set arrives whole and exact. Regression:
    the empty fragments were kept, 168 MB held for 5 MB received, the limit never reached."""
    session = _session(whole_datasets=True, max_dataset_length=MB)
    store = CStoreRequest(
        message_id=1, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid="1.2.3"
    )
    command = encode_message(store, True)
    session.receive_data(pdu(0x04, _pdvs(1, control=0x03, data=command)))
    assert _drain(session) == []
    empty = pdu(0x04, _pdvs(dul.DEFAULT_MAXIMUM_LENGTH // 6, control=0x00))
    tiny = pdu(0x04, _pdvs(1, control=0x00, data=b"\x55\xaa")) * 5_000
    for _ in range(18):
        session.receive_data(empty)
        assert _drain(session) == []
    with measured(f"2 x {len(empty)} bytes of empty fragments, then {len(tiny)} of tiny") as m:
        for _ in range(2):
            session.receive_data(empty)
            assert _drain(session) == []
        session.receive_data(tiny)
        assert _drain(session) == []
    assert m.held < 2 * 10_000 + 16 * KB  # was 5,000 views of ~200 bytes: 1 MB
    session.receive_data(pdu(0x04, _pdvs(1, control=0x02)))  # an empty last fragment ends it
    [received] = _drain(session)
    assert isinstance(received, MessageReceived)
    assert received.dataset == b"\x55\xaa" * 5_000
    # The limit counts data bytes: one byte over is refused.
    session.receive_data(pdu(0x04, _pdvs(1, control=0x03, data=command)))
    assert _drain(session) == []
    fragment = dul.DEFAULT_MAXIMUM_LENGTH - 6
    session.receive_data(pdu(0x04, _pdvs(1, control=0x00, data=bytes(fragment))) * 4)
    session.receive_data(pdu(0x04, _pdvs(1, control=0x00, data=bytes(MB - 4 * fragment + 2))))
    with pytest.raises(RemoteProtocolError, match="longer than the limit of 1048576 bytes"):
        _drain(session)


def _unlimited(role: Role) -> Connection:
    """A connection of ``role`` in Sta6 that announced maximum length 0: only
    pdu_length_limit (16 MiB) bounds what it receives."""
    unlimited = UserInformation(maximum_length=0)
    rq = attrs.evolve(default_request(), user_information=unlimited)
    accept = attrs.evolve(default_accept(rq), user_information=unlimited)
    conn = connection_in(Scenario(role, State(6)), rq, accept)
    assert conn._limit == DEFAULT_PDU_LENGTH_LIMIT
    return conn


@pytest.mark.parametrize("last", [False, True], ids=["not-last", "last"])
def test_16_mib_of_empty_pdvs_after_announcing_0(last: bool) -> None:
    """One P-DATA-TF of 16 MiB (the cap) of empty PDVs, 2.8 million of them, to a requestor
    that announced no maximum length: one empty PDV is delivered, no million objects.
    Regression: one PresentationDataValue and memoryview each, ~750 MB and ~20 s of CPU."""
    count = (DEFAULT_PDU_LENGTH_LIMIT - 6) // 6
    body = _pdvs(count, control=0x00) + _pdvs(1, control=0x02 if last else 0x00)
    conn = _unlimited(Role.REQUESTOR)
    conn.receive_data(pdu(0x04, body))
    event = conn.next_event()
    assert isinstance(event, PDataReceived)
    [value] = event.values
    assert (value.context_id, value.is_command, value.is_last, bytes(value.data)) == (
        1,
        False,
        last,
        b"",
    )


@pytest.mark.parametrize("role", [Role.ACCEPTOR, Role.REQUESTOR], ids=lambda r: r.value)
def test_empty_pdvs_cost_nothing_per_pdv_and_linear_time(role: Role) -> None:
    """Empty PDVs after announcing 0, both roles: the peak does not grow with their number
    (256 KiB of them, 43,690), and the calls made grow linearly: 4 times the PDVs, 4 times the
    calls, a handful per PDV."""
    data = pdu(0x04, _pdvs(256 * KB // 6, control=0x00))
    conn = _unlimited(role)
    with measured(f"256 KiB of empty PDVs to the {role.value}, which announced 0") as m:
        conn.receive_data(data)
        assert isinstance(conn.next_event(), PDataReceived)
    assert m.peak < 64 * KB

    def calls(count: int) -> int:
        conn = _unlimited(role)
        conn.receive_data(pdu(0x04, _pdvs(count, control=0x00)))
        return operations(conn.next_event)

    small, large = calls(10_000), calls(40_000)
    assert large <= 4 * small + 100
    assert large / 40_000 < 5


def test_fragments_of_one_stream_are_joined() -> None:
    """Consecutive PDVs of one stream are one PDV: data joined in order (a copy when several
    hold data, else a view of the PDU), empty ones vanish, the last bit is the run's last."""
    body = (
        _pdvs(1, 0x01)
        + _pdvs(1, 0x01, b"ab")
        + _pdvs(3, 0x01)
        + _pdvs(1, 0x03, b"cd")
        + _pdvs(2, 0x00)
        + _pdvs(1, 0x00, b"efgh")
        + _pdvs(1, 0x02)
    )
    event = decode_pdu(0x04, body)
    assert isinstance(event, PDataReceived)
    command, dataset = event.values
    assert (command.is_command, command.is_last, bytes(command.data)) == (True, True, b"abcd")
    assert (dataset.is_command, dataset.is_last, bytes(dataset.data)) == (False, True, b"efgh")
    assert isinstance(dataset.data, memoryview)
    assert dataset.data.obj is body  # one PDV of the run held data: not copied


#: PDVs as (context ID, message control header, data).
PDVs = tuple[tuple[int, int, bytes], ...]


@pytest.mark.parametrize(
    ("pdvs", "problem"),
    [
        (((1, 0x03, b"cm"), (3, 0x00, b"da")), "PDV on presentation context 3 after one on 1"),
        (((1, 0x03, b"cm"), (1, 0x03, b"cm")), "a command fragment follows the command's last"),
        (((1, 0x02, b"da"), (1, 0x00, b"da")), "a data set fragment follows the data set's last"),
        (((1, 0x00, b"da"), (1, 0x01, b"cm")), "a command fragment follows a data set fragment"),
        (((1, 0x01, b"cm"), (1, 0x00, b"da")), "a data set fragment comes before the command's"),
        (((1, 0x03, b""),) * 3, "a command fragment follows the command's last"),
    ],
    ids=["two-contexts", "two-commands", "two-datasets", "command-after-data", "data-too-soon",
         "empty-commands"],
)  # fmt: skip
def test_two_messages_in_one_pdata_are_refused(pdvs: PDVs, problem: str) -> None:
    """The PDVs of one P-DATA-TF belong to one message (PS3.8 Annex E.1): anything else is an
    unexpected PDU parameter (reason 5), and is refused on send too. This is what bounds the
    PDVs a P-DATA-TF yields: a run of empty *last* fragments would otherwise be one PDV each."""
    conn = connection_in(Scenario(Role.ACCEPTOR, State(6)))
    conn.receive_data(pdu(0x04, b"".join(_pdvs(1, m, d, c) for c, m, d in pdvs)))
    error = raises_remote(conn.next_event)
    assert problem in str(error)
    assert error.reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    assert error.reply == Abort(source=AbortSource.SERVICE_PROVIDER, reason=5)
    pdata = dul.PData(
        values=tuple(
            dul.PresentationDataValue(
                context_id=c, is_command=bool(m & 1), is_last=bool(m & 2), data=d or b"x"
            )
            for c, m, d in pdvs
        )
    )
    with pytest.raises(LocalProtocolError, match="carry one message"):
        dul.encode(pdata)
    assert dul.encode(pdata, strict=False)  # a fuzzer may still build it


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(Role.ACCEPTOR, State(2)),
        Scenario(Role.REQUESTOR, State(5)),
        Scenario(Role.ACCEPTOR, State(6)),
        Scenario(Role.ACCEPTOR, State(13), "release"),
    ],
    ids=str,
)
@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0xFF], ids=lambda t: f"{t:02X}H")
def test_unknown_pdu_type_above_the_cap_is_unrecognized(scenario: Scenario, pdu_type: int) -> None:
    """An unknown PDU type declaring 4 GiB: refused from its header as an unrecognized PDU
    (reason 1, PS3.8 §9.3.1 and Table 9-26), not reason 6: the type is known from the
    header before the length is. Regression: reason 6 (invalid parameter value)."""
    conn = connection_in(scenario)
    conn.receive_data(bytes((pdu_type, 0)) + b"\xff\xff\xff\xff")
    if scenario.state is State(13):  # AA-7: answered, silently
        assert conn.next_event() is dul.NEED_DATA
        assert dul.decode(conn.data_to_send()) == [Abort(source=2, reason=1)]
        return
    error = raises_remote(conn.next_event)
    assert (error.reason, error.offset) == (AbortReason.UNRECOGNIZED_PDU, 0)
    expected = AA_1 if scenario.state is State(2) else Abort(source=2, reason=1)
    assert error.reply == expected


@pytest.mark.parametrize(
    ("pdu_type", "scenario"),
    [(0x01, Scenario(Role.ACCEPTOR, State(2))), (0x02, Scenario(Role.REQUESTOR, State(5)))],
    ids=["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC"],
)
def test_contexts_of_one_id_are_refused_at_the_second(pdu_type: int, scenario: Scenario) -> None:
    """1 MiB of presentation contexts all with ID 1, their reserved bytes differing (so that no
    memo shares them): refused at the second one, the others never decoded. Regression: all
    were decoded first, 8.6 MiB for the request, 11 MiB for the accept (rejected contexts)."""
    wire = dul.encode(request())
    application = wire.index(b"\x10\x00", 74)
    fixed = wire[6:application]
    item_type = 0x20 if pdu_type == 0x01 else 0x21
    sub_items = b"\x30\x00\x00\x00\x40\x00\x00\x00" if pdu_type == 0x01 else b""
    size = 8 + len(sub_items)
    contexts = b"".join(
        struct.pack(">BxHBBBB", item_type, 4 + len(sub_items), 1, i & 0xFF, 3, (i >> 8) & 0xFF)
        + sub_items
        for i in range((MB - 1024) // size)
    )
    application_item = struct.pack(">BxH", 0x10, 21) + b"1.2.840.10008.3.1.1.1"
    user = wire[wire.index(b"\x50\x00", 74) :]  # the user information item, last
    data = pdu(pdu_type, fixed + application_item + contexts + user)
    conn = connection_in(scenario)
    with measured(f"{len(data)} bytes of contexts with ID 1") as m:
        conn.receive_data(data)
        error = raises_remote(conn.next_event)
    assert "presentation context ID 1 twice" in str(error)
    assert m.peak < 2 * len(data)  # the body's copy
