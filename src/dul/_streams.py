"""Whole association streams for fuzzing a live peer, and DIMSE messages as P-DATA-TF bytes.

An :class:`AssociationPlan` is what a requestor means to do: an A-ASSOCIATE-RQ, then DIMSE
requests (C-ECHO, C-STORE with a small data set, ...) on proposed contexts, then A-RELEASE-RQ.
Its bytes depend on the acceptor's answer (which contexts, which transfer syntax, which maximum
length), so a plan gives them two ways:

* :meth:`AssociationPlan.stream` writes them all in advance, for an answer given or assumed
  (every context accepted in its first transfer syntax): one buffer to send at once.
* :class:`ScriptedRequestor` plays the plan against a real answer, sans-I/O: feed it what the
  peer sent, write what it returns. It waits for each response before the next request.

hypothesis is not needed here: ``dul.testing`` draws the plans.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterable, Mapping

from attrs import frozen

from ._codes import ContextResult
from ._connection import NEED_DATA, Connection, Role
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    AssociateAccept,
    AssociateRequest,
    CloseCause,
    ConnectionClosed,
    Event,
    PresentationContext,
    PresentationContextAC,
    ReleaseRequest,
    UserInformation,
)
from ._pdu import encode
from .dimse import (
    DatasetChunk,
    Message,
    MessageIncomplete,
    MessageReceived,
    Request,
    Response,
    Session,
    encode_message,
)

__all__ = [
    "DEFLATED_EXPLICIT_LE",
    "EXPLICIT_BE",
    "EXPLICIT_LE",
    "IMPLICIT_LE",
    "AssociationPlan",
    "DataElement",
    "PlannedMessage",
    "ScriptedRequestor",
    "encode_dataset",
    "message_pdata",
]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

#: The maximum length :meth:`AssociationPlan.stream` assumes when no answer is given: DCMTK's
#: and pynetdicom's default (PS3.8 Annex D.1 counts the P-DATA-TF variable field).
ASSUMED_MAXIMUM_LENGTH = 16384

# Explicit VRs whose length field is 4 bytes after 2 reserved ones (PS3.5 §7.1.2).
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_NUMBER_FORMATS = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "FL": "f", "FD": "d"}


@frozen
class DataElement:
    """One element of a small data set: ``tag`` as ``0xGGGGEEEE``, its VR, and its value.

    ``value`` is ``str`` for the text VRs (padded to even length on encoding: UI with a NUL,
    others with a space, PS3.5 §6.2), ``int``/``float`` for US, UL, SS, SL, FL, FD, and
    ``bytes`` for OB and UN. Sequences are not supported: the data sets stay flat.
    """

    tag: int
    vr: str
    value: str | int | float | bytes


def _element_value(element: DataElement, order: str) -> bytes:
    value = element.value
    if isinstance(value, str):
        raw = value.encode("latin-1")
        return raw + (b"\0" if element.vr == "UI" else b" ") * (len(raw) % 2)
    if isinstance(value, bytes):
        return value + b"\0" * (len(value) % 2)
    fmt = _NUMBER_FORMATS.get(element.vr)
    if fmt is None:
        raise ValueError(f"a number is no value for VR {element.vr}")
    return struct.pack(order + fmt, value)


def encode_dataset(elements: Iterable[DataElement], transfer_syntax: str) -> bytes:
    """Encode ``elements`` in ascending tag order (PS3.5 §7.1) for ``transfer_syntax``.

    Implicit VR Little Endian, Explicit VR Big Endian and Deflated Explicit VR Little Endian get
    their own encodings (PS3.5 Annex A.1-A.3, A.5); every other syntax, the encapsulated ones
    included, encodes a data set without pixel data as Explicit VR Little Endian (A.4).
    """
    implicit = transfer_syntax == IMPLICIT_LE
    order = ">" if transfer_syntax == EXPLICIT_BE else "<"
    parts = []
    for element in sorted(elements, key=lambda e: e.tag):
        group, number = element.tag >> 16, element.tag & 0xFFFF
        value = _element_value(element, order)
        if implicit:
            parts.append(struct.pack("<HHL", group, number, len(value)))
        elif element.vr in _LONG_VRS:
            parts.append(
                struct.pack(f"{order}HH2s2xL", group, number, element.vr.encode(), len(value))
            )
        else:
            parts.append(
                struct.pack(f"{order}HH2sH", group, number, element.vr.encode(), len(value))
            )
        parts.append(value)
    data = b"".join(parts)
    if transfer_syntax == DEFLATED_EXPLICIT_LE:
        squeeze = zlib.compressobj(wbits=-15)  # raw deflate, no zlib header (PS3.5 A.5)
        data = squeeze.compress(data) + squeeze.flush()
        data += b"\0" * (len(data) % 2)
    return data


def _negotiated(request: AssociateRequest, accept: AssociateAccept) -> Connection:
    """A requestor Connection that sent ``request`` and received ``accept``: in Sta6."""
    conn = Connection(Role.REQUESTOR)
    conn.send(request)
    conn.receive_data(encode(accept, strict=False))
    event = conn.next_event()
    if not isinstance(event, AssociateAccept):  # pragma: no cover - a RemoteProtocolError first
        raise ValueError(f"the answer is a {type(event).__name__}")
    return conn


def _accept_all(request: AssociateRequest, maximum_length: int) -> AssociateAccept:
    """Every proposed context accepted in its first transfer syntax."""
    return request.accept(
        tuple(
            PresentationContextAC(
                context_id=c.context_id,
                result=ContextResult.ACCEPTANCE,
                transfer_syntax=c.transfer_syntaxes[0],
            )
            for c in request.presentation_contexts
        ),
        UserInformation(maximum_length=maximum_length),
    )


def message_pdata(
    message: Message,
    dataset: bytes | None = None,
    *,
    context_id: int = 1,
    max_length: int = ASSUMED_MAXIMUM_LENGTH,
) -> bytes:
    """The P-DATA-TF PDUs that carry ``message`` (and ``dataset``, when given) on
    ``context_id``, fragmented for a peer whose maximum length is ``max_length`` (0: none).

    No association is needed: the PDUs are what :meth:`dul.Connection.send_data` (dul's one
    fragmenter) writes once such a context is negotiated: one PDV per PDU, command first, even
    fragments (PS3.8 Annex E). ``encode_message`` validates the command set: a data set must be
    given exactly when the message's class requires one or may have one.
    """
    command = encode_message(message, dataset is not None)
    request = AssociateRequest(
        called_ae_title="ANY",
        calling_ae_title="ANY",
        presentation_contexts=(
            PresentationContext(
                context_id=context_id, abstract_syntax="1.2", transfer_syntaxes=(IMPLICIT_LE,)
            ),
        ),
    )
    conn = _negotiated(request, _accept_all(request, max_length))
    buffers = conn.send_data(context_id, command, is_command=True)
    if dataset is not None:
        buffers += conn.send_data(context_id, dataset, is_command=False)
    return b"".join(buffers)


@frozen
class PlannedMessage:
    """One DIMSE request of a plan, sent on ``context_id``.

    ``dataset`` is the data set's elements, encoded when the transfer syntax is known (the one
    its context was accepted with), or None for a message without a data set.
    """

    context_id: int
    message: Request
    dataset: tuple[DataElement, ...] | None = None

    def encoded_dataset(self, transfer_syntax: str) -> bytes | None:
        """The data set's bytes in ``transfer_syntax``, or None."""
        return None if self.dataset is None else encode_dataset(self.dataset, transfer_syntax)


