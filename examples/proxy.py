"""A logging DICOM proxy on trio: sit between an SCU and an SCP, forward everything, trace it.

For each connection accepted on the listening port, the proxy connects to the real SCP (when the
A-ASSOCIATE-RQ arrives) and drives one :class:`dul.Connection` per side: an ACCEPTOR facing the
SCU, a REQUESTOR facing the SCP. Every event one side's Connection decodes is sent through the
other's, so both state machines follow PS3.8 as the peers do, and written with
``dul.encode(event, strict=False)``: received values go out byte-exact (AE titles, UIDs, user
information, PDVs). Only reserved fields go out as PS3.8 says to send them, 00H: DCMTK, for one,
sets the reserved byte of each presentation context item of its A-ASSOCIATE-RQ to FFH.

The trace shows each PDU with its time since the connection opened (the pretty-printer of
``python -m dul decode``), the DIMSE messages inside the P-DATA (with the time a response took),
and how each side ended.

What dul itself answers (an A-ABORT for a PDU that breaks PS3.8) goes to that peer, and the other
peer is aborted too. A PDU that dul decodes but would refuse to send (say, an all-space calling
AE title, tolerated on receive) cannot be forwarded through a Connection: the proxy says so and
aborts both sides.

Usage::

    python -m examples.proxy 11113 127.0.0.1 11112      # listen on 11113, SCP on 11112
    storescu -aec STORESCP 127.0.0.1 11113 image.dcm
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import attrs
import trio

import dul
from dul import describe, dimse
from dul.uids import UID_NAMES
from examples.tools.cli import describe_foreign_elements

__all__ = ["Proxy", "main"]

_RECV_SIZE = 256 * 1024
_ENDED_WELL = (dul.CloseCause.RELEASED, dul.CloseCause.REJECTED)


def message_name(message: dimse.Message) -> str:
    """``N-EVENT-REPORT-RQ`` for an :class:`~dul.dimse.NEventReportRequest`."""
    match = re.fullmatch(r"([CN])([A-Za-z]+?)(Request|Response)", type(message).__name__)
    if match is None:  # pragma: no cover - every message class follows the pattern
        return type(message).__name__
    words = re.findall(r"[A-Z][a-z]*", match.group(2))
    suffix = "RQ" if match.group(3) == "Request" else "RSP"
    return f"{match.group(1)}-{'-'.join(w.upper() for w in words)}-{suffix}"


def describe_message(message: dimse.Message) -> str:
    """One line per field of a DIMSE command set, UIDs named."""
    lines = [message_name(message)]
    for attribute in attrs.fields(type(message)):
        value = getattr(message, attribute.name)
        if value is None or value == () or attribute.name == "foreign_elements":
            continue
        if attribute.name == "status":
            text = f"{value:#06x} ({dimse.status_category(value).value})"
        elif isinstance(value, str):
            name = UID_NAMES.get(value)
            text = value + (f" ({name})" if name else "")
        else:
            text = repr(value)
        lines.append(f"  {attribute.name}: {text}")
    lines.extend(f"  {line}" for line in describe_foreign_elements(message))
    return "\n".join(lines)


class _Side:
    """One peer of the proxy: its stream, its Connection, and the ARTIM deadline for reading."""

    def __init__(self, name: str, conn: dul.Connection, artim: float) -> None:
        self.name = name
        self.conn = conn
        self.artim = artim
        self.stream: trio.abc.Stream | None = None
        self.scope: trio.CancelScope | None = None
        self.deadline = math.inf
        self._artim_starts = -1
        self.closed = False

    def refresh_deadline(self) -> None:
        """Follow the Connection's ARTIM: (re)start, stop; a pending read gets the new deadline."""
        if not self.conn.artim_running:
            self.deadline = math.inf
        elif self.conn.artim_starts != self._artim_starts:
            self._artim_starts = self.conn.artim_starts
            self.deadline = trio.current_time() + self.artim
        if self.scope is not None:
            self.scope.deadline = self.deadline

    async def write(self, data: bytes) -> None:
        if not data or self.stream is None or self.closed:
            return
        # A peer that is gone: our read of it will say so (Evt17).
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)

    async def flush(self) -> None:
        """Write what dul queued by itself; close when the state machine says so."""
        await self.write(self.conn.data_to_send())
        self.refresh_deadline()
        if self.conn.must_close:
            await self.close()

    async def close(self) -> None:
        if self.stream is not None and not self.closed:
            self.closed = True
            await self.stream.aclose()

    async def abort(self) -> None:
        """A-ABORT this side (when its state allows one): the other side ended badly."""
        try:
            data = self.conn.send(dul.Abort())
        except dul.LocalProtocolError:
            await self.close()
            return
        await self.write(data)
        await self.flush()


