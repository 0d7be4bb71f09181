"""A DIMSE session: messages over one Connection, still without I/O.

It adds to the Connection what PS3.7 needs: command sets, reassembly, message IDs, and the
asynchronous operations window (D.3.3.3): several requests may be outstanding, each response is
matched to its request by Message ID.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Literal

from .._connection import NEED_DATA, Connection, Role, Sentinel
from .._errors import LocalProtocolError, RemoteProtocolError
from .._events import (
    Abort,
    AssociateAccept,
    Event,
    PDataReceived,
    ReleaseRequest,
    ReleaseResponse,
)
from .._state import State
from ._assembler import Assembler, DatasetChunk, MessageIncomplete, MessageReceived
from ._messages import Message, Request, Response, encode_message
from ._negotiation import NegotiatedContext, negotiated_contexts, operations_window

__all__ = ["Session"]

SessionEvent = MessageReceived | DatasetChunk | MessageIncomplete | Event


class Session:
    """DIMSE over ``connection``: feed bytes, read messages, send messages.

    Upper-layer events other than P-DATA (association, release, abort, ``ConnectionClosed``) pass
    through ``next_event()`` unchanged. A peer's DIMSE violation aborts the association (A-ABORT
    in ``data_to_send()``) and raises :class:`RemoteProtocolError`.

    What a driver needs of the Connection is here too (``state``, ``must_close``, ``closed``,
    ``artim_running``, ``artim_starts``, ``artim_expired()``), and what was negotiated is read
    from the Connection, however the A-ASSOCIATE-AC went (through :meth:`send` or not).

    **A message cut short.** When a release, an abort or the transport closing ends a message
    half received (its command set, or its data set), ``next_event()`` returns
    :class:`MessageIncomplete` just before that event, in both streaming and whole data set
    modes: the message must be discarded, never taken as complete.

    **The asynchronous operations window** (PS3.7 D.3.3.3) is what both sides agreed, never more
    than the requestor proposed: an answer above the proposal, or 0 (unlimited) answering a
    non-zero proposal, counts as the proposal. Our requests beyond it are refused
    (:class:`LocalProtocolError`, see :attr:`can_invoke`). A peer that exceeds the window we
    granted (requests received minus final responses sent through :meth:`send_message`, C-CANCEL
    not counted) is not queued: it is a protocol error, answered with an A-ABORT, and
    ``next_event()`` raises :class:`RemoteProtocolError`. Without the item, the window is 1/1.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        whole_datasets: bool = False,
        max_dataset_length: int | None = None,
    ) -> None:
        self.connection = connection
        self._assembler = Assembler(
            whole_datasets=whole_datasets, max_dataset_length=max_dataset_length
        )
        self._events: deque[SessionEvent] = deque()
        self._outgoing: list[bytes] = []
        self._outstanding: dict[int, Request] = {}
        self._performing: dict[int, int] = {}  # requests received, not finally answered, by ID
        self._performing_count = 0
        self._next_id = 0
        self._negotiated_from: AssociateAccept | None = None
        self._contexts: dict[int, NegotiatedContext] = {}
        self._limit = 1  # how many requests we may have outstanding (0: unlimited)
        self._peer_limit = 1  # how many the peer may have outstanding with us
        self._announced: int | None = None  # context of a data set announced and not yet sent

    # -- the connection's state, for the driver --------------------------------------------

    @property
    def state(self) -> State:
        """The PS3.8 state of the connection."""
        return self.connection.state

    @property
    def must_close(self) -> bool:
        """True once the driver must write ``data_to_send()`` and close the transport."""
        return self.connection.must_close

    @property
    def closed(self) -> bool:
        """True once the session is over: ``ConnectionClosed`` is the next event, or was.

        ``next_event()`` then returns that ``ConnectionClosed`` again on every call.
        """
        return not self._events and self.connection.closed

    @property
    def artim_running(self) -> bool:
        """True while PS3.8's ARTIM timer should run."""
        return self.connection.artim_running

    @property
    def artim_starts(self) -> int:
        """How many times ARTIM was (re)started: a change means a new deadline."""
        return self.connection.artim_starts

    def artim_expired(self) -> None:
        """The driver's ARTIM timer elapsed (Evt18); a no-op when ARTIM is not running."""
        self.connection.artim_expired()

    # -- what was negotiated -------------------------------------------------------------

    @property
    def contexts(self) -> Mapping[int, NegotiatedContext]:
        """The accepted presentation contexts, with the roles each side may play."""
        self._sync()
        return self._contexts

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int:
        """The ID of an accepted context for ``abstract_syntax`` (and ``transfer_syntax``)."""
        for context in self.contexts.values():
            if context.abstract_syntax == abstract_syntax and transfer_syntax in (
                None,
                context.transfer_syntax,
            ):
                return context.context_id
        raise LocalProtocolError(f"no accepted presentation context for {abstract_syntax}")

    @property
    def outstanding(self) -> Mapping[int, Request]:
        """Requests sent and not yet finally answered, by Message ID."""
        return self._outstanding

    @property
    def can_invoke(self) -> bool:
        """True when one more request fits the asynchronous operations window."""
        self._sync()
        return self._limit == 0 or len(self._outstanding) < self._limit

    def next_message_id(self) -> int:
        """A Message ID (1-65535) not used by any outstanding request."""
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._outstanding:
                return self._next_id
        raise LocalProtocolError("all 65535 message IDs are outstanding")

    def _sync(self) -> None:
        """Read what was negotiated from the Connection, once per A-ASSOCIATE-AC."""
        accept = self.connection.accept
        if accept is self._negotiated_from or accept is None:
            return
        request = self.connection.request
        assert request is not None
        self._negotiated_from = accept
        self._contexts = negotiated_contexts(request, accept)
        window = operations_window(request, accept)
        if self.connection.role is Role.REQUESTOR:
            self._limit, self._peer_limit = window.invoked, window.performed
        else:
            self._limit, self._peer_limit = window.performed, window.invoked

    # -- bytes in --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received (``b""`` when the transport closed)."""
        self.connection.receive_data(data)

    def next_event(self) -> SessionEvent | Literal[Sentinel.NEED_DATA]:
        """The next DIMSE or upper-layer event, or ``NEED_DATA``.

        After ``ConnectionClosed``, it returns ``ConnectionClosed`` again on every call.
        """
        while not self._events:
            event = self.connection.next_event()
            if not isinstance(event, PDataReceived):
                cut = None if event is NEED_DATA else self._assembler.interrupt()
                if cut is not None:  # a release, an abort or the end cut a message
                    self._events.append(event)  # type: ignore[arg-type]
                    return cut
                return event
            try:
                completed = self._assembler.receive(event.values)
            except RemoteProtocolError as exc:
                self._abort(exc)
            for item in completed:
                if isinstance(item, MessageReceived):
                    item = self._matched(item)
                self._events.append(item)
        return self._events.popleft()

    def _matched(self, event: MessageReceived) -> MessageReceived:
        """Attach, to a response, the request it answers; a final one closes the request.

        A request counts against the window we granted the peer.
        """
        message = event.message
        if isinstance(message, Request):
            self._received_request(message)
            return event
        if not isinstance(message, Response):
            return event
        request = self._outstanding.get(message.message_id_being_responded_to)
        if request is None:
            return event
        if not message.is_pending:  # each message yields one MessageReceived, in either mode
            del self._outstanding[message.message_id_being_responded_to]
        return MessageReceived(  # not attrs.evolve: this is on every response's path
            context_id=event.context_id,
            message=message,
            has_dataset=event.has_dataset,
            dataset=event.dataset,
            request=request,
        )

    def _received_request(self, request: Request) -> None:
        self._sync()
        if self._peer_limit and self._performing_count >= self._peer_limit:
            self._abort(
                RemoteProtocolError(
                    f"DIMSE: {type(request).__name__} (message ID {request.message_id}) exceeds "
                    f"the asynchronous operations window granted ({self._peer_limit} "
                    "outstanding, PS3.7 D.3.3.3)",
                    reason=6,
                )
            )
        self._performing[request.message_id] = self._performing.get(request.message_id, 0) + 1
        self._performing_count += 1

    def _answered(self, response: Response) -> None:
        """A final response sent: the request it answers no longer counts against the window."""
        count = self._performing.get(response.message_id_being_responded_to)
        if count is None:
            return
        if count > 1:
            self._performing[response.message_id_being_responded_to] = count - 1
        else:
            del self._performing[response.message_id_being_responded_to]
        self._performing_count -= 1

    def _abort(self, exc: RemoteProtocolError) -> None:
        """A peer's DIMSE violation: A-ABORT (service user, PS3.8 §7.3) and raise."""
        reply = Abort()
        try:
            self._outgoing.append(self.connection.send(reply))
        except LocalProtocolError:  # pragma: no cover - the state allows P-DATA, so A-ABORT too
            reply = None  # type: ignore[assignment]
        exc.reply = reply
        raise exc

    def data_to_send(self) -> bytes:
        """Bytes the protocol itself must write (A-ABORTs); call after every ``next_event``."""
        out = b"".join([*self._outgoing, self.connection.data_to_send()])
        self._outgoing.clear()
        return out

    # -- bytes out -------------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """Send an upper-layer event (association, release, abort): ``Connection.send``.

        A release request or response while a data set is half sent (``dataset_follows=True``
        and no end yet) is a :class:`LocalProtocolError`: it would cut the message.
        """
        if self._announced is not None and isinstance(event, (ReleaseRequest, ReleaseResponse)):
            raise LocalProtocolError(
                f"cannot send {type(event).__name__}: the data set announced on presentation "
                f"context {self._announced} is incomplete; end it with end_dataset() first "
                "(or abort)"
            )
        data = self.connection.send(event)
        if isinstance(event, Abort):
            self._announced = None
        return data

    def send_message(
        self,
        message: Message,
        *,
        context_id: int,
        dataset: bytes | bytearray | memoryview | None = None,
        dataset_follows: bool = False,
    ) -> list[bytes | memoryview]:
        """Buffers for one gather-write of ``message`` (and its data set, when given).

        For a data set too large to hold, pass ``dataset_follows=True`` and feed it with
        :meth:`send_dataset`. A request must fit the asynchronous operations window. The data
        set's buffers are views of ``dataset``: keep it unchanged until they are written.
        """
        if self._announced is not None:  # messages never interleave (PS3.7 §6.3.1)
            raise LocalProtocolError(
                "the data set announced with dataset_follows=True is incomplete: finish it with "
                "end_dataset() (or send_dataset(..., is_last=True)) first"
            )
        has_dataset = dataset is not None or dataset_follows
        command = encode_message(message, has_dataset)
        request: Request | None = message if isinstance(message, Request) else None
        if request is not None:
            if request.message_id in self._outstanding:
                raise LocalProtocolError(f"message ID {request.message_id} is outstanding")
            if not self.can_invoke:
                raise LocalProtocolError(
                    f"the asynchronous operations window ({self._limit}) is full: wait for a "
                    "response"
                )
        buffers = self.connection.send_data(context_id, command, is_command=True)
        if dataset is not None:
            buffers += self.connection.send_data(context_id, dataset, is_command=False)
        if request is not None:
            self._outstanding[request.message_id] = request
        elif isinstance(message, Response) and not message.is_pending:
            self._answered(message)
        if dataset is None and dataset_follows:
            self._announced = context_id
        return buffers

    def send_dataset(
        self, context_id: int, data: bytes | bytearray | memoryview, *, is_last: bool = False
    ) -> list[bytes | memoryview]:
        """A piece of the data set announced with ``dataset_follows=True``.

        Pieces may have any length; end the data set with ``is_last=True`` on the final piece,
        or with :meth:`end_dataset`. The buffers returned are views of ``data`` (but for the at
        most two bytes a piece keeps back, copied): keep ``data`` unchanged until they are
        written, then reuse it freely. Nothing is read ahead: each piece goes out as it comes.
        """
        if self._announced != context_id:
            raise LocalProtocolError(
                f"no data set was announced on presentation context {context_id}: send its "
                "command with dataset_follows=True first"
            )
        buffers = self.connection.send_data(context_id, data, is_command=False, is_last=is_last)
        if is_last:
            self._announced = None
        return buffers

    def end_dataset(self, context_id: int) -> list[bytes | memoryview]:
        """End the data set announced on ``context_id``: the buffers of its last fragment."""
        return self.send_dataset(context_id, b"", is_last=True)


__all__ += ["NEED_DATA"]
