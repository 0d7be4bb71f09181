"""The tools on the asyncio driver: ``python -m examples.asyncio.<tool>`` runs these.

The same tools, options and exit codes as :mod:`~examples.tools.blocking`'s; the tools
themselves are :mod:`~examples.tools.async_tools`' coroutines, run here by ``asyncio.run`` on
:mod:`examples.asyncio.driver`. A server stops on SIGINT or SIGTERM (the loop's signal
handlers) and gives the associations in progress a grace period. :func:`server_in_thread` runs
a server in a thread of its own (with its own event loop), for tests and the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from examples.asyncio import driver

from . import async_tools, cli, common
from .cli import ExitCode

__all__ = [
    "DRIVER",
    "echoscp_main",
    "echoscp_server",
    "echoscu_main",
    "serve",
    "server_in_thread",
    "storescp_main",
    "storescp_server",
    "storescu_main",
]

#: From Python 3.12 on, the selector transport's ``writelines`` keeps views of the buffers it
#: could not send at once (zero-copy writes): storescu then hands each chunk its own bytes.
DRIVER = async_tools.Driver("asyncio", driver)
#: Seconds the associations in progress get to end once a server is asked to stop.
GRACE = 10.0


def _prog(tool: str) -> str:
    return common.PROG.format(driver=DRIVER.name, tool=tool)


def _run(
    flow: Callable[
        [async_tools.Driver, argparse.Namespace, logging.Logger], Coroutine[Any, Any, int]
    ],
) -> Callable[[argparse.Namespace, logging.Logger], int]:
    """A tool's body: ``flow`` run on the asyncio driver by ``asyncio.run``."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return asyncio.run(flow(DRIVER, args, log))

    return body


def echoscu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscu: C-ECHO the peer; 0 when every response said Success."""
    parser = cli.echoscu_parser(_prog("echoscu"))
    return common.run_tool("echoscu", parser, _run(async_tools.echoscu), argv, stream)


def storescu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescu: C-STORE files; 0 when every file was stored (Success or Warning)."""
    parser = cli.storescu_parser(_prog("storescu"))
    return common.run_tool("storescu", parser, _run(async_tools.storescu), argv, stream)


def echoscp_server(args: argparse.Namespace, log: logging.Logger) -> driver.Server:
    """An echoscp server, not yet listening: run it with :func:`serve`."""
    server: driver.Server = async_tools.echoscp_server(DRIVER, args, log)
    return server


def storescp_server(args: argparse.Namespace, log: logging.Logger) -> driver.Server:
    """A storescp server, not yet listening: run it with :func:`serve`."""
    server: driver.Server = async_tools.storescp_server(DRIVER, args, log)
    return server


async def _start(server: driver.Server, args: argparse.Namespace) -> None:
    """Listen; a port that cannot be bound is NETWORK_SETUP (60)."""
    try:
        await server.start()
    except OSError as exc:
        raise common.listen_failed(args, exc) from exc


async def serve(
    server: driver.Server, args: argparse.Namespace, log: logging.Logger, name: str
) -> int:
    """Serve until Ctrl-C or SIGTERM, then give the associations in progress :data:`GRACE`."""
    await _start(server, args)
    common.listening(log, args, name, server.port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
            signals.append(signum)
    try:
        await stop.wait()
        log.info("%s: interrupted, stopping", name)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        started = time.monotonic()
        await server.shutdown(GRACE)
        log.debug("stopped in %.2f s", time.monotonic() - started)
    return ExitCode.OK


def _serve_main(
    name: str, build: Callable[[argparse.Namespace, logging.Logger], driver.Server]
) -> Callable[[argparse.Namespace, logging.Logger], int]:
    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return asyncio.run(serve(build(args, log), args, log, name))

    return body


def echoscp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscp: answer C-ECHO until interrupted."""
    parser = cli.echoscp_parser(_prog("echoscp"))
    return common.run_tool("echoscp", parser, _serve_main("echoscp", echoscp_server), argv, stream)


def storescp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescp: receive C-STORE data sets into files until interrupted."""
    parser = cli.storescp_parser(_prog("storescp"))
    body = _serve_main("storescp", storescp_server)
    return common.run_tool("storescp", parser, body, argv, stream)


@contextmanager
def server_in_thread(
    tool: str,
    argv: Sequence[str],
    stream: TextIO | None = None,
    *,
    handler: logging.Handler | None = None,
) -> Iterator[driver.Server]:
    """Run ``echoscp`` or ``storescp`` with ``argv`` in a thread with its own event loop.

    For tests and the demo: port ``0`` binds a free port (see ``Server.port``); the log goes to
    ``stream``, and to ``handler`` when given. A bad option or a port that cannot be bound
    raises :class:`~examples.tools.cli.ToolError`. On exit the server stops and the
    associations in progress get :data:`GRACE` seconds.
    """
    builders = {"echoscp": echoscp_server, "storescp": storescp_server}
    with common.server_args(tool, argv, _prog(tool), stream, handler=handler) as (args, log):
        server = builders[tool](args, log)
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

        thread = threading.Thread(target=asyncio.run, args=(main(),), name=f"asyncio {tool}")
        thread.daemon = True
        thread.start()
        handle = ready.get()
        if isinstance(handle, BaseException):
            thread.join()
            raise handle
        loop, stop = handle
        try:
            yield server
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(GRACE + 5)