class _Trace:
    """The trace of one proxied connection, with times since it opened."""

    def __init__(self, out: TextIO, number: int) -> None:
        self.out = out
        self.prefix = f"[{number}]"
        self.start = trio.current_time()
        self._commands: dict[tuple[str, int], list[bytes]] = {}
        self._datasets: dict[tuple[str, int], int] = {}
        self._sent_at: dict[tuple[str, int], float] = {}

    def elapsed(self) -> float:
        return float(trio.current_time() - self.start)

    def say(self, arrow: str, text: str) -> None:
        head, _, rest = text.partition("\n")
        lines = [f"{self.prefix} {self.elapsed() * 1000:9.3f} ms  {arrow}  {head}"]
        indent = " " * (len(self.prefix) + 16 + len(arrow))
        lines.extend(indent + line for line in rest.splitlines())
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def event(self, arrow: str, direction: str, event: dul.Event) -> None:
        """A PDU crossing the proxy, and the DIMSE messages completed by its PDVs."""
        self.say(arrow, describe(event))
        if isinstance(event, dul.PDataReceived):
            for value in event.values:
                self._pdv(arrow, direction, value)

    def _pdv(self, arrow: str, direction: str, value: dul.PresentationDataValue) -> None:
        key = (direction, value.context_id)
        if not value.is_command:
            self._datasets[key] = self._datasets.get(key, 0) + len(value.data)
            if value.is_last:
                size = self._datasets.pop(key)
                self.say(arrow, f"DIMSE data set complete: {size} bytes")
            return
        fragments = self._commands.setdefault(key, [])
        fragments.append(bytes(value.data))
        if not value.is_last:
            return
        command = b"".join(self._commands.pop(key))
        try:
            message, has_dataset = dimse.decode_message(command)
        except dul.RemoteProtocolError as exc:
            self.say(arrow, f"DIMSE command set not decoded: {exc}")
            return
        text = describe_message(message)
        text += f"\n  data set follows: {'yes' if has_dataset else 'no'}"
        if isinstance(message, dimse.Request):
            self._sent_at[(direction, message.message_id)] = self.elapsed()
        elif isinstance(message, dimse.Response):
            other = "to SCP" if direction == "to SCU" else "to SCU"
            asked = self._sent_at.get((other, message.message_id_being_responded_to))
            if asked is not None and not message.is_pending:
                del self._sent_at[(other, message.message_id_being_responded_to)]
                text += f"\n  answered in {(self.elapsed() - asked) * 1000:.3f} ms"
        self.say(arrow, "DIMSE " + text)


