"""The Connection's behaviour: whole associations, fragmentation, the rules of DESIGN.md.

test_state_table.py checks each cell of PS3.8 Table 9-10 alone; these tests follow whole
associations between two Connections, and the decisions the table leaves to the implementation.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
from dul import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    CloseCause,
    Connection,
    ConnectionClosed,
    LocalProtocolError,
    PData,
    PresentationContextAC,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    RemoteProtocolError,
    Role,
    State,
    WireStr,
)
from dul._connection import UNLIMITED_FRAGMENT
from helpers import (
    BAD_RELEASE_RQ,
    EXPLICIT_LE,
    FEEDS,
    IMPLICIT_LE,
    UNKNOWN_PDU,
    ConnectionPair,
    Feed,
    make_accept,
    make_request,
    make_request_v2,
    next_events,
    pdv_payloads,
    receive,
)

HEADER = struct.Struct(">BxL")
PDV_HEADER = struct.Struct(">LBB")


def established(
    how: Feed = "whole",
    *,
    requestor_max: int | None = dul.DEFAULT_MAXIMUM_LENGTH,
    acceptor_max: int | None = dul.DEFAULT_MAXIMUM_LENGTH,
    **connection_options: int,
) -> ConnectionPair:
    """A pair in Sta6: each side announces the maximum length given (contexts 1 and 3 accepted)."""
    pair = ConnectionPair(
        how=how,
        requestor=Connection(Role.REQUESTOR, **connection_options),
        acceptor=Connection(Role.ACCEPTOR, **connection_options),
    )
    request = make_request(maximum_length=requestor_max)
    pair.associate(request, make_accept(request, maximum_length=acceptor_max))
    return pair


def pdus(buffers: list[bytes | memoryview]) -> list[tuple[int, int, int, bytes]]:
    """Each P-DATA-TF written, as (PDU length, context id, control, data): one PDV each."""
    data = b"".join(buffers)
    out = []
    pos = 0
    while pos < len(data):
        pdu_type, length = HEADER.unpack_from(data, pos)
        assert pdu_type == 4
        body = data[pos + 6 : pos + 6 + length]
        assert len(body) == length
        pdv_length, context_id, control = PDV_HEADER.unpack_from(body)
        assert pdv_length + 4 == length, "one PDV per PDU"
        out.append((length, context_id, control, body[6:]))
        pos += 6 + length
    return out


# -- whole associations ----------------------------------------------------------------------


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("releaser", [Role.REQUESTOR, Role.ACCEPTOR])
def test_associate_exchange_release(how: Feed, releaser: Role) -> None:
    """Associate, send a message each way, release from either side: both end RELEASED."""
    pair = ConnectionPair(how=how, seed=7)
    request = make_request()
    pair.send(pair.requestor, request)
    assert pair.requestor.state is State.AWAITING_ASSOCIATE_AC_OR_RJ
    (indication,) = pair.deliver(pair.requestor)
    assert indication == request
    assert pair.acceptor.state is State.AWAITING_LOCAL_ASSOCIATE_RESPONSE
    accept = make_accept(indication)
    pair.send(pair.acceptor, accept)
    assert pair.deliver(pair.acceptor) == [accept]
    for conn in (pair.requestor, pair.acceptor):
        assert conn.state is State.ESTABLISHED
        assert sorted(conn.accepted_contexts) == [1, 3]
        assert conn.accepted_contexts[3].transfer_syntax == EXPLICIT_LE

    command, dataset = b"\x00\x00\x02\x00" * 10, bytes(range(256)) * 3
    pair.send_data(pair.requestor, 3, command, is_command=True)
    pair.send_data(pair.requestor, 3, dataset, is_command=False)
    assert pdv_payloads(pair.deliver(pair.requestor)) == [
        (3, True, True, command),
        (3, False, True, dataset),
    ]
    pair.send_data(pair.acceptor, 3, command[:8], is_command=True)
    assert pdv_payloads(pair.deliver(pair.acceptor)) == [(3, True, True, command[:8])]

    releasing = pair.side(releaser)
    other = pair.peer(releasing)
    pair.send(releasing, ReleaseRequest())
    assert releasing.state is State.AWAITING_RELEASE_RP
    assert pair.deliver(releasing) == [ReleaseRequest()]
    assert other.state is State.AWAITING_LOCAL_RELEASE_RESPONSE
    pair.send(other, ReleaseResponse())
    assert other.state is State.AWAITING_TRANSPORT_CLOSE
    assert other.artim_running
    released = ConnectionClosed(cause=CloseCause.RELEASED)
    assert pair.deliver(other) == [ReleaseResponse(), released]
    assert releasing.must_close  # AR-3: the releasing side closes the transport
    assert pair.close(releasing) == [released]  # AR-5 for the other side
    for conn in (pair.requestor, pair.acceptor):
        assert conn.state is State.IDLE
        assert not conn.artim_running
        assert conn.next_event() == released


@pytest.mark.parametrize("first", [Role.REQUESTOR, Role.ACCEPTOR])
@pytest.mark.parametrize("how", FEEDS)
def test_release_collision(first: Role, how: Feed) -> None:
    """Both sides send A-RELEASE-RQ (PS3.8 §9.2.3, Sta9-Sta12); either arrives first."""
    pair = ConnectionPair(how=how)
    pair.associate()
    requestor, acceptor = pair.requestor, pair.acceptor
    pair.send(requestor, ReleaseRequest())
    pair.send(acceptor, ReleaseRequest())
    if first is Role.REQUESTOR:
        assert pair.deliver(requestor) == [ReleaseRequest()]
        assert acceptor.state is State.COLLISION_ACCEPTOR_AWAITING_RELEASE_RP
    assert pair.deliver(acceptor) == [ReleaseRequest()]
    assert requestor.state is State.COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE
    with pytest.raises(LocalProtocolError):  # only the requestor answers first (AR-9)
        acceptor.send(ReleaseResponse())
    pair.send(requestor, ReleaseResponse())
    assert requestor.state is State.COLLISION_REQUESTOR_AWAITING_RELEASE_RP
    expected = [ReleaseResponse()]  # AR-10, after AR-8 if the request was still on its way
    if first is Role.ACCEPTOR:
        expected.insert(0, ReleaseRequest())
    assert pair.deliver(requestor) == expected
    assert acceptor.state is State.COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE
    pair.send(acceptor, ReleaseResponse())  # AR-4
    released = ConnectionClosed(cause=CloseCause.RELEASED)
    assert pair.deliver(acceptor) == [ReleaseResponse(), released]  # AR-3
    assert pair.close(requestor) == [released]  # AR-5
    assert requestor.state is acceptor.state is State.IDLE


def test_pdata_delivered_in_sta7_and_sendable_in_sta8() -> None:
    """AR-6 and AR-7: the side that was asked to release may still finish what it was sending."""
    pair = ConnectionPair()
    pair.associate()
    pair.send(pair.requestor, ReleaseRequest())
    pair.deliver(pair.requestor)
    assert pair.acceptor.state is State.AWAITING_LOCAL_RELEASE_RESPONSE
    pair.send_data(pair.acceptor, 1, b"\x01\x02", is_command=True)  # AR-7
    pair.send(
        pair.acceptor,
        PData(
            values=(
                PresentationDataValue(context_id=3, is_command=False, is_last=True, data=b"abc"),
            )
        ),
    )
    assert pair.acceptor.state is State.AWAITING_LOCAL_RELEASE_RESPONSE
    events = pair.deliver(pair.acceptor)  # AR-6
    assert pdv_payloads(events) == [(1, True, True, b"\x01\x02"), (3, False, True, b"abc")]
    assert pair.requestor.state is State.AWAITING_RELEASE_RP
    with pytest.raises(LocalProtocolError):  # Evt9 in Sta7 is an empty cell
        pair.requestor.send_data(1, b"\x01\x02", is_command=True)


# -- endings ---------------------------------------------------------------------------------


def _released(pair: ConnectionPair) -> None:
    pair.associate()
    pair.send(pair.requestor, ReleaseRequest())
    pair.deliver(pair.requestor)
    pair.send(pair.acceptor, ReleaseResponse())
    pair.deliver(pair.acceptor)
    pair.close(pair.requestor)


def _rejected(pair: ConnectionPair) -> None:
    pair.send(pair.requestor, make_request())
    (request,) = pair.deliver(pair.requestor)
    pair.send(pair.acceptor, request.reject())
    pair.deliver(pair.acceptor)
    pair.close(pair.requestor)


def _requestor_aborts(pair: ConnectionPair) -> None:
    pair.associate()
    pair.send(pair.requestor, Abort())
    pair.deliver(pair.requestor)
    pair.close(pair.acceptor)


def _transport_lost(pair: ConnectionPair) -> None:
    pair.associate()
    pair.end_of_stream(pair.requestor)
    pair.end_of_stream(pair.acceptor)


def _acceptor_breaks_protocol(pair: ConnectionPair) -> None:
    pair.associate()
    with pytest.raises(RemoteProtocolError):  # AA-8: the requestor aborts
        receive(pair.requestor, dul.encode(make_request()))
    pair.deliver(pair.requestor)
    pair.close(pair.acceptor)


def _artim_expires(pair: ConnectionPair) -> None:
    pair.send(pair.requestor, make_request())  # lost: the acceptor gives up first
    pair.wire[Role.REQUESTOR].clear()
    pair.artim_expired(pair.acceptor)
    pair.close(pair.acceptor)


P = CloseCause
ENDINGS = {
    "released": (_released, P.RELEASED, P.RELEASED),
    "rejected": (_rejected, P.REJECTED, P.REJECTED),
    "aborted": (_requestor_aborts, P.ABORTED_LOCALLY, P.ABORTED_BY_PEER),
    "transport lost": (_transport_lost, P.ABORTED_BY_PROVIDER, P.ABORTED_BY_PROVIDER),
    "provider abort": (_acceptor_breaks_protocol, P.ABORTED_BY_PROVIDER, P.ABORTED_BY_PEER),
    "ARTIM expired": (_artim_expires, P.ABORTED_BY_PROVIDER, P.ARTIM_EXPIRED),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_connection_closed_is_last(ending: str) -> None:
    """Every connection ends with ConnectionClosed, whose cause says how; then it stays closed."""
    run, requestor_cause, acceptor_cause = ENDINGS[ending]
    pair = ConnectionPair()
    run(pair)
    for role, cause in ((Role.REQUESTOR, requestor_cause), (Role.ACCEPTOR, acceptor_cause)):
        conn = pair.side(role)
        closed = ConnectionClosed(cause=cause)
        events = pair.log[role]
        assert [e for e in events if isinstance(e, ConnectionClosed)] == [closed], role
        assert events[-1] == closed, role
        assert conn.state is State.IDLE
        assert not conn.artim_running
        assert conn.next_event() == closed  # and again: it stays the last event
        assert conn.data_to_send() == b""
        for event in (make_request(), ReleaseRequest(), Abort()):
            with pytest.raises(LocalProtocolError):  # single-use
                conn.send(event)


def test_bytes_after_the_end_are_ignored() -> None:
    """A side closed by AA-3 has not seen end of stream yet: later bytes change nothing."""
    pair = ConnectionPair()
    pair.associate()
    pair.send(pair.requestor, Abort())
    assert pair.deliver(pair.requestor)[-1] == ConnectionClosed(cause=CloseCause.ABORTED_BY_PEER)
    assert pair.acceptor.must_close
    pair.acceptor.receive_data(dul.encode(make_request()) + UNKNOWN_PDU)
    assert pair.acceptor.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PEER)
    assert pair.acceptor.data_to_send() == b""
    pair.acceptor.receive_data(b"")
    assert pair.acceptor.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PEER)


def test_receive_after_end_of_stream_is_a_local_error() -> None:
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)  # AA-5
    for data in (b"", dul.encode(ReleaseRequest())):
        with pytest.raises(LocalProtocolError):
            conn.receive_data(data)


def test_requestor_receives_nothing_before_sending_its_request() -> None:
    """A requestor has no transport until send(AssociateRequest): Sta1 has no received PDUs."""
    conn = Connection(Role.REQUESTOR)
    for data in (b"", dul.encode(ReleaseRequest())):
        with pytest.raises(LocalProtocolError):
            conn.receive_data(data)
    assert conn.state is State.IDLE
    assert conn.next_event() is dul.NEED_DATA


# -- association establishment ---------------------------------------------------------------


@pytest.mark.parametrize("how", FEEDS)
def test_protocol_version_without_bit_0_is_rejected(how: Feed) -> None:
    """AE-6: the provider rejects (RJ result 1, source 2, reason 2) and says why."""
    pair = ConnectionPair(how=how)
    pair.send(pair.requestor, make_request())
    pair.wire[Role.REQUESTOR][:] = dul.encode(make_request_v2(), strict=False)
    with pytest.raises(RemoteProtocolError) as info:
        pair.deliver(pair.requestor)
    reply = AssociateReject(result=1, source=2, reason=2)
    assert info.value.reply == reply
    assert pair.acceptor.state is State.AWAITING_TRANSPORT_CLOSE
    assert pair.acceptor.artim_running
    assert dul.decode(pair.acceptor.data_to_send()) == [reply]
    pair.wire[Role.ACCEPTOR] += dul.encode(reply)
    rejected = ConnectionClosed(cause=CloseCause.REJECTED)
    assert pair.deliver(pair.acceptor) == [reply, rejected]
    assert reply.reason_name == "protocol-version-not-supported"
    assert pair.close(pair.requestor) == [rejected]


def test_accept_echoes_ae_titles_byte_exact() -> None:
    """The AC echoes what the RQ carried, all-space and non-ASCII titles included (PS3.8
    §9.3.3: not tested on receive); the request shows the all-space title as ""."""
    called, calling = b" " * 16, b"\xc9COLE-SCU\x00      "
    rq = dul.encode(
        AssociateRequest(
            called_ae_title=WireStr("", called),
            calling_ae_title=WireStr("\xc9COLE-SCU", calling),
            presentation_contexts=make_request().presentation_contexts,
        ),
        strict=False,
    )
    assert rq[10:42] == called + calling
    acceptor = Connection(Role.ACCEPTOR)
    (request,) = receive(acceptor, rq)
    assert isinstance(request, AssociateRequest)
    assert (request.called_ae_title, request.calling_ae_title) == ("", "\xc9COLE-SCU")
    ac = acceptor.send(make_accept(request))
    assert ac[0] == 2
    assert ac[10:42] == called + calling


def test_requestor_does_not_test_the_echoed_ae_titles() -> None:
    pair = ConnectionPair()
    pair.send(pair.requestor, make_request())
    (request,) = pair.deliver(pair.requestor)
    accept = make_accept(request)
    other = AssociateAccept(
        called_ae_title="SOMEONE",
        calling_ae_title="ELSE",
        presentation_contexts=accept.presentation_contexts,
    )
    (answer,) = receive(pair.requestor, dul.encode(other))
    assert answer == other
    assert pair.requestor.state is State.ESTABLISHED


def _sta3() -> tuple[Connection, AssociateRequest]:
    conn = Connection(Role.ACCEPTOR)
    (request,) = receive(conn, dul.encode(make_request()))
    assert isinstance(request, AssociateRequest)
    return conn, request


def _ac(request: AssociateRequest, *contexts: PresentationContextAC) -> AssociateAccept:
    return request.accept(contexts)


def ctx(
    context_id: int, transfer_syntax: str = IMPLICIT_LE, result: int = 0
) -> PresentationContextAC:
    return PresentationContextAC(
        context_id=context_id, result=result, transfer_syntax=transfer_syntax
    )


BAD_ACCEPTS = {
    "context 5 unanswered": (ctx(1), ctx(3, EXPLICIT_LE)),
    "context 7 never proposed": (ctx(1), ctx(3, EXPLICIT_LE), ctx(5, result=4), ctx(7)),
    "context 3 answered twice": (
        ctx(1),
        ctx(3, EXPLICIT_LE),
        ctx(3, EXPLICIT_LE),
        ctx(5, result=4),
    ),
    "transfer syntax not proposed": (ctx(1, EXPLICIT_LE), ctx(3, EXPLICIT_LE), ctx(5, result=4)),
}


@pytest.mark.parametrize("case", BAD_ACCEPTS)
def test_accept_must_answer_the_request(case: str) -> None:
    """An AC answers each proposed context once, with a proposed transfer syntax: a
    LocalProtocolError otherwise, before anything changes."""
    conn, request = _sta3()
    with pytest.raises(LocalProtocolError):
        conn.send(_ac(request, *BAD_ACCEPTS[case]))
    assert conn.state is State.AWAITING_LOCAL_ASSOCIATE_RESPONSE
    assert conn.data_to_send() == b""
    assert conn.next_event() is dul.NEED_DATA
    good = _ac(request, ctx(5, result=4), ctx(3, IMPLICIT_LE), ctx(1))  # any order
    assert dul.decode(conn.send(good)) == [good]
    assert sorted(conn.accepted_contexts) == [1, 3]


def test_accept_must_echo_the_titles() -> None:
    conn, request = _sta3()
    accept = make_accept(request)
    wrong = AssociateAccept(
        called_ae_title="OTHER",
        calling_ae_title=accept.calling_ae_title,
        presentation_contexts=accept.presentation_contexts,
    )
    with pytest.raises(LocalProtocolError):
        conn.send(wrong)
    assert conn.state is State.AWAITING_LOCAL_ASSOCIATE_RESPONSE


@pytest.mark.parametrize(
    "answers",
    [
        (ctx(1), ctx(3, EXPLICIT_LE), ctx(5, result=4), ctx(7)),
        (ctx(1, EXPLICIT_LE), ctx(3, EXPLICIT_LE), ctx(5, result=4)),
    ],
    ids=["context never proposed", "transfer syntax never proposed"],
)
def test_received_accept_must_answer_our_request(
    answers: tuple[PresentationContextAC, ...],
) -> None:
    """The Connection refuses an AC that answers what we never proposed: Evt19, reason 6."""
    conn = Connection(Role.REQUESTOR)
    request = make_request()
    conn.send(request)
    with pytest.raises(RemoteProtocolError) as info:
        receive(conn, dul.encode(request.accept(answers)))
    reply = Abort(source=2, reason=dul.AbortReason.INVALID_PDU_PARAMETER_VALUE)
    assert info.value.reply == reply
    assert dul.decode(conn.data_to_send()) == [reply]
    assert conn.state is State.AWAITING_TRANSPORT_CLOSE
    assert conn.accept is None
    assert not conn.accepted_contexts


# -- data ------------------------------------------------------------------------------------


@given(
    maximum=st.one_of(st.just(0), st.integers(8, 600)),
    size=st.integers(1, 3000),
    is_command=st.booleans(),
    as_bytearray=st.booleans(),
)
def test_send_data_fragments(maximum: int, size: int, is_command: bool, as_bytearray: bool) -> None:
    """Fragments fit the peer's maximum length, have an even length (all but the last), are never
    empty, slice the input without copying it, and arrive whole."""
    pair = established(acceptor_max=maximum)
    payload = bytes(i % 251 for i in range(size))
    data = bytearray(payload) if as_bytearray else payload
    buffers = pair.requestor.send_data(3, data, is_command=is_command)
    fragment = (maximum or UNLIMITED_FRAGMENT) - 6
    fragment -= fragment % 2
    written = pdus(buffers)
    assert len(written) == -(-size // fragment)
    for i, (length, context_id, control, chunk) in enumerate(written):
        last = i == len(written) - 1
        assert context_id == 3
        assert control == (2 if last else 0) | is_command
        assert 0 < len(chunk) <= fragment
        assert len(chunk) % 2 == 0 or last
        assert maximum == 0 or length <= maximum
    assert b"".join(c for *_, c in written) == payload
    assert all(isinstance(b, memoryview) and b.obj is data for b in buffers[1::2])
    received = receive(pair.acceptor, b"".join(buffers))
    assert b"".join(d for *_, d in pdv_payloads(received)) == payload


@pytest.mark.parametrize("maximum", [9, 11, 13, 15, 101])
def test_tiny_odd_maximum_lengths(maximum: int) -> None:
    """An odd maximum leaves an odd room: the fragment is one byte less, to stay even."""
    pair = established(acceptor_max=maximum)
    written = pdus(pair.requestor.send_data(1, bytes(100), is_command=False))
    assert {len(c) for *_, c in written[:-1]} == {maximum - 7}
    assert all(length <= maximum for length, *_ in written)


@pytest.mark.parametrize("maximum", [1, 6, 7])
def test_maximum_too_small_for_a_fragment(maximum: int) -> None:
    pair = established(acceptor_max=maximum)
    with pytest.raises(LocalProtocolError):
        pair.requestor.send_data(1, b"\x00\x00", is_command=True)
    assert pair.requestor.state is State.ESTABLISHED


def test_exact_multiple_makes_no_empty_pdv() -> None:
    """PS3.8 Annex E.1: no PDV with the control header alone, even when the payload is an exact
    multiple of the fragment size."""
    pair = established(acceptor_max=106)
    written = pdus(pair.requestor.send_data(1, bytes(300), is_command=False))
    assert [len(c) for *_, c in written] == [100, 100, 100]
    assert [control for _, _, control, _ in written] == [0, 0, 2]


def test_unlimited_maximum_length() -> None:
    """Maximum length 0 means no limit (PS3.8 Annex D.1): a 300 KB dataset goes in one PDU, and
    the peer that announced 0 takes it (up to its hard cap)."""
    pair = established(requestor_max=0, acceptor_max=0)
    payload = bytes(300_000)
    buffers = pair.requestor.send_data(1, payload, is_command=False)
    assert len(pdus(buffers)) == 1
    assert pdv_payloads(receive(pair.acceptor, b"".join(buffers))) == [(1, False, True, payload)]


def test_streaming_in_pieces() -> None:
    """``is_last=False`` sends a message in pieces; only the end of the last piece is last."""
    pair = established(acceptor_max=64)
    pieces = [bytes([i]) * 100 for i in range(5)] + [b"end"]
    buffers: list[bytes | memoryview] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        buffers += pair.requestor.send_data(3, piece, is_command=False, is_last=last)
        if not last:  # no other stream while this one is open
            for context_id, is_command in ((1, True), (1, False), (3, True)):
                with pytest.raises(LocalProtocolError):
                    pair.requestor.send_data(context_id, b"\x00\x00", is_command=is_command)
    written = pdus(buffers)
    assert [control for _, _, control, _ in written][-1] == 2
    assert {control for _, _, control, _ in written[:-1]} == {0}
    assert b"".join(c for *_, c in written) == b"".join(pieces)
    received = pdv_payloads(receive(pair.acceptor, b"".join(buffers)))
    assert b"".join(d for *_, d in received) == b"".join(pieces)
    pair.requestor.send_data(1, b"\x00\x00", is_command=True)  # the stream is closed


def test_streaming_needs_a_byte_and_holds_back_at_most_two() -> None:
    """An empty message is refused; odd pieces are welcome; the end may come alone, empty."""
    pair = established()
    with pytest.raises(LocalProtocolError, match="at least one byte"):
        pair.requestor.send_data(3, b"", is_command=False)
    assert pair.requestor.send_data(3, b"", is_command=False, is_last=False) == []
    pair.requestor.send_data(1, b"\x00\x00", is_command=True)  # nothing was left open
    assert pair.requestor.send_data(3, b"o", is_command=False, is_last=False) == []  # held
    assert pair.requestor.send_data(3, b"d", is_command=False, is_last=False) == []  # held
    first = pair.requestor.send_data(3, b"d!", is_command=False, is_last=False)
    assert [c for *_, c in pdus(first)] == [b"od"]  # "d!" is held back: the end may be empty
    with pytest.raises(LocalProtocolError, match="holds back"):  # exact PDVs would skip it
        pair.requestor.send(PData(values=(PresentationDataValue(
            context_id=3, is_command=False, is_last=True, data=b"xx"),)))  # fmt: skip
    end = pair.requestor.send_data(3, b"", is_command=False, is_last=True)
    assert [(control, c) for _, _, control, c in pdus(end)] == [(2, b"d!")]
    assert pdv_payloads(receive(pair.acceptor, b"".join(first + end))) == [
        (3, False, False, b"od"),
        (3, False, True, b"d!"),
    ]


PIECES = st.lists(st.binary(max_size=40), max_size=12)


@given(
    pieces=PIECES,
    tail=st.binary(max_size=40),
    maximum=st.sampled_from([8, 10, 13, 16, 64, 0]),
)
def test_any_split_streams_the_payload(pieces: list[bytes], tail: bytes, maximum: int) -> None:
    """Any split of a payload into pieces of any length, ended by a last piece (empty or not):
    on the wire exactly the payload, every fragment even but the last, none empty, each PDU
    within the peer's maximum length, and the payload bytes views of the caller's pieces but at
    most two bytes per piece (the ones kept back)."""
    payload = b"".join(pieces) + tail
    if not payload:
        return
    pair = established(acceptor_max=maximum)
    callers = [bytearray(p) for p in [*pieces, tail]]  # bytearrays: views of them are findable
    wire: list[bytes | memoryview] = []
    for i, piece in enumerate(callers):
        buffers = pair.requestor.send_data(
            3, piece, is_command=False, is_last=i == len(callers) - 1
        )
        copied = [b for b in buffers if not (isinstance(b, memoryview) and b.obj is piece)]
        assert sum(len(b) for b in copied) <= 12 * len(pdus(buffers)) + 2  # headers; held bytes
        wire += [bytes(b) for b in buffers]  # written now: the caller may reuse its piece next
        piece[:] = bytes(len(piece))
    written = pdus(wire)
    assert b"".join(c for *_, c in written) == payload
    assert all(len(c) % 2 == 0 and c for *_, c in written[:-1]) and written[-1][3]
    assert [control for _, _, control, _ in written] == [0] * (len(written) - 1) + [2]
    if maximum:
        assert all(length <= maximum for length, *_ in written)
    received = pdv_payloads(receive(pair.acceptor, b"".join(wire)))
    assert b"".join(d for *_, d in received) == payload


def test_send_pdata_checks_context_and_length() -> None:
    pair = established(acceptor_max=20)

    def pdata(context_id: int, size: int) -> PData:
        return PData(
            values=(
                PresentationDataValue(
                    context_id=context_id, is_command=True, is_last=True, data=bytes(size)
                ),
            )
        )

    for bad in (pdata(5, 2), pdata(7, 2), pdata(1, 15)):  # rejected, unknown, too long
        with pytest.raises(LocalProtocolError):
            pair.requestor.send(bad)
    assert dul.decode(pair.requestor.send(pdata(1, 14)))[0].values[0].context_id == 1


@pytest.mark.parametrize("context_id", [5, 7])
def test_pdv_on_a_context_not_accepted(context_id: int) -> None:
    """A PDV on a rejected (5) or never proposed (7) context is Evt19: A-ABORT reason 6."""
    pair = established()
    value = PresentationDataValue(context_id=context_id, is_command=True, is_last=True, data=b"xx")
    with pytest.raises(RemoteProtocolError) as info:
        receive(pair.requestor, dul.encode(PData(values=(value,))))
    reply = Abort(source=2, reason=6)
    assert info.value.reply == reply
    assert dul.decode(pair.requestor.data_to_send()) == [reply]
    assert pair.requestor.state is State.AWAITING_TRANSPORT_CLOSE


# -- maximum lengths -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.REQUESTOR, Role.ACCEPTOR])
def test_pdu_above_our_maximum_is_refused_at_its_header(role: Role) -> None:
    """What we receive is bounded by the maximum length we announced (the requestor in its RQ,
    the acceptor in its AC): the 6-byte header of a longer PDU is enough to refuse it, before one
    byte of its body is buffered."""
    pair = established(requestor_max=1000, acceptor_max=2000)
    conn = pair.side(role)
    limit = 1000 if role is Role.REQUESTOR else 2000
    value = PresentationDataValue(
        context_id=1, is_command=False, is_last=True, data=bytes(limit - 6)
    )
    fits = dul.encode(PData(values=(value,)))
    assert HEADER.unpack_from(fits)[1] == limit
    assert len(receive(conn, fits, "bytewise")) == 1
    conn.receive_data(HEADER.pack(4, limit + 1))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.reply == Abort(source=2, reason=6)
    assert conn.state is State.AWAITING_TRANSPORT_CLOSE


def test_hard_cap_applies_when_we_announced_no_limit() -> None:
    pair = established(requestor_max=0, pdu_length_limit=5000)
    pair.requestor.receive_data(HEADER.pack(4, 5001))
    with pytest.raises(RemoteProtocolError):
        pair.requestor.next_event()


def test_hard_cap_applies_before_the_association() -> None:
    """Before an AC exists, the acceptor's own cap bounds what arrives (A-RELEASE-RQ here)."""
    conn = Connection(Role.ACCEPTOR, pdu_length_limit=100)
    conn.receive_data(HEADER.pack(5, 101))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.reply == Abort(source=0, reason=0)  # AA-1 in Sta2


