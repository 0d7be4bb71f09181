"""The association a service holds: a :class:`dul.dimse.Session` and the steps built on it.

Each method that needs the outside world is a generator of steps (``yield from
assoc.receive_message()``); the rest (``context_for``, ``contexts``, ``request``) reads the
session. Nothing here waits, reads a clock or touches a socket: the driver answers the steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

import dul
from dul import dimse

from .errors import AssociationAborted, AssociationRejected, DriverError, Timeouts
from .steps import Abort, Close, Poll, Receive, Send, Steps

__all__ = ["Association", "DatasetReader", "Service", "Trace"]

T = TypeVar("T")

Buffer = bytes | bytearray | memoryview
#: Told ``("sent", item)`` for each PDU and message a service sends (the driver reports what
#: it receives to the same function).
Trace = Callable[[str, object], None]


class Association:
    """One association, as the service running on it sees it."""

    def __init__(
        self,
        session: dimse.Session,
        timeouts: Timeouts,
        trace: Trace | None = None,
        *,
        peer: str | None = None,
    ) -> None:
        self.session = session
        #: The peer's IP address, as the driver accepted it (None if unknown).
        self.peer = peer
        self.connection = session.connection
        self.timeouts = timeouts
        #: The ConnectionClosed received, once the association is over.
        self.closed: dul.ConnectionClosed | None = None
        self._trace = trace
        #: What the driver decoded already, after the event it answered a Receive with.
        self._inbox: deque[object] = deque()

    def trace(self, direction: str, item: object) -> None:
        """Report ``item`` sent or received to the driver's tracer."""
        if self._trace is not None:
            self._trace(direction, item)

    # -- what the session knows ----------------------------------------------------------

    @property
    def request(self) -> dul.AssociateRequest | None:
        """The A-ASSOCIATE-RQ of this association."""
        return self.connection.request

    @property
    def accept(self) -> dul.AssociateAccept | None:
        """The A-ASSOCIATE-AC of this association."""
        return self.connection.accept

    @property
    def contexts(self) -> Mapping[int, dimse.NegotiatedContext]:
        """The accepted presentation contexts, by ID."""
        return self.session.contexts

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int | None:
        """The ID of a context accepted for ``abstract_syntax`` (``transfer_syntax``) or None."""
        try:
            return self.session.context_for(abstract_syntax, transfer_syntax)
        except dul.LocalProtocolError:
            return None

    # -- sending -------------------------------------------------------------------------

    def send_pdu(self, event: dul.Event) -> Steps[None]:
        """Send an upper-layer event (an A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, ...)."""
        data = self.session.send(event)
        self.trace("sent", event)
        yield Send((data,), self)

    def send(
        self,
        message: dimse.Message,
        *,
        context_id: int,
        dataset: Buffer | None = None,
        dataset_follows: bool = False,
    ) -> Steps[None]:
        """Send a message (and its data set) in one gather-write."""
        buffers = self.session.send_message(
            message, context_id=context_id, dataset=dataset, dataset_follows=dataset_follows
        )
        self.trace("sent", message)
        yield Send(buffers, self)

    def send_dataset(self, context_id: int, chunk: Buffer, *, is_last: bool) -> Steps[None]:
        """Send one piece of a data set announced with ``dataset_follows=True``."""
        yield Send(self.session.send_dataset(context_id, chunk, is_last=is_last), self)

    # -- receiving -----------------------------------------------------------------------

    def next_event(self, timeout: float | None, *, interruptible: bool = False) -> Steps[object]:
        """The next event, whatever it is (``TimeoutError`` after ``timeout`` seconds).

        ``interruptible``: the first Ctrl-C raises :class:`~examples.runtime.Interrupted` here.
        """
        if self._inbox:
            event = self._taken()
        else:
            batch = yield Receive(timeout, interruptible, self)
            event = batch[0]
            self._inbox.extend(batch[1:])
        if isinstance(event, dul.ConnectionClosed):
            self.closed = event
        return event

    def poll(self) -> Steps[object | None]:
        """The next event if it has arrived already, else None; aborts and closes as
        :meth:`next_upper` says."""
        event = self._taken() if self._inbox else (yield Poll(self))
        if event is None:
            return None
        return (yield from self._upper(event))

    def _taken(self) -> object:
        """The next event of the inbox (an error the driver met there is raised)."""
        event = self._inbox.popleft()
        if isinstance(event, Exception):
            raise event
        return event

    def decoded_chunk(self) -> dimse.DatasetChunk | None:
        """The next data set fragment if the driver decoded it already (no step), else None."""
        if self._inbox and type(self._inbox[0]) is dimse.DatasetChunk:
            chunk: dimse.DatasetChunk = self._inbox.popleft()  # type: ignore[assignment]
            return chunk
        return None

    def next_upper(self, timeout: float | None, *, interruptible: bool = False) -> Steps[object]:
        """The next event; an abort or a lost transport is :class:`AssociationAborted`.

        On a timeout the association is aborted first.
        """
        try:
            event = yield from self.next_event(timeout, interruptible=interruptible)
        except TimeoutError:
            yield Abort(self)
            raise
        return (yield from self._upper(event))

    def _upper(self, event: object) -> Steps[object]:
        while isinstance(event, dimse.MessageIncomplete):  # what cut it comes next
            event = yield from self.next_event(0)
        if isinstance(event, dul.ConnectionClosed):
            self.closed = event
        if isinstance(event, dul.Abort):
            yield from self.next_event(0)  # the ConnectionClosed that follows
            raise AssociationAborted(
                f"aborted by the peer: {event}", dul.CloseCause.ABORTED_BY_PEER
            )
        if isinstance(event, dul.ConnectionClosed) and event.cause not in (
            dul.CloseCause.RELEASED,
            dul.CloseCause.REJECTED,
        ):
            raise AssociationAborted(f"association ended: {event.cause.value}", event.cause)
        return event

    def receive_message(
        self, timeout: float | None = None, *, interruptible: bool = False
    ) -> Steps[dimse.MessageReceived]:
        """The next DIMSE message (``timeout`` defaults to the DIMSE timeout, -td)."""
        wait = self.timeouts.dimse if timeout is None else timeout
        event = yield from self.next_upper(wait, interruptible=interruptible)
        if isinstance(event, dimse.MessageReceived):
            return event
        raise DriverError(f"expected a DIMSE message, got {event}")

    def dataset(self, event: dimse.MessageReceived) -> DatasetReader:
        """The data set of ``event``, read as it arrives."""
        return DatasetReader(self, event)

    def receive_response(
        self, timeout: float | None = None
    ) -> Steps[tuple[dimse.Response, bytes | None]]:
        """The next response and its data set (joined), for a request sent."""
        event = yield from self.receive_message(timeout)
        if not isinstance(event.message, dimse.Response):
            raise DriverError(f"expected a response, got {type(event.message).__name__}")
        dataset = None
        if event.has_dataset:
            dataset = yield from self.dataset(event).read_all()
        return event.message, dataset

    # -- beginning and ending ------------------------------------------------------------

    def associate(self, request: dul.AssociateRequest) -> Steps[dul.AssociateAccept]:
        """Send ``request`` and wait for the answer (-ta); raise if it is not an accept."""
        yield from self.send_pdu(request)
        event = yield from self.next_upper(self.timeouts.acse)
        if isinstance(event, dul.AssociateAccept):
            return event
        yield Close(self)
        if isinstance(event, dul.AssociateReject):
            raise AssociationRejected(event)
        raise AssociationAborted(f"association refused: {event}")

    def release(self) -> Steps[None]:
        """A-RELEASE: ask, wait for the answer (and answer a collision), close.

        Each wait is bounded by the ACSE timeout (-ta); on a timeout the association is aborted.
        """
        if self.closed is not None or self.connection.state is not dul.State.ESTABLISHED:
            yield Close(self)
            return
        yield from self.send_pdu(dul.ReleaseRequest())
        try:
            while self.closed is None:
                event = yield from self.next_event(self.timeouts.acse)
                if isinstance(event, dul.ReleaseRequest):  # release collision (PS3.8 §7.2.2)
                    yield from self.send_pdu(event.response())
        except TimeoutError:
            yield Abort(self)
            raise
        yield Close(self)

    def abort(self) -> Steps[None]:
        """A-ABORT (if the state allows one), and close."""
        yield Abort(self)