@frozen
class AssociationPlan:
    """What a requestor means to do in one association: ``request``, then ``messages`` in
    order (each on a context of the request), then A-RELEASE-RQ.

    Draw plans with ``dul.testing.association_plans()``, or build them by hand.
    """

    request: AssociateRequest
    messages: tuple[PlannedMessage, ...] = ()

    def __attrs_post_init__(self) -> None:
        proposed = {c.context_id for c in self.request.presentation_contexts}
        for planned in self.messages:
            if planned.context_id not in proposed:
                raise ValueError(f"a message on context {planned.context_id}, never proposed")

    def stream(
        self,
        accept: AssociateAccept | None = None,
        *,
        max_length: int = ASSUMED_MAXIMUM_LENGTH,
    ) -> bytes:
        """Every byte the requestor writes, at once: the A-ASSOCIATE-RQ, each message whose
        context ``accept`` accepted (its data set in the accepted transfer syntax, fragmented to
        ``accept``'s maximum length), then A-RELEASE-RQ.

        Without ``accept``, every context is taken as accepted in its first transfer syntax, and
        the peer's maximum length as ``max_length``. Propose one transfer syntax per context
        (and SOP classes the peer supports), and the stream fits every such acceptor. The
        requests go without waiting for responses: a peer reading one message at a time cannot
        tell, but it is more than the default asynchronous operations window of one (PS3.7
        D.3.3.3) allows; :class:`ScriptedRequestor` waits.
        """
        answer = accept if accept is not None else _accept_all(self.request, max_length)
        conn = _negotiated(self.request, answer)
        parts: list[bytes | memoryview] = [encode(self.request)]
        for planned in self.messages:
            context = conn.accepted_contexts.get(planned.context_id)
            if context is None:
                continue
            dataset = planned.encoded_dataset(context.transfer_syntax)
            command = encode_message(planned.message, dataset is not None)
            parts += conn.send_data(planned.context_id, command, is_command=True)
            if dataset is not None:
                parts += conn.send_data(planned.context_id, dataset, is_command=False)
        parts.append(conn.send(ReleaseRequest()))
        return b"".join(parts)

    def requestor(self) -> ScriptedRequestor:
        """A :class:`ScriptedRequestor` that plays this plan."""
        return ScriptedRequestor(self)


