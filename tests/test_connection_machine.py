"""A requestor and an acceptor against each other, driven by hypothesis in random orders.

Each side has a driver that does what a real one must: it writes what ``send`` returns and what
``data_to_send()`` holds, closes its transport once ``must_close`` is true, and reads events
until ``NEED_DATA``. The rules interleave both sides' actions: data on either side (whole
messages, pieces with ``is_last=False``, or an explicit ``PData``), release from either side or
both at once (collision), aborts, ARTIM expiries (a no-op where it is not running), the transport
failing, and the bytes moving in random chunks. Local calls are made in any state: the table
(the CSV copy) says whether they must succeed or raise ``LocalProtocolError``.

Checked throughout: every transition is an edge of Table 9-10, each side stays in its role's
states, ARTIM runs exactly in Sta2 and Sta13, nothing received is lost or reordered (what arrived
is a prefix of what was sent), no ``RemoteProtocolError`` between two well-behaved peers, and
``ConnectionClosed`` is last. At the end, a polite driver finishes what is left; if both sides
released, every byte sent has arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
    PDataReceived,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    Role,
    State,
)
from helpers import make_accept, make_request, read_actions, read_table

TABLE = read_table()
ACTIONS = read_actions()
#: Every (state, next state) pair Table 9-10 allows, and send(AssociateRequest)'s Sta1 -> Sta5.
EDGES = {(sta, t) for (_, sta), a in TABLE.items() if a for t in ACTIONS[a]} | {("Sta1", "Sta5")}
ROLE_STATES = {
    Role.REQUESTOR: {State(n) for n in (1, 5, 6, 7, 8, 9, 11, 13)},
    Role.ACCEPTOR: {State(n) for n in (1, 2, 3, 6, 7, 8, 10, 12, 13)},
}
MAXIMUM_LENGTHS = st.sampled_from([0, 8, 9, 16, 64, 1000, dul.DEFAULT_MAXIMUM_LENGTH])
SIDES = st.sampled_from([Role.REQUESTOR, Role.ACCEPTOR])


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True one time in ``n``: rules that end the association act rarely, so that most runs get
    somewhere (sampled_from, as hypothesis favours small integers and the first element)."""
    return st.sampled_from([False] * (n - 1) + [True])


PDV = tuple[int, bool, bool, bytes]  # context id, is command, is last, data


def messages(pdvs: list[PDV]) -> list[tuple[int, bool, bytes, bool]]:
    """PDVs joined into messages: (context id, is command, data, complete)."""
    out: list[tuple[int, bool, bytes, bool]] = []
    for context_id, is_command, is_last, data in pdvs:
        if out and not out[-1][3]:
            assert out[-1][:2] == (context_id, is_command), "streams interleaved"
            out[-1] = (context_id, is_command, out[-1][2] + data, is_last)
        else:
            out.append((context_id, is_command, data, is_last))
    return out


def written(sent: list[tuple[int, bool, bytes, bool]]) -> list[tuple[int, bool, bytes, bool]]:
    """The messages sent as they reach the wire: of one never finished, send_data() kept back
    its last byte (odd length so far) or two (even), for the end it never got."""
    if not sent or sent[-1][3]:
        return sent
    context_id, is_command, data, _ = sent[-1]
    data = data[: len(data) - 2 + len(data) % 2]
    return sent[:-1] + ([(context_id, is_command, data, False)] if data else [])


class Side:
    """One end: its Connection, and what its driver has seen and done."""

    def __init__(self, role: Role) -> None:
        self.conn = Connection(role)
        self.role = role
        self.wire = bytearray()  # written, not yet read by the peer
        self.transport_closed = False  # this side closed its socket
        self.eof = False  # this side has read the end of the stream
        self.events: list[Any] = []
        self.closed: ConnectionClosed | None = None
        self.sent: list[PDV] = []
        self.received: list[PDV] = []
        self.stream: tuple[int, bool] | None = None  # a message sent in pieces, not finished


