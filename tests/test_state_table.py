"""PS3.8 Table 9-10, cell by cell: dul's table data, then dul's behaviour, against tests/data.

The oracle is the independently typed copy in ``tests/data/ps38_table_9_10.csv`` and
``ps38_actions.csv``, never ``dul._state``. What each action does is written out below from the
action definitions of PS3.8 §9.2.2 (Tables 9-6 to 9-9), as the actions CSV paraphrases them.

How the 19 inputs reach a sans-I/O connection:

* Evt1 + Evt2: a requestor's ``send(AssociateRequest)``, made once the driver has connected; so
  Sta4 (awaiting transport open) is never observable, and neither are its Evt15/Evt17 cells.
* Evt5: an acceptor is constructed with it applied (Sta2, ARTIM running).
* Evt3, 4, 6, 10, 12, 13, 16: the PDU's bytes given to ``receive_data`` (whole and byte by byte).
* Evt19: an unknown PDU type (reason 1), or an A-RELEASE-RQ of length 5 (reason 6).
* Evt7, 8, 9, 11, 14, 15: ``send(...)`` (Evt9 also ``send_data``); an empty cell is a
  ``LocalProtocolError`` raised before anything changes.
* Evt17: ``receive_data(b"")``; Evt18: ``artim_expired()``, a no-op where ARTIM is not running.

Empty cells of received PDUs and of Evt17 are all in the Sta1 and Sta4 columns. In Sta1 a
requestor has no transport yet, so ``receive_data`` refuses any bytes (and ``b""``) with a
``LocalProtocolError``; an acceptor is never in a fresh Sta1. A connection that has ended is
back in Sta1 too, but it is single-use: ``test_connection.py`` covers what it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from attrs import frozen

import dul
from dul import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    CloseCause,
    Connection,
    ConnectionClosed,
    Input,
    LocalProtocolError,
    PData,
    PDataReceived,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    RemoteProtocolError,
    Role,
    State,
)
from dul._state import NEXT_STATES, TRANSITIONS, Action
from helpers import (
    BAD_RELEASE_RQ,
    ROUTES,
    STA13_CAUSES,
    UNKNOWN_PDU,
    ConnectionPair,
    Feed,
    chunks,
    make_accept,
    make_request,
    make_request_v2,
    read_actions,
    read_table,
)

TABLE = read_table()
ACTIONS = read_actions()
EVENTS = [f"Evt{n}" for n in range(1, 20)]
STATES = [f"Sta{n}" for n in range(1, 14)]

# -- the data ----------------------------------------------------------------------------------


def test_copy_is_complete() -> None:
    """The CSV copy has 247 cells, 123 holding an action, and defines every action it uses."""
    assert sorted(TABLE) == sorted((e, s) for e in EVENTS for s in STATES)
    used = {a for a in TABLE.values() if a}
    assert sum(1 for a in TABLE.values() if a) == 123
    assert used == set(ACTIONS)


def test_transitions_match_copy() -> None:
    """All 247 cells: the same action, and an empty cell absent from dul's row."""
    wrong = []
    for (evt, sta), expected in TABLE.items():
        row = TRANSITIONS[Input(int(evt[3:]))]
        action = row.get(State(int(sta[3:])))
        if (action.value if action else "") != expected:
            wrong.append(f"{evt}/{sta}: dul {action}, PS3.8 {expected or 'empty'}")
    assert not wrong, wrong
    assert set(TRANSITIONS) == set(Input)


def test_next_states_match_copy() -> None:
    """Each action's next states, in the copy's order (AE-6: acceptable first; AR-8: requestor)."""
    assert {a.value for a in NEXT_STATES} == set(ACTIONS) == {a.value for a in Action}
    for action, targets in NEXT_STATES.items():
        assert tuple(t.label for t in targets) == ACTIONS[action.value], action


def test_labels() -> None:
    assert [s.label for s in State] == STATES
    assert [i.label for i in Input] == EVENTS


# -- the behaviour -----------------------------------------------------------------------------

LOCAL = {"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"}
RECEIVED = {"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19"}
#: Inputs only the driver sees (folded into send() and the acceptor's constructor), and the
#: state that exists only inside send(AssociateRequest).
DRIVER_INPUTS = {"Evt2", "Evt5"}
UNREACHABLE_STATE = "Sta4"

