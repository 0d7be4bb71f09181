"""The Query/Retrieve tools on the trio driver: findscu, getscu, movescu, qrscp.

``python -m examples.findscu --driver trio ...`` runs these. The tools' bodies are
:mod:`examples.tools.qr`'s async ones, shared with asyncio; this module gives them trio's
sleeping, locking and looking-without-waiting, and runs the servers: qrscp, and movescu's own
storage SCP (+P), a task beside the C-MOVE. Ctrl-C is received by a task of its own
(``trio.open_signal_receiver``), which sends the C-CANCEL at once; a second Ctrl-C cancels the
request, which aborts the association.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import select
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TextIO

import trio

from dul import dimse
from examples.apps import storage
from examples.sockets.driver import Timeouts
from examples.trio.driver import (
    Association,
    AssociationAborted,
    AssociationRejected,
    DatasetReader,
    DriverError,
    Server,
    echo_handler,
)

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


class TrioRuntime:
    """What :mod:`examples.tools.qr`'s async bodies need, on trio."""

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
        await trio.sleep(seconds)

    @staticmethod
    async def poll(assoc: Association) -> object | None:
        """The next event if it has arrived: in what was read already, or on the socket."""
        try:
            return await assoc.next_event(0)  # what was read already: no read is attempted
        except TimeoutError:
            pass
        stream = assoc.stream
        sock = (
            stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket
        )
        if sock.fileno() >= 0 and not select.select([sock.fileno()], [], [], 0)[0]:
            return None
        return await assoc.next_event(assoc.timeouts.dimse)

    @staticmethod
    def lock() -> trio.Lock:
        return trio.Lock()


RUNTIME = TrioRuntime()


async def _with_interrupt(
    body: Callable[[qr.Interrupt], Awaitable[int]], log: logging.Logger
) -> int:
    """Run an SCU's ``body``; Ctrl-C (in the main thread) asks for a C-CANCEL, then cancels."""
    interrupt = qr.Interrupt()
    result: int = qr.EXIT_INTERRUPTED
    error: Exception | None = None  # raised outside the nursery: never in an exception group
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            if threading.current_thread() is threading.main_thread():
                await nursery.start(_watch, interrupt, scope)
            try:
                result = await body(interrupt)
            except Exception as exc:
                error = exc
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    if scope.cancelled_caught:
        log.error("interrupted again: association aborted")
    return result


async def _watch(
    interrupt: qr.Interrupt, scope: trio.CancelScope, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            if interrupt.requested:
                scope.cancel()
                return
            interrupt.requested = True
            if interrupt.cancel_now is not None:
                await interrupt.cancel_now()


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

        result: int = trio.run(main)
        return result

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
    """movescu: C-MOVE; with +P PORT, receive the instances too (a task beside). 0 on Success."""

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
        result: int = qr.EXIT_INTERRUPTED
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(server.serve)
                log.info("listening on %s:%d for the C-STORE sub-operations", args.bind, port)
                result = await qr.async_movescu(RUNTIME, args, log, interrupt, receiver)
            except OSError as exc:  # cannot listen (the tool's own errors are ToolErrors)
                error = ToolError(
                    ExitCode.NETWORK_SETUP,
                    f"cannot listen on {args.bind}:{args.listen_port}: {exc}",
                )
            except Exception as exc:  # raised outside the nursery: never in an exception group
                error = exc
            finally:
                server.shutdown(grace=_timeout_or(RUNTIME.timeouts(args).acse))
        if error is not None:
            raise error
        return result

    return _scu_main("movescu", qr.movescu_parser(PROG.format("movescu")), body, argv, stream)


def _timeout_or(seconds: float | None, default: float = 10.0) -> float:
    return default if seconds is None else seconds


# -- qrscp ------------------------------------------------------------------------------------


def qrscp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """A qrscp server, not yet serving (``await nursery.start(server.serve)`` runs it)."""
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


async def _serve(server: Server, args: argparse.Namespace, log: logging.Logger) -> int:
    """Serve until Ctrl-C or SIGTERM (in the main thread), then let the associations end."""
    error: OSError | None = None  # raised outside the nursery: never in an exception group
    async with trio.open_nursery() as nursery:
        try:
            port = await nursery.start(server.serve)
        except OSError as exc:
            error = exc
        else:
            log.info("qrscp listening on %s:%d", args.bind, port)
            if args.port == 0:
                print(f"qrscp: listening on {args.bind}:{port}", flush=True)
            if threading.current_thread() is threading.main_thread():
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        log.info("qrscp: interrupted, stopping")
                        server.shutdown()
                        break
    if error is not None:
        raise ToolError(
            ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {error}"
        ) from error
    return ExitCode.OK


def qrscp_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """qrscp: serve a folder of DICOM files until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        server = qrscp_server(args, log)
        result: int = trio.run(_serve, server, args, log)
        return result

    return qr.run_tool("qrscp", qr.qrscp_parser(PROG.format("qrscp")), body, argv, stream)


_loggers = itertools.count(1)


@contextlib.contextmanager
def qrscp_in_thread(argv: Sequence[str], stream: TextIO | None = None) -> Iterator[Server]:
    """Run qrscp with ``argv`` under ``trio.run`` in a thread, until the block exits.

    Port ``0`` binds a free port (``Server.port`` once started); the log goes to ``stream``.
    """
    args = qr.parse(qr.qrscp_parser(PROG.format("qrscp")), list(argv))
    if isinstance(args, int):
        raise ToolError(ExitCode.USAGE, f"qrscp: bad arguments {list(argv)}")
    with cli.tool_logger(f"qrscp.trio.{next(_loggers)}", args, stream) as log:
        server = qrscp_server(args, log)
        started = threading.Event()
        token: list[trio.lowlevel.TrioToken] = []
        errors: list[BaseException] = []

        async def main() -> None:
            token.append(trio.lowlevel.current_trio_token())
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                started.set()

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                errors.append(exc)
            finally:
                started.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.wait(30)
        if errors:
            raise ToolError(ExitCode.NETWORK_SETUP, f"qrscp did not start: {errors[0]}")
        try:
            yield server
        finally:
            trio.from_thread.run_sync(server.shutdown, trio_token=token[0])
            thread.join(15)
