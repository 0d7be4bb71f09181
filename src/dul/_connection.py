"""The Connection: PS3.8 §9.2's state machine between a byte stream and events.

Transport events map to calls (the driver owns the socket and the clock):

* transport connect (Evt1 + Evt2): a requestor's ``send(AssociateRequest)``, made once the
  transport is open; an acceptor starts with Evt5 already applied (Sta2, ARTIM running);
* data received: ``receive_data(chunk)``, then ``next_event()`` until ``NEED_DATA``;
* transport closed (Evt17): ``receive_data(b"")``;
* ARTIM expired (Evt18): ``artim_expired()``.

After every call, write ``data_to_send()``; once ``must_close`` is true, write it and close.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import Literal, NoReturn

from attrs import frozen

from ._buffer import ReceiveBuffer
from ._codes import AbortReason, AbortSource, ContextResult, PDUType, RejectReasonACSE, RejectSource
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    CloseCause,
    ConnectionClosed,
    Event,
    PData,
    PDataReceived,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
)
from ._pdu import check_pdata, decode_pdu, encode, pdata_header
from ._state import NEXT_STATES, TRANSITIONS, Action, Input, State

__all__ = ["NEED_DATA", "AcceptedContext", "Connection", "Role", "Sentinel"]

#: When the peer announced 0 (no limit), ``send_data`` still cuts fragments at this size.
UNLIMITED_FRAGMENT = 1 << 20
#: What ``send_data`` assumes when the peer announced no maximum length sub-item at all.
MISSING_MAXIMUM_LENGTH = 16_384
#: The default cap on any PDU received, whatever was announced (bytes after the header).
DEFAULT_PDU_LENGTH_LIMIT = 16 << 20
#: The default cap on a received A-ASSOCIATE-RQ/AC (128 contexts come to about 130 KB).
DEFAULT_ASSOCIATE_LENGTH_LIMIT = 1 << 20


class Role(enum.Enum):
    """Which end of the association this connection is."""

    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


class Sentinel(enum.Enum):
    """Markers returned instead of an event."""

    #: ``next_event()`` needs more bytes (or the transport closing) before it can say more.
    NEED_DATA = "NEED_DATA"


NEED_DATA = Sentinel.NEED_DATA


@frozen(kw_only=True)
class AcceptedContext:
    """A presentation context of the established association."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str


_RECEIVED_INPUT: dict[type, Input] = {
    AssociateAccept: Input.EVT3,
    AssociateReject: Input.EVT4,
    AssociateRequest: Input.EVT6,
    PDataReceived: Input.EVT10,
    ReleaseRequest: Input.EVT12,
    ReleaseResponse: Input.EVT13,
    Abort: Input.EVT16,
}
_SENT_INPUT: dict[type, Input] = {
    AssociateRequest: Input.EVT1,
    AssociateAccept: Input.EVT7,
    AssociateReject: Input.EVT8,
    PData: Input.EVT9,
    ReleaseRequest: Input.EVT11,
    ReleaseResponse: Input.EVT14,
    Abort: Input.EVT15,
}
#: Where a received P-DATA-TF is delivered (DT-2, AR-6); elsewhere it is only validated.
_DELIVERS_PDATA = frozenset((State.ESTABLISHED, State.AWAITING_RELEASE_RP))
_PDU_NAMES: dict[type, str] = {
    AssociateRequest: "A-ASSOCIATE-RQ",
    AssociateAccept: "A-ASSOCIATE-AC",
    AssociateReject: "A-ASSOCIATE-RJ",
    PDataReceived: "P-DATA-TF",
    ReleaseRequest: "A-RELEASE-RQ",
    ReleaseResponse: "A-RELEASE-RP",
    Abort: "A-ABORT",
}