CELLS = [
    (evt, sta)
    for evt in EVENTS
    for sta in STATES
    if evt not in DRIVER_INPUTS and sta != UNREACHABLE_STATE
]


@frozen
class Stimulus:
    """One way of applying an input: a local call (``local``) or bytes received (``received``)."""

    name: str
    local: Callable[[Connection], bytes | None] | None = None
    received: Callable[[ConnectionPair], bytes] | None = None
    #: The provider A-ABORT reason that AA-7 and AA-8 give in answer (PS3.8 Table 9-26).
    abort_reason: int = dul.AbortReason.UNEXPECTED_PDU
    #: False for an A-ASSOCIATE-RQ that AE-6 must reject (its second next state).
    acceptable: bool = True


def _send_data(conn: Connection) -> bytes:
    return b"".join(conn.send_data(1, b"\x00\x01\x02\x03", is_command=True))


def _accept_of(conn: Connection) -> AssociateAccept:
    return make_accept(conn.request or make_request())


def _accept_for(pair: ConnectionPair) -> bytes:
    return dul.encode(make_accept(pair.request or make_request()))


PDV = PresentationDataValue(context_id=1, is_command=True, is_last=True, data=b"\x08\x00")
ENCODED_RJ = dul.encode(AssociateReject(result=2, source=3, reason=1))
ENCODED_RQ_V2 = dul.encode(make_request_v2(), strict=False)

STIMULI: dict[str, tuple[Stimulus, ...]] = {
    "Evt1": (Stimulus("send(AssociateRequest)", local=lambda c: c.send(make_request())),),
    "Evt3": (Stimulus("A-ASSOCIATE-AC", received=_accept_for),),
    "Evt4": (Stimulus("A-ASSOCIATE-RJ", received=lambda p: ENCODED_RJ),),
    "Evt6": (
        Stimulus("A-ASSOCIATE-RQ", received=lambda p: dul.encode(make_request())),
        Stimulus("A-ASSOCIATE-RQ version 2", received=lambda p: ENCODED_RQ_V2, acceptable=False),
    ),
    "Evt7": (Stimulus("send(AssociateAccept)", local=lambda c: c.send(_accept_of(c))),),
    "Evt8": (Stimulus("send(AssociateReject)", local=lambda c: c.send(AssociateReject())),),
    "Evt9": (
        Stimulus("send_data()", local=_send_data),
        Stimulus("send(PData)", local=lambda c: c.send(PData(values=(PDV,)))),
    ),
    "Evt10": (Stimulus("P-DATA-TF", received=lambda p: dul.encode(PData(values=(PDV,)))),),
    "Evt11": (Stimulus("send(ReleaseRequest)", local=lambda c: c.send(ReleaseRequest())),),
    "Evt12": (Stimulus("A-RELEASE-RQ", received=lambda p: dul.encode(ReleaseRequest())),),
    "Evt13": (Stimulus("A-RELEASE-RP", received=lambda p: dul.encode(ReleaseResponse())),),
    "Evt14": (Stimulus("send(ReleaseResponse)", local=lambda c: c.send(ReleaseResponse())),),
    "Evt15": (Stimulus("send(Abort)", local=lambda c: c.send(Abort())),),
    "Evt16": (
        Stimulus("A-ABORT from the user", received=lambda p: dul.encode(Abort(source=0))),
        Stimulus(
            "A-ABORT from the provider", received=lambda p: dul.encode(Abort(source=2, reason=2))
        ),
    ),
    "Evt17": (Stimulus("receive_data(b'')", received=lambda p: b""),),
    "Evt18": (Stimulus("artim_expired()", local=lambda c: c.artim_expired()),),
    "Evt19": (
        Stimulus("unknown PDU type", received=lambda p: UNKNOWN_PDU, abort_reason=1),
        Stimulus("A-RELEASE-RQ of length 5", received=lambda p: BAD_RELEASE_RQ, abort_reason=6),
    ),
}


@frozen
class Outcome:
    """What one input did: the state after, the PDUs written, the events, the exception."""

    state: State
    sent: list[dul.Event]
    events: list[Any]
    error: Exception | None
    artim_running: bool
    artim_starts: int
    must_close: bool
    then: Any  # next_event() once more: nothing may be left behind


