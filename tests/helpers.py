"""Test helpers for the Connection: typical requests and answers, and a connected pair.

A :class:`ConnectionPair` holds a requestor and an acceptor joined by two in-memory "wires".
Bytes a side sends wait on its wire until :meth:`ConnectionPair.deliver` moves them to the other
side, fed whole, byte by byte, or in random chunks (h11's helpers do the same for HTTP), and
collects the events they cause. :meth:`ConnectionPair.drive` brings one side to any state of
PS3.8 Table 9-1 that a sans-I/O connection can be in, by the ordinary API only.

The independent copy of PS3.8 Table 9-10 in ``tests/data`` is read here too, so that tests
compare dul with it and never with dul's own table.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import dul
from dul import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    CloseCause,
    Connection,
    ConnectionClosed,
    PresentationContext,
    PresentationContextAC,
    ReleaseRequest,
    ReleaseResponse,
    Role,
    State,
    UserInformation,
)

DATA = Path(__file__).resolve().parent / "data"

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"

#: How a wire hands bytes over: in one call, one byte per call, or in random chunks.
Feed = Literal["whole", "bytewise", "random"]
FEEDS: tuple[Feed, ...] = ("whole", "bytewise", "random")

#: An unknown PDU type (08H) with a well-formed header: Evt19, abort reason 1.
UNKNOWN_PDU = b"\x08\x00\x00\x00\x00\x04\x00\x00\x00\x00"
#: An A-RELEASE-RQ whose length is 5, not 4 (PS3.8 §9.3.6): Evt19, abort reason 6.
BAD_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00"


# -- typical association values -------------------------------------------------------------


def make_request(
    *,
    maximum_length: int | None = dul.DEFAULT_MAXIMUM_LENGTH,
    contexts: Iterable[PresentationContext] | None = None,
    called: str = "ANY-SCP",
    calling: str = "DUL-SCU",
) -> AssociateRequest:
    """An A-ASSOCIATE-RQ as a storage SCU sends it: verification, CT and MR (ids 1, 3, 5)."""
    if contexts is None:
        contexts = (
            PresentationContext(
                context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_LE,)
            ),
            PresentationContext(
                context_id=3,
                abstract_syntax=CT_IMAGE_STORAGE,
                transfer_syntaxes=(EXPLICIT_LE, IMPLICIT_LE),
            ),
            PresentationContext(
                context_id=5,
                abstract_syntax=MR_IMAGE_STORAGE,
                transfer_syntaxes=(DEFLATED_LE,),
            ),
        )
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(contexts),
        user_information=UserInformation(maximum_length=maximum_length),
    )


def make_accept(
    request: AssociateRequest,
    *,
    maximum_length: int | None = dul.DEFAULT_MAXIMUM_LENGTH,
    rejected: Iterable[int] = (5,),
) -> AssociateAccept:
    """The A-ASSOCIATE-AC answering ``request``: each context accepted with its first transfer
    syntax, except the ids in ``rejected`` (result 4, transfer syntaxes not supported)."""
    refused = set(rejected)
    answers = tuple(
        PresentationContextAC(
            context_id=c.context_id,
            result=dul.ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
            transfer_syntax="",
        )
        if c.context_id in refused
        else PresentationContextAC(context_id=c.context_id, transfer_syntax=c.transfer_syntaxes[0])
        for c in request.presentation_contexts
    )
    return request.accept(answers, UserInformation(maximum_length=maximum_length))


# -- feeding bytes and reading events -------------------------------------------------------


def chunks(data: bytes, how: Feed, rng: random.Random | None = None) -> list[bytes]:
    """``data`` cut as ``how`` says; random chunks are 1 byte to a third of the data."""
    if how == "whole" or not data:
        return [data] if data else []
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    rng = rng or random.Random(0)
    out, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max(1, len(data) // 3))
        out.append(data[pos : pos + size])
        pos += size
    return out


def next_events(conn: Connection) -> list[dul.Event]:
    """Events until ``NEED_DATA``; a ``ConnectionClosed`` ends the list (it is the last event).

    A :class:`~dul.RemoteProtocolError` propagates: the events before it are lost to the caller,
    which is why tests that expect one feed a single PDU at a time.
    """
    events: list[dul.Event] = []
    while True:
        event = conn.next_event()
        if event is dul.NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events


def receive(
    conn: Connection, data: bytes, how: Feed = "whole", rng: random.Random | None = None
) -> list[dul.Event]:
    """Feed ``data`` cut as ``how`` says, reading events after every chunk, as a driver does."""
    events: list[dul.Event] = []
    for chunk in chunks(data, how, rng):
        conn.receive_data(chunk)
        events.extend(next_events(conn))
    return events


def pdv_payloads(events: Iterable[dul.Event]) -> list[tuple[int, bool, bool, bytes]]:
    """(context id, is command, is last, data) of every PDV received, in order, as bytes."""
    return [
        (v.context_id, v.is_command, v.is_last, bytes(v.data))
        for e in events
        if isinstance(e, dul.PDataReceived)
        for v in e.values
    ]


# -- the pair -------------------------------------------------------------------------------


class ConnectionPair:
    """A requestor and an acceptor, and the bytes each has sent that the other has not read."""

    def __init__(
        self,
        *,
        how: Feed = "whole",
        seed: int = 0,
        requestor: Connection | None = None,
        acceptor: Connection | None = None,
    ) -> None:
        self.requestor = requestor or Connection(Role.REQUESTOR)
        self.acceptor = acceptor or Connection(Role.ACCEPTOR)
        self.how: Feed = how
        self.rng = random.Random(seed)
        self.wire: dict[Role, bytearray] = {Role.REQUESTOR: bytearray(), Role.ACCEPTOR: bytearray()}
        #: Every event each side has read through deliver(), end_of_stream() and close().
        self.log: dict[Role, list[dul.Event]] = {Role.REQUESTOR: [], Role.ACCEPTOR: []}
        self.request: AssociateRequest | None = None

    def side(self, role: Role) -> Connection:
        """The connection playing ``role``."""
        return self.requestor if role is Role.REQUESTOR else self.acceptor

    def peer(self, conn: Connection) -> Connection:
        """The other side of ``conn``."""
        return self.acceptor if conn is self.requestor else self.requestor

    def send(self, conn: Connection, event: dul.Event) -> bytes:
        """``conn.send(event)``; the bytes go on ``conn``'s wire and are returned."""
        data = conn.send(event)
        self.wire[conn.role] += data
        return data

    def send_data(
        self,
        conn: Connection,
        context_id: int,
        data: bytes,
        *,
        is_command: bool,
        is_last: bool = True,
    ) -> list[bytes | memoryview]:
        """``conn.send_data(...)``; the buffers go on ``conn``'s wire and are returned."""
        buffers = conn.send_data(context_id, data, is_command=is_command, is_last=is_last)
        for buffer in buffers:
            self.wire[conn.role] += buffer
        return buffers

    def deliver(self, sender: Connection) -> list[dul.Event]:
        """Move what ``sender`` wrote (and its ``data_to_send()``) to its peer: its events."""
        wire = self.wire[sender.role]
        wire += sender.data_to_send()
        data = bytes(wire)
        wire.clear()
        peer = self.peer(sender)
        events = receive(peer, data, self.how, self.rng)
        self.log[peer.role] += events
        return events

    def end_of_stream(self, conn: Connection) -> list[dul.Event]:
        """``conn`` reads the end of the stream (Evt17): its events."""
        conn.receive_data(b"")
        events = next_events(conn)
        self.log[conn.role] += events
        return events

    def artim_expired(self, conn: Connection) -> list[dul.Event]:
        """``conn``'s driver saw its ARTIM deadline pass (Evt18): its events."""
        conn.artim_expired()
        events = next_events(conn)
        self.log[conn.role] += events
        return events

    def close(self, conn: Connection) -> list[dul.Event]:
        """``conn`` closes its transport: its peer reads what is left, then end of stream."""
        return self.deliver(conn) + self.end_of_stream(self.peer(conn))

    # -- reaching a state -------------------------------------------------------------------

    def associate(
        self, request: AssociateRequest | None = None, accept: AssociateAccept | None = None
    ) -> None:
        """Request, accept and deliver both: Sta6 on both sides."""
        self.request = request or make_request()
        self.send(self.requestor, self.request)
        (received,) = self.deliver(self.requestor)
        assert isinstance(received, AssociateRequest)
        self.send(self.acceptor, accept or make_accept(received))
        (answer,) = self.deliver(self.acceptor)
        assert isinstance(answer, AssociateAccept)
        assert self.requestor.state is self.acceptor.state is State.ESTABLISHED

    def collide(self) -> None:
        """Both sides send A-RELEASE-RQ at once (Sta7 both); nothing is delivered yet."""
        self.associate()
        self.send(self.requestor, ReleaseRequest())
        self.send(self.acceptor, ReleaseRequest())

    def drive(self, role: Role, state: State, via: str = "") -> Connection:
        """Bring the ``role`` side to ``state`` through the API; see :data:`ROUTES` for ``via``.

        Sta4 cannot be reached (``send(AssociateRequest)`` covers Evt1 and Evt2 at once), and
        Sta1 only as a requestor that has sent nothing.
        """
        conn = self.side(role)
        other = self.peer(conn)
        requestor, acceptor = self.requestor, self.acceptor
        match state:
            case State.IDLE:
                assert role is Role.REQUESTOR
            case State.AWAITING_ASSOCIATE_RQ:
                assert role is Role.ACCEPTOR
            case State.AWAITING_LOCAL_ASSOCIATE_RESPONSE:
                assert role is Role.ACCEPTOR
                self.request = make_request()
                self.send(requestor, self.request)
                self.deliver(requestor)
            case State.AWAITING_ASSOCIATE_AC_OR_RJ:
                assert role is Role.REQUESTOR
                self.request = make_request()
                self.send(requestor, self.request)
            case State.ESTABLISHED:
                self.associate()
            case State.AWAITING_RELEASE_RP:
                self.associate()
                self.send(conn, ReleaseRequest())
            case State.AWAITING_LOCAL_RELEASE_RESPONSE:
                self.associate()
                self.send(other, ReleaseRequest())
                self.deliver(other)
            case State.COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE:
                assert role is Role.REQUESTOR
                self.collide()
                self.deliver(acceptor)
            case State.COLLISION_ACCEPTOR_AWAITING_RELEASE_RP:
                assert role is Role.ACCEPTOR
                self.collide()
                self.deliver(requestor)
            case State.COLLISION_REQUESTOR_AWAITING_RELEASE_RP:
                assert role is Role.REQUESTOR
                self.collide()
                self.deliver(acceptor)
                self.send(requestor, ReleaseResponse())
            case State.COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE:
                assert role is Role.ACCEPTOR
                self.collide()
                self.deliver(acceptor)
                self.send(requestor, ReleaseResponse())
                self.deliver(requestor)  # A-RELEASE-RQ (AR-8, Sta10), then A-RELEASE-RP (AR-10)
            case State.AWAITING_TRANSPORT_CLOSE:
                self._to_sta13(conn, via)
            case _:
                raise ValueError(f"{state.label} cannot be reached through the API")
        assert conn.state is state, (role, state, via, conn.state)
        return conn

    def _to_sta13(self, conn: Connection, via: str) -> None:
        other = self.peer(conn)
        match via:
            case "release":  # AR-4: we answer the peer's A-RELEASE-RQ
                self.associate()
                self.send(other, ReleaseRequest())
                self.deliver(other)
                self.send(conn, ReleaseResponse())
            case "abort":  # AA-1: the local user aborts
                self.associate()
                self.send(conn, Abort())
            case "provider-abort":  # AA-8: the peer sends a PDU the table does not expect
                self.associate()
                provoke(conn, dul.encode(make_request()))
            case "reject":  # AE-8: the local user rejects the request
                assert conn.role is Role.ACCEPTOR
                self.send(other, make_request())
                self.deliver(other)
                self.send(conn, AssociateReject())
            case "version-reject":  # AE-6: protocol version without bit 0, rejected by dul
                assert conn.role is Role.ACCEPTOR
                provoke(conn, dul.encode(make_request_v2(), strict=False))
            case "sta2-abort":  # AA-1 in Sta2: a PDU other than A-ASSOCIATE-RQ arrives first
                assert conn.role is Role.ACCEPTOR
                provoke(conn, dul.encode(ReleaseRequest()))
            case _:
                raise ValueError(f"no route to Sta13 named {via!r}")


