"""A trio driver for dul: one task per association, structured concurrency, no polling.

The same shape as the blocking driver (:mod:`examples.sockets.driver`), ``async`` where it
waits: the socket (TCP_NODELAY, ``recv_into`` a reused buffer, one ``sendmsg`` per message,
``trio.SSLStream`` for TLS), the clock (ARTIM and the timeouts ARTIM does not cover, PS3.8
§9.1.4 Note 2, as cancel scopes), and a clean close in every ending, cancellation included: a
cancelled association finishes the PDU it had begun, sends an A-ABORT and closes. It runs
services (``docs/services.md``) and knows nothing of what they do: ``run_requestor``,
``serve`` and ``serving`` as the other drivers have them; inside an event loop of one's own,
``Server(host, port, service=...)`` (``await nursery.start(server.serve)``) and
``runtime.drive_async(Steps(), await Association.connect(...), ...)``.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import queue
import select
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import accumulate
from typing import Any, TypeVar

import trio

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
_IOV_MAX = 512  # buffers per sendmsg call: below the usual IOV_MAX of 1024
#: Seconds an ending (abort, close) may take to write its last bytes, even when cancelled.
_CLOSE_GRACE = 5.0
#: What trio raises when the transport is gone or was closed under us.
_TRANSPORT_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def _deadline(seconds: float | None) -> float:
    return math.inf if seconds is None else trio.current_time() + seconds


def _drop(buffers: list[bytes | memoryview], sent: int) -> None:
    """Remove the first ``sent`` bytes of ``buffers`` (a partial ``sendmsg``)."""
    while sent:
        size = len(buffers[0])
        if sent >= size:
            sent -= size
            buffers.pop(0)
        else:
            buffers[0] = memoryview(buffers[0]).cast("B")[sent:]
            sent = 0


def _rest_of_pdu(buffers: Sequence[bytes | memoryview], done: int) -> bytes:
    """The bytes still owed for the PDU cut at offset ``done`` of ``buffers``.

    ``buffers`` begin with a PDU; each PDU says its length in its 6-byte header (PS3.8 §9.3.1),
    so walking the headers finds where the cut PDU ends. At most one PDU is copied.
    """
    views = [memoryview(b).cast("B") for b in buffers]
    starts = list(accumulate((len(v) for v in views), initial=0))

    def read(offset: int, size: int) -> bytes:
        out = bytearray()
        index = bisect.bisect_right(starts, offset) - 1
        while size and index < len(views):
            piece = views[index][offset - starts[index] : offset - starts[index] + size]
            out += piece
            size -= len(piece)
            offset += len(piece)
            index += 1
        return bytes(out)

    position = 0
    while position < done:
        end = position + 6 + int.from_bytes(read(position + 2, 4), "big")
        if end > done:
            return read(done, end - done)
        position = end
    return b""


async def _connect(host: str, port: int) -> trio.SocketStream:
    """A TCP connection to the first address of ``host`` that answers.

    Like ``socket.create_connection``: addresses in turn. (``trio.open_tcp_stream`` races them,
    happy-eyeballs style, and costs about 0.6 ms more per connection on loopback.)
    """
    addresses = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = trio.socket.socket(family, kind, proto)
        try:
            await sock.connect(address)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
            continue
        return trio.SocketStream(sock)
    raise error or OSError(f"no address for {host}")


class Association:
    """One association over a connected trio stream, driven by a :class:`dul.dimse.Session`.

    ``stream`` is a :class:`trio.SocketStream` (read with ``recv_into``, written with
    ``sendmsg`` on its socket) or a :class:`trio.SSLStream` over one. :class:`Steps` answers a
    service's steps with its calls.
    """

    def __init__(
        self,
        stream: trio.SocketStream | trio.SSLStream,
        role: dul.Role,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        whole_datasets: bool = False,
        on_event: Callable[[str, object], None] | None = None,
    ) -> None:
        self.stream = stream
        self._tls = stream if isinstance(stream, trio.SSLStream) else None
        plain = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        assert isinstance(plain, trio.SocketStream), "a TCP stream, possibly under TLS"
        with contextlib.suppress(OSError):
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._sock = plain.socket
        self.peer = runtime.peer_of(plain.socket)
        self.timeouts = timeouts
        self.session = dimse.Session(dul.Connection(role), whole_datasets=whole_datasets)
        self.connection = self.session.connection
        self.closed: dul.ConnectionClosed | None = None
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._transport_closed = False
        self._eof_fed = False
        self._unsent = b""  # the rest of a PDU whose write was cancelled part-way
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
            self._artim_deadline = trio.current_time() + self.timeouts.artim

    async def write(self, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Write bytes or buffers: one ``sendmsg`` per message (one joined write under TLS).

        A write cancelled part-way leaves the rest of its current PDU in ``_unsent``; the next
        write (an A-ABORT, usually) sends that first, so the peer never sees a PDU cut short.
        """
        buffers: list[bytes | memoryview] = (
            [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        )
        if self._unsent:
            buffers.insert(0, self._unsent)
            self._unsent = b""
        if not any(len(b) for b in buffers):
            return
        if self._transport_closed:
            raise AssociationAborted("the transport is closed")
        try:
            if self._tls is not None:  # no vectored send on TLS: one joined write
                await self._tls.send_all(b"".join(buffers))
                return
            pending = list(buffers)
            done = 0
            try:
                while pending:
                    sent = await self._sock.sendmsg(pending[:_IOV_MAX])
                    done += sent
                    _drop(pending, sent)
            except trio.Cancelled:
                if pending and done:
                    self._unsent = _rest_of_pdu(buffers, done)
                raise
        except _TRANSPORT_ERRORS as exc:
            raise AssociationAborted(f"transport lost while writing: {exc}") from exc

    async def _flush(self) -> None:
        """Write what the protocol queued by itself; close when the state machine says so."""
        data = self.session.data_to_send()
        if data:
            try:
                await self.write(data)
            except AssociationAborted:  # the peer is gone: the next read sees the close
                self._close_transport()
        self._check_artim()
        if self.connection.must_close:
            self._close_transport()

    def _close_transport(self) -> None:
        """Close the socket now (under TLS too: no close_notify, DICOM does not need one)."""
        if self._transport_closed:
            return
        self._transport_closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

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

    def _end_of_stream(self) -> None:
        if not self._eof_fed:
            self._eof_fed = True
            self.session.receive_data(b"")

    async def next_event(self, timeout: float | None = None) -> object:
        """The next DIMSE or upper-layer event, reading as needed.

        ``timeout`` bounds the wait (``TimeoutError``); ARTIM runs meanwhile when the state asks.
        """
        return await self._next_event(_deadline(timeout))

    async def _next_event(self, deadline: float) -> object:
        while (event := await self.decoded_event()) is dul.NEED_DATA:
            await self._read(deadline)
        return event

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
        if self._transport_closed:
            self._end_of_stream()
            return
        artim = self._artim_deadline
        limit = deadline if artim is None else min(deadline, artim)
        data: bytes | memoryview = b""
        if limit == math.inf:  # no cancel scope to make: a few microseconds per read
            data = await self._receive()
        else:
            with trio.move_on_at(limit) as scope:
                data = await self._receive()
            if scope.cancelled_caught:
                if artim is not None and trio.current_time() >= artim:
                    self.connection.artim_expired()
                    await self._flush()
                    return
                raise TimeoutError("timed out waiting for the peer")
        if data:
            self.session.receive_data(data)
        else:
            self._end_of_stream()

    async def _receive(self) -> bytes | memoryview:
        """Bytes read into the reused buffer (a view of it), or ``b""`` at the end."""
        try:
            if self._tls is None:
                return self._view[: await self._sock.recv_into(self._buffer)]
            data: bytes = await self._tls.receive_some(_RECV_SIZE)
            return data
        except _TRANSPORT_ERRORS:
            return b""  # reset by peer: the same as a close for the state machine (Evt17)

    # -- requestor -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        whole_datasets: bool = False,
        on_event: Callable[[str, object], None] | None = None,
    ) -> Association:
        """Connect (and shake hands, with TLS): a requestor's association, not yet requested."""
        stream: trio.SocketStream | trio.SSLStream
        try:
            with trio.fail_at(_deadline(timeouts.connect)):
                stream = await _connect(host, port)
        except (OSError, trio.TooSlowError) as exc:
            raise DriverError(f"cannot connect to {host}:{port}: {exc}") from exc
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname or host)
            try:
                with trio.fail_at(_deadline(timeouts.acse)):
                    await tls.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError) as exc:
                await trio.aclose_forcefully(tls)
                reason = exc.__cause__ or exc  # trio wraps the ssl error
                raise DriverError(f"TLS handshake with {host}:{port} failed: {reason}") from exc
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
            stream = tls
        return cls(
            stream,
            dul.Role.REQUESTOR,
            timeouts=timeouts,
            whole_datasets=whole_datasets,
            on_event=on_event,
        )

    # -- ending ----------------------------------------------------------------------------

    async def abort(self) -> None:
        """A-ABORT (if the state allows one), then close; works in a cancelled task too.

        The writing is shielded from an outer cancellation and bounded by a grace period.
        """
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _CLOSE_GRACE):
            try:
                data = self.session.send(dul.Abort())
            except dul.LocalProtocolError:
                data = b""
            else:
                self._trace("sent", dul.Abort())
            try:
                if not self._transport_closed:
                    with contextlib.suppress(DriverError):
                        await self.write(data)
            finally:
                await self.close()

    async def close(self) -> None:
        """Close the transport now (what is queued for the peer is written first)."""
        try:
            data = self.session.data_to_send()
            if data and not self._transport_closed:
                with contextlib.suppress(DriverError):
                    await self.write(data)
        finally:
            self._close_transport()
            self._settle()