def apply(pair: ConnectionPair, conn: Connection, stimulus: Stimulus, how: Feed) -> Outcome:
    """Apply ``stimulus`` to ``conn`` (bytes fed as ``how`` says) and read all it caused."""
    written = b""
    events: list[Any] = []
    error: Exception | None = None

    def read() -> None:
        while (event := conn.next_event()) is not dul.NEED_DATA:
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return

    try:
        if stimulus.local is not None:
            written = stimulus.local(conn) or b""
            read()
        else:
            assert stimulus.received is not None
            data = stimulus.received(pair)
            for chunk in chunks(data, how) if data else [b""]:
                conn.receive_data(chunk)
                read()
    except (LocalProtocolError, RemoteProtocolError) as exc:
        error = exc
    return Outcome(
        state=conn.state,
        sent=dul.decode(written + conn.data_to_send()),
        events=events,
        error=error,
        artim_running=conn.artim_running,
        artim_starts=conn.artim_starts,
        must_close=conn.must_close,
        then=conn.next_event(),
    )


# What each action writes and issues (PS3.8 Tables 9-6 to 9-9). Values are event classes, or
# events compared for equality; AA-1/2/3/7/8, AE-6 and AR-5 depend on the cell (see expect()).
WRITES: dict[str, list[Any]] = {
    "AE-2": [AssociateRequest],
    "AE-7": [AssociateAccept],
    "AE-8": [AssociateReject],
    "DT-1": [PDataReceived],
    "AR-1": [ReleaseRequest],
    "AR-4": [ReleaseResponse],
    "AR-7": [PDataReceived],
    "AR-9": [ReleaseResponse],
}
ISSUES: dict[str, list[Any]] = {
    "AE-3": [AssociateAccept],
    "AE-4": [AssociateReject, ConnectionClosed(cause=CloseCause.REJECTED)],
    "DT-2": [PDataReceived],
    "AR-2": [ReleaseRequest],
    "AR-3": [ReleaseResponse, ConnectionClosed(cause=CloseCause.RELEASED)],
    "AR-6": [PDataReceived],
    "AR-8": [ReleaseRequest],
    "AR-10": [ReleaseResponse],
    "AA-4": [ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)],
    "AA-5": [ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)],
}
#: Actions that start (or restart) ARTIM; AE-6 also does when it rejects.
STARTS_ARTIM = {"AE-8", "AR-4", "AA-1", "AA-8"}
#: Actions that close the transport themselves: ``must_close`` (DESIGN.md, "Closing").
CLOSES = {"AE-4", "AR-3", "AA-2", "AA-3"}
#: Actions answering Evt17: the transport is already gone, ``must_close`` is not checked.
TRANSPORT_GONE = {"AA-4", "AA-5", "AR-5"}


@frozen
class Expected:
    state: str
    sent: list[Any]
    events: list[Any]
    error: type[Exception] | None
    artim_started: bool
    must_close: bool | None


