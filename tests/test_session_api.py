"""What a driver holds: the Session alone. Its window (PS3.7 D.3.3.3) never beyond the proposal
nor the grant, messages cut short told as such, an end that a loop can see, streaming without
read-ahead, and the negotiated state however the A-ASSOCIATE-AC went.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dul
from dimse_peer import SessionPair, next_events
from dul import AsyncOpsWindow, LocalProtocolError, RemoteProtocolError
from dul.dimse import (
    VERIFICATION_SOP_CLASS,
    AcceptorPolicy,
    CCancelRequest,
    CEchoRequest,
    CFindRequest,
    CStoreRequest,
    DatasetChunk,
    MessageIncomplete,
    MessageReceived,
    Session,
    encode_message,
)
from helpers import CT_IMAGE_STORAGE, EXPLICIT_LE, IMPLICIT_LE, make_request
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
STORE = CStoreRequest(
    message_id=1, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid="1.2.3"
)


def requested(
    window: AsyncOpsWindow | None = None, maximum_length: int = 16384
) -> dul.AssociateRequest:
    rq = make_request(contexts=CONTEXTS, maximum_length=maximum_length)
    return attrs.evolve(
        rq, user_information=attrs.evolve(rq.user_information, async_ops_window=window)
    )


def associated(
    *,
    asked: AsyncOpsWindow | None = None,
    answered: AsyncOpsWindow | None = None,
    whole_datasets: bool = False,
    acceptor_maximum: int = 16384,
    through_connection: bool = False,
) -> SessionPair:
    """A Session pair, associated; the A-ASSOCIATE-AC answers ``asked`` with ``answered``
    exactly (not through a policy, which would never grant more), sent by the acceptor's
    Session or, ``through_connection``, by its Connection."""
    pair = SessionPair(
        requestor=Session(dul.Connection(dul.Role.REQUESTOR), whole_datasets=whole_datasets),
        acceptor=Session(dul.Connection(dul.Role.ACCEPTOR), whole_datasets=whole_datasets),
    )
    pair.send(pair.requestor, requested(asked))
    (received,) = pair.deliver(pair.requestor)
    assert isinstance(received, dul.AssociateRequest)
    accept = POLICY.evaluate(received)
    assert isinstance(accept, dul.AssociateAccept)
    info = attrs.evolve(
        accept.user_information, async_ops_window=answered, maximum_length=acceptor_maximum
    )
    accept = attrs.evolve(accept, user_information=info)
    if through_connection:
        pair.write(pair.acceptor, pair.acceptor.connection.send(accept))
    else:
        pair.send(pair.acceptor, accept)
    (event,) = pair.deliver(pair.acceptor)
    assert isinstance(event, dul.AssociateAccept)
    return pair


def echo(message_id: int) -> CEchoRequest:
    return CEchoRequest(message_id=message_id)


def raw_request(pair: SessionPair, message: CEchoRequest | CCancelRequest) -> None:
    """The requestor's Connection sends a command past its Session (and its window)."""
    command = encode_message(message, False)
    pair.write(pair.requestor, pair.requestor.connection.send_data(1, command, is_command=True))


# -- the operations window: never beyond the proposal (defect 1) ----------------------------------


@pytest.mark.parametrize(
    ("answered", "invoked", "performed"),
    [
        (AsyncOpsWindow(invoked=0, performed=1), 2, 1),  # 0 answering 2: capped at 2
        (AsyncOpsWindow(invoked=9, performed=9), 2, 1),  # above the proposal: capped
        (AsyncOpsWindow(invoked=0, performed=0), 2, 1),
        (AsyncOpsWindow(invoked=1, performed=1), 1, 1),  # less is what it says
    ],
    ids=["zero", "above", "zero-zero", "less"],
)
@pytest.mark.parametrize("through_connection", [False, True], ids=["session", "connection"])
def test_window_is_capped_at_the_proposal(
    answered: AsyncOpsWindow, invoked: int, performed: int, through_connection: bool
) -> None:
    """Proposed invoked=2, performed=1: whatever the answer, the requestor invokes at most 2
    and the acceptor at most 1 (PS3.7 D.3.3.3: equal or less than proposed)."""
    pair = associated(
        asked=AsyncOpsWindow(invoked=2, performed=1),
        answered=answered,
        through_connection=through_connection,
    )
    for message_id in range(1, invoked + 1):
        assert pair.requestor.can_invoke
        pair.send_message(pair.requestor, echo(message_id), context_id=1)
    assert not pair.requestor.can_invoke
    with pytest.raises(LocalProtocolError, match=rf"window \({invoked}\) is full"):
        pair.requestor.send_message(echo(99), context_id=1)
    for message_id in range(1, performed + 1):
        pair.send_message(pair.acceptor, echo(message_id), context_id=1)
    assert not pair.acceptor.can_invoke