class Server:
    """An acceptor on ``host:port``: a task (and a nursery) per association.

    At most ``max_associations`` run at once; a request beyond that bound is rejected
    (transient, local limit exceeded: RJ 2/3/2). Run it with ``await nursery.start(server.serve)``,
    which returns the port (``port=0`` binds a free one); :meth:`shutdown` stops it.
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
        self._accepting = trio.CancelScope()
        self._associations: trio.Nursery | None = None
        self._limiter: trio.CapacityLimiter | None = None

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until :meth:`shutdown` (or cancellation, which aborts them all)."""
        self._limiter = trio.CapacityLimiter(self.max_associations)
        if self.listener is not None:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(self.listener))]
        else:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as associations:
            self._associations = associations
            with self._accepting:
                task_status.started(self.port)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=associations)
        self._associations = None

    def shutdown(self, grace: float | None = 10.0) -> None:
        """Stop accepting; the associations in progress get ``grace`` seconds, then abort."""
        self._accepting.cancel()
        if self._associations is not None and grace is not None:
            scope = self._associations.cancel_scope
            scope.deadline = min(scope.deadline, trio.current_time() + grace)

    async def _handle(self, stream: trio.SocketStream) -> None:
        transport: trio.SocketStream | trio.SSLStream = stream
        if self.ssl_context is not None:
            tls = trio.SSLStream(stream, self.ssl_context, server_side=True)
            with trio.move_on_at(_deadline(self.timeouts.acse)):
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError:
                    pass
                else:
                    transport = tls
            if transport is stream:
                await trio.aclose_forcefully(tls)
                return
        assoc = Association(
            transport, dul.Role.ACCEPTOR, timeouts=self.timeouts, on_event=self.on_event
        )
        assert self._limiter is not None
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            await _run_service(assoc, runtime.refuse, self.timeouts)
            return
        try:
            await _run_service(assoc, self.service, self.timeouts)
        finally:
            self._limiter.release()
            if self.on_close is not None:
                self.on_close(assoc)