def test_associate_length_cap() -> None:
    conn = Connection(Role.ACCEPTOR, associate_length_limit=500)
    conn.receive_data(HEADER.pack(1, 501))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn = Connection(Role.ACCEPTOR, associate_length_limit=500)
    rq = dul.encode(make_request())
    assert len(rq) - 6 < 500
    assert receive(conn, rq) == [make_request()]


# -- a peer that breaks the rules ------------------------------------------------------------


@pytest.mark.parametrize("garbage", [BAD_RELEASE_RQ, UNKNOWN_PDU, HEADER.pack(4, 1 << 30)])
def test_framing_lost_discards_the_rest(garbage: bytes) -> None:
    """After a PDU that cannot be framed or decoded, the rest of the input is discarded: one
    A-ABORT, not one per PDU that follows (DESIGN.md, "Framing lost")."""
    pair = established()
    conn = pair.requestor
    rest = dul.encode(make_request()) + UNKNOWN_PDU + dul.encode(ReleaseRequest())
    conn.receive_data(garbage + rest)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert [type(e) for e in dul.decode(conn.data_to_send())] == [Abort]
    assert conn.next_event() is dul.NEED_DATA
    for _ in range(3):
        conn.receive_data(rest)
        assert conn.next_event() is dul.NEED_DATA
    assert conn.data_to_send() == b""
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)


