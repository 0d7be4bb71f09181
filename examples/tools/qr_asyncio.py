"""The Query/Retrieve tools on the asyncio driver: findscu, getscu, movescu, qrscp.

``python -m examples.findscu --driver asyncio ...`` runs these. The tools' bodies are
:mod:`examples.tools.qr`'s async ones, shared with trio; this module gives them asyncio's
sleeping, locking and looking-without-waiting, and runs the servers: qrscp, and movescu's own
storage SCP (+P), served by the same event loop while the C-MOVE runs. Ctrl-C goes to a signal
handler of the loop, which sends the C-CANCEL at once; a second Ctrl-C cancels the request,
which aborts the association.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import queue
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TextIO

from dul import dimse
from examples.apps import storage
from examples.asyncio.driver import (
    Association,
    AssociationAborted,
    AssociationRejected,
    DatasetReader,
    DriverError,
    Server,
    echo_handler,
)
from examples.sockets.driver import Timeouts

from . import cli, qr
from .cli import ExitCode, ToolError

__all__ = [
    "findscu_main",
    "getscu_main",
    "movescu_main",
    "qrscp_in_thread",
    "qrscp_main",
    "qrscp_server",
]

PROG = "python -m examples.{}"
#: Seconds the associations in progress get when a server stops.
GRACE = 10.0


class AsyncioRuntime:
    """What :mod:`examples.tools.qr`'s async bodies need, on asyncio."""

    association = Association
    driver_error = DriverError
    aborted = AssociationAborted
    rejected = AssociationRejected

    @staticmethod
    def timeouts(args: argparse.Namespace) -> Timeouts:
        values = cli.timeout_values(args)
        connect = values.connect if hasattr(args, "connect_timeout") else values.acse
        return Timeouts(connect=connect, acse=values.acse, dimse=values.dimse)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @staticmethod
    async def poll(assoc: Association) -> object | None:
        """The next event if it has arrived: the protocol feeds every byte to the session as
        the loop reads it, so a zero timeout sees all there is."""
        try:
            return await assoc.next_event(0)
        except TimeoutError:
            return None

    @staticmethod
    def lock() -> asyncio.Lock:
        return asyncio.Lock()


RUNTIME = AsyncioRuntime()


async def _with_interrupt(
    body: Callable[[qr.Interrupt], Awaitable[int]], log: logging.Logger
) -> int:
    """Run an SCU's ``body``; Ctrl-C (in the main thread) asks for a C-CANCEL, then cancels."""
    interrupt = qr.Interrupt()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    pending: set[asyncio.Task[None]] = set()
    aborted = False

    def on_sigint() -> None:
        nonlocal aborted
        if interrupt.requested:
            aborted = True
            task.cancel()
            return
        interrupt.requested = True
        if interrupt.cancel_now is not None:
            cancel = loop.create_task(interrupt.cancel_now())
            pending.add(cancel)
            cancel.add_done_callback(pending.discard)

    installed = threading.current_thread() is threading.main_thread()
    if installed:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await body(interrupt)
    except asyncio.CancelledError:
        if not aborted:
            raise
        log.error("interrupted again: association aborted")
        return qr.EXIT_INTERRUPTED
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def _scu_main(
    name: str,
    parser: cli.Parser,
    body: Callable[[argparse.Namespace, logging.Logger, qr.Interrupt], Awaitable[int]],
    argv: Sequence[str] | None,
    stream: TextIO | None,
) -> int:
    def run(args: argparse.Namespace, log: logging.Logger) -> int:
        async def main() -> int:
            return await _with_interrupt(lambda interrupt: body(args, log, interrupt), log)

        return asyncio.run(main())

    return qr.run_tool(name, parser, run, argv, stream)


# -- the SCUs ---------------------------------------------------------------------------------


def findscu_main(
    argv: Sequence[str] | None = None, *, stream: TextIO | None = None, out: TextIO | None = None
) -> int:
    """findscu: C-FIND; each match is printed to ``out`` (stdout). 0 on Success or Cancel."""

    async def body(args: argparse.Namespace, log: logging.Logger, interrupt: qr.Interrupt) -> int:
        return await qr.async_findscu(RUNTIME, args, log, interrupt, out)

    return _scu_main("findscu", qr.findscu_parser(PROG.format("findscu")), body, argv, stream)


def getscu_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """getscu: C-GET, receiving the C-STOREs on the same association. 0 on Success."""

    async def body(args: argparse.Namespace, log: logging.Logger, interrupt: qr.Interrupt) -> int:
        return await qr.async_getscu(RUNTIME, args, log, interrupt, DatasetReader)

    return _scu_main("getscu", qr.getscu_parser(PROG.format("getscu")), body, argv, stream)