# -- the operations window: a peer beyond what we granted ----------------------------------------


@pytest.mark.parametrize(
    ("asked", "granted"),
    [(None, 1), (AsyncOpsWindow(invoked=3, performed=1), 3)],
    ids=["default-1", "granted-3"],
)
def test_a_peer_beyond_the_window_granted_is_aborted(
    asked: AsyncOpsWindow | None, granted: int
) -> None:
    """Requests received minus final responses sent may not exceed the window granted: the
    next one is a RemoteProtocolError, answered with an A-ABORT. C-CANCEL does not count, and
    a final response makes room."""
    pair = associated(asked=asked, answered=asked)
    for message_id in range(1, granted + 1):
        raw_request(pair, echo(message_id))
    raw_request(pair, CCancelRequest(message_id_being_responded_to=1))
    assert len(pair.deliver(pair.requestor)) == granted + 1
    pair.send_message(pair.acceptor, echo(1).response(), context_id=1)  # room for one more
    raw_request(pair, echo(granted + 1))
    (event,) = pair.deliver(pair.requestor)
    assert isinstance(event, MessageReceived) and event.message == echo(granted + 1)

    raw_request(pair, echo(granted + 2))
    with pytest.raises(RemoteProtocolError, match="exceeds the asynchronous operations window"):
        pair.deliver(pair.requestor)
    assert pair.acceptor.data_to_send() == dul.encode(dul.Abort(source=0, reason=0))
    assert pair.acceptor.state is dul.State.AWAITING_TRANSPORT_CLOSE


def test_pending_responses_do_not_make_room() -> None:
    pair = associated()
    find = CFindRequest(message_id=1, affected_sop_class_uid=STUDY_ROOT_FIND)
    command = encode_message(find, True)
    pair.write(pair.requestor, pair.requestor.connection.send_data(5, command, is_command=True))
    pair.write(pair.requestor, pair.requestor.connection.send_data(5, b"q\0", is_command=False))
    pair.deliver(pair.requestor)
    pair.send_message(pair.acceptor, find.response(0xFF00), context_id=5, dataset=b"match\0")
    raw_request(pair, echo(2))
    with pytest.raises(RemoteProtocolError, match="window"):
        pair.deliver(pair.requestor)


# -- a message cut short (defect 2) ---------------------------------------------------------------

ENDINGS = {
    "release": [dul.ReleaseRequest()],
    "abort": [
        dul.Abort(source=0, reason=0),
        dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PEER),
    ],
    "close": [dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PROVIDER)],
}


def cut(pair: SessionPair, ending: str, *, session_sent: bool = True) -> list[object]:
    """End the requestor's half-sent message with ``ending``; what the acceptor sees."""
    if ending == "release":  # the Session refuses; the Connection below it knows no messages
        if session_sent:
            with pytest.raises(LocalProtocolError, match="incomplete"):
                pair.requestor.send(dul.ReleaseRequest())
        pair.write(pair.requestor, pair.requestor.connection.send(dul.ReleaseRequest()))
    elif ending == "abort":
        pair.send(pair.requestor, dul.Abort())
    events: list[object] = list(pair.deliver(pair.requestor))
    if ending == "close":
        pair.acceptor.receive_data(b"")
        events += next_events(pair.acceptor)
    return events


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_a_data_set_cut_short_is_told(ending: str, whole: bool) -> None:
    pair = associated(whole_datasets=whole)
    pair.send_message(pair.requestor, STORE, context_id=3, dataset_follows=True)
    pair.send_dataset(pair.requestor, 3, b"half a data set", is_last=False)
    events = cut(pair, ending)
    incomplete = MessageIncomplete(context_id=3, message=STORE)
    if whole:
        assert events == [incomplete, *ENDINGS[ending]]
    else:
        received, *chunks, told = events[: -len(ENDINGS[ending])]
        assert received == MessageReceived(context_id=3, message=STORE, has_dataset=True)
        assert all(isinstance(c, DatasetChunk) and not c.is_last for c in chunks)
        assert told == incomplete
        assert events[-len(ENDINGS[ending]) :] == ENDINGS[ending]
    if ending == "release":  # told once; the release then goes as usual
        pair.send(pair.acceptor, dul.ReleaseResponse())
        assert pair.deliver(pair.acceptor)[-1] == dul.ConnectionClosed(
            cause=dul.CloseCause.RELEASED
        )


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_a_command_cut_short_is_told(ending: str, whole: bool) -> None:
    pair = associated(whole_datasets=whole)
    command = encode_message(STORE, True)
    sent = pair.requestor.connection.send_data(3, command[:20], is_command=True, is_last=False)
    pair.write(pair.requestor, sent)
    events = cut(pair, ending, session_sent=False)
    assert events == [MessageIncomplete(context_id=3, message=None), *ENDINGS[ending]]


