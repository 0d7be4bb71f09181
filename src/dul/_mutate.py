"""Hostile input for the receive path: real PDU streams, mutated, fed to connections in any state.

Three parts, shared by the property tests, the atheris harness (``fuzz/``) and the live-peer
fuzzer (``examples/fuzz``), all public through :mod:`dul.testing`:

* :func:`mutate` applies one mutation (bit flip, length-field edit, truncation, duplication,
  deletion, reordering, splicing, ...) to a byte stream. It takes its choices from a ``pick(lo,
  hi)`` function, so hypothesis (``draw(st.integers(lo, hi))``, which shrinks well) and a seeded
  ``random.Random`` (``rng.randint``) drive the same code. :func:`mutated_streams` and
  :func:`chunked` are the hypothesis strategies built on it.
* :func:`connection_in` brings a :class:`~dul.Connection` of either role to any state that can
  receive bytes (PS3.8 Table 9-1), through the public API only.
* :func:`feed` hands chunks to a connection the way a driver does and checks, after every call,
  what dul promises whatever the bytes (docs/security.md): only
  :class:`~dul.RemoteProtocolError` escapes, what dul asks to send is a valid A-ABORT or
  A-ASSOCIATE-RJ, the state moves only along PS3.8 Table 9-10, and the receive buffer stays
  within its cap (allocated, not just filled).

hypothesis is needed by the strategies only; the rest runs without it.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from attrs import define, field, frozen

from ._buffer import _PREALLOCATE
from ._codes import AbortSource, ContextResult
from ._connection import NEED_DATA, Connection, Role
from ._errors import ProtocolError, RemoteProtocolError
from ._events import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    ConnectionClosed,
    Event,
    PDataReceived,
    PresentationContext,
    PresentationContextAC,
    ReleaseRequest,
    ReleaseResponse,
    UserInformation,
)
from ._pdu import decode, encode
from ._state import NEXT_STATES, TRANSITIONS, Input, State

if TYPE_CHECKING:
    from hypothesis import strategies as st

__all__ = [
    "RECEIVING_SCENARIOS",
    "Chunks",
    "InvariantError",
    "Outcome",
    "Pick",
    "Scenario",
    "chunk",
    "chunked",
    "connection_in",
    "default_accept",
    "default_request",
    "feed",
    "length_fields",
    "mutate",
    "mutated_streams",
    "pdu_spans",
    "pdu_streams",
    "random_pick",
]

#: ``pick(lo, hi)`` returns an int in ``[lo, hi]``: where a mutation takes its choices from.
Pick = Callable[[int, int], int]

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

_U16_VALUES = (0, 1, 2, 3, 4, 5, 6, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_U32_VALUES = (
    *_U16_VALUES,
    0x1_0000,
    0x10_0000,
    0x100_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
)
#: Items whose value is a list of sub-items after a fixed part of this many bytes.
_CONTAINERS = {0x20: 4, 0x21: 4, 0x50: 0}
#: Sub-items whose value starts with 2-byte length fields (PS3.7 D.3.3.4-7): how many, and where.
_U16_PREFIXED = {0x54: (0, 1), 0x56: (0, 1), 0x57: (0, 3), 0x58: (2, 2), 0x59: (0, 1)}


# -- the structure of a stream --------------------------------------------------------------


def pdu_spans(stream: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each PDU by its header; a tail that does not frame is one more span."""
    spans = []
    pos = 0
    while pos < len(stream):
        end = pos + 6 + int.from_bytes(stream[pos + 2 : pos + 6], "big")
        if len(stream) - pos < 6 or end > len(stream):
            spans.append((pos, len(stream)))
            break
        spans.append((pos, end))
        pos = end
    return spans