def expect(
    evt: str, sta: str, role: Role, via: str, stimulus: Stimulus, pair: ConnectionPair
) -> Expected:
    """What the copy of Table 9-10 says ``stimulus`` does to ``role`` in ``sta``."""
    action = TABLE[evt, sta]
    if not action:
        if evt == "Evt18":  # ARTIM is not running here: the driver's late timer is ignored
            return Expected(sta, [], [], None, False, False)
        return Expected(sta, [], [], LocalProtocolError, False, False)
    if action == "AE-1":  # send(AssociateRequest) goes on through Sta4 with Evt2
        assert ACTIONS[action] == ("Sta4",)
        action = TABLE["Evt2", "Sta4"]
    branch = 0
    if action == "AE-6" and not stimulus.acceptable:
        branch = 1  # not acceptable: the protocol version lacks bit 0 (PS3.8 §9.3.2)
    if action == "AR-8" and role is Role.ACCEPTOR:
        branch = 1
    sent = list(WRITES.get(action, []))
    events = list(ISSUES.get(action, []))
    error: type[Exception] | None = None
    started = action in STARTS_ARTIM
    received = dul.decode(stimulus.received(pair)) if evt == "Evt16" else []  # type: ignore[misc]
    sta13_cause = STA13_CAUSES.get(via)
    match action:
        case "AE-6" if branch:
            sent = [AssociateReject(result=1, source=2, reason=2)]
            error, started = RemoteProtocolError, True
        case "AE-6":
            events = [AssociateRequest]
        case "AA-1":  # service-user source, reason 0, even when a protocol error caused it
            sent = [Abort(source=0, reason=0)]
            if evt != "Evt15":
                error = RemoteProtocolError
        case "AA-7":
            sent = [Abort(source=2, reason=stimulus.abort_reason)]
        case "AA-8":
            sent = [Abort(source=2, reason=stimulus.abort_reason)]
            error = RemoteProtocolError
        case "AA-2":
            if sta == "Sta13":  # the association had ended already: that is why it closes
                cause = sta13_cause
            elif evt == "Evt16":
                cause = CloseCause.ABORTED_BY_PEER
            else:
                cause = CloseCause.ARTIM_EXPIRED
            events = [ConnectionClosed(cause=cause)]
        case "AA-3":
            events = [*received, ConnectionClosed(cause=CloseCause.ABORTED_BY_PEER)]
        case "AR-5":
            events = [ConnectionClosed(cause=sta13_cause)]
    must_close = True if action in CLOSES else None if action in TRANSPORT_GONE else False
    return Expected(ACTIONS[action][branch], sent, events, error, started, must_close)


