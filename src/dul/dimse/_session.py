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
from .._events import Abort, AssociateAccept, Event, PDataReceived
from ._assembler import Assembler, DatasetChunk, MessageReceived
from ._messages import Message, Request, Response, encode_message
from ._negotiation import NegotiatedContext, negotiated_contexts, operations_window

__all__ = ["Session"]

SessionEvent = MessageReceived | DatasetChunk | Event


class Session:
    """DIMSE over ``connection``: feed bytes, read messages, send messages.

    Upper-layer events other than P-DATA (association, release, abort, ``ConnectionClosed``) pass
    through ``next_event()`` unchanged. A peer's DIMSE violation aborts the association (A-ABORT
    in ``data_to_send()``) and raises :class:`RemoteProtocolError`.
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
        self._next_id = 0
        self._contexts: dict[int, NegotiatedContext] = {}
        self._limit = 1
        self._announced: int | None = None  # context of a data set announced and not yet sent

    # -- what was negotiated -------------------------------------------------------------

    @property
    def contexts(self) -> Mapping[int, NegotiatedContext]:
        """The accepted presentation contexts, with the roles each side may play."""
        return self._contexts

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int:
        """The ID of an accepted context for ``abstract_syntax`` (and ``transfer_syntax``)."""
        for context in self._contexts.values():
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
        return self._limit == 0 or len(self._outstanding) < self._limit

    def next_message_id(self) -> int:
        """A Message ID (1-65535) not used by any outstanding request."""
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._outstanding:
                return self._next_id
        raise LocalProtocolError("all 65535 message IDs are outstanding")

    # -- bytes in --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received (``b""`` when the transport closed)."""
        self.connection.receive_data(data)

    def next_event(self) -> SessionEvent | Literal[Sentinel.NEED_DATA]:
        """The next DIMSE or upper-layer event, or ``NEED_DATA``."""
        while not self._events:
            event = self.connection.next_event()
            if not isinstance(event, PDataReceived):
                if isinstance(event, AssociateAccept):
                    self._negotiated(event)
                return event
            try:
                completed = self._assembler.receive(event.values)
            except RemoteProtocolError as exc:
                self._abort(exc)
            for item in completed:
                self._events.append(
                    self._matched(item) if isinstance(item, MessageReceived) else item
                )
        return self._events.popleft()

    def _matched(self, event: MessageReceived) -> MessageReceived:
        """Attach, to a response, the request it answers; a final one closes the request."""
        message = event.message
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
        """Send an upper-layer event (association, release, abort): ``Connection.send``."""
        data = self.connection.send(event)
        if isinstance(event, AssociateAccept):
            self._negotiated(event)
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
        :meth:`send_dataset`. A request must fit the asynchronous operations window.
        """
        if self._announced is not None:  # messages never interleave (PS3.7 §6.3.1)
            raise LocalProtocolError(
                "the data set announced with dataset_follows=True is incomplete: finish it with "
                "send_dataset(..., is_last=True) first"
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
        if dataset is None and dataset_follows:
            self._announced = context_id
        return buffers

    def send_dataset(
        self, context_id: int, data: bytes | bytearray | memoryview, *, is_last: bool
    ) -> list[bytes | memoryview]:
        """A piece of the data set announced with ``dataset_follows=True``."""
        if self._announced != context_id:
            raise LocalProtocolError(
                f"no data set was announced on presentation context {context_id}: send its "
                "command with dataset_follows=True first"
            )
        buffers = self.connection.send_data(context_id, data, is_command=False, is_last=is_last)
        if is_last:
            self._announced = None
        return buffers

    def _negotiated(self, accept: AssociateAccept) -> None:
        request = self.connection.request
        assert request is not None
        self._contexts = negotiated_contexts(request, accept)
        window = operations_window(request, accept)
        self._limit = window.invoked if self.connection.role is Role.REQUESTOR else window.performed


__all__ += ["NEED_DATA"]