class Proxy:
    """Forward every connection accepted to ``upstream``; trace to ``out``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        out: TextIO = sys.stdout,
        artim: float = 30.0,
        connect_timeout: float = 30.0,
        connect: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.out = out
        self.artim = artim
        self.connect_timeout = connect_timeout
        self._connect = connect or self._open_upstream
        self._numbers = itertools.count(1)

    async def _open_upstream(self) -> trio.abc.Stream:
        # trio's SocketStream sets TCP_NODELAY itself.
        return await trio.open_tcp_stream(*self.upstream)

    async def serve(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: a free port, see the listeners ``nursery.start`` gives)."""
        await trio.serve_tcp(self.handle, port, host=host, task_status=task_status)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Proxy one connection from an SCU until both sides are closed."""
        trace = _Trace(self.out, next(self._numbers))
        scu = _Side("SCU", dul.Connection(dul.Role.ACCEPTOR), self.artim)
        scp = _Side("SCP", dul.Connection(dul.Role.REQUESTOR), self.artim)
        scu.stream = stream
        trace.say("   ", f"SCU connected; upstream SCP is {self.upstream[0]}:{self.upstream[1]}")
        try:
            async with trio.open_nursery() as nursery:

                async def forward(event: dul.Event) -> None:
                    if not isinstance(event, dul.AssociateRequest) or scp.stream is not None:
                        await self._forward(event, scp, scu, trace)
                        return
                    if not await self._open(scp, trace):
                        # No SCP to ask: a transient rejection by the provider (PS3.8 7.1.1.9).
                        await scu.write(scu.conn.send(event.reject(2, 3, 1)))
                        await scu.flush()
                        return
                    await self._forward(event, scp, scu, trace)  # opens the SCP's Connection
                    nursery.start_soon(self._pump, scp, scu, "SCU <- SCP", "to SCU", trace, None)

                # The SCP side's pump starts with the upstream connection, in forward().
                nursery.start_soon(self._pump, scu, scp, "SCU -> SCP", "to SCP", trace, forward)
        finally:
            with trio.CancelScope(shield=True):
                await scu.close()
                await scp.close()
            trace.say("   ", f"done after {trace.elapsed():.3f} s")

    async def _open(self, scp: _Side, trace: _Trace) -> bool:
        try:
            with trio.fail_after(self.connect_timeout):
                scp.stream = await self._connect()
        except (OSError, trio.TooSlowError) as exc:
            trace.say("   ", f"cannot connect to the SCP: {exc!r}; rejecting the association")
            return False
        trace.say("   ", "connected to the SCP")
        return True

    async def _forward(self, event: dul.Event, dst: _Side, src: _Side, trace: _Trace) -> None:
        """Send ``event`` on ``dst``'s Connection (for its state) and write it byte-exact."""
        out: dul.Event = event
        if isinstance(event, dul.PDataReceived):
            out = dul.PData(values=event.values)
        try:
            data = dst.conn.send(out, strict=False)  # received values go out as they came
        except dul.LocalProtocolError as exc:
            trace.say("   ", f"cannot forward to the {dst.name} through dul: {exc}; aborting both")
            await src.abort()
            await dst.abort()
            return
        await dst.write(data)
        await dst.flush()

    async def _pump(
        self,
        src: _Side,
        dst: _Side,
        arrow: str,
        direction: str,
        trace: _Trace,
        forward: Callable[[dul.Event], Awaitable[None]] | None,
    ) -> None:
        """Read ``src``, feed its Connection, forward each event to ``dst``, until it closes."""
        assert src.stream is not None
        src.refresh_deadline()
        while True:
            while True:
                try:
                    event = src.conn.next_event()
                except dul.RemoteProtocolError as exc:
                    trace.say(arrow, f"protocol error by the {src.name}: {exc}; dul aborts it")
                    await src.flush()
                    await dst.abort()
                    continue
                await src.flush()
                if event is dul.NEED_DATA:
                    break
                trace.event(arrow, direction, event)
                if isinstance(event, dul.ConnectionClosed):
                    await src.close()
                    if event.cause not in _ENDED_WELL:
                        await dst.abort()
                    return
                if forward is not None:
                    await forward(event)
                else:
                    await self._forward(event, dst, src, trace)
            data: bytes | bytearray = b""
            with trio.CancelScope(deadline=src.deadline) as scope:
                src.scope = scope
                try:
                    data = await src.stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            src.scope = None
            if scope.cancelled_caught:
                trace.say(arrow, f"ARTIM expired waiting for the {src.name}")
                src.conn.artim_expired()
                continue
            src.conn.receive_data(data)


async def _run(args: argparse.Namespace) -> None:
    proxy = Proxy(args.host, args.port, artim=args.artim)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(proxy.serve, args.listen_port, args.bind)
        port = listeners[0].socket.getsockname()[1]
        print(f"proxy: listening on {args.bind}:{port}, SCP {args.host}:{args.port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line: run the proxy until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.proxy",
        description="A logging DICOM proxy: forwards associations to an SCP, traces every PDU.",
    )
    parser.add_argument("listen_port", type=int, help="port to listen on (0: any free port)")
    parser.add_argument("host", help="the SCP's host")
    parser.add_argument("port", type=int, help="the SCP's port")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--artim", type=float, default=30.0, help="ARTIM timeout, seconds")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