def same(actual: list[Any], expected: list[Any]) -> bool:
    """Each actual event is an instance of the expected class, or equal to the expected event."""
    return len(actual) == len(expected) and all(
        isinstance(a, e) if isinstance(e, type) else a == e
        for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize(("evt", "sta"), CELLS, ids=[f"{e}-{s}" for e, s in CELLS])
def test_cell(evt: str, sta: str) -> None:
    """Drive a connection into ``sta`` by every route, apply ``evt``, compare with the copy."""
    state = State(int(sta[3:]))
    for role, via in ROUTES[state]:
        for stimulus in STIMULI[evt]:
            for how in ("whole", "bytewise") if stimulus.received else ("whole",):
                where = f"{role.value} via {via or 'the API'}; {stimulus.name}, fed {how}"
                pair = ConnectionPair()
                conn = pair.drive(role, state, via)
                starts = conn.artim_starts
                assert conn.artim_running is (sta in ("Sta2", "Sta13")), where
                got = apply(pair, conn, stimulus, how)
                want = expect(evt, sta, role, via, stimulus, pair)

                assert got.state.label == want.state, where
                assert same(got.sent, want.sent), (where, got.sent)
                assert same(got.events, want.events), (where, got.events)
                if want.error is None:
                    assert got.error is None, (where, got.error)
                else:
                    assert type(got.error) is want.error, (where, got.error)
                if isinstance(got.error, RemoteProtocolError):
                    assert [got.error.reply] == got.sent, where
                assert got.artim_starts == starts + want.artim_started, where
                assert got.artim_running is (got.state.label in ("Sta2", "Sta13")), where
                if want.must_close is not None:
                    assert got.must_close is want.must_close, where
                # Nothing left behind: NEED_DATA, or ConnectionClosed again once it was issued.
                closed = got.state is State.IDLE and got.events
                assert got.then == (got.events[-1] if closed else dul.NEED_DATA), where


def test_cells_left_to_the_driver() -> None:
    """The cells test_cell skips are exactly Sta4's column and the Evt2 and Evt5 rows.

    Their non-empty cells are folded into the API: AE-1 then AE-2 in the requestor's
    ``send(AssociateRequest)``, AE-5 in the acceptor's constructor. Sta4's AA-2 (Evt15) and AA-4
    (Evt17) are the driver's alone: a connect that has not completed is abandoned by closing the
    socket, before any Connection method is called.
    """
    skipped = {cell for cell in TABLE if cell not in set(CELLS)}
    assert len(skipped) == 247 - 12 * 17
    assert skipped == {(e, s) for (e, s) in TABLE if e in DRIVER_INPUTS or s == UNREACHABLE_STATE}
    assert {cell: a for cell, a in TABLE.items() if cell in skipped and a} == {
        ("Evt2", "Sta4"): "AE-2",
        ("Evt5", "Sta1"): "AE-5",
        ("Evt15", "Sta4"): "AA-2",
        ("Evt17", "Sta4"): "AA-4",
    }


def test_evt1_and_evt2_in_one_send() -> None:
    """A requestor's send(AssociateRequest) is AE-1 (to Sta4) and AE-2 (to Sta5) in one call."""
    assert (TABLE["Evt1", "Sta1"], ACTIONS["AE-1"]) == ("AE-1", ("Sta4",))
    assert (TABLE["Evt2", "Sta4"], ACTIONS["AE-2"]) == ("AE-2", ("Sta5",))
    conn = Connection(Role.REQUESTOR)
    request = make_request()
    assert dul.decode(conn.send(request)) == [request]
    assert conn.state.label == "Sta5"
    assert not conn.artim_running
    assert conn.artim_starts == 0


def test_evt5_in_the_acceptor_constructor() -> None:
    """An acceptor starts with the transport open: AE-5 applied, Sta2, ARTIM started once."""
    assert (TABLE["Evt5", "Sta1"], ACTIONS["AE-5"]) == ("AE-5", ("Sta2",))
    conn = Connection(Role.ACCEPTOR)
    assert conn.state.label == "Sta2"
    assert conn.artim_running
    assert conn.artim_starts == 1
    assert conn.data_to_send() == b""
    assert conn.next_event() is dul.NEED_DATA


@pytest.mark.parametrize(
    ("role", "state", "via"),
    [(role, state, via) for state, routes in ROUTES.items() for role, via in routes],
    ids=lambda v: getattr(v, "label", getattr(v, "value", v)),
)
def test_artim_runs_exactly_in_sta2_and_sta13(role: Role, state: State, via: str) -> None:
    """ARTIM runs in Sta2 and Sta13 only (PS3.8 §9.2.2); elsewhere its expiry is a no-op."""
    pair = ConnectionPair()
    conn = pair.drive(role, state, via)
    assert conn.artim_running is (state in (State(2), State(13)))
    if not conn.artim_running:
        starts = conn.artim_starts
        conn.artim_expired()
        assert (conn.state, conn.artim_starts) == (state, starts)
        assert conn.data_to_send() == b""
        assert conn.next_event() is dul.NEED_DATA


def test_artim_restarts_are_counted() -> None:
    """AA-1 in Sta2 restarts ARTIM while it runs; a driver sees it by ``artim_starts``."""
    conn = Connection(Role.ACCEPTOR)
    assert (conn.artim_running, conn.artim_starts) == (True, 1)
    conn.receive_data(dul.encode(ReleaseRequest()))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.reply == Abort(source=0, reason=0)
    assert (conn.state, conn.artim_running, conn.artim_starts) == (State(13), True, 2)
    conn.receive_data(dul.encode(ReleaseRequest()))  # AA-6: ignored, ARTIM not restarted
    assert conn.next_event() is dul.NEED_DATA
    assert (conn.state, conn.artim_running, conn.artim_starts) == (State(13), True, 2)
    conn.artim_expired()
    assert conn.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)
    assert (conn.state, conn.artim_running, conn.must_close) == (State(1), False, True)
    conn.artim_expired()  # a late timer: no-op
    assert conn.next_event() == ConnectionClosed(cause=CloseCause.ABORTED_BY_PROVIDER)


def test_ae6_reject_restarts_artim() -> None:
    """AE-6 stops ARTIM, then starts it again when it rejects the request."""
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(ENCODED_RQ_V2)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert (conn.state, conn.artim_running, conn.artim_starts) == (State(13), True, 2)


def test_stimuli_cover_every_input() -> None:
    """Every input but the driver's has a stimulus, local calls for primitives, bytes for PDUs."""
    assert set(STIMULI) == set(EVENTS) - DRIVER_INPUTS
    for evt, stimuli in STIMULI.items():
        for stimulus in stimuli:
            assert (stimulus.local is not None) is (evt in LOCAL or evt == "Evt18"), evt
            assert (stimulus.received is not None) is (evt in RECEIVED or evt == "Evt17"), evt
