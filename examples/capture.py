"""Record a DICOM association: a loopback TCP relay that saves the bytes of each direction.

Put it between a requestor (SCU) and an acceptor (SCP)::

    python examples/capture.py --listen-port 11113 --to-port 11112 --out captures/echo --once

and point the SCU at port 11113. When both sides have closed, the relay writes

* ``PREFIX.rq.bin``: every byte the requestor sent (A-ASSOCIATE-RQ, P-DATA-TF, A-RELEASE-RQ, ...),
* ``PREFIX.ac.bin``: every byte the acceptor sent (A-ASSOCIATE-AC, P-DATA-TF, A-RELEASE-RP, ...),
* ``PREFIX.bin``: the requestor's bytes followed by the acceptor's. Each direction is a sequence
  of whole PDUs, so the concatenation is itself a valid PDU stream to decode, though not in the
  order the PDUs crossed the wire (which TCP does not define between two directions anyway).

Both sockets get TCP_NODELAY, so the relay does not add delayed-ACK stalls of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import selectors
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Capture", "listen", "relay_one", "write_capture"]

_CHUNK = 64 * 1024


@dataclass
class Capture:
    """The bytes one connection carried, by direction."""

    requestor: bytearray = field(default_factory=bytearray)
    """What the connecting side (the association requestor) sent."""
    acceptor: bytearray = field(default_factory=bytearray)
    """What the target (the association acceptor) sent."""


def listen(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """Return a listening socket on ``host:port`` (port 0 picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1)
    return sock


def relay_one(
    listener: socket.socket,
    to: tuple[str, int],
    timeout: float = 60.0,
    accept_timeout: float | None = 60.0,
) -> Capture:
    """Accept one connection on ``listener``, relay it to ``to`` and return what each side sent.

    Returns once both directions have reached end of file (or one side reset the connection).
    ``timeout`` bounds a silence on the connection, ``accept_timeout`` the wait for it (None: wait
    forever).
    """
    listener.settimeout(accept_timeout)
    client, _ = listener.accept()
    with client, socket.create_connection(to, timeout=timeout) as server:
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        return _pump(client, server, timeout)


def _pump(client: socket.socket, server: socket.socket, timeout: float) -> Capture:
    capture = Capture()
    # source socket -> (destination socket, where to record)
    routes = {client: (server, capture.requestor), server: (client, capture.acceptor)}
    with selectors.DefaultSelector() as sel:
        for sock in routes:
            sel.register(sock, selectors.EVENT_READ)
        while routes:
            ready = sel.select(timeout)
            if not ready:
                raise TimeoutError(f"no traffic for {timeout} s")
            for key, _ in ready:
                src = key.fileobj
                assert isinstance(src, socket.socket)
                dst, record = routes[src]
                try:
                    data = src.recv(_CHUNK)
                except ConnectionResetError:
                    data = b""
                if data:
                    record += data
                    _send_all(dst, data)
                    continue
                # End of file from src: pass it on and stop reading that direction.
                sel.unregister(src)
                del routes[src]
                with contextlib.suppress(OSError):  # the other side may be gone already
                    dst.shutdown(socket.SHUT_WR)
    return capture


def _send_all(sock: socket.socket, data: bytes) -> None:
    # The sockets are non-blocking so that reading one direction never waits on the other; a
    # loopback peer drains quickly, so waiting here for room to write is fine.
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)
            continue
        except (BrokenPipeError, ConnectionResetError):
            return
        view = view[sent:]


def write_capture(capture: Capture, prefix: Path) -> list[Path]:
    """Write ``PREFIX.rq.bin``, ``PREFIX.ac.bin`` and ``PREFIX.bin``; return their paths."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    files = {
        ".rq.bin": bytes(capture.requestor),
        ".ac.bin": bytes(capture.acceptor),
        ".bin": bytes(capture.requestor + capture.acceptor),
    }
    paths = []
    for suffix, data in files.items():
        path = prefix.with_name(prefix.name + suffix)
        path.write_bytes(data)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, required=True, help="port to accept on")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address to accept on")
    parser.add_argument("--to-host", default="127.0.0.1", help="the acceptor's address")
    parser.add_argument("--to-port", type=int, required=True, help="the acceptor's port")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the files to write")
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit after one connection (otherwise the n-th connection is saved as PREFIX-n)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without traffic")
    args = parser.parse_args(argv)

    with listen(args.listen_port, args.listen_host) as listener:
        host, port = listener.getsockname()[:2]
        print(f"relaying {host}:{port} -> {args.to_host}:{args.to_port}", file=sys.stderr)
        n = 0
        while True:
            n += 1
            accept_timeout = args.timeout if args.once else None
            capture = relay_one(
                listener, (args.to_host, args.to_port), args.timeout, accept_timeout
            )
            prefix = args.out if n == 1 else args.out.with_name(f"{args.out.name}-{n}")
            for path in write_capture(capture, prefix):
                print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
            if args.once:
                return 0


if __name__ == "__main__":
    sys.exit(main())