class Connection:
    """One DICOM association's upper-layer state machine, without I/O.

    ``pdu_length_limit`` caps every PDU received (also when we announced 0, "no limit");
    ``associate_length_limit`` caps A-ASSOCIATE-RQ/AC PDUs. Both count the bytes after the
    6-byte header.
    """

    def __init__(
        self,
        role: Role,
        *,
        pdu_length_limit: int = DEFAULT_PDU_LENGTH_LIMIT,
        associate_length_limit: int = DEFAULT_ASSOCIATE_LENGTH_LIMIT,
    ) -> None:
        self.role = role
        self.pdu_length_limit = pdu_length_limit
        self.associate_length_limit = associate_length_limit
        self._state = State.IDLE
        self._buffer = ReceiveBuffer()
        self._events: deque[Event] = deque()
        self._outgoing: list[bytes | memoryview] = []
        self._artim_running = False
        self.artim_starts = 0
        self.must_close = False
        self._transport_open = False
        self._eof = False
        self._closed: ConnectionClosed | None = None
        self._framing_lost = False
        self._ending = CloseCause.ABORTED_BY_PROVIDER
        self._sending: tuple[int, bool] | None = None
        self._held = b""  # the tail of a piece send_data() holds back (at most 2 bytes)
        self.request: AssociateRequest | None = None
        self.accept: AssociateAccept | None = None
        self._contexts: dict[int, AcceptedContext] = {}
        self.max_send_length = 0
        self.max_receive_length = 0
        if role is Role.ACCEPTOR:
            self._transport_open = True
            self._apply(Input.EVT5)

    # -- what the driver reads --------------------------------------------------------------

    @property
    def state(self) -> State:
        """The PS3.8 state (``State(n)`` is ``Sta<n>``)."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the connection is over: ``ConnectionClosed`` is the next event, or was.

        Nothing more will happen: ``next_event()`` returns that ``ConnectionClosed`` again on
        every call (as h11 keeps returning its final state), so a loop must stop on it.
        """
        closed = self._closed
        return closed is not None and (not self._events or self._events[0] is closed)

    @property
    def artim_running(self) -> bool:
        """True while PS3.8's ARTIM timer should run. ``artim_starts`` counts (re)starts."""
        return self._artim_running

    @property
    def accepted_contexts(self) -> Mapping[int, AcceptedContext]:
        """The presentation contexts accepted for this association, by context ID."""
        return self._contexts

    def data_to_send(self) -> bytes:
        """Bytes the protocol itself must write (A-ABORTs, the A-ASSOCIATE-RJ of AE-6)."""
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        return out

    # -- bytes in ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer; ``b""`` means the transport closed (Evt17)."""
        if self._eof:
            raise LocalProtocolError("receive_data() called after the transport closed")
        if not self._transport_open:
            raise LocalProtocolError("no transport yet: send the A-ASSOCIATE-RQ first")
        if not data:
            self._eof = True
        elif not (self._framing_lost or self._closed):
            self._buffer.feed(data)

    def artim_expired(self) -> None:
        """The driver's ARTIM timer elapsed (Evt18). A no-op when ARTIM is not running."""
        if self._artim_running:
            self._apply(Input.EVT18)

    def next_event(self) -> Event | Literal[Sentinel.NEED_DATA]:
        """The next event, or ``NEED_DATA``; raises :class:`RemoteProtocolError` on a violation."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed is not None:
                return self._closed
            if self._framing_lost:
                self._buffer.clear()
            elif self._state is State.ESTABLISHED and (
                single := self._buffer.next_single_pdv(self._limit, self._contexts)
            ):
                # DT-2 at its hottest: one PDV on an accepted context, without the general
                # decoder (which frames and checks the same fields) nor the table.
                context_id, control, data = single
                return PDataReceived(
                    values=(
                        PresentationDataValue(
                            context_id=context_id,
                            is_command=bool(control & 1),
                            is_last=bool(control & 2),
                            data=data,
                        ),
                    )
                )
            else:
                try:
                    framed = self._buffer.next_pdu(self._limit, self.associate_length_limit)
                    event: Event | None
                    if framed is None:
                        event = None
                    elif framed[0] != PDUType.P_DATA_TF:
                        event = decode_pdu(*framed)
                    elif self._state is State.ESTABLISHED:
                        # DT-2, the hot path: deliver without a trip through the table.
                        event = decode_pdu(*framed)
                        contexts = self._contexts
                        if all(v.context_id in contexts for v in event.values):  # type: ignore[union-attr]
                            return event
                    elif self._state not in _DELIVERS_PDATA:
                        event = check_pdata(framed[1])  # not delivered here: build no PDVs
                    else:
                        event = decode_pdu(*framed)
                except RemoteProtocolError as exc:
                    self._framing_lost = True
                    self._buffer.clear()
                    self._invalid(exc)
                    continue
                if event is not None:
                    self._received(event)
                    continue
            if self._eof:
                self._apply(Input.EVT17)
                continue
            return NEED_DATA

    @property
    def pdu_length_limit(self) -> int:
        """The cap on any PDU received but A-ASSOCIATE ones, whatever was announced."""
        return self._pdu_length_limit

    @pdu_length_limit.setter
    def pdu_length_limit(self, cap: int) -> None:
        self._pdu_length_limit = cap
        self.max_receive_length = getattr(self, "_max_receive_length", 0)

    @property
    def max_receive_length(self) -> int:
        """The maximum length we announced (0: no limit); ``pdu_length_limit`` caps it anyway."""
        return self._max_receive_length

    @max_receive_length.setter
    def max_receive_length(self, announced: int) -> None:
        self._max_receive_length = announced
        cap = self._pdu_length_limit
        self._limit = min(announced, cap) if announced else cap

    def _received(self, event: Event) -> None:
        """Apply a well-framed, decoded PDU."""
        event_input = _RECEIVED_INPUT[type(event)]
        action = TRANSITIONS[event_input].get(self._state)
        if action is Action.AE_3:
            self._check_accept(event)  # type: ignore[arg-type]
        elif action in (Action.DT_2, Action.AR_6):
            for value in event.values:  # type: ignore[union-attr]
                if value.context_id not in self._contexts:
                    self._invalid(
                        RemoteProtocolError(
                            f"PDV on presentation context {value.context_id}, which was not "
                            "accepted",
                            reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
                        )
                    )
        elif action in (Action.AA_1, Action.AA_8):
            name = _PDU_NAMES[type(event)]
            self._invalid(
                RemoteProtocolError(
                    f"unexpected {name} in {self._state.label}",
                    reason=AbortReason.UNEXPECTED_PDU,
                ),
                event_input,
            )
        self._apply(event_input, event)

    def _check_accept(self, accept: AssociateAccept) -> None:
        """The Connection's part of validating an A-ASSOCIATE-AC: it must answer our request."""
        assert self.request is not None
        proposed = {c.context_id: c for c in self.request.presentation_contexts}
        answered: set[int] = set()
        for context in accept.presentation_contexts:
            ours = proposed.get(context.context_id)
            if ours is None:
                problem = f"answers presentation context {context.context_id}, never proposed"
            elif context.context_id in answered:
                problem = f"answers presentation context {context.context_id} twice"
            elif context.accepted and context.transfer_syntax not in ours.transfer_syntaxes:
                problem = (
                    f"accepts context {context.context_id} with transfer syntax "
                    f"{context.transfer_syntax}, which was not proposed for it"
                )
            else:
                answered.add(context.context_id)
                continue
            self._invalid(
                RemoteProtocolError(
                    f"A-ASSOCIATE-AC {problem}", reason=AbortReason.INVALID_PDU_PARAMETER_VALUE
                )
            )

    def _invalid(self, exc: RemoteProtocolError, event_input: Input = Input.EVT19) -> None:
        """The peer broke the rules: apply Evt19 (or the unexpected PDU's input) and raise.

        Only AA-7 (Sta13, already ending) returns: the A-ABORT is queued, the user is not told.
        """
        action = TRANSITIONS[event_input][self._state]
        if action is Action.AA_1:
            reply = Abort(source=AbortSource.SERVICE_USER, reason=0)
            self._start_artim()
        elif action is Action.AA_8 or action is Action.AA_7:
            reply = Abort(source=AbortSource.SERVICE_PROVIDER, reason=exc.reason)
            if action is Action.AA_8:
                self._start_artim()
        else:  # pragma: no cover - the table gives Evt19 only AA-1, AA-7 and AA-8
            raise AssertionError(action)
        self._outgoing.append(encode(reply))
        if action is Action.AA_7:
            return  # already ending: answer with an A-ABORT, and stay silent to the user
        self._ending = CloseCause.ABORTED_BY_PROVIDER
        self._sending, self._held = None, b""
        self._state = State.AWAITING_TRANSPORT_CLOSE
        exc.reply = reply
        raise exc

    # -- bytes out --------------------------------------------------------------------------

    def send(self, event: Event, *, strict: bool = True) -> bytes:
        """Bytes to write for ``event``; :class:`LocalProtocolError` if the table forbids it.

        ``strict=False`` encodes values the codec would refuse (see :func:`dul.encode`): for a
        proxy forwarding what it received. The state table applies all the same.
        """
        event_input = _SENT_INPUT.get(type(event))
        if event_input is None:
            raise LocalProtocolError(f"{type(event).__name__} is not something to send")
        self._allowed(event_input, type(event).__name__)
        if isinstance(event, AssociateAccept):
            self._check_our_accept(event)
        elif isinstance(event, PData):
            self._check_pdata(event)
        data = encode(event, strict)  # validates before any state changes
        if isinstance(event, PData) and event.values:
            last = event.values[-1]  # a message left open continues where its last PDV stops
            self._sending = None if last.is_last else (last.context_id, last.is_command)
        self._outgoing.append(data)
        self._apply(event_input, event)
        return self.data_to_send()

    def send_data(
        self,
        context_id: int,
        data: bytes | bytearray | memoryview,
        *,
        is_command: bool,
        is_last: bool = True,
    ) -> list[bytes | memoryview]:
        """Fragment one message's command or dataset bytes into P-DATA-TF PDUs.

        Returns the buffers for one gather-write (``sendmsg``/``writelines``). Each PDU holds one
        PDV and fits the peer's maximum length; fragments but the last have an even length, and
        none is empty (PS3.8 Annex E.1).

        A payload too large to hold may be fed in pieces of any length: ``is_last=False`` on all
        but the final piece, which may be empty (an explicit end). So that the fragments stay
        even and the last one is never empty, a piece sent with ``is_last=False`` keeps back its
        last one or two bytes (copied, once), which go out with the next piece.

        The payload is sliced, never copied: the buffers returned are views of ``data``, valid
        while ``data`` is unchanged. Write them before reusing or changing ``data``.
        """
        self._allowed(Input.EVT9, "P-DATA")
        if context_id not in self._contexts:
            raise LocalProtocolError(f"presentation context {context_id} was not accepted")
        if self._sending is not None and self._sending != (context_id, is_command):
            raise LocalProtocolError(
                "a message is already being sent in pieces on another context or stream; "
                "finish it with is_last=True first"
            )
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        size = len(view)
        head = self._held  # bytes kept back from the previous piece of this same stream
        total = len(head) + size
        if is_last and total == 0:
            raise LocalProtocolError("a PDV needs at least one byte of data (PS3.8 Annex E.1)")
        fragment = (self.max_send_length or UNLIMITED_FRAGMENT) - 6
        fragment -= fragment % 2
        if fragment < 2:
            raise LocalProtocolError(
                f"the peer's maximum length {self.max_send_length} is too small"
            )
        if size == 0 and not is_last:
            return []  # nothing to send, nothing to keep
        # Not the end: keep back 1 byte of an odd total (the rest is even), 2 of an even one (so
        # that an empty final piece still has a byte to carry).
        keep = 0 if is_last else 2 - total % 2
        count = total - keep
        command = 1 if is_command else 0
        buffers: list[bytes | memoryview] = []
        body = view[: max(count - len(head), 0)] if keep else view  # what goes out of it
        first = 0  # where in body the plain fragments start
        if head and count:  # the bytes kept back open the first fragment (fragment >= 2)
            n = min(fragment, count)
            last = 2 if is_last and n == count else 0
            buffers.append(pdata_header(n + 6, n + 2, context_id, command | last))
            buffers.append(head)
            first = n - len(head)
            if first:
                buffers.append(body[:first])
        end = len(body)
        for start in range(first, end, fragment):
            chunk = body[start : start + fragment]
            n = len(chunk)
            last = 2 if is_last and start + n == end else 0
            buffers.append(pdata_header(n + 6, n + 2, context_id, command | last))
            buffers.append(chunk)
        # The bytes kept back are copied: the caller may reuse ``data`` once this is written.
        self._held = bytes(view[size - keep :]) if keep <= size else head + bytes(view)
        self._sending = None if is_last else (context_id, is_command)
        if buffers:
            self._apply(Input.EVT9)
        return buffers

    def _allowed(self, event_input: Input, what: str) -> None:
        if self._closed is not None:
            raise LocalProtocolError(f"cannot send {what}: the connection is closed")
        if self._state not in TRANSITIONS[event_input]:
            raise LocalProtocolError(
                f"cannot send {what} in {self._state.label} ({self._state.name.lower()})"
            )

    def _check_our_accept(self, accept: AssociateAccept) -> None:
        assert self.request is not None
        if (accept.called_ae_title, accept.calling_ae_title) != (
            self.request.called_ae_title,
            self.request.calling_ae_title,
        ):
            raise LocalProtocolError("an A-ASSOCIATE-AC must echo the request's AE titles")
        proposed = {c.context_id: c for c in self.request.presentation_contexts}
        answered = [c.context_id for c in accept.presentation_contexts]
        if sorted(answered) != sorted(proposed):
            raise LocalProtocolError(
                "an A-ASSOCIATE-AC must answer each proposed presentation context exactly once "
                f"(proposed {sorted(proposed)}, answered {sorted(answered)})"
            )
        for context in accept.presentation_contexts:
            if context.accepted and (
                context.transfer_syntax not in proposed[context.context_id].transfer_syntaxes
            ):
                raise LocalProtocolError(
                    f"context {context.context_id} accepts transfer syntax "
                    f"{context.transfer_syntax}, which was not proposed for it"
                )

    def _check_pdata(self, pdata: PData) -> None:
        if self._held:
            raise LocalProtocolError(
                "send_data() holds back the end of a piece: finish that message with "
                "send_data(..., is_last=True) first"
            )
        sending = self._sending
        for value in pdata.values:
            if value.context_id not in self._contexts:
                raise LocalProtocolError(
                    f"presentation context {value.context_id} was not accepted"
                )
            if sending is not None and (value.context_id, value.is_command) != sending:
                raise LocalProtocolError(
                    "a message is being sent in pieces: its PDVs must come before another's"
                )
            sending = None if value.is_last else (value.context_id, value.is_command)
        length = sum(len(v.data) + 6 for v in pdata.values)
        if self.max_send_length and length > self.max_send_length:
            raise LocalProtocolError(
                f"P-DATA-TF of {length} bytes exceeds the peer's maximum length "
                f"{self.max_send_length}"
            )

    # -- the table --------------------------------------------------------------------------

    def _start_artim(self) -> None:
        self._artim_running = True
        self.artim_starts += 1

    def _apply(self, event_input: Input, event: Event | None = None) -> None:
        """Run the table's action for ``event_input`` in the current state."""
        action = TRANSITIONS[event_input].get(self._state)
        if action is None:
            _unreachable(event_input, self._state)
        name, target = _DISPATCH[action]
        try:
            getattr(self, name)(event)
        except _Handled:
            return
        if target is not None:  # None: AE-6 and AR-8, whose handlers chose the next state
            self._state = target

    def _finish(self, cause: CloseCause, *events: Event) -> None:
        """The transport is (to be) closed: queue the last events."""
        self._state = State.IDLE
        self._artim_running = False
        self.must_close = True
        self._buffer.clear()
        self._events.extend(events)
        self._closed = ConnectionClosed(cause=cause)
        self._events.append(self._closed)

    # Association establishment (PS3.8 Table 9-6)
    def _ae_1(self, event: AssociateRequest) -> None:
        self._transport_open = True  # the driver connected before calling send()
        self._state = State.AWAITING_TRANSPORT_OPEN
        self._apply(Input.EVT2, event)
        raise _Handled

    def _ae_2(self, event: AssociateRequest) -> None:
        self.request = event
        self.max_receive_length = event.user_information.maximum_length or 0

    def _ae_3(self, event: AssociateAccept) -> None:
        self.accept = event
        self._negotiated(event)
        self._events.append(event)

    def _ae_4(self, event: AssociateReject) -> None:
        self._finish(CloseCause.REJECTED, event)
        raise _Handled

    def _ae_5(self, event: None) -> None:
        self._start_artim()

    def _ae_6(self, event: AssociateRequest) -> None:
        self._artim_running = False
        if event.protocol_version & 1:
            self.request = event
            self._state = State.AWAITING_LOCAL_ASSOCIATE_RESPONSE
            self._events.append(event)
            return
        reply = AssociateReject(
            result=1,
            source=RejectSource.SERVICE_PROVIDER_ACSE,
            reason=RejectReasonACSE.PROTOCOL_VERSION_NOT_SUPPORTED,
        )
        self._outgoing.append(encode(reply))
        self._start_artim()
        self._state = State.AWAITING_TRANSPORT_CLOSE
        self._ending = CloseCause.REJECTED
        raise RemoteProtocolError(
            f"A-ASSOCIATE-RQ protocol version {event.protocol_version:#06x} lacks bit 0",
            reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
            offset=6,
            reply=reply,
        )

    def _ae_7(self, event: AssociateAccept) -> None:
        self.accept = event
        self.max_receive_length = event.user_information.maximum_length or 0
        self._negotiated(event)

    def _ae_8(self, event: AssociateReject) -> None:
        self._start_artim()
        self._ending = CloseCause.REJECTED

    def _negotiated(self, accept: AssociateAccept) -> None:
        assert self.request is not None
        abstract = {c.context_id: c.abstract_syntax for c in self.request.presentation_contexts}
        self._contexts = {
            c.context_id: AcceptedContext(
                context_id=c.context_id,
                abstract_syntax=abstract[c.context_id],
                transfer_syntax=c.transfer_syntax,
            )
            for c in accept.presentation_contexts
            if c.result == ContextResult.ACCEPTANCE
        }
        info = (
            self.request.user_information if self.role is Role.ACCEPTOR else accept.user_information
        )
        # The sub-item is mandatory (PS3.8 Annex D.1); a peer that omits it gets fragments of
        # DCMTK's default size rather than "no limit".
        maximum = info.maximum_length
        self.max_send_length = MISSING_MAXIMUM_LENGTH if maximum is None else maximum

    # Data transfer (Table 9-7) and P-DATA during release (Table 9-8)
    def _dt_1(self, event: PData | None) -> None:
        pass

    def _dt_2(self, event: PDataReceived) -> None:
        self._events.append(event)

    _ar_7 = _dt_1
    _ar_6 = _dt_2

    # Association release (Table 9-8)
    def _ar_1(self, event: ReleaseRequest) -> None:
        pass

    def _ar_2(self, event: ReleaseRequest) -> None:
        self._events.append(event)

    def _ar_3(self, event: ReleaseResponse) -> None:
        self._finish(CloseCause.RELEASED, event)
        raise _Handled

    def _ar_4(self, event: ReleaseResponse) -> None:
        self._start_artim()
        self._ending = CloseCause.RELEASED

    def _ar_5(self, event: None) -> None:
        self._finish(self._ending)
        raise _Handled

    def _ar_8(self, event: ReleaseRequest) -> None:
        self._events.append(event)
        if self.role is Role.REQUESTOR:
            self._state = State.COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE
        else:
            self._state = State.COLLISION_ACCEPTOR_AWAITING_RELEASE_RP

    def _ar_9(self, event: ReleaseResponse) -> None:
        pass

    def _ar_10(self, event: ReleaseResponse) -> None:
        self._events.append(event)

    # Association abort (Table 9-9)
    def _aa_1(self, event: Abort) -> None:
        self._start_artim()
        self._ending = CloseCause.ABORTED_LOCALLY
        self._sending, self._held = None, b""

    def _aa_2(self, event: Abort | None) -> None:
        if self._state is State.AWAITING_TRANSPORT_CLOSE:
            cause = self._ending
        elif isinstance(event, Abort):
            cause = CloseCause.ABORTED_BY_PEER
        else:
            cause = CloseCause.ARTIM_EXPIRED
        self._finish(cause)
        raise _Handled

    def _aa_3(self, event: Abort) -> None:
        self._finish(CloseCause.ABORTED_BY_PEER, event)
        raise _Handled

    def _aa_4(self, event: None) -> None:
        self._finish(CloseCause.ABORTED_BY_PROVIDER)
        raise _Handled

    def _aa_5(self, event: None) -> None:
        self._finish(CloseCause.ABORTED_BY_PROVIDER)
        raise _Handled

    def _aa_6(self, event: Event) -> None:
        pass

    def _aa_7(self, event: Event) -> None:  # an A-ASSOCIATE-RQ in Sta13
        self._outgoing.append(
            encode(Abort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNEXPECTED_PDU))
        )

    def _aa_8(self, event: Event) -> None:  # pragma: no cover - _invalid() handles AA-8
        raise AssertionError("AA-8 is applied by _invalid()")


#: Each action's handler method and its one next state (None where the handler chooses).
_DISPATCH: dict[Action, tuple[str, State | None]] = {
    action: ("_" + action.name.lower(), targets[0] if len(targets) == 1 else None)
    for action, targets in NEXT_STATES.items()
}


class _Handled(Exception):
    """Raised by an action that has set the next state itself (or ended the connection)."""


def _unreachable(event_input: Input, state: State) -> NoReturn:
    raise LocalProtocolError(f"{event_input.label} is not allowed in {state.label}")