class PairMachine(RuleBasedStateMachine):
    """Two well-behaved peers over an in-memory transport."""

    def __init__(self) -> None:
        super().__init__()
        self.sides = {role: Side(role) for role in Role}

    def peer(self, side: Side) -> Side:
        return self.sides[Role.ACCEPTOR if side.role is Role.REQUESTOR else Role.REQUESTOR]

    # -- the driver ----------------------------------------------------------------------------

    def read(self, side: Side) -> None:
        """Events until NEED_DATA, each transition checked; then write and maybe close."""
        conn = side.conn
        while True:
            before = conn.state
            event = conn.next_event()  # a RemoteProtocolError here fails the test
            self.check_edge(side, before)
            if side.closed is not None:
                assert event == side.closed, "ConnectionClosed must stay the last event"
                break
            if event is dul.NEED_DATA:
                break
            side.events.append(event)
            if isinstance(event, PDataReceived):
                side.received += [
                    (v.context_id, v.is_command, v.is_last, bytes(v.data)) for v in event.values
                ]
            elif isinstance(event, ConnectionClosed):
                side.closed = event
            elif isinstance(event, AssociateRequest):
                assert side.role is Role.ACCEPTOR
            elif isinstance(event, AssociateAccept | AssociateReject):
                assert side.role is Role.REQUESTOR
        self.flush(side)

    def flush(self, side: Side) -> None:
        """Write what the protocol queued; close the transport once the table says so."""
        data = side.conn.data_to_send()
        if not side.transport_closed:
            side.wire += data
        if side.conn.must_close and not side.transport_closed:
            side.transport_closed = True
            self.peer(side).wire.clear()  # what the peer wrote to us is lost with our socket

    def check_edge(self, side: Side, before: State) -> None:
        after = side.conn.state
        assert before is after or (before.label, after.label) in EDGES, (before, after)
        assert after in ROLE_STATES[side.role], after

    def local(self, side: Side, evt: str, call: Callable[[Connection], Any]) -> bool:
        """Make a local call; the copy of the table says if it must succeed. True if it did."""
        conn = side.conn
        before = conn.state
        if not TABLE[evt, before.label] or side.closed is not None:
            with pytest.raises(LocalProtocolError):
                call(conn)
            assert conn.state is before
            assert conn.data_to_send() == b""
            return False
        result = call(conn)
        self.check_edge(side, before)
        if isinstance(result, list):
            result = b"".join(result)
        side.wire += result or b""
        self.read(side)
        return True

    def deliver_bytes(self, side: Side, size: int | None) -> bool:
        """Move up to ``size`` bytes (all if None) from ``side`` to its peer; then end of stream
        if ``side`` closed and all it wrote has been read. True if anything moved."""
        peer = self.peer(side)
        if peer.transport_closed:
            side.wire.clear()
            return False
        if side.wire:
            size = len(side.wire) if size is None else size
            chunk = bytes(side.wire[:size])
            del side.wire[:size]
            peer.conn.receive_data(chunk)
            self.read(peer)
            return True
        if side.transport_closed and not peer.eof:
            peer.eof = True
            peer.conn.receive_data(b"")
            self.read(peer)
            return True
        return False

    # -- the rules -----------------------------------------------------------------------------

    @initialize(
        requestor_max=MAXIMUM_LENGTHS, acceptor_max=MAXIMUM_LENGTHS, handshake=st.booleans()
    )
    def associate(self, requestor_max: int, acceptor_max: int, handshake: bool) -> None:
        """The requestor sends its A-ASSOCIATE-RQ; half the runs also finish the handshake."""
        self.acceptor_max = acceptor_max
        requestor = self.sides[Role.REQUESTOR]
        self.local(requestor, "Evt1", lambda c: c.send(make_request(maximum_length=requestor_max)))
        if handshake:
            self.deliver_bytes(requestor, None)
            self.answer(accept=1)
            self.deliver_bytes(self.sides[Role.ACCEPTOR], None)
            assert requestor.conn.state is State.ESTABLISHED

    def can(self, evt: str, role: Role | None = None) -> bool:
        """True if the table allows ``evt`` now on ``role``'s side (on either, if None)."""
        roles = [role] if role else list(Role)
        return any(
            TABLE[evt, self.sides[r].conn.state.label] and self.sides[r].closed is None
            for r in roles
        )

    def pending(self) -> bool:
        return any(
            s.wire or (s.transport_closed and not self.peer(s).eof) for s in self.sides.values()
        )

    @precondition(pending)
    @rule(side=SIDES, size=st.one_of(st.none(), st.integers(1, 64)))
    def deliver(self, side: Role, size: int | None) -> None:
        self.deliver_bytes(self.sides[side], size)

    @precondition(lambda self: self.can("Evt7", Role.ACCEPTOR))
    @rule(accept=st.integers(0, 4))
    def answer(self, accept: int) -> None:
        """The acceptor accepts (contexts 1 and 3; four times in five) or rejects."""
        acceptor = self.sides[Role.ACCEPTOR]

        def respond(conn: Connection) -> bytes:
            assert conn.request is not None
            if accept:
                return conn.send(make_accept(conn.request, maximum_length=self.acceptor_max))
            return conn.send(conn.request.reject())

        assert self.local(acceptor, "Evt7" if accept else "Evt8", respond)

    @precondition(lambda self: self.can("Evt9"))
    @rule(
        side=SIDES,
        size=st.integers(1, 300),
        context=st.integers(0, 1),
        is_command=st.booleans(),
        is_last=st.booleans(),
    )
    def send_data(
        self, side: Role, size: int, context: int, is_command: bool, is_last: bool
    ) -> None:
        """A message, or a piece of one; a piece in progress is continued, never interleaved."""
        s = self.sides[side]
        contexts = sorted(s.conn.accepted_contexts) or [1]
        context_id = contexts[context % len(contexts)]
        if s.stream is not None:
            context_id, is_command = s.stream
        payload = bytes((size + i) % 256 for i in range(size))

        def call(conn: Connection) -> list[bytes | memoryview]:
            return conn.send_data(context_id, payload, is_command=is_command, is_last=is_last)

        if self.local(s, "Evt9", call):
            s.sent.append((context_id, is_command, is_last, payload))
            s.stream = None if is_last else (context_id, is_command)

    @precondition(lambda self: self.can("Evt9"))
    @rule(side=SIDES, size=st.integers(1, 40))
    def send_pdata(self, side: Role, size: int) -> None:
        """A whole command in one PDV, by send(PData), between messages sent by send_data().

        Only send_data() keeps track of a message sent in pieces: a PData does not finish one
        that send_data() left open, so this rule waits until none is.
        """
        s = self.sides[side]
        if s.stream is not None:
            return
        room = (s.conn.max_send_length or 1000) - 6
        context_id = min(s.conn.accepted_contexts, default=1)
        value = PresentationDataValue(
            context_id=context_id, is_command=True, is_last=True, data=bytes(min(size, room))
        )
        if self.local(s, "Evt9", lambda c: c.send(PData(values=(value,)))):
            s.sent.append((context_id, True, True, bytes(value.data)))

    @precondition(lambda self: self.can("Evt11"))
    @rule(side=SIDES)
    def release(self, side: Role) -> None:
        self.local(self.sides[side], "Evt11", lambda c: c.send(ReleaseRequest()))

    @precondition(lambda self: all(s.conn.state is State.ESTABLISHED for s in self.sides.values()))
    @rule(first=SIDES)
    def release_both(self, first: Role) -> None:
        """Both sides release at once: a release collision (PS3.8 §9.2.3, Sta9-Sta12)."""
        second = Role.ACCEPTOR if first is Role.REQUESTOR else Role.REQUESTOR
        for role in (first, second):
            assert self.local(self.sides[role], "Evt11", lambda c: c.send(ReleaseRequest()))

    @precondition(lambda self: self.can("Evt14"))
    @rule(side=SIDES)
    def release_response(self, side: Role) -> None:
        self.local(self.sides[side], "Evt14", lambda c: c.send(ReleaseResponse()))

    @rule(
        side=SIDES, evt=st.sampled_from(["Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"])
    )
    def misuse(self, side: Role, evt: str) -> None:
        """A local call the table forbids now: LocalProtocolError, and nothing changes."""
        if self.can(evt, side):
            return
        request = make_request()
        calls: dict[str, Callable[[Connection], Any]] = {
            "Evt1": lambda c: c.send(request),
            "Evt7": lambda c: c.send(make_accept(request)),
            "Evt8": lambda c: c.send(request.reject()),
            "Evt9": lambda c: c.send_data(1, b"\x00\x00", is_command=True),
            "Evt11": lambda c: c.send(ReleaseRequest()),
            "Evt14": lambda c: c.send(ReleaseResponse()),
            "Evt15": lambda c: c.send(Abort()),
        }
        assert not self.local(self.sides[side], evt, calls[evt])

    @rule(side=SIDES, now=one_in(16))
    def abort(self, side: Role, now: bool) -> None:
        if now:
            self.local(self.sides[side], "Evt15", lambda c: c.send(Abort()))

    @rule(side=SIDES, now=one_in(8))
    def artim_expires(self, side: Role, now: bool = True) -> None:
        """The driver's ARTIM deadline passes: AA-2 where it runs, nothing elsewhere."""
        if not now:
            return
        s = self.sides[side]
        before, running = s.conn.state, s.conn.artim_running
        s.conn.artim_expired()
        if not running:
            assert s.conn.state is before
            assert s.conn.next_event() in (dul.NEED_DATA, s.closed)
        self.check_edge(s, before)
        self.read(s)

    @rule(now=one_in(48))
    def transport_fails(self, now: bool) -> None:
        """The connection breaks: bytes in flight are lost, both sides read end of stream."""
        if not now:
            return
        for s in self.sides.values():
            s.wire.clear()
        for s in self.sides.values():
            if not s.transport_closed and not s.eof:
                s.eof = True
                s.conn.receive_data(b"")
                self.read(s)
            s.transport_closed = True

    # -- the checks ----------------------------------------------------------------------------

    @invariant()
    def artim_runs_in_sta2_and_sta13(self) -> None:
        for s in self.sides.values():
            assert s.conn.artim_running is (s.conn.state in (State(2), State(13)))

    @invariant()
    def nothing_lost_or_reordered(self) -> None:
        """What each side received is a prefix of what the other sent, message by message."""
        for s in self.sides.values():
            sent, received = messages(self.peer(s).sent), messages(s.received)
            assert len(received) <= len(sent)
            for got, want in zip(received, sent, strict=False):
                assert got[:2] == want[:2]
                assert want[2].startswith(got[2])
                assert not got[3] or got == want
            assert received[:-1] == sent[: max(len(received) - 1, 0)]

    @invariant()
    def closed_is_last(self) -> None:
        for s in self.sides.values():
            if s.closed is not None:
                assert s.events[-1] is s.closed
                assert s.conn.state is State.IDLE

    def teardown(self) -> None:
        """A polite driver on each side finishes the association; then everything is checked."""
        req, acc = self.sides[Role.REQUESTOR], self.sides[Role.ACCEPTOR]
        for _ in range(10_000):
            if req.closed is not None and acc.closed is not None:
                break
            if any(self.deliver_bytes(s, None) for s in (req, acc)):
                continue
            if acc.conn.state is State.AWAITING_LOCAL_ASSOCIATE_RESPONSE:
                self.answer(accept=1)
                continue
            waiting = [s for s in (req, acc) if s.conn.state in (State(8), State(9), State(12))]
            if waiting:
                self.release_response(waiting[0].role)
                continue
            if req.conn.state is acc.conn.state is State.ESTABLISHED:
                streaming = [s for s in (req, acc) if s.stream is not None]
                if streaming:
                    self.send_data(streaming[0].role, 2, 0, False, True)
                else:
                    self.release(Role.REQUESTOR)
                continue
            running = [s for s in (req, acc) if s.conn.artim_running]
            assert running, f"stuck: {req.conn.state.label}, {acc.conn.state.label}"
            self.artim_expires(running[0].role)
        else:  # pragma: no cover
            raise AssertionError("the association did not finish")
        for s in (req, acc):
            assert s.closed is not None
            assert s.events[-1] is s.closed
            assert [e for e in s.events if isinstance(e, ConnectionClosed)] == [s.closed]
        if req.closed == acc.closed == ConnectionClosed(cause=CloseCause.RELEASED):
            for s in (req, acc):
                assert messages(s.received) == written(messages(self.peer(s).sent))


TestPair = PairMachine.TestCase
