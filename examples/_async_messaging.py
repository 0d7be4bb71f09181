"""What the trio and asyncio drivers share: everything above the event loop's primitives.

An async ``Association`` provides ``write``, ``send``, ``abort``, ``_next_upper``,
``context_for``, ``session`` and ``timeouts``; :class:`AsyncMessaging` builds the DIMSE-level
calls on them, once for both drivers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any

import dul
from dul import dimse
from examples.sockets.driver import AssociationAborted, DriverError

__all__ = ["AsyncMessaging", "AsyncServing", "DatasetReader", "Handler", "echo_handler"]

_LOG = logging.getLogger(__name__)

_Buffer = bytes | bytearray | memoryview
Association = Any  # either driver's Association: both mix in AsyncMessaging


class AsyncMessaging:
    """DIMSE-level calls of an async association, on top of its I/O primitives (``write``,
    ``next_event``, ``abort``, ``_trace``), once for both drivers."""

    session: dimse.Session
    timeouts: Any

    async def _next_upper(self, timeout: float | None) -> object:
        """The next event; an abort or close becomes :class:`AssociationAborted`."""
        try:
            event = await self.next_event(timeout)
            while isinstance(event, dimse.MessageIncomplete):  # what cut it comes next
                event = await self.next_event(timeout)
        except TimeoutError:
            await self.abort()
            raise
        if isinstance(event, dul.Abort):
            await self.next_event(0)  # the ConnectionClosed that follows
            raise AssociationAborted(
                f"aborted by the peer: {event}", dul.CloseCause.ABORTED_BY_PEER
            )
        if isinstance(event, dul.ConnectionClosed) and event.cause not in (
            dul.CloseCause.RELEASED,
            dul.CloseCause.REJECTED,
        ):
            raise AssociationAborted(f"association ended: {event.cause.value}", event.cause)
        return event

    @property
    def accept(self) -> dul.AssociateAccept | None:
        """The A-ASSOCIATE-AC of this association."""
        return self.connection.accept

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int:
        """An accepted context for ``abstract_syntax``; see :meth:`Session.context_for`."""
        return self.session.context_for(abstract_syntax, transfer_syntax)

    async def send(
        self,
        message: dimse.Message,
        *,
        context_id: int,
        dataset: bytes | bytearray | memoryview | None = None,
        dataset_follows: bool = False,
    ) -> None:
        """Send a message (and its data set) in one gather-write."""
        self._trace("sent", message)
        await self.write(
            self.session.send_message(
                message, context_id=context_id, dataset=dataset, dataset_follows=dataset_follows
            )
        )

    async def send_dataset_stream(
        self, context_id: int, chunks: Iterable[_Buffer] | AsyncIterable[_Buffer], length: int
    ) -> None:
        """Stream a data set of ``length`` bytes announced with ``dataset_follows=True``.

        Chunks may have any length (dul keeps fragments even). A chunk is asked for only once
        the previous one is written (trio) or fits under the transport's high-water mark
        (asyncio): a slow peer slows the reading, and memory stays bounded.
        """
        sent = 0

        async def feed(chunk: _Buffer) -> None:
            nonlocal sent
            if not chunk:
                return
            sent += len(chunk)
            if sent > length:
                await self.abort()
                raise DriverError(f"data set stream gave more than the {length} bytes announced")
            await self.write(self.session.send_dataset(context_id, chunk, is_last=sent == length))

        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                await feed(chunk)
        else:
            for chunk in chunks:
                await feed(chunk)
        if sent != length:
            await self.abort()
            raise DriverError(f"data set stream gave {sent} bytes, {length} were announced")

    async def receive_message(self, timeout: float | None = None) -> dimse.MessageReceived:
        """Wait for the next DIMSE message (``timeout`` defaults to the DIMSE timeout)."""
        event = await self._next_upper(self.timeouts.dimse if timeout is None else timeout)
        if isinstance(event, dimse.MessageReceived):
            return event
        raise DriverError(f"expected a DIMSE message, got {event}")

    def read_dataset(self, timeout: float | None = None) -> _DatasetChunks:
        """The chunks of the data set of the message just received (streaming mode)."""
        return _DatasetChunks(self, timeout)

    async def receive_response(
        self, timeout: float | None = None
    ) -> tuple[dimse.Response, bytes | None]:
        """The next response and its data set (joined), for a request sent."""
        event = await self.receive_message(timeout)
        if not isinstance(event.message, dimse.Response):
            raise DriverError(f"expected a response, got {type(event.message).__name__}")
        dataset = event.dataset
        if event.has_dataset and dataset is None:
            dataset = b"".join([bytes(c) async for c in self.read_dataset(timeout)])
        return event.message, dataset

    async def echo(self) -> int:
        """C-ECHO: the status of the response."""
        context_id = self.context_for(dimse.VERIFICATION_SOP_CLASS)
        await self.send(
            dimse.CEchoRequest(message_id=self.session.next_message_id()), context_id=context_id
        )
        response, _ = await self.receive_response()
        return response.status

    async def store(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        dataset: _Buffer | Iterable[_Buffer] | AsyncIterable[_Buffer],
        *,
        transfer_syntax: str | None = None,
        length: int | None = None,
        context_id: int | None = None,
    ) -> dimse.Response:
        """C-STORE one data set (bytes, or even-sized chunks with ``length``): the response."""
        if context_id is None:
            context_id = self.context_for(sop_class_uid, transfer_syntax)
        request = dimse.CStoreRequest(
            message_id=self.session.next_message_id(),
            affected_sop_class_uid=sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
        )
        if isinstance(dataset, (bytes, bytearray, memoryview)):
            await self.send(request, context_id=context_id, dataset=dataset)
        else:
            if length is None:
                raise ValueError("a streamed data set needs its length")
            await self.send(request, context_id=context_id, dataset_follows=True)
            await self.send_dataset_stream(context_id, dataset, length)
        response, _ = await self.receive_response()
        return response


class _DatasetChunks:
    """Async iterator over the fragments of the data set being received."""

    def __init__(self, assoc: Association, timeout: float | None) -> None:
        self._assoc = assoc
        self._timeout = assoc.timeouts.dimse if timeout is None else timeout
        self._done = False

    def __aiter__(self) -> _DatasetChunks:
        return self

    async def __anext__(self) -> memoryview | bytes:
        if self._done:
            raise StopAsyncIteration
        event = await self._assoc._next_upper(self._timeout)
        if not isinstance(event, dimse.DatasetChunk):
            raise DriverError(f"expected a data set fragment, got {event}")
        self._done = event.is_last
        return event.data


# -- acceptor ----------------------------------------------------------------------------


class DatasetReader:
    """The data set of a received message, read from the association as it arrives.

    ``async for chunk in reader`` streams it; :meth:`read_all` joins it.
    """

    def __init__(self, assoc: Association, event: dimse.MessageReceived) -> None:
        self._assoc = assoc
        self._whole = event.dataset
        self._chunks = _DatasetChunks(assoc, None)
        self._chunks._done = not (event.has_dataset and event.dataset is None)

    def __aiter__(self) -> DatasetReader:
        return self

    async def __anext__(self) -> memoryview | bytes:
        if self._whole is not None:
            whole, self._whole = self._whole, None
            return whole
        return await self._chunks.__anext__()

    async def read_all(self) -> bytes:
        """The whole data set, joined."""
        return b"".join([bytes(chunk) async for chunk in self])

    async def drain(self) -> None:
        """Discard what the handler did not read."""
        async for _ in self:
            pass


#: A handler answers one message: it reads the data set and sends its response(s).
Handler = Callable[[Association, dimse.MessageReceived, DatasetReader], Awaitable[None]]


async def echo_handler(
    assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
) -> None:
    """Answer a C-ECHO-RQ with Success."""
    message = event.message
    assert isinstance(message, dimse.CEchoRequest)
    await assoc.send(
        dimse.CEchoResponse(
            message_id_being_responded_to=message.message_id,
            affected_sop_class_uid=message.affected_sop_class_uid,
        ),
        context_id=event.context_id,
    )


class AsyncServing:
    """An async server's life of one association, once for both drivers: negotiate, dispatch
    each message to its handler, answer releases, abort on errors."""

    policy: dimse.AcceptorPolicy
    handlers: dict[type[dimse.Message], Handler]
    timeouts: Any

    async def _refuse(self, assoc: Association) -> None:
        try:
            with contextlib.suppress(DriverError, TimeoutError, dul.ProtocolError):
                event = await assoc.next_event(self.timeouts.acse)
                if isinstance(event, dul.AssociateRequest):
                    await assoc.write(
                        assoc.session.send(event.reject(result=2, source=3, reason=2))
                    )
                    while assoc.closed is None:
                        await assoc.next_event(self.timeouts.artim)
        finally:
            await assoc.close()

    async def _run(self, assoc: Association) -> None:
        try:
            while assoc.closed is None:
                event = await assoc.next_event(self._wait(assoc))
                if isinstance(event, dul.AssociateRequest):
                    answer = self.policy.evaluate(event)
                    assoc._trace("sent", answer)
                    await assoc.write(assoc.session.send(answer))
                elif isinstance(event, dul.ReleaseRequest):
                    assoc._trace("sent", event.response())
                    await assoc.write(assoc.session.send(event.response()))
                elif isinstance(event, dimse.MessageReceived):
                    await self._dispatch(assoc, event)
        except (TimeoutError, DriverError, dul.RemoteProtocolError):
            await assoc.abort()
        except Exception:  # a handler's bug must not take the server down
            _LOG.exception("association aborted: a handler failed")
            await assoc.abort()
        except BaseException:
            await assoc.abort()
            raise
        finally:
            await assoc.close()

    def _wait(self, assoc: Association) -> float | None:
        if assoc.connection.state is dul.State.AWAITING_LOCAL_ASSOCIATE_RESPONSE:
            return self.timeouts.acse
        if assoc.connection.state is dul.State.ESTABLISHED:
            return self.timeouts.dimse
        return None  # ARTIM or the peer's close bounds the other states

    async def _dispatch(self, assoc: Association, event: dimse.MessageReceived) -> None:
        dataset = DatasetReader(assoc, event)
        handler = self.handlers.get(type(event.message))
        if handler is None:
            await dataset.drain()
            await self._unsupported(assoc, event)
            return
        await handler(assoc, event, dataset)
        await dataset.drain()

    async def _unsupported(self, assoc: Association, event: dimse.MessageReceived) -> None:
        """Answer a request we have no handler for: 0x0211 Unrecognized Operation."""
        message = event.message
        if not isinstance(message, dimse.Request):
            return
        await assoc.send(message.refuse(0x0211), context_id=event.context_id)