def _item_fields(
    stream: bytes, start: int, end: int, depth: int, out: list[tuple[int, int]]
) -> None:
    pos = start
    while end - pos >= 4:
        item_type = stream[pos]
        value = pos + 4
        value_end = value + int.from_bytes(stream[pos + 2 : pos + 4], "big")
        out.append((pos + 2, 2))
        if value_end > end:
            return
        if item_type in _CONTAINERS and depth == 0:
            _item_fields(stream, value + _CONTAINERS[item_type], value_end, 1, out)
        elif item_type in _U16_PREFIXED and depth == 1:
            skip, count = _U16_PREFIXED[item_type]
            field_pos = value + skip
            for _ in range(count):
                if value_end - field_pos < 2:
                    break
                out.append((field_pos, 2))
                field_pos += 2 + int.from_bytes(stream[field_pos : field_pos + 2], "big")
        pos = value_end


def length_fields(stream: bytes) -> list[tuple[int, int]]:
    """``(offset, width)`` of every length field in ``stream`` that its structure reveals.

    PDU lengths, item and sub-item lengths of A-ASSOCIATE PDUs (PS3.8 §9.3.2-3, Annex D), the
    2-byte fields inside role selection, extended negotiation and user identity sub-items
    (PS3.7 D.3.3), and PDV item lengths (PS3.8 §9.3.5). Parsing is tolerant: it stops where the
    structure stops making sense.
    """
    out: list[tuple[int, int]] = []
    for start, end in pdu_spans(stream):
        if end - start < 6:
            continue
        out.append((start + 2, 4))
        pdu_type = stream[start]
        if pdu_type in (1, 2):
            _item_fields(stream, start + 6 + 68, end, 0, out)
        elif pdu_type == 4:
            pos = start + 6
            while end - pos >= 4:
                out.append((pos, 4))
                pos += 4 + int.from_bytes(stream[pos : pos + 4], "big")
    return out


# -- mutations ------------------------------------------------------------------------------


def _choose(pick: Pick, values: Sequence[int]) -> int:
    return values[pick(0, len(values) - 1)]


def _new_length(pick: Pick, old: int, width: int) -> int:
    top = (1 << (8 * width)) - 1
    how = pick(0, 2)
    if how == 0:
        return _choose(pick, _U16_VALUES if width == 2 else _U32_VALUES)
    if how == 1:
        return min(top, max(0, old + pick(-8, 8)))
    return pick(0, top)


def _boundary(pick: Pick, spans: list[tuple[int, int]]) -> int:
    """A PDU boundary: the start of one of ``spans`` or the end of the stream."""
    return ([s for s, _ in spans] + [spans[-1][1]])[pick(0, len(spans))] if spans else 0