def movescu_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """movescu: C-MOVE; with +P PORT, receive the instances too (same loop). 0 on Success."""

    async def body(args: argparse.Namespace, log: logging.Logger, interrupt: qr.Interrupt) -> int:
        if args.listen_port is None:
            return await qr.async_movescu(RUNTIME, args, log, interrupt, None)
        receiver = qr.AsyncReceiver(qr.output_directory(args), log)
        server = Server(
            args.bind,
            args.listen_port,
            policy=storage.storage_policy(ae_title=None, maximum_length=args.max_pdu),
            handlers={dimse.CStoreRequest: receiver, dimse.CEchoRequest: echo_handler},
            timeouts=RUNTIME.timeouts(args),
            on_event=cli.Tracer(log, "STORE-SCP", per_association=True),
        )
        try:
            await server.start()
        except OSError as exc:
            raise ToolError(
                ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.listen_port}: {exc}"
            ) from exc
        log.info("listening on %s:%d for the C-STORE sub-operations", args.bind, server.port)
        try:
            return await qr.async_movescu(RUNTIME, args, log, interrupt, receiver)
        finally:
            await server.shutdown(GRACE)

    return _scu_main("movescu", qr.movescu_parser(PROG.format("movescu")), body, argv, stream)


# -- qrscp ------------------------------------------------------------------------------------


def qrscp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """A qrscp server, not yet listening (``await server.start()``)."""
    archive, destinations, policy = qr.qrscp_setup(args, log)
    scp = qr.AsyncQRSCP(RUNTIME, args, log, archive, destinations)
    handlers: dict[type[dimse.Message], Any] = {
        dimse.CEchoRequest: echo_handler,
        dimse.CFindRequest: scp.find,
        dimse.CGetRequest: scp.get,
        dimse.CMoveRequest: scp.move,
    }
    return Server(
        args.bind,
        args.port,
        policy=policy,
        handlers=handlers,
        max_associations=args.max_associations,
        timeouts=RUNTIME.timeouts(args),
        on_event=cli.Tracer(log, "SCP", per_association=True),
        on_close=qr.on_close_logger(log),
    )


async def _start(server: Server, args: argparse.Namespace) -> None:
    try:
        await server.start()
    except OSError as exc:
        raise ToolError(
            ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {exc}"
        ) from exc


async def _serve(server: Server, args: argparse.Namespace, log: logging.Logger) -> int:
    """Serve until Ctrl-C or SIGTERM (in the main thread), then let the associations end."""
    await _start(server, args)
    log.info("qrscp listening on %s:%d", args.bind, server.port)
    if args.port == 0:
        print(f"qrscp: listening on {args.bind}:{server.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
            signals.append(signum)
    try:
        await stop.wait()
        log.info("qrscp: interrupted, stopping")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await server.shutdown(GRACE)
    return ExitCode.OK


def qrscp_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """qrscp: serve a folder of DICOM files until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return asyncio.run(_serve(qrscp_server(args, log), args, log))

    return qr.run_tool("qrscp", qr.qrscp_parser(PROG.format("qrscp")), body, argv, stream)


_loggers = itertools.count(1)


@contextlib.contextmanager
def qrscp_in_thread(argv: Sequence[str], stream: TextIO | None = None) -> Iterator[Server]:
    """Run qrscp with ``argv`` in a thread with its own event loop, until the block exits.

    Port ``0`` binds a free port (``Server.port``); the log goes to ``stream``.
    """
    args = qr.parse(qr.qrscp_parser(PROG.format("qrscp")), list(argv))
    if isinstance(args, int):
        raise ToolError(ExitCode.USAGE, f"qrscp: bad arguments {list(argv)}")
    with cli.tool_logger(f"qrscp.asyncio.{next(_loggers)}", args, stream) as log:
        server = qrscp_server(args, log)
        ready: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event] | BaseException]
        ready = queue.Queue()

        async def main() -> None:
            try:
                await _start(server, args)
            except BaseException as exc:
                ready.put(exc)
                return
            stop = asyncio.Event()
            ready.put((asyncio.get_running_loop(), stop))
            try:
                await stop.wait()
            finally:
                await server.shutdown(GRACE)

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        handle = ready.get(timeout=30)
        if isinstance(handle, BaseException):
            thread.join()
            raise handle
        loop, stop = handle
        try:
            yield server
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(GRACE + 5)