def test_release_response_waits_for_the_end_of_a_data_set() -> None:
    """An acceptor answering with a data set when the A-RELEASE-RQ arrives (Sta8) may finish
    it (AR-7), but not answer the release before."""
    pair = associated()
    find = CFindRequest(message_id=1, affected_sop_class_uid=STUDY_ROOT_FIND)
    pair.send_message(pair.requestor, find, context_id=5, dataset=b"q\0")
    pair.deliver(pair.requestor)
    pair.send_message(pair.acceptor, find.response(0xFF00), context_id=5, dataset_follows=True)
    pair.send_dataset(pair.acceptor, 5, b"a match", is_last=False)
    pair.send(pair.requestor, dul.ReleaseRequest())
    assert pair.deliver(pair.requestor) == [dul.ReleaseRequest()]
    assert pair.acceptor.state is dul.State.AWAITING_LOCAL_RELEASE_RESPONSE
    with pytest.raises(LocalProtocolError, match="ReleaseResponse: the data set announced"):
        pair.acceptor.send(dul.ReleaseResponse())
    pair.write(pair.acceptor, pair.acceptor.end_dataset(5))
    pair.send(pair.acceptor, dul.ReleaseResponse())
    events = pair.deliver(pair.acceptor)
    assert isinstance(events[0], MessageReceived)
    assert b"".join(bytes(e.data) for e in events if isinstance(e, DatasetChunk)) == b"a match"
    assert MessageIncomplete not in {type(e) for e in events}
    assert events[-2:] == [
        dul.ReleaseResponse(),
        dul.ConnectionClosed(cause=dul.CloseCause.RELEASED),
    ]


# -- the end, seen cheaply (defect 4) --------------------------------------------------------------


def test_closed_turns_true_when_connection_closed_is_next_and_stays() -> None:
    """``closed`` on the Connection and on the Session: false while anything but the final
    ConnectionClosed is to come; then next_event() returns that ConnectionClosed every time."""
    pair = associated()
    assert not pair.requestor.closed and not pair.requestor.connection.closed
    pair.send(pair.acceptor, dul.Abort())
    pair.requestor.receive_data(
        pair.acceptor.data_to_send() + b"".join(pair.wire.pop(id(pair.acceptor)))
    )
    assert not pair.requestor.closed  # the Abort comes first
    assert pair.requestor.next_event() == dul.Abort(source=0, reason=0)
    assert pair.requestor.closed and pair.requestor.connection.closed
    ended = dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PEER)
    for _ in range(3):  # h11's rule: the final event again, each time
        assert pair.requestor.next_event() == ended
        assert pair.requestor.closed


def test_the_documented_loop_ends() -> None:
    """The receive loop of docs/transport.md, over a whole association: it ends."""
    pair = associated()
    session = pair.acceptor
    pair.send_message(pair.requestor, echo(1), context_id=1)
    pair.send(pair.requestor, dul.ReleaseRequest())
    wire = b"".join(pair.wire.pop(id(pair.requestor)))
    seen = []
    for piece in [wire[i : i + 7] for i in range(0, len(wire), 7)] + [b""]:
        session.receive_data(piece)
        while not session.closed:
            event = session.next_event()
            if event is dul.NEED_DATA:
                break
            seen.append(type(event).__name__)
            if isinstance(event, MessageReceived):
                session.send_message(event.message.response(), context_id=1)  # type: ignore[union-attr]
            elif isinstance(event, dul.ReleaseRequest):
                session.send(event.response())
        if session.closed:
            break
    assert seen == ["MessageReceived", "ReleaseRequest", "ConnectionClosed"]
    assert session.must_close and session.closed


def test_the_session_is_the_one_object_to_hold() -> None:
    """state, must_close, closed and ARTIM, on the Session, as the Connection says."""
    session = Session(dul.Connection(dul.Role.ACCEPTOR))
    conn = session.connection
    assert session.state is conn.state is dul.State.AWAITING_ASSOCIATE_RQ
    assert session.artim_running and session.artim_starts == conn.artim_starts == 1
    assert not session.must_close and not session.closed
    session.artim_expired()
    assert session.next_event() == dul.ConnectionClosed(cause=dul.CloseCause.ARTIM_EXPIRED)
    assert session.must_close and session.closed and not session.artim_running
    assert session.state is conn.state is dul.State.IDLE
    session.artim_expired()  # no-op once ARTIM stopped