def test_framing_continues_after_an_unexpected_pdu() -> None:
    """A well-framed but unexpected PDU is handled by the table (AA-8), and what follows is read
    by Sta13's rules: an A-ASSOCIATE-RQ gets an A-ABORT (AA-7)."""
    conn = established().requestor
    conn.receive_data(dul.encode(ReleaseResponse()) + dul.encode(make_request()))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.next_event() is dul.NEED_DATA
    assert dul.decode(conn.data_to_send()) == [Abort(source=2, reason=2), Abort(source=2, reason=2)]


@pytest.mark.parametrize("how", FEEDS)
def test_errors_are_sticky(how: Feed) -> None:
    """After a RemoteProtocolError the connection behaves as Sta13 says: PDUs are ignored (AA-6),
    an A-ASSOCIATE-RQ is aborted (AA-7), local sends are refused, end of stream is AR-5."""
    pair = established(how)
    conn = pair.acceptor
    with pytest.raises(RemoteProtocolError) as info:
        receive(conn, dul.encode(AssociateReject()), how)
    assert info.value.reason == dul.AbortReason.UNEXPECTED_PDU
    assert dul.decode(conn.data_to_send()) == [Abort(source=2, reason=2)]
    value = PresentationDataValue(context_id=1, is_command=True, is_last=True, data=b"xx")
    ignored = [
        PData(values=(value,)),
        ReleaseRequest(),
        ReleaseResponse(),
        make_accept(make_request()),
    ]
    assert receive(conn, b"".join(dul.encode(e) for e in ignored), how) == []
    assert conn.data_to_send() == b""
    assert receive(conn, dul.encode(make_request()), how) == []
    assert dul.decode(conn.data_to_send()) == [Abort(source=2, reason=2)]
    assert conn.state is State.AWAITING_TRANSPORT_CLOSE
    for event in (ReleaseRequest(), ReleaseResponse(), Abort()):
        with pytest.raises(LocalProtocolError):
            conn.send(event)
    with pytest.raises(LocalProtocolError):
        conn.send_data(1, b"xx", is_command=True)
    conn.receive_data(b"")
    assert next_events(conn) == [ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)]


@given(data=st.binary(max_size=300), established_=st.booleans())
def test_nothing_but_remote_protocol_error_escapes(data: bytes, established_: bool) -> None:
    """Whatever bytes arrive, receive_data/next_event only return events or raise
    RemoteProtocolError, and end of stream always ends with ConnectionClosed."""
    conn = established().requestor if established_ else Connection(Role.ACCEPTOR)
    if data:
        conn.receive_data(data)
    conn.receive_data(b"")
    events = []
    for _ in range(100):
        try:
            event = conn.next_event()
        except RemoteProtocolError:
            continue
        assert event is not dul.NEED_DATA
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    assert isinstance(events[-1], ConnectionClosed)
    assert conn.state is State.IDLE
