"""Plumbing for the DIMSE tests: two Sessions joined in memory, and one Session on a socket.

:class:`SessionPair` joins a requestor and an acceptor :class:`~dul.dimse.Session` by two
in-memory wires, as ``helpers.ConnectionPair`` does for bare Connections; bytes are handed over
whole, buffer by buffer, byte by byte or in random chunks.

:class:`SocketPeer` is the small blocking-socket loop of the loopback tests: TCP_NODELAY, one
gather-write (``socket.sendmsg``) per message, ``recv_into`` a reused buffer, every wait bounded.
The project's sockets driver lives in ``examples/sockets``; this loop is deliberately minimal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

import dul
from dul import dimse
from helpers import chunks

#: How a wire hands bytes over: joined in one call, one call per buffer the sender produced (no
#: join: what a large streamed data set needs), one byte per call, or in random chunks.
Feed = Literal["whole", "buffers", "bytewise", "random"]

#: Bound on every blocking socket call: a broken peer fails a test, never hangs it.
IO_TIMEOUT = 10.0
HOST = "127.0.0.1"
_IOV_MAX = 512  # buffers per sendmsg call, below the usual IOV_MAX of 1024

Buffers = Sequence[bytes | memoryview]
SessionEvent = dimse.MessageReceived | dimse.DatasetChunk | dul.Event


def next_events(session: dimse.Session) -> list[SessionEvent]:
    """Events until ``NEED_DATA``; a ``ConnectionClosed`` ends the list."""
    events: list[SessionEvent] = []
    while (event := session.next_event()) is not dul.NEED_DATA:
        events.append(event)
        if isinstance(event, dul.ConnectionClosed):
            break
    return events


class SessionPair:
    """A requestor and an acceptor Session and, for each, the buffers it wrote and its peer has
    not read yet."""

    def __init__(
        self,
        *,
        how: Feed = "whole",
        seed: int = 0,
        requestor: dimse.Session | None = None,
        acceptor: dimse.Session | None = None,
    ) -> None:
        self.requestor = requestor or dimse.Session(dul.Connection(dul.Role.REQUESTOR))
        self.acceptor = acceptor or dimse.Session(dul.Connection(dul.Role.ACCEPTOR))
        self.how: Feed = how
        self.rng = random.Random(seed)
        self.wire: dict[int, list[bytes | memoryview]] = {
            id(self.requestor): [],
            id(self.acceptor): [],
        }

    def peer(self, session: dimse.Session) -> dimse.Session:
        return self.acceptor if session is self.requestor else self.requestor

    def write(self, sender: dimse.Session, data: bytes | Buffers) -> None:
        """Put what ``sender`` produced on its wire."""
        wire = self.wire[id(sender)]
        if isinstance(data, bytes):
            wire.append(data)
        else:
            wire.extend(data)

    def send(self, sender: dimse.Session, event: dul.Event) -> bytes:
        data = sender.send(event)
        self.write(sender, data)
        return data

    def send_message(
        self, sender: dimse.Session, message: dimse.Message, **options: object
    ) -> Buffers:
        buffers = sender.send_message(message, **options)  # type: ignore[arg-type]
        self.write(sender, buffers)
        return buffers

    def send_dataset(
        self, sender: dimse.Session, context_id: int, data: bytes | memoryview, *, is_last: bool
    ) -> Buffers:
        buffers = sender.send_dataset(context_id, data, is_last=is_last)
        self.write(sender, buffers)
        return buffers

    def wire_bytes(self, sender: dimse.Session) -> bytes:
        """What ``sender`` wrote and its peer has not read, without taking it off the wire."""
        return b"".join(self.wire[id(sender)])

    def deliver(self, sender: dimse.Session) -> list[SessionEvent]:
        """Hand what ``sender`` wrote (and its ``data_to_send()``) to its peer; the peer's events.

        A RemoteProtocolError propagates, with the peer's reply left in its ``data_to_send()``.
        """
        self.write(sender, sender.data_to_send())
        wire = self.wire[id(sender)]
        buffers = [b for b in wire if len(b)]
        wire.clear()
        receiver = self.peer(sender)
        if self.how == "buffers":
            pieces: list[bytes | memoryview] = buffers
        else:
            pieces = list(chunks(b"".join(buffers), self.how, self.rng))  # type: ignore[arg-type]
        events: list[SessionEvent] = []
        for piece in pieces:
            receiver.receive_data(piece)
            events.extend(next_events(receiver))
        return events

    def associate(
        self,
        request: dul.AssociateRequest,
        policy: dimse.AcceptorPolicy,
    ) -> dul.AssociateAccept:
        """Request, answer with ``policy``, deliver both: the association is established."""
        self.send(self.requestor, request)
        (received,) = self.deliver(self.requestor)
        assert isinstance(received, dul.AssociateRequest)
        answer = policy.evaluate(received)
        assert isinstance(answer, dul.AssociateAccept), answer
        self.send(self.acceptor, answer)
        (accepted,) = self.deliver(self.acceptor)
        assert isinstance(accepted, dul.AssociateAccept)
        return accepted

    def release(self) -> None:
        """The requestor releases; both sides see the connection end."""
        self.send(self.requestor, dul.ReleaseRequest())
        events = self.deliver(self.requestor)
        assert events == [dul.ReleaseRequest()], events
        self.send(self.acceptor, dul.ReleaseResponse())
        events = self.deliver(self.acceptor)
        assert events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED), events


# -- on a socket -----------------------------------------------------------------------------------


class SocketPeer:
    """Drive one Session over a blocking socket: the loop an application would write.

    ARTIM (PS3.8 §9.1.4) runs as a deadline whenever the Connection says it should; every other
    wait is bounded by ``timeout``.
    """

    def __init__(
        self,
        sock: socket.socket,
        session: dimse.Session,
        *,
        timeout: float = IO_TIMEOUT,
        artim: float = 5.0,
    ) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.session = session
        self.timeout = timeout
        self.artim = artim
        self._buffer = bytearray(256 * 1024)
        self._view = memoryview(self._buffer)
        self.writes = 0  # gather-writes made, one per message (and per data set piece)
        self.closed = False

    @classmethod
    def connect(cls, port: int, session: dimse.Session, **options: float) -> SocketPeer:
        sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        return cls(sock, session, **options)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, data: bytes | Buffers) -> None:
        """One gather-write of ``data`` (``sendmsg``), continued after a partial send."""
        pending = [memoryview(b).cast("B") for b in ([data] if isinstance(data, bytes) else data)]
        pending = [b for b in pending if len(b)]
        if not pending:
            return
        self.writes += 1
        self.sock.settimeout(self.timeout)
        while pending:
            sent = self.sock.sendmsg(pending[:_IOV_MAX])
            while sent:
                if sent >= len(pending[0]):
                    sent -= len(pending.pop(0))
                else:
                    pending[0] = pending[0][sent:]
                    sent = 0

    def send(self, event: dul.Event) -> None:
        self.write(self.session.send(event))

    def send_message(self, message: dimse.Message, **options: object) -> None:
        self.write(self.session.send_message(message, **options))  # type: ignore[arg-type]

    def send_dataset(self, context_id: int, data: bytes | memoryview, *, is_last: bool) -> None:
        self.write(self.session.send_dataset(context_id, data, is_last=is_last))

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out and not self.closed:
            with contextlib.suppress(OSError):  # the peer may be gone already
                self.write(out)

    # -- reading ---------------------------------------------------------------------------------

    def next_event(self) -> SessionEvent:
        """The next event; the socket is closed once it is ``ConnectionClosed``."""
        try:
            while (event := self.session.next_event()) is dul.NEED_DATA:
                self._flush()
                self._receive()
        finally:
            self._flush()
        if isinstance(event, dul.ConnectionClosed):
            self.close()
        return event

    def until(self, kind: type[SessionEvent] | tuple[type, ...]) -> SessionEvent:
        """Events until one of ``kind``; the connection must not end before."""
        while not isinstance(event := self.next_event(), kind):
            if isinstance(event, dul.ConnectionClosed):
                raise AssertionError(f"connection ended while waiting for {kind}: {event}")
        return event

    def receive_message(self) -> dimse.MessageReceived:
        event = self.until(dimse.MessageReceived)
        assert isinstance(event, dimse.MessageReceived)
        return event

    def read_dataset(self) -> bytes:
        """The data set of the message just received, joined (streaming mode)."""
        parts = []
        while True:
            event = self.until(dimse.DatasetChunk)
            assert isinstance(event, dimse.DatasetChunk)
            parts.append(bytes(event.data))
            if event.is_last:
                return b"".join(parts)

    def _receive(self) -> None:
        conn = self.session.connection
        deadline = time.monotonic() + (self.artim if conn.artim_running else self.timeout)
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            received = self.sock.recv_into(self._buffer)
        except TimeoutError:
            if not conn.artim_running:
                raise
            conn.artim_expired()  # Evt18
            return
        except ConnectionResetError:
            received = 0
        self.session.receive_data(self._view[:received] if received else b"")

    # -- ending ----------------------------------------------------------------------------------

    def release(self) -> dul.ConnectionClosed:
        """Send A-RELEASE-RQ and read until the connection ends."""
        self.send(dul.ReleaseRequest())
        while not isinstance(event := self.next_event(), dul.ConnectionClosed):
            pass
        return event

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


class ServerThread(threading.Thread):
    """Accept one connection on a loopback port and run ``serve`` on it in a thread.

    ``result()`` joins the thread and re-raises what it raised.
    """

    def __init__(self, serve: Callable[[SocketPeer], None], *, session_options: dict[str, object]):
        super().__init__(daemon=True)
        self.serve = serve
        self.session_options = session_options
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.listener:
                sock, _ = self.listener.accept()
            session = dimse.Session(
                dul.Connection(dul.Role.ACCEPTOR),
                **self.session_options,  # type: ignore[arg-type]
            )
            peer = SocketPeer(sock, session)
            try:
                self.serve(peer)
            finally:
                peer.close()
        except BaseException as exc:  # re-raised by result()
            self.error = exc

    def result(self) -> None:
        self.join(timeout=IO_TIMEOUT * 2)
        assert not self.is_alive(), "server thread still running"
        if self.error is not None:
            raise self.error


# -- test files ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def make_test_file() -> ModuleType:
    """``examples/make_test_file.py`` as a module (examples/ is not a package)."""
    path = ROOT / "examples" / "make_test_file.py"
    spec = importlib.util.spec_from_file_location("make_test_file", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset_offset(data: bytes) -> int:
    """Where the data set of a DICOM file (PS3.10) starts: after the preamble, "DICM" and the
    file meta group, whose length is the value of (0002,0000), explicit VR little endian."""
    assert data[128:132] == b"DICM", "not a DICOM file"
    assert data[132:138] == b"\x02\x00\x00\x00UL" and data[138:140] == b"\x04\x00"
    (group_length,) = struct.unpack_from("<L", data, 140)
    return 144 + group_length