def test_contexts_when_the_accept_went_through_the_connection() -> None:
    pair = associated(through_connection=True)
    assert sorted(pair.acceptor.contexts) == [1, 3, 5]
    assert pair.acceptor.contexts == pair.requestor.contexts
    assert pair.acceptor.context_for(CT_IMAGE_STORAGE) == 3


# -- streaming a data set out: any pieces, an explicit end ----------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=300), max_size=10),
    last=st.binary(max_size=50),
    end=st.sampled_from(["last-piece", "end_dataset"]),
    maximum=st.sampled_from([14, 64, 100, 4096]),
    whole=st.booleans(),
)
def test_any_split_reaches_the_receiving_session(
    pieces: list[bytes], last: bytes, end: str, maximum: int, whole: bool
) -> None:
    """Pieces of any length, ended by the last piece or by end_dataset(): the wire carries
    exactly the payload, every fragment even but the last, none empty, each P-DATA-TF within
    the peer's maximum; the receiving Session (streaming or whole) gets the data set."""
    pieces = [*pieces, last] if end == "last-piece" else [*pieces, last, b""]
    payload = b"".join(pieces)
    if not payload:
        return
    pair = associated(acceptor_maximum=maximum, whole_datasets=whole)
    command = pair.requestor.send_message(STORE, context_id=3, dataset_follows=True)
    wire = [bytes(b) for b in command]
    for i, piece in enumerate(pieces):
        if end == "end_dataset" and i == len(pieces) - 1:
            buffers = pair.requestor.end_dataset(3)
        else:
            buffers = pair.requestor.send_dataset(3, piece, is_last=i == len(pieces) - 1)
        wire += [bytes(b) for b in buffers]
    data = b"".join(wire)
    fragments = []
    for pdu_type, body in split_pdus(data):
        assert pdu_type == 4 and len(body) <= maximum
        (value,) = dul.decode(bytes([4, 0]) + len(body).to_bytes(4, "big") + body)[0].values  # type: ignore[union-attr]
        if not value.is_command:
            fragments.append((bytes(value.data), value.is_last))
    assert b"".join(f for f, _ in fragments) == payload
    assert [is_last for _, is_last in fragments] == [False] * (len(fragments) - 1) + [True]
    assert all(f and len(f) % 2 == 0 for f, _ in fragments[:-1]) and fragments[-1][0]
    pair.write(pair.requestor, wire)
    events = pair.deliver(pair.requestor)
    if whole:
        assert events == [
            MessageReceived(context_id=3, message=STORE, has_dataset=True, dataset=payload)
        ]
    else:
        assert events[0] == MessageReceived(context_id=3, message=STORE, has_dataset=True)
        assert b"".join(bytes(e.data) for e in events[1:]) == payload  # type: ignore[union-attr]


def test_the_loop_of_transport_md_ends() -> None:
    """The receive loop docs/transport.md shows, run as printed on both ends of a socket pair:
    an association, a release, and each loop returns its ConnectionClosed."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "transport.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def run(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/transport.md", "exec"), namespace)
    run = namespace["run"]
    requestor_sock, acceptor_sock = socket.socketpair()
    for sock in (requestor_sock, acceptor_sock):
        sock.settimeout(10)
    scu, scp = dul.Connection(dul.Role.REQUESTOR), dul.Connection(dul.Role.ACCEPTOR)

    def scp_handle(event: object) -> bytes:
        if isinstance(event, dul.AssociateRequest):
            answer = POLICY.evaluate(event)
            assert isinstance(answer, dul.AssociateAccept)
            return scp.send(answer)
        if isinstance(event, dul.ReleaseRequest):
            return scp.send(event.response())
        return b""

    def scu_handle(event: object) -> bytes:
        assert isinstance(event, dul.AssociateAccept | dul.ReleaseResponse), event
        return scu.send(dul.ReleaseRequest()) if isinstance(event, dul.AssociateAccept) else b""

    ended: list[dul.ConnectionClosed] = []
    server = threading.Thread(target=lambda: ended.append(run(acceptor_sock, scp, scp_handle)))
    server.start()
    requestor_sock.sendall(scu.send(requested()))
    released = dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    assert run(requestor_sock, scu, scu_handle) == released
    server.join(timeout=10)
    assert ended == [released]
    assert scu.closed and scp.closed and scp.next_event() == released
