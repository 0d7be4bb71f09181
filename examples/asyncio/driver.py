"""An asyncio driver for dul: a ``BufferedProtocol`` per association, no streams, no polling.

The same shape as the blocking driver (:mod:`examples.sockets.driver`), ``async`` where it
waits. The protocol reads into one reused buffer (``get_buffer``/``buffer_updated`` feed
``receive_data``; asyncio's StreamReader/StreamWriter are about 5x slower here), writes each
message with one ``writelines``, honours ``pause_writing``/``resume_writing`` (a peer that stops
reading slows us down rather than making us buffer without bound) and pauses reading while what
was received is not being consumed. The clock gives ARTIM and the timeouts ARTIM does not cover
(PS3.8 §9.1.4 Note 2). Every ending closes the transport; a cancelled task aborts the
association (A-ABORT written, then the transport closed). It runs services
(``docs/services.md``) and knows nothing of what they do: ``run_requestor``, ``serve`` and
``serving`` as the other drivers have them; inside an event loop of one's own,
``async with Server(host, port, service=...)`` and
``runtime.drive_async(Steps(), await Association.connect(...), ...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dul
from dul import dimse
from examples import runtime
from examples.runtime import AssociationAborted, AssociationRejected, DriverError, Timeouts

__all__ = [
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "DriverError",
    "Server",
    "Steps",
    "Timeouts",
    "run_requestor",
    "serve",
    "serving",
]

T = TypeVar("T")
#: Seconds the associations in progress get to end once a server is asked to stop.
GRACE = 10.0

_LOG = logging.getLogger(__name__)
_Buffer = bytes | bytearray | memoryview
#: The timeouts used when none are given (the sockets driver's defaults).
DEFAULT_TIMEOUTS = Timeouts()
_RECV_SIZE = 256 * 1024
#: Bytes received but not yet consumed by the association above which reading pauses.
_READ_HIGH_WATER = 1 << 20
#: Seconds an ending may take to flush its last bytes before the transport is aborted.
_CLOSE_GRACE = 5.0
_TIMED_OUT = object()


#: From Python 3.12, ``writelines`` may keep views of what it has not sent yet (before, it
#: copied): then a view of a buffer the caller will reuse must be copied first.
_TRANSPORT_KEEPS_VIEWS = sys.version_info >= (3, 12)


def _immutable(buffer: bytes | bytearray | memoryview) -> bool:
    return isinstance(buffer, bytes) or memoryview(buffer).readonly


def _deadline(loop: asyncio.AbstractEventLoop, seconds: float | None) -> float:
    return math.inf if seconds is None else loop.time() + seconds


def _wake(waiter: asyncio.Future[object] | None, value: object = None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(value)


class AssociationProtocol(asyncio.BufferedProtocol):
    """The transport side of one association: bytes in to its session, flow control both ways.

    Everything received goes straight to ``session.receive_data`` (which copies what it keeps,
    so the read buffer is reused). ``fed`` counts those bytes; the association compares it with
    what it has consumed to pause reading when it falls behind.
    """

    def __init__(
        self,
        session: dimse.Session,
        on_connected: Callable[[AssociationProtocol], None] | None = None,
    ) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.fed = 0
        self.consumed = 0
        self.eof = False
        self.write_paused = False
        self.read_paused = False
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._loop = asyncio.get_running_loop()
        self._data_waiter: asyncio.Future[object] | None = None
        self._drain_waiter: asyncio.Future[object] | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self._on_connected = on_connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_connected is not None:
            self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.eof:  # a TLS transport closing may still hand over bytes: too late for them
            return
        self.session.receive_data(self._view[:nbytes])
        self.fed += nbytes
        if self._data_waiter is not None:
            _wake(self._data_waiter)
            self._data_waiter = None
        elif not self.read_paused and self.fed - self.consumed > _READ_HIGH_WATER:
            assert self.transport is not None
            self.read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._data_waiter)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        _wake(self._data_waiter)
        _wake(self._drain_waiter)
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self._drain_waiter)

    async def wait_data(self, deadline: float) -> bool:
        """Wait for more bytes (or the end of the stream) until ``deadline``; False on timeout."""
        self.consumed = self.fed
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()
        waiter = self._data_waiter = self._loop.create_future()
        timer = (
            None
            if deadline == math.inf
            else self._loop.call_at(deadline, _wake, waiter, _TIMED_OUT)
        )
        try:
            return await waiter is not _TIMED_OUT
        finally:
            self._data_waiter = None
            if timer is not None:
                timer.cancel()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self.write_paused and not self.lost.done():
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None


class Association:
    """One association over an :class:`AssociationProtocol`, driven by its session."""

    def __init__(
        self,
        protocol: AssociationProtocol,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        on_event: Callable[[str, object], None] | None = None,
    ) -> None:
        self.protocol = protocol
        self.timeouts = timeouts
        peer = protocol.transport.get_extra_info("peername") if protocol.transport else None
        #: The peer's IP address (None if unknown).
        self.peer = str(peer[0]) if isinstance(peer, tuple) else None
        self.session = protocol.session
        self.connection = self.session.connection
        self.closed: dul.ConnectionClosed | None = None
        self._loop = asyncio.get_running_loop()
        self._eof_fed = False
        self._artim_deadline: float | None = None
        self._artim_starts = -1
        self._on_event = on_event
        self._check_artim()

    # -- the loop ------------------------------------------------------------------------

    def _trace(self, direction: str, item: object) -> None:
        if self._on_event is not None:
            self._on_event(direction, item)

    def _check_artim(self) -> None:
        if not self.connection.artim_running:
            self._artim_deadline = None
        elif self.connection.artim_starts != self._artim_starts:
            self._artim_starts = self.connection.artim_starts
            self._artim_deadline = self._loop.time() + self.timeouts.artim

    @property
    def _transport_open(self) -> bool:
        transport = self.protocol.transport
        return transport is not None and not transport.is_closing()

    async def write(self, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Write bytes or buffers with one ``writelines``; wait while the peer is not reading.

        The whole message enters the transport's buffer at once, so a cancellation can only
        fall between messages: the A-ABORT that follows it never cuts a PDU.
        """
        buffers = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        if not buffers:
            return
        transport = self.protocol.transport
        if transport is None or transport.is_closing():
            raise AssociationAborted("transport lost: it is closed")
        if _TRANSPORT_KEEPS_VIEWS:  # a buffer the caller may reuse is copied, bytes are not
            buffers = [
                b if isinstance(b, bytes) or memoryview(b).readonly else bytes(b) for b in buffers
            ]
        transport.writelines(buffers)
        if self.protocol.write_paused:
            await self.protocol.drain()
            if self.protocol.lost.done():
                raise AssociationAborted("transport lost while writing")

    async def _flush(self) -> None:
        """Write what the protocol queued by itself; close when the state machine says so."""
        data = self.session.data_to_send()
        if data:
            with contextlib.suppress(AssociationAborted):  # gone: the next read sees the close
                await self.write(data)
        self._check_artim()
        if self.connection.must_close:
            self._close_transport()

    def _close_transport(self) -> None:
        """Close once what is buffered is written (``close``, not ``abort``)."""
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _end_of_stream(self) -> None:
        """The transport closed (Evt17), told once; later bytes are refused by the protocol."""
        if not self._eof_fed:
            self._eof_fed = self.protocol.eof = True
            self.session.receive_data(b"")

    def _settle(self) -> None:
        """Once the transport is closed, tell the state machine (Evt17): ``closed`` says why."""
        if self.closed is not None:
            return
        with contextlib.suppress(dul.ProtocolError):
            self._end_of_stream()
            while (event := self.session.next_event()) is not dul.NEED_DATA:
                if isinstance(event, dul.ConnectionClosed):
                    self._trace("received", event)
                    self.closed = event
                    break
        self.session.data_to_send()  # nothing can be written any more

    async def _wait_closed(self) -> None:
        """Wait for the transport to be gone; abort it if flushing takes too long."""
        transport = self.protocol.transport
        if transport is None or self.protocol.lost.done():
            return
        timer = self._loop.call_later(_CLOSE_GRACE, transport.abort)
        try:
            await asyncio.shield(self.protocol.lost)  # a cancellation must not cancel ``lost``
        finally:
            timer.cancel()

    async def next_event(self, timeout: float | None = None) -> object:
        """The next DIMSE or upper-layer event, reading as needed.

        ``timeout`` bounds the wait (``TimeoutError``); ARTIM runs meanwhile when the state asks.
        """
        return await self._next_event(_deadline(self._loop, timeout))

    async def _next_event(self, deadline: float) -> object:
        protocol = self.protocol
        while True:
            fed = protocol.fed
            event = await self.decoded_event()
            if event is not dul.NEED_DATA:
                return event
            if protocol.fed != fed:  # more arrived while we were writing
                continue
            if protocol.eof or not self._transport_open:
                self._end_of_stream()
                continue
            await self._read(deadline)

    async def decoded_event(self) -> object:
        """The next event in what was read already, or ``NEED_DATA``: no read, no wait."""
        try:
            event = self.session.next_event()
        except dul.RemoteProtocolError:
            await self._flush()
            raise
        await self._flush()
        if event is not dul.NEED_DATA:
            self._trace("received", event)
            if isinstance(event, dul.ConnectionClosed):
                self.closed = event
                self._close_transport()
        return event

    async def _read(self, deadline: float) -> None:
        artim = self._artim_deadline
        limit = deadline if artim is None else min(deadline, artim)
        if await self.protocol.wait_data(limit):
            return
        if artim is not None and self._loop.time() >= artim:
            self.connection.artim_expired()
            await self._flush()
            return
        raise TimeoutError("timed out waiting for the peer")

    # -- requestor -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        session: dimse.Session | None = None,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        on_event: Callable[[str, object], None] | None = None,
    ) -> Association:
        """Connect (and shake hands, with TLS): a requestor's association (over ``session``,
        or a new one), not yet requested."""
        if session is None:
            session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
        loop = asyncio.get_running_loop()
        tls = ssl_context is not None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: AssociationProtocol(session),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=(server_hostname or host) if tls else None,
                    ssl_handshake_timeout=timeouts.acse if tls else None,
                ),
                timeouts.connect,
            )
        except ssl.SSLError as exc:  # connected, then the handshake failed (as the other drivers)
            raise DriverError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise DriverError(f"cannot connect to {host}:{port}: {exc!r}") from exc
        return cls(protocol, timeouts=timeouts, on_event=on_event)

    # -- ending ----------------------------------------------------------------------------

    async def abort(self) -> None:
        """A-ABORT (if the state allows one), then close; works in a cancelled task too.

        The A-ABORT is queued without waiting, so a cancellation cannot stop it; the transport
        then gets :data:`_CLOSE_GRACE` seconds to flush before it is aborted.
        """
        try:
            data = self.session.send(dul.Abort())
        except dul.LocalProtocolError:
            pass
        else:
            self._trace("sent", dul.Abort())
            transport = self.protocol.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
        await self.close()

    async def close(self) -> None:
        """Close the transport (what is queued for the peer is written first) and wait for it."""
        data = self.session.data_to_send()
        transport = self.protocol.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
        self._close_transport()
        self._settle()
        await self._wait_closed()