# -- running any service -----------------------------------------------------------------


class Steps:
    """How this driver answers a service's steps (:func:`examples.runtime.drive_async`).

    :meth:`interrupt` (the first Ctrl-C) cancels an interruptible wait in progress and
    delivers :class:`~examples.runtime.Interrupted` to the service there (or at its next one).
    """

    def __init__(self) -> None:
        self.requested = 0
        self._delivered = False
        self._waiting: trio.CancelScope | None = None

    def interrupt(self) -> None:
        self.requested += 1
        if self._waiting is not None:
            self._waiting.cancel()

    async def write(self, transport: Association, data: Sequence[bytes | memoryview]) -> None:
        await transport.write(data)

    async def receive(
        self, transport: Association, timeout: float | None, interruptible: bool
    ) -> object:
        if not interruptible:
            return await transport.next_event(timeout)
        if not (self.requested and not self._delivered):
            scope = self._waiting = trio.CancelScope()
            try:
                with scope:
                    return await transport.next_event(timeout)
            finally:
                self._waiting = None
        self._delivered = True
        raise runtime.Interrupted

    async def decoded(self, transport: Association) -> object:
        return await transport.decoded_event()

    async def poll(self, transport: Association) -> object | None:
        """The next event if it has arrived: in what was read already, or on the socket."""
        try:
            return await transport.next_event(0)  # what was read already: no read is attempted
        except TimeoutError:
            pass
        stream = transport.stream
        plain = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        sock = plain.socket  # type: ignore[attr-defined]
        if sock.fileno() >= 0 and not select.select([sock.fileno()], [], [], 0)[0]:
            return None
        return await transport.next_event(transport.timeouts.dimse)

    async def abort(self, transport: Association) -> None:
        await transport.abort()

    async def close(self, transport: Association) -> None:
        await transport.close()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def connect(self, step: runtime.Connect) -> tuple[Association, runtime.Association]:
        assoc = await Association.connect(
            step.host, step.port, timeouts=step.timeouts, on_event=step.trace
        )
        return assoc, runtime.Association(assoc.session, step.timeouts, step.trace)


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
    """Connect to ``host:port`` and run ``service`` as the requestor, in ``trio.run``.

    With ``interruptible`` (in the main thread), the first Ctrl-C is the service's
    (:class:`~examples.runtime.Interrupted`); the second cancels it, which aborts the
    association, and is raised as ``KeyboardInterrupt``.
    """
    steps = Steps()

    async def run() -> T:
        assoc = await Association.connect(
            host,
            port,
            timeouts=timeouts,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            on_event=on_event,
        )
        link = runtime.Association(assoc.session, timeouts, on_event)
        return await runtime.drive_async(steps, assoc, link, service(link))

    async def main() -> tuple[bool, Any]:
        if not (interruptible and threading.current_thread() is threading.main_thread()):
            return False, await run()
        outcome: list[Any] = []
        error: list[BaseException] = []  # raised outside the nursery: never in a group
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(_watch, steps, scope)
                try:
                    outcome.append(await run())
                except Exception as exc:
                    error.append(exc)
                nursery.cancel_scope.cancel()
        if error:
            raise error[0]
        return (not outcome), (outcome[0] if outcome else None)

    cancelled, result = trio.run(main)
    if cancelled:
        raise KeyboardInterrupt
    return result  # type: ignore[no-any-return]