class ScriptedRequestor:
    """Plays an :class:`AssociationPlan` against a real acceptor, without I/O.

    Write :meth:`start`'s bytes, then feed every chunk the peer sends to :meth:`receive_data`
    (``b""`` when it closed) and write what it returns, until :attr:`done`. Messages go only on
    the contexts the peer accepted, their data sets in the accepted transfer syntax and
    fragmented to the peer's maximum length; each request waits for its final response; after
    the last one, A-RELEASE-RQ. A peer's A-RELEASE-RQ is answered. The bytes returned may be
    mutated before they are written (``dul.testing.mutate_layer``): the requestor keeps
    following its plan, and stops at the first protocol error in what comes back.
    """

    def __init__(self, plan: AssociationPlan) -> None:
        self.plan = plan
        #: The DIMSE session underneath; ``session.connection`` is the dul.Connection.
        self.session = Session(Connection(Role.REQUESTOR))
        #: Every event received: A-ASSOCIATE-AC/-RJ, DIMSE messages, release, abort, close.
        self.events: list[Event | MessageReceived | DatasetChunk | MessageIncomplete] = []
        #: The final response to each request sent, in order.
        self.responses: list[Response] = []
        #: The peer's protocol error that ended the association, if one did.
        self.error: RemoteProtocolError | None = None
        self._queue: deque[PlannedMessage] = deque()
        self._released = False
        self._started = False

    @property
    def accepted(self) -> Mapping[int, str]:
        """The transfer syntax of each accepted context, by ID (empty before the answer)."""
        return {i: c.transfer_syntax for i, c in self.session.connection.accepted_contexts.items()}

    @property
    def closed(self) -> ConnectionClosed | None:
        """The :class:`~dul.ConnectionClosed` event, once the connection is over."""
        last = self.events[-1] if self.events else None
        return last if isinstance(last, ConnectionClosed) else None

    @property
    def done(self) -> bool:
        """True when nothing more will be sent: closed, or ended by a protocol error."""
        return self.closed is not None or self.error is not None

    @property
    def released(self) -> bool:
        """True when the association ended in an orderly release (A-RELEASE-RP received)."""
        closed = self.closed
        return closed is not None and closed.cause is CloseCause.RELEASED

    def start(self) -> bytes:
        """The A-ASSOCIATE-RQ to write first."""
        if self._started:
            raise LocalProtocolError("start() was called already")
        self._started = True
        return self.session.send(self.plan.request)

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed what the peer sent (``b""``: it closed); returns the bytes to write next."""
        if not self._started:
            raise LocalProtocolError("call start() first")
        if self.done:
            return b""
        out: list[bytes | memoryview] = []
        self.session.receive_data(data)
        while True:
            try:
                event = self.session.next_event()
            except RemoteProtocolError as exc:
                self.error = exc
                out.append(self.session.data_to_send())
                break
            if event is NEED_DATA:
                break
            self.events.append(event)
            out += self._react(event)
            if isinstance(event, ConnectionClosed):
                break
        return b"".join(out)

    def _react(
        self, event: Event | MessageReceived | DatasetChunk | MessageIncomplete
    ) -> list[bytes | memoryview]:
        if isinstance(event, AssociateAccept):
            accepted = self.session.connection.accepted_contexts
            self._queue.extend(m for m in self.plan.messages if m.context_id in accepted)
            return self._next()
        if isinstance(event, MessageReceived) and isinstance(event.message, Response):
            if event.message.is_pending:
                return []
            self.responses.append(event.message)
            return self._next()
        if isinstance(event, ReleaseRequest):
            try:
                return [self.session.send(event.response())]
            except LocalProtocolError:  # not where the table allows it: let the peer go on
                return []
        return []

    def _next(self) -> list[bytes | memoryview]:
        """The next request, once the previous one is answered; A-RELEASE-RQ after the last."""
        if self.session.outstanding or self._released:
            return []
        if self._queue:
            planned = self._queue.popleft()
            syntax = self.session.connection.accepted_contexts[planned.context_id].transfer_syntax
            return self.session.send_message(
                planned.message,
                context_id=planned.context_id,
                dataset=planned.encoded_dataset(syntax),
            )
        self._released = True
        return [self.session.send(ReleaseRequest())]