def mutate(stream: bytes, pick: Pick, other: bytes = b"") -> bytes:
    """``stream`` with one mutation applied, every choice taken from ``pick``.

    ``other`` is a second stream to splice from. The result is never more than
    ``2 * len(stream) + len(other) + 64`` bytes long (a PDU duplicated, or ``other`` spliced in).
    """
    if not stream:
        return bytes(pick(0, 255) for _ in range(pick(1, 16)))
    data = bytearray(stream)
    spans = pdu_spans(stream)
    kind = pick(0, 11)
    if kind == 0:  # flip one bit
        bit = pick(0, 8 * len(data) - 1)
        data[bit // 8] ^= 1 << (bit % 8)
    elif kind == 1:  # set one byte
        data[pick(0, len(data) - 1)] = pick(0, 255)
    elif kind in (2, 3):  # edit a length field (twice as likely: it is where decoders break)
        fields = length_fields(stream)
        if fields:
            pos, width = fields[pick(0, len(fields) - 1)]
            old = int.from_bytes(data[pos : pos + width], "big")
            data[pos : pos + width] = _new_length(pick, old, width).to_bytes(width, "big")
    elif kind == 4:  # truncate
        del data[pick(0, len(data) - 1) :]
    elif kind == 5:  # duplicate a PDU, anywhere at a boundary
        start, end = spans[pick(0, len(spans) - 1)]
        at = _boundary(pick, spans)
        data[at:at] = stream[start:end]
    elif kind == 6:  # delete a PDU
        start, end = spans[pick(0, len(spans) - 1)]
        del data[start:end]
    elif kind == 7:  # swap two PDUs: out of order
        i, j = sorted((pick(0, len(spans) - 1), pick(0, len(spans) - 1)))
        (a, b), (c, d) = spans[i], spans[j]
        if i != j:
            data = bytearray(stream[:a] + stream[c:d] + stream[b:c] + stream[a:b] + stream[d:])
    elif kind == 8 and other:  # splice: PDUs of another stream at a boundary, or its tail
        other_spans = pdu_spans(other)
        start, end = other_spans[pick(0, len(other_spans) - 1)]
        if pick(0, 1):
            end = len(other)
        at = _boundary(pick, spans)
        data[at:at] = other[start:end]
    elif kind == 9:  # insert a few random bytes
        at = pick(0, len(data))
        data[at:at] = bytes(pick(0, 255) for _ in range(pick(1, 16)))
    elif kind == 10:  # delete a range of bytes
        start = pick(0, len(data) - 1)
        del data[start : start + pick(1, 64)]
    else:  # change a PDU's type, mostly to another known one
        start, _ = spans[pick(0, len(spans) - 1)]
        data[start] = pick(1, 7) if pick(0, 3) else pick(0, 255)
    return bytes(data)


def chunk(data: bytes, pick: Pick, max_chunks: int = 16) -> list[bytes]:
    """``data`` cut at up to ``max_chunks - 1`` points chosen by ``pick``; sometimes bytewise."""
    if not data:
        return []
    how = pick(0, 3)
    if how == 0:
        return [data]
    if how == 1 and len(data) <= 4096:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = (
        sorted({pick(1, len(data) - 1) for _ in range(pick(0, max_chunks - 1))})
        if len(data) > 1
        else []
    )
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def random_pick(rng: random.Random) -> Pick:
    """A :data:`Pick` from a seeded generator, for fuzzing outside hypothesis (``rng.randint``)."""
    return rng.randint


# -- hypothesis strategies --------------------------------------------------------------------


def pdu_streams(max_pdus: int = 4) -> st.SearchStrategy[bytes]:
    """Streams of 1 to ``max_pdus`` valid PDUs, from ``dul.testing.pdus()`` when it exists."""
    from hypothesis import strategies as st

    one: st.SearchStrategy[bytes]
    try:
        from .testing import pdus
    except ImportError:  # pragma: no cover - dul.testing always has it today
        one = st.sampled_from(
            [encode(ReleaseRequest()), encode(ReleaseResponse()), encode(Abort())]
        )
    else:
        one = pdus().map(encode)
    return st.lists(one, min_size=1, max_size=max_pdus).map(b"".join)


def mutated_streams(
    streams: Sequence[bytes] | st.SearchStrategy[bytes], max_mutations: int = 4
) -> st.SearchStrategy[bytes]:
    """One of ``streams`` (or a stream drawn from the strategy), with 0 to ``max_mutations``
    mutations; splices take PDUs from a second stream drawn the same way.
    """
    from hypothesis import strategies as st

    source = streams if isinstance(streams, st.SearchStrategy) else st.sampled_from(streams)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data, other = draw(source), draw(source)

        def pick(lo: int, hi: int) -> int:
            return draw(st.integers(lo, hi))

        for _ in range(draw(st.integers(0, max_mutations))):
            data = mutate(data, pick, other)
        return data

    return build()


class Chunks(list[bytes]):
    """Chunks of a stream, with a repr short enough for a failure report: the hex of the stream
    when it is small, else its size and digest."""

    def __repr__(self) -> str:
        data = b"".join(self)
        sizes = [len(c) for c in self]
        if len(data) <= 512 and len(self) <= 32:
            return f"Chunks(sizes={sizes}, hex={data.hex()!r})"
        digest = hashlib.sha1(data).hexdigest()[:12]
        head = data[:32].hex()
        return f"Chunks({len(self)} chunks, {len(data)} bytes, sha1 {digest}..., head {head})"


def chunked(data: st.SearchStrategy[bytes], max_chunks: int = 16) -> st.SearchStrategy[Chunks]:
    """Bytes from ``data`` cut into chunks: whole, bytewise (up to 4 KB) or at drawn points."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: st.DrawFn) -> Chunks:
        raw = draw(data)
        return Chunks(chunk(raw, lambda lo, hi: draw(st.integers(lo, hi)), max_chunks))

    return build()


# -- connections in every state ---------------------------------------------------------------


def default_request(contexts: Iterable[tuple[int, str, tuple[str, ...]]] = ()) -> AssociateRequest:
    """An A-ASSOCIATE-RQ like the captured ones: Verification on context 1, CT storage on 41
    (where DCMTK's storescu sends it), MR storage on 3; or the ``(id, abstract, transfers)`` given.
    """
    wanted = tuple(contexts) or (
        (1, VERIFICATION, (IMPLICIT_LE,)),
        (3, "1.2.840.10008.5.1.4.1.1.4", (EXPLICIT_LE,)),
        (41, CT_IMAGE_STORAGE, (EXPLICIT_LE, IMPLICIT_LE)),
    )
    return AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        presentation_contexts=tuple(
            PresentationContext(context_id=i, abstract_syntax=a, transfer_syntaxes=t)
            for i, a, t in wanted
        ),
        user_information=UserInformation(maximum_length=16384),
    )


def default_accept(request: AssociateRequest) -> AssociateAccept:
    """Accept every proposed context with its first transfer syntax."""
    return request.accept(
        tuple(
            PresentationContextAC(
                context_id=c.context_id,
                result=ContextResult.ACCEPTANCE,
                transfer_syntax=c.transfer_syntaxes[0],
            )
            for c in request.presentation_contexts
        ),
        UserInformation(maximum_length=16384),
    )


@frozen
class Scenario:
    """A connection of ``role`` brought to ``state``: what :func:`connection_in` builds.

    ``via`` tells apart the ways into Sta13: ``"reject"`` (an acceptor that sent
    A-ASSOCIATE-RJ), ``"release"`` (an acceptor that sent A-RELEASE-RP), ``"abort"``.
    """

    role: Role
    state: State
    via: str = ""

    def __str__(self) -> str:
        via = f" via {self.via}" if self.via else ""
        return f"{self.role.value} in {self.state.label}{via}"


_R, _A = Role.REQUESTOR, Role.ACCEPTOR

#: Every (role, state) in which a connection can receive bytes, as :class:`Scenario` values for
#: :func:`connection_in`. Sta1 and Sta4 cannot: a requestor has no transport before
#: ``send(AssociateRequest)``, which covers Evt1 and Evt2 at once.
RECEIVING_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(_A, State(2)),
    Scenario(_A, State(3)),
    Scenario(_R, State(5)),
    Scenario(_R, State(6)),
    Scenario(_A, State(6)),
    Scenario(_R, State(7)),
    Scenario(_A, State(7)),
    Scenario(_R, State(8)),
    Scenario(_A, State(8)),
    Scenario(_R, State(9)),
    Scenario(_A, State(10)),
    Scenario(_R, State(11)),
    Scenario(_A, State(12)),
    Scenario(_A, State(13), "reject"),
    Scenario(_A, State(13), "release"),
    Scenario(_R, State(13), "abort"),
    Scenario(_A, State(13), "abort"),
)


def _deliver(data: bytes, conn: Connection) -> None:
    conn.receive_data(data)
    while conn.next_event() is not NEED_DATA:
        pass


def connection_in(
    scenario: Scenario,
    request: AssociateRequest | None = None,
    accept: AssociateAccept | None = None,
    **limits: int,
) -> Connection:
    """A connection of ``scenario.role`` in ``scenario.state``, reached through the public API.

    ``request`` and ``accept`` default to :func:`default_request` and :func:`default_accept`.
    ``limits`` (``pdu_length_limit``, ``associate_length_limit``) go to the connection returned.
    """
    role, target, via = scenario.role, scenario.state, scenario.via
    request = request or default_request()
    accept = accept or default_accept(request)
    requestor = Connection(_R, **(limits if role is _R else {}))
    acceptor = Connection(_A, **(limits if role is _A else {}))
    conn = requestor if role is _R else acceptor
    if target is State(2):
        return acceptor
    rq = requestor.send(request)
    if role is _R and target is State(5):
        return requestor
    _deliver(rq, acceptor)
    if target is State(3):
        return acceptor
    if via == "reject":
        acceptor.send(request.reject())
        return acceptor
    _deliver(acceptor.send(accept), requestor)
    if target is State(6):
        return conn
    if via == "abort":
        conn.send(Abort())
        return conn
    if target in (State(7), State(8)):
        sender = conn if target is State(7) else (acceptor if role is _R else requestor)
        data = sender.send(ReleaseRequest())
        if target is State(8):
            _deliver(data, conn)
        return conn
    if via == "release":  # the acceptor answers the requestor's release: AR-4, Sta13
        _deliver(requestor.send(ReleaseRequest()), acceptor)
        acceptor.send(ReleaseResponse())
        return acceptor
    # Release collision: both sides send A-RELEASE-RQ (PS3.8 §9.2.2, Sta9-Sta12).
    from_requestor = requestor.send(ReleaseRequest())
    from_acceptor = acceptor.send(ReleaseRequest())
    _deliver(from_acceptor, requestor)  # requestor: AR-8, Sta9
    _deliver(from_requestor, acceptor)  # acceptor: AR-8, Sta10
    if target in (State(9), State(10)):
        return conn
    rp = requestor.send(ReleaseResponse())  # requestor: AR-9, Sta11
    if target is State(11):
        return requestor
    _deliver(rp, acceptor)  # acceptor: AR-10, Sta12
    if conn.state is not target:  # pragma: no cover - RECEIVING_SCENARIOS are all reachable
        raise ValueError(f"cannot reach {scenario}")
    return conn


# -- feeding hostile bytes, with the invariants checked --------------------------------------


class InvariantError(AssertionError):
    """A connection broke one of dul's promises about received bytes (docs/security.md):
    something other than :class:`~dul.RemoteProtocolError` escaped, a reply dul queued is not a
    valid A-ABORT or A-ASSOCIATE-RJ, the state left PS3.8 Table 9-10, or memory outgrew the caps.

    An ``AssertionError``, so that pytest and hypothesis report it as a failed check.
    """


def _successors() -> dict[State, frozenset[State]]:
    """The states each state may reach on received inputs (and Evt18), by Table 9-10."""
    received = (
        Input.EVT3,
        Input.EVT4,
        Input.EVT6,
        Input.EVT10,
        Input.EVT12,
        Input.EVT13,
        Input.EVT16,
        Input.EVT17,
        Input.EVT18,
        Input.EVT19,
    )
    step: dict[State, set[State]] = {s: set() for s in State}
    for event_input in received:
        for state, action in TRANSITIONS[event_input].items():
            step[state].update(NEXT_STATES[action])
    closure: dict[State, frozenset[State]] = {}
    for state in State:
        seen, todo = {state}, [state]
        while todo:
            for nxt in step[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[state] = frozenset(seen)
    return closure


_REACHABLE = _successors()
_PROVIDER_REASONS = frozenset((0, 1, 2, 4, 5, 6))


@define
class Outcome:
    """What a connection did with the bytes :func:`feed` gave it.

    ``events``: what ``next_event()`` returned, in order (``NEED_DATA`` left out); ``errors``:
    the :class:`~dul.RemoteProtocolError` raised (one at most, the association then ends);
    ``replies``: the PDUs ``data_to_send()`` asked to write, decoded; ``sent``: what ``respond``
    sent with ``send()``; ``peak_buffer``: the most bytes the receive buffer held.
    """

    events: list[Event] = field(factory=list)
    errors: list[RemoteProtocolError] = field(factory=list)
    replies: list[Event] = field(factory=list)
    sent: list[Event] = field(factory=list)
    peak_buffer: int = 0


def _check_replies(conn: Connection, outcome: Outcome, closed: bool = False) -> None:
    """What ``data_to_send()`` holds must be valid A-ABORTs or A-ASSOCIATE-RJs; nothing at all
    once the connection has closed, and only provider A-ABORTs (AA-7) after a protocol error.
    """
    data = conn.data_to_send()
    if not data:
        return
    if closed:
        raise InvariantError(f"{len(data)} bytes to send after ConnectionClosed")
    try:
        replies = decode(data)
    except ProtocolError as exc:
        raise InvariantError(f"data_to_send() does not decode: {exc}: {data.hex()}") from exc
    if outcome.errors:
        for reply in replies:
            if not (isinstance(reply, Abort) and reply.source == AbortSource.SERVICE_PROVIDER):
                raise InvariantError(f"{reply} sent after a protocol error")
    for reply in replies:
        if isinstance(reply, Abort):
            if reply.source not in (AbortSource.SERVICE_USER, AbortSource.SERVICE_PROVIDER):
                raise InvariantError(f"A-ABORT with source {reply.source}")
            if reply.source == AbortSource.SERVICE_PROVIDER and reply.reason not in (
                _PROVIDER_REASONS
            ):
                raise InvariantError(f"provider A-ABORT with reason {reply.reason}")
            if reply.source == AbortSource.SERVICE_USER and reply.reason != 0:
                raise InvariantError(f"AA-1's A-ABORT has reason {reply.reason}, not 0")
        elif isinstance(reply, AssociateReject):
            if reply.result not in (1, 2) or reply.source not in (1, 2, 3):
                raise InvariantError(f"invalid A-ASSOCIATE-RJ {reply}")
        else:
            raise InvariantError(f"data_to_send() holds a {type(reply).__name__}")
    outcome.replies.extend(replies)


def _respond(conn: Connection, event: Event, outcome: Outcome) -> None:
    """Answer as an application would at once: the negotiation helper's verdict on a request,
    an A-RELEASE-RP to a release request. A LocalProtocolError here means received bytes made
    a helper build something dul refuses to send.
    """
    state = conn.state
    if isinstance(event, AssociateRequest) and state is State(3):
        from .dimse import AcceptorPolicy

        policy = AcceptorPolicy(
            contexts={VERIFICATION: (), CT_IMAGE_STORAGE: (), "1.2.840.10008.5.1.4.1.1.4": ()}
        )
        answer = policy.evaluate(event)
        conn.send(answer)
        outcome.sent.append(answer)
    elif state in TRANSITIONS[Input.EVT14] and state is not State(12):
        conn.send(ReleaseResponse())
        outcome.sent.append(ReleaseResponse())


def _check_state(before: State, conn: Connection, what: str) -> None:
    after = conn.state
    if not isinstance(after, State):
        raise InvariantError(f"state {after!r} is not a dul.State")
    if after not in _REACHABLE[before]:
        raise InvariantError(f"{what} moved {before.label} to {after.label}: not in Table 9-10")
    if conn.artim_running and after not in (State(2), State(13)):
        raise InvariantError(f"ARTIM runs in {after.label}")


def _drain(conn: Connection, outcome: Outcome, respond: bool, budget: int) -> bool:
    """Read events until NEED_DATA; True once the connection has closed."""
    for _ in range(budget):
        before = conn.state
        try:
            event = conn.next_event()
        except RemoteProtocolError as exc:
            if outcome.errors:
                raise InvariantError(f"a second protocol error: {exc}") from exc
            if conn.state is not State(13):
                raise InvariantError(
                    f"after a protocol error, state is {conn.state.label}"
                ) from exc
            if not isinstance(exc.reply, (Abort, AssociateReject)):
                raise InvariantError(f"RemoteProtocolError.reply is {exc.reply!r}") from exc
            _check_replies(conn, outcome)
            outcome.errors.append(exc)
            if not outcome.replies or outcome.replies[-1] != exc.reply:
                raise InvariantError(f"the reply {exc.reply} was not queued") from exc
            continue
        _check_state(before, conn, "next_event()")
        _check_replies(conn, outcome)
        if event is NEED_DATA:
            return False
        outcome.events.append(event)
        if isinstance(event, ConnectionClosed):
            if conn.state is not State(1) or not conn.must_close or conn.artim_running:
                raise InvariantError(f"closed, yet in {conn.state.label}")
            if conn.next_event() != event:
                raise InvariantError("next_event() after ConnectionClosed changed its mind")
            _check_replies(conn, outcome, True)
            return True
        if isinstance(event, PDataReceived):
            for value in event.values:
                if value.context_id not in conn.accepted_contexts:
                    raise InvariantError(f"a PDV on context {value.context_id} was delivered")
        if respond:
            _respond(conn, event, outcome)
            _check_replies(conn, outcome)
    raise InvariantError(f"next_event() gave more than {budget} events")


def _check_allocated(conn: Connection) -> None:
    """A large PDU assembled in place is allocated at its declared length only when small
    (``_PREALLOCATE``) or once an eighth of it has arrived: never on the header alone."""
    body = conn._buffer._body
    if body is not None and len(body) > max(_PREALLOCATE, 8 * len(conn._buffer)):
        raise InvariantError(f"{len(body)} bytes allocated for {len(conn._buffer)} received")


def feed(
    conn: Connection,
    chunks: Iterable[bytes],
    *,
    close: bool = False,
    artim: bool = False,
    respond: bool = False,
) -> Outcome:
    """Feed ``chunks`` to ``conn`` as a driver does, checking dul's promises after each call.

    After each chunk, events are read until ``NEED_DATA``. ``close`` ends with ``receive_data(b"")``
    (Evt17), ``artim`` then calls ``artim_expired()``; ``respond`` answers as an application
    does at once: an A-ASSOCIATE-RQ with :class:`dul.dimse.AcceptorPolicy`'s verdict (accepting
    Verification, CT and MR Image Storage), an A-RELEASE-RQ with A-RELEASE-RP. Returns what
    happened (:class:`Outcome`). Raises :class:`InvariantError` on a broken promise; any
    exception but :class:`~dul.RemoteProtocolError` from the connection propagates as it is.
    """
    outcome = Outcome()
    fed = 0
    cap = max(conn.pdu_length_limit, conn.associate_length_limit) + 6
    budget = 16
    closed = False
    pieces = [*chunks, b""] if close else list(chunks)
    for piece in pieces:
        budget += len(piece) // 6 + 2
        fed += len(piece)
        conn.receive_data(piece)
        held = len(conn._buffer)
        outcome.peak_buffer = max(outcome.peak_buffer, held)
        if held > cap + len(piece):
            raise InvariantError(f"the receive buffer holds {held} bytes, cap {cap} + {len(piece)}")
        if _drain(conn, outcome, respond, budget):
            closed = True
            break
        if len(conn._buffer) > cap:
            raise InvariantError(f"{len(conn._buffer)} bytes held after NEED_DATA, cap {cap}")
        _check_allocated(conn)
    if artim and not closed:
        before = conn.state
        conn.artim_expired()
        _check_state(before, conn, "artim_expired()")
        _drain(conn, outcome, respond, budget)
    # One reply for the fault that ends the association, then one A-ABORT (AA-7) per
    # A-ASSOCIATE-RQ (74 bytes at least) or invalid PDU in Sta13: never a burst.
    if len(outcome.replies) > 2 + fed // 74:
        raise InvariantError(f"{len(outcome.replies)} replies to {fed} bytes")
    return outcome