class Server:
    """An acceptor on ``host:port``: a task per association, at most ``max_associations``.

    A request beyond that bound is rejected (transient, local limit exceeded: RJ 2/3/2).
    ``async with Server(...) as server`` listens (``port=0`` binds a free port, see :attr:`port`)
    and, on exit, stops accepting and gives the associations in progress time to end.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        service: runtime.Service[None],
        max_associations: int = 32,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        ssl_context: ssl.SSLContext | None = None,
        on_event: Callable[[str, object], None] | None = None,
        on_close: Callable[[Association], None] | None = None,
        backlog: int = 1024,
        listener: socket.socket | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.listener = listener  # a socket already listening (a worker's) is served as it is
        self.service = service
        self.max_associations = max_associations
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self.on_event = on_event
        self.on_close = on_close
        self.backlog = backlog
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0

    async def start(self) -> None:
        """Listen; :attr:`port` is the port bound."""
        loop = asyncio.get_running_loop()
        where: dict[str, Any] = (
            {"sock": self.listener}
            if self.listener is not None
            else {"host": self.host, "port": self.port}
        )
        self._server = await loop.create_server(
            self._protocol,
            **where,
            backlog=self.backlog,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.timeouts.acse if self.ssl_context is not None else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        """Listen (if not yet) and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.shutdown(0)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting; the associations in progress get ``grace`` seconds, then abort."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def _protocol(self) -> AssociationProtocol:
        session = dimse.Session(dul.Connection(dul.Role.ACCEPTOR))
        return AssociationProtocol(session, on_connected=self._connected)

    def _connected(self, protocol: AssociationProtocol) -> None:
        assoc = Association(protocol, timeouts=self.timeouts, on_event=self.on_event)
        task = asyncio.get_running_loop().create_task(self._serve_one(assoc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, assoc: Association) -> None:
        if self._active >= self.max_associations:
            await _run_service(assoc, runtime.refuse, self.timeouts)
            return
        self._active += 1
        try:
            await _run_service(assoc, self.service, self.timeouts)
        finally:
            self._active -= 1
            if self.on_close is not None:
                self.on_close(assoc)


# -- running any service -----------------------------------------------------------------


class Steps:
    """How this driver answers a service's steps (:func:`examples.runtime.drive_async`).

    :meth:`interrupt` (the first Ctrl-C) ends an interruptible wait in progress and delivers
    :class:`~examples.runtime.Interrupted` to the service there (or at its next one).
    """

    def __init__(self) -> None:
        self.requested = 0
        self._delivered = False
        self._waiting: asyncio.Future[None] | None = None

    def interrupt(self) -> None:
        self.requested += 1
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def write(self, transport: Association, data: Sequence[bytes | memoryview]) -> None:
        await transport.write(data)

    async def receive(
        self, transport: Association, timeout: float | None, interruptible: bool
    ) -> object:
        if not interruptible:
            return await transport.next_event(timeout)
        if not (self.requested and not self._delivered):
            waiting = self._waiting = asyncio.get_running_loop().create_future()
            receiving = asyncio.ensure_future(transport.next_event(timeout))
            try:
                await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiting = None
                if not receiving.done():
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
            if not receiving.cancelled():
                return receiving.result()
        self._delivered = True
        raise runtime.Interrupted

    async def decoded(self, transport: Association) -> object:
        return await transport.decoded_event()

    async def poll(self, transport: Association) -> object | None:
        """The next event if it has arrived: the protocol feeds every byte to the session as
        the loop reads it, so a zero timeout sees all there is."""
        try:
            return await transport.next_event(0)
        except TimeoutError:
            return None

    async def abort(self, transport: Association) -> None:
        await transport.abort()

    async def close(self, transport: Association) -> None:
        await transport.close()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def connect(self, step: runtime.Connect) -> tuple[Association, runtime.Association]:
        session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
        assoc = await Association.connect(
            step.host, step.port, session, timeouts=step.timeouts, on_event=step.trace
        )
        return assoc, runtime.Association(session, step.timeouts, step.trace)


def run_requestor(
    service: runtime.Service[T],
    host: str,
    port: int,
    *,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    on_event: Callable[[str, object], None] | None = None,
    interruptible: bool = False,
) -> T:
    """Connect to ``host:port`` and run ``service`` as the requestor, in ``asyncio.run``.

    With ``interruptible`` (in the main thread), the first Ctrl-C is the service's
    (:class:`~examples.runtime.Interrupted`); the second cancels it, which aborts the
    association, and is raised as ``KeyboardInterrupt``.
    """
    steps = Steps()
    aborted = False

    async def main() -> T:
        nonlocal aborted
        session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
        assoc = await Association.connect(
            host,
            port,
            session,
            timeouts=timeouts,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            on_event=on_event,
        )
        link = runtime.Association(session, timeouts, on_event)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            nonlocal aborted
            if steps.requested:
                aborted = True
                task.cancel()
            else:
                steps.interrupt()

        installed = interruptible and threading.current_thread() is threading.main_thread()
        if installed:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await runtime.drive_async(steps, assoc, link, service(link))
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if aborted:
            raise KeyboardInterrupt from None
        raise


async def _run_service(
    assoc: Association, service: runtime.Service[None], timeouts: Timeouts
) -> None:
    """Run an acceptor's ``service`` on ``assoc``; its end, whatever it is, is the end."""
    link = runtime.Association(assoc.session, timeouts, assoc._on_event, peer=assoc.peer)
    with contextlib.suppress(DriverError, TimeoutError, OSError):
        await runtime.drive_async(Steps(), assoc, link, service(link))


def serve(
    service: runtime.Service[None],
    host: str,
    port: int,
    *,
    on_listening: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Run ``service`` for each association accepted on ``host:port`` until Ctrl-C or SIGTERM,
    then give the associations in progress :data:`GRACE` seconds.

    ``options`` are :class:`Server`'s; a port that cannot be bound raises ``OSError``.
    """

    async def main() -> None:
        server = Server(host, port, service=service, **options)
        await server.start()
        if on_listening is not None:
            on_listening(server.port)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = []
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
                signals.append(signum)
        try:
            await stop.wait()
            if on_stopping is not None:
                on_stopping()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            await server.shutdown(GRACE)

    asyncio.run(main())


@contextmanager
def serving(
    service: runtime.Service[None], host: str, port: int, **options: Any
) -> Iterator[Server]:
    """Serve ``service`` in a thread with its own event loop until the block ends.

    For tests and the demo; a port that cannot be bound raises ``OSError``. On exit the
    associations in progress get :data:`GRACE` seconds.
    """
    ready: queue.Queue[tuple[Server, asyncio.AbstractEventLoop, asyncio.Event] | BaseException]
    ready = queue.Queue()

    async def main() -> None:
        server = Server(host, port, service=service, **options)
        try:
            await server.start()
        except BaseException as exc:
            ready.put(exc)
            return
        stop = asyncio.Event()
        ready.put((server, asyncio.get_running_loop(), stop))
        try:
            await stop.wait()
        finally:
            await server.shutdown(GRACE)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="asyncio server")
    thread.daemon = True
    thread.start()
    handle = ready.get()
    if isinstance(handle, BaseException):
        thread.join()
        raise handle
    server, loop, stop = handle
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(GRACE + 5)