class DatasetReader:
    """The data set of a received message, read from the association as it arrives."""

    def __init__(self, assoc: Association, event: dimse.MessageReceived) -> None:
        self._assoc = assoc
        self._whole = event.dataset
        self._pending = event.has_dataset and event.dataset is None

    def next(self) -> Steps[Buffer | None]:
        """The next piece of the data set, or None after the last."""
        if self._whole is not None:
            whole, self._whole = self._whole, None
            return whole
        if not self._pending:
            return None
        assoc = self._assoc
        event = assoc.decoded_chunk()  # the rest of a batch: no round trip through the driver
        if event is None:
            event = yield from assoc.next_upper(assoc.timeouts.dimse)
        if not isinstance(event, dimse.DatasetChunk):
            raise DriverError(f"expected a data set fragment, got {event}")
        self._pending = not event.is_last
        return event.data

    def read_all(self) -> Steps[bytes]:
        """The whole data set, joined."""
        pieces = []
        while (piece := (yield from self.next())) is not None:
            pieces.append(bytes(piece))
        return b"".join(pieces)

    def drain(self) -> Steps[None]:
        """Discard what the handler did not read."""
        while (yield from self.next()) is not None:
            pass


#: A service: given the association, the steps that run it (its result: ``T``).
Service = Callable[[Association], Steps[T]]
