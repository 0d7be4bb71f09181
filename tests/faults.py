"""A fault-injecting TCP relay for the tests: what ``netem`` would do, at chosen PDU positions.

The kernel here has no ``netem``, so the tests put this relay between two peers on 127.0.0.1. It
forwards bytes both ways, follows the PDU framing of each direction (6-byte headers, and the
first PDV header of a P-DATA-TF, so it knows command from data set), and at a chosen
:class:`Point` of one direction applies a :class:`Fault`: delay, throttle to a bandwidth,
stall, cut (both sides see the connection close), reset (RST, by ``SO_LINGER`` 0) or half-close
(the receiver sees end of stream, the other direction goes on). It knows nothing of dul: it
relays DCMTK and pynetdicom as well. Threads, one pair per connection; all stop with the relay.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from peers import HOST

__all__ = ["Action", "Fault", "FaultRelay", "Point", "relay"]

P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05


class Action(enum.Enum):
    """What happens at the point."""

    DELAY = "delay"  # each later piece waits ``seconds``
    THROTTLE = "throttle"  # from here on, at most ``rate`` bytes/s
    STALL = "stall"  # forward nothing more for ``seconds`` (0: never), connections kept open
    CUT = "cut"  # both connections closed (FIN)
    RESET = "reset"  # both connections reset (RST)
    HALF_CLOSE = "half-close"  # the receiver of this direction sees end of stream


@dataclass(frozen=True)
class Point:
    """A position in one direction's stream: the ``nth`` PDU of ``pdu_type`` (any: None).

    ``dataset`` narrows P-DATA-TF PDUs to those whose first PDV is a data set fragment (True) or
    a command fragment (False). ``offset`` counts bytes from the PDU's first header byte:
    ``None`` is its middle (mid-PDU), ``0`` is before it, ``-1`` is right after it (between
    PDUs, so between messages when that PDU ends one).
    """

    pdu_type: int | None = None
    nth: int = 1
    dataset: bool | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Fault:
    """``action`` at ``point`` of the stream the client sends (``to_server``) or receives."""

    point: Point
    action: Action
    to_server: bool = True
    seconds: float = 0.0
    rate: int = 0


@dataclass
class _Direction:
    """Framing of one direction, and where the armed fault fires in it."""

    fault: Fault | None
    matched: int = 0  # PDUs seen that match the point
    left: int = 0  # bytes of the current PDU still to forward (header included)
    trigger: int | None = None  # bytes to forward before the fault fires
    fired: bool = False
    throttle: float = 0.0
    delay: float = 0.0

    def frame(self, buf: bytearray) -> bool:
        """At a PDU boundary: read its header off ``buf`` (not consumed); False if incomplete."""
        if len(buf) < 6:
            return False
        pdu_type = buf[0]
        (length,) = struct.unpack_from(">L", buf, 2)
        if pdu_type == P_DATA_TF and length >= 6 and len(buf) < 12:
            return False  # wait for the first PDV header too
        total = 6 + length
        self.left = total
        point = self.fault.point if self.fault is not None else None
        if point is None or self.fired or not _matches(point, pdu_type, bytes(buf[:12])):
            return True
        self.matched += 1
        if self.matched == point.nth:
            at = total // 2 if point.offset is None else point.offset
            self.trigger = total if at == -1 else min(at, total)
        return True


def _matches(point: Point, pdu_type: int, header: bytes) -> bool:
    if point.pdu_type is not None and pdu_type != point.pdu_type:
        return False
    if point.dataset is not None:
        if pdu_type != P_DATA_TF or len(header) < 12:
            return False
        is_command = bool(header[11] & 1)  # bit 0 of the first PDV's message control header
        return is_command != point.dataset
    return True


class FaultRelay:
    """Listens on a free port of 127.0.0.1 and relays each connection to ``upstream``."""

    def __init__(self, upstream_port: int, fault: Fault | None = None) -> None:
        self.upstream_port = upstream_port
        self.fault = fault
        self.fired = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = False
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets |= {client, server}
            fault = self.fault
            for source, sink, up in ((client, server, True), (server, client, False)):
                own = fault if fault is not None and fault.to_server == up else None
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, _Direction(own)), daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, d: _Direction) -> None:
        buf = bytearray()  # read and not yet forwarded
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.sendall(buf)  # a partial header at the end goes out as it is
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                buf += data
                while buf:
                    if d.left == 0 and not d.frame(buf):
                        break
                    if d.trigger == 0:
                        d.trigger = None
                        d.fired = True
                        self.fired.set()
                        if self._fire(d, source, sink):
                            return
                    size = min(len(buf), d.left if d.trigger is None else d.trigger)
                    if d.delay:
                        time.sleep(d.delay)
                    if d.throttle:
                        time.sleep(size / d.throttle)
                    sink.sendall(buf[:size])
                    del buf[:size]
                    d.left -= size
                    if d.trigger is not None:
                        d.trigger -= size
        except OSError:
            self._close(source, sink)

    def _fire(self, d: _Direction, source: socket.socket, sink: socket.socket) -> bool:
        """Apply the fault; True when this direction forwards nothing more."""
        fault = d.fault
        assert fault is not None
        action = fault.action
        if action is Action.DELAY:
            d.delay = fault.seconds
            return False
        if action is Action.THROTTLE:
            d.throttle = float(fault.rate)
            return False
        if action is Action.STALL:
            if not fault.seconds:
                return True
            time.sleep(fault.seconds)
            return False
        if action is Action.HALF_CLOSE:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            return True
        if action is Action.RESET:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._close(source, sink)
        return True

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stop accepting, close every relayed connection, join the threads."""
        self._close(self._listener)  # shutdown wakes the accept() (close alone does not)
        with self._lock:
            socks = list(self._sockets)
        self._close(*socks)
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def relay(upstream_port: int, fault: Fault | None = None) -> Iterator[FaultRelay]:
    """A :class:`FaultRelay` for the ``with`` block."""
    instance = FaultRelay(upstream_port, fault)
    try:
        yield instance
    finally:
        instance.close()
