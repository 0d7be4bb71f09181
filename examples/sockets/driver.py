"""A blocking-sockets driver for dul: one thread per association, no polling.

What a driver adds to the sans-I/O core: the socket (TCP_NODELAY, ``recv_into`` a reused buffer,
one gather-write per message, optional TLS), the clock (ARTIM and the timeouts ARTIM does not
cover, PS3.8 §9.1.4 Note 2: connect, association negotiation and release, DIMSE responses,
idle), and a clean close in every ending. It runs services (``docs/services.md``): it knows
nothing of what they do.

Requestor: ``run_requestor(service, "127.0.0.1", 11112)`` connects and runs ``service`` (its
result is returned). Acceptor: ``serve(service, "127.0.0.1", 11112)`` runs ``service`` for each
association accepted, a thread each, until SIGINT or SIGTERM; ``serving(...)`` does it in a
thread of this process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import signal
import socket
import ssl
import threading
import time
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
#: The timeouts used when none are given.
DEFAULT_TIMEOUTS = Timeouts()

_RECV_SIZE = 256 * 1024
_IOV_MAX = 512  # buffers per sendmsg call: below the usual IOV_MAX of 1024


_local = threading.local()


def _receive_buffer() -> bytearray:
    """This thread's reused receive buffer: ``receive_data`` copies what it keeps, so the
    associations a thread runs one after another (or interleaved) can share one."""
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = bytearray(_RECV_SIZE)
    return buffer


def _connect(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection; an IP address is connected to directly, without a name lookup."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _set_nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not TCP (a test's socketpair)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Association:
    """The transport of one association: a connected socket under a :class:`dul.dimse.Session`.

    :class:`Steps` answers a service's steps with its calls: ``write``, ``next_event``,
    ``abort``, ``close``.
    """

    def __init__(
        self,
        sock: socket.socket,
        role: dul.Role,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        whole_datasets: bool = False,
        on_event: Callable[[str, object], None] | None = None,
    ) -> None:
        _set_nodelay(sock)
        self.sock = sock
        self.peer = runtime.peer_of(sock)
        self.timeouts = timeouts
        self.session = dimse.Session(dul.Connection(role), whole_datasets=whole_datasets)
        self.connection = self.session.connection
        self.closed: dul.ConnectionClosed | None = None
        self._timeout: float | None = -1.0  # the socket's timeout as last set (-1: not yet)
        self._buffer = _receive_buffer()
        self._view = memoryview(self._buffer)
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
            self._artim_deadline = time.monotonic() + self.timeouts.artim

    def write(self, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Write bytes or buffers in as few system calls as the socket allows."""
        buffers = [data] if isinstance(data, (bytes, bytearray)) else list(data)
        if not buffers or self.sock.fileno() < 0:
            return
        try:
            if isinstance(self.sock, ssl.SSLSocket):  # no sendmsg on TLS: one joined write
                self.sock.sendall(b"".join(buffers))
                return
            while buffers:
                batch = buffers[:_IOV_MAX]
                sent = self.sock.sendmsg(batch)
                total = sum(len(b) for b in batch)
                if sent == total:
                    del buffers[: len(batch)]
                    continue
                # A partial write: drop what went out, keep the rest of the first unsent buffer.
                while sent:
                    size = len(buffers[0])
                    if sent >= size:
                        sent -= size
                        buffers.pop(0)
                    else:
                        buffers[0] = memoryview(buffers[0])[sent:]
                        sent = 0
        except OSError as exc:
            raise AssociationAborted(f"transport lost while writing: {exc}") from exc

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            self.write(data)
        self._check_artim()
        if self.connection.must_close:
            self._close_socket()

    def _close_socket(self) -> None:
        if self.sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    def next_event(self, timeout: float | None = None) -> object:
        """The next DIMSE or upper-layer event, reading as needed.

        ``timeout`` bounds the wait (``TimeoutError``); ARTIM runs meanwhile when the state asks.
        """
        deadline = _deadline(timeout)
        while (event := self.decoded_event()) is dul.NEED_DATA:
            self._read(deadline)
        return event

    def decoded_event(self) -> object:
        """The next event in what was read already, or ``NEED_DATA``: no read, no wait."""
        try:
            event = self.session.next_event()
        except dul.RemoteProtocolError:
            self._flush()
            raise
        self._flush()
        if event is not dul.NEED_DATA:
            self._trace("received", event)
            if isinstance(event, dul.ConnectionClosed):
                self.closed = event
                self._close_socket()
        return event

    def _read(self, deadline: float | None) -> None:
        now = time.monotonic()
        limits = [d for d in (deadline, self._artim_deadline) if d is not None]
        # Never 0: settimeout(0) would make the socket non-blocking, and "no data yet" would
        # read as the peer closing. A deadline already passed waits a microsecond.
        wait = max(1e-6, min(limits) - now) if limits else None
        if self.sock.fileno() < 0:
            self.session.receive_data(b"")
            return
        if wait != self._timeout:  # a system call each: only when the wait changes
            self.sock.settimeout(wait)
            self._timeout = wait
        try:
            n = self.sock.recv_into(self._buffer)
        except TimeoutError:
            if self._artim_deadline is not None and time.monotonic() >= self._artim_deadline:
                self.connection.artim_expired()
                self._flush()
                return
            raise TimeoutError("timed out waiting for the peer") from None
        except OSError:
            n = 0  # reset by peer: the same as a close for the state machine (Evt17)
        self.session.receive_data(self._view[:n] if n else b"")

    # -- requestor -------------------------------------------------------------------------

    @classmethod
    def connect(
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
        try:
            sock = _connect(host, port, timeouts.connect)
        except OSError as exc:
            raise DriverError(f"cannot connect to {host}:{port}: {exc}") from exc
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise DriverError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        return cls(
            sock,
            dul.Role.REQUESTOR,
            timeouts=timeouts,
            whole_datasets=whole_datasets,
            on_event=on_event,
        )

    def abort(self) -> None:
        """A-ABORT (if the state allows one), then close the socket."""
        with contextlib.suppress(dul.LocalProtocolError, DriverError, OSError):
            data = self.session.send(dul.Abort())
            self._trace("sent", dul.Abort())
            self.write(data)
        self.close()

    def close(self) -> None:
        """Close the socket now (what is queued for the peer is written first)."""
        with contextlib.suppress(DriverError, OSError):
            self.write(self.session.data_to_send())
        self._close_socket()


class Server:
    """An acceptor on ``host:port``: one thread per association, at most ``max_associations``.

    A request beyond that bound is rejected (transient, local limit exceeded: RJ 2/3/2).
    ``port=0`` binds a free port (see :attr:`port`); ``listener``, a socket already listening,
    is served instead of binding one.
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
        self.service = service
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self.on_event = on_event
        self.on_close = on_close
        self._slots = threading.BoundedSemaphore(max_associations)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._handoff: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._idle = 0  # workers waiting on _handoff
        self._stopping = threading.Event()
        # A listening socket given (a worker of examples.workers) is served as it is.
        self._listener = listener or socket.create_server((host, port), reuse_port=False)
        self.port: int = self._listener.getsockname()[1]

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`."""
        self._listener.settimeout(0.2)
        try:
            while not self._stopping.is_set():
                try:
                    sock, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                with self._lock:
                    if self._idle:  # a worker that finished an association takes this one
                        self._idle -= 1
                        self._handoff.put(sock)
                        continue
                    thread = threading.Thread(target=self._worker, args=(sock,), daemon=True)
                    self._threads.add(thread)
                thread.start()
        finally:
            self._listener.close()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting and wait for the associations in progress (up to ``timeout``)."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread.ident is not None:  # one added but not started yet cannot be joined
                thread.join(timeout)

    def __enter__(self) -> Server:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self._thread.join(5)

    def _worker(self, sock: socket.socket) -> None:
        """Serve associations one after another: threads are reused, not made per connection."""
        try:
            while True:
                self._serve_one(sock)
                with self._lock:
                    self._idle += 1
                idle_since = time.monotonic()
                while True:
                    try:
                        sock = self._handoff.get(timeout=0.2)
                        break
                    except queue.Empty:
                        pass
                    stopping = self._stopping.is_set() or time.monotonic() - idle_since > 30
                    with self._lock:
                        if self._handoff.empty() and stopping:
                            self._idle -= 1
                            return
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _serve_one(self, sock: socket.socket) -> None:
        try:
            if self.ssl_context is not None:
                sock.settimeout(self.timeouts.acse)
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    sock.close()
                    return
            assoc = Association(
                sock, dul.Role.ACCEPTOR, timeouts=self.timeouts, on_event=self.on_event
            )
            if not self._slots.acquire(blocking=False):
                self._run(assoc, runtime.refuse)
                return
            try:
                self._run(assoc, self.service)
            finally:
                self._slots.release()
                if self.on_close is not None:
                    self.on_close(assoc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()  # a no-op when the association closed it

    def _run(self, assoc: Association, service: runtime.Service[None]) -> None:
        link = runtime.Association(assoc.session, self.timeouts, self.on_event, peer=assoc.peer)
        with contextlib.suppress(DriverError, TimeoutError, OSError):
            runtime.drive(Steps(), assoc, link, service(link))


# -- running any service -----------------------------------------------------------------


class Steps:
    """How this driver answers a service's steps (:func:`examples.runtime.drive`).

    With ``interrupts`` (in the main thread), the first Ctrl-C is delivered to the service as
    :class:`~examples.runtime.Interrupted` at an interruptible wait, at once if it is waiting;
    the second is a ``KeyboardInterrupt``, which aborts.
    """

    def __init__(self) -> None:
        self.requested = 0
        self._delivered = False
        self._waiting = False

    def on_sigint(self, signum: int, frame: object) -> None:
        self.requested += 1
        if self.requested > 1:
            raise KeyboardInterrupt
        if self._waiting and not self._delivered:
            self._delivered = True
            raise runtime.Interrupted

    def write(self, transport: Association, data: Sequence[bytes | memoryview]) -> None:
        transport.write(data)

    def receive(self, transport: Association, timeout: float | None, interruptible: bool) -> object:
        if not interruptible:
            return transport.next_event(timeout)
        if self.requested and not self._delivered:
            self._delivered = True
            raise runtime.Interrupted
        self._waiting = True
        try:
            return transport.next_event(timeout)
        finally:
            self._waiting = False

    def decoded(self, transport: Association) -> object:
        return transport.decoded_event()

    def poll(self, transport: Association) -> object | None:
        try:
            return transport.next_event(0)  # what has arrived: a read that does not wait
        except TimeoutError:
            return None

    def abort(self, transport: Association) -> None:
        transport.abort()

    def close(self, transport: Association) -> None:
        transport.close()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def connect(self, step: runtime.Connect) -> tuple[Association, runtime.Association]:
        assoc = Association.connect(
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
    """Connect to ``host:port`` and run ``service`` as the requestor: its result.

    A failure to connect (or to shake hands, with TLS) is a :class:`DriverError`. With
    ``interruptible`` (in the main thread) Ctrl-C is the service's to handle, once (see
    :class:`Steps`); the second Ctrl-C aborts, as ``KeyboardInterrupt``.
    """
    assoc = Association.connect(
        host,
        port,
        timeouts=timeouts,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        on_event=on_event,
    )
    steps = Steps()
    link = runtime.Association(assoc.session, timeouts, on_event)
    previous = None
    if interruptible and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, steps.on_sigint)
    try:
        return runtime.drive(steps, assoc, link, service(link))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a server as Ctrl-C does (in the main thread; elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_server(
    server: Server,
    on_listening: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM, then wait for the associations in progress."""
    if on_listening is not None:
        on_listening(server.port)
    with _sigterm_as_interrupt():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            if on_stopping is not None:
                on_stopping()
        finally:
            server.shutdown()


def serve(
    service: runtime.Service[None],
    host: str,
    port: int,
    *,
    on_listening: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Run ``service`` for each association accepted on ``host:port`` until Ctrl-C or SIGTERM.

    ``options`` are :class:`Server`'s; a port that cannot be bound raises ``OSError``.
    """
    serve_server(Server(host, port, service=service, **options), on_listening, on_stopping)


@contextmanager
def serving(
    service: runtime.Service[None], host: str, port: int, **options: Any
) -> Iterator[Server]:
    """Serve ``service`` in a thread of this process until the block ends (tests, the demo)."""
    with Server(host, port, service=service, **options) as server:
        yield server