async def _watch(
    steps: Steps, scope: trio.CancelScope, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Ctrl-C: the first is the service's, the second cancels ``scope``."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            if steps.requested:
                scope.cancel()
                return
            steps.interrupt()


async def _run_service(
    assoc: Association, service: runtime.Service[None], timeouts: Timeouts
) -> None:
    """Run an acceptor's ``service`` on ``assoc``; its end, whatever it is, is the end."""
    link = runtime.Association(assoc.session, timeouts, assoc._on_event, peer=assoc.peer)
    with contextlib.suppress(DriverError, TimeoutError, OSError):
        await runtime.drive_async(Steps(), assoc, link, service(link))


async def _until_stopped() -> None:
    """Return on SIGINT or SIGTERM (in the main thread; elsewhere, wait for cancellation)."""
    if threading.current_thread() is not threading.main_thread():
        await trio.sleep_forever()
    else:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


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
    server = Server(host, port, service=service, **options)

    async def main() -> None:
        failure: OSError | None = None
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(server.serve)
            except OSError as exc:  # raised out of the nursery only once it has closed
                failure = exc
            else:
                if on_listening is not None:
                    on_listening(server.port)
                await _until_stopped()
                if on_stopping is not None:
                    on_stopping()
                server.shutdown(GRACE)
        if failure is not None:
            raise failure

    trio.run(main)


@contextmanager
def serving(
    service: runtime.Service[None], host: str, port: int, **options: Any
) -> Iterator[Server]:
    """Serve ``service`` in a thread with its own ``trio.run`` until the block ends.

    For tests and the demo; a port that cannot be bound raises ``OSError``. On exit the
    associations in progress get :data:`GRACE` seconds.
    """
    server = Server(host, port, service=service, **options)
    ready: queue.Queue[trio.lowlevel.TrioToken | BaseException] = queue.Queue()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(server.serve)
            except BaseException as exc:
                ready.put(exc)
                raise
            ready.put(trio.lowlevel.current_trio_token())

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            ready.put(exc)  # a second time, if it failed at the start: nobody reads it

    thread = threading.Thread(target=run, name="trio server", daemon=True)
    thread.start()
    token = ready.get()
    if isinstance(token, BaseException):
        thread.join()
        raise token
    try:
        yield server
    finally:
        with contextlib.suppress(trio.RunFinishedError):  # it ended by itself
            trio.from_thread.run_sync(server.shutdown, GRACE, trio_token=token)
        thread.join(GRACE + 5)