def provoke(conn: Connection, data: bytes) -> dul.RemoteProtocolError:
    """Feed ``data``, which must make ``conn`` raise RemoteProtocolError; drop its reply."""
    try:
        receive(conn, data)
    except dul.RemoteProtocolError as exc:
        conn.data_to_send()
        return exc
    raise AssertionError("the peer's violation was not reported")


def make_request_v2() -> AssociateRequest:
    """A request whose protocol version (0002H) lacks bit 0: AE-6 rejects it (RJ 1/2/2)."""
    request = make_request()
    return AssociateRequest(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=request.presentation_contexts,
        user_information=request.user_information,
        protocol_version=2,
    )


#: Every way :meth:`ConnectionPair.drive` reaches each state: (role, via) pairs.
ROUTES: dict[State, tuple[tuple[Role, str], ...]] = {
    State.IDLE: ((Role.REQUESTOR, ""),),
    State.AWAITING_ASSOCIATE_RQ: ((Role.ACCEPTOR, ""),),
    State.AWAITING_LOCAL_ASSOCIATE_RESPONSE: ((Role.ACCEPTOR, ""),),
    State.AWAITING_ASSOCIATE_AC_OR_RJ: ((Role.REQUESTOR, ""),),
    State.ESTABLISHED: ((Role.REQUESTOR, ""), (Role.ACCEPTOR, "")),
    State.AWAITING_RELEASE_RP: ((Role.REQUESTOR, ""), (Role.ACCEPTOR, "")),
    State.AWAITING_LOCAL_RELEASE_RESPONSE: ((Role.REQUESTOR, ""), (Role.ACCEPTOR, "")),
    State.COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE: ((Role.REQUESTOR, ""),),
    State.COLLISION_ACCEPTOR_AWAITING_RELEASE_RP: ((Role.ACCEPTOR, ""),),
    State.COLLISION_REQUESTOR_AWAITING_RELEASE_RP: ((Role.REQUESTOR, ""),),
    State.COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE: ((Role.ACCEPTOR, ""),),
    State.AWAITING_TRANSPORT_CLOSE: (
        (Role.REQUESTOR, "release"),
        (Role.ACCEPTOR, "release"),
        (Role.REQUESTOR, "abort"),
        (Role.ACCEPTOR, "abort"),
        (Role.REQUESTOR, "provider-abort"),
        (Role.ACCEPTOR, "provider-abort"),
        (Role.ACCEPTOR, "reject"),
        (Role.ACCEPTOR, "version-reject"),
        (Role.ACCEPTOR, "sta2-abort"),
    ),
}

#: How a connection that reached Sta13 by each route ends, whatever closes the transport.
STA13_CAUSES: dict[str, CloseCause] = {
    "release": CloseCause.RELEASED,
    "abort": CloseCause.ABORTED_LOCALLY,
    "provider-abort": CloseCause.ABORTED_BY_PROVIDER,
    "reject": CloseCause.REJECTED,
    "version-reject": CloseCause.REJECTED,
    "sta2-abort": CloseCause.ABORTED_BY_PROVIDER,
}


# -- the independent copy of PS3.8 Table 9-10 -----------------------------------------------


def read_table() -> dict[tuple[str, str], str]:
    """``ps38_table_9_10.csv`` as {("EvtN", "StaM"): action}, with "" for an empty cell."""
    with (DATA / "ps38_table_9_10.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {(row["event"], sta): row[sta] for row in rows for sta in row if sta != "event"}


def read_actions() -> dict[str, tuple[str, ...]]:
    """``ps38_actions.csv`` as {action: next states}; AE-6 and AR-8 have two."""
    with (DATA / "ps38_actions.csv").open(newline="") as f:
        return {row["action"]: tuple(row["next_states"].split("|")) for row in csv.DictReader(f)}
