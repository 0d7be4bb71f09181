"""The tools on the trio driver: ``python -m examples.trio.<tool>`` runs these.

The same tools, options and exit codes as :mod:`~examples.tools.blocking`'s; the tools
themselves are :mod:`~examples.tools.async_tools`' coroutines, run here by ``trio.run`` on
:mod:`examples.trio.driver`. A server stops on SIGINT or SIGTERM (a trio signal receiver) and
gives the associations in progress a grace period. :func:`server_in_thread` runs a server in a
thread of its own (with its own ``trio.run``), for tests and the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import trio

from examples.trio import driver

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

DRIVER = async_tools.Driver("trio", driver)
#: Seconds the associations in progress get to end once a server is asked to stop.
GRACE = 10.0


def _prog(tool: str) -> str:
    return common.PROG.format(driver=DRIVER.name, tool=tool)


def _run(
    flow: Callable[[async_tools.Driver, argparse.Namespace, logging.Logger], Awaitable[int]],
) -> Callable[[argparse.Namespace, logging.Logger], int]:
    """A tool's body: ``flow`` run on the trio driver by ``trio.run``."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return int(trio.run(flow, DRIVER, args, log))

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


async def _until_stopped() -> None:
    """Return on SIGINT or SIGTERM (in the main thread; elsewhere, wait for cancellation)."""
    if threading.current_thread() is not threading.main_thread():
        await trio.sleep_forever()
    else:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


async def serve(
    server: driver.Server, args: argparse.Namespace, log: logging.Logger, name: str
) -> int:
    """Serve until Ctrl-C or SIGTERM, then give the associations in progress :data:`GRACE`."""
    failure: OSError | None = None
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(server.serve)
        except OSError as exc:  # raised out of the nursery only once it has closed
            failure = exc
        else:
            common.listening(log, args, name, server.port)
            await _until_stopped()
            log.info("%s: interrupted, stopping", name)
            started = time.monotonic()
            server.shutdown(GRACE)
    if failure is not None:
        raise common.listen_failed(args, failure) from failure
    log.debug("stopped in %.2f s", time.monotonic() - started)
    return ExitCode.OK


def _serve_main(
    name: str, build: Callable[[argparse.Namespace, logging.Logger], driver.Server]
) -> Callable[[argparse.Namespace, logging.Logger], int]:
    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return int(trio.run(serve, build(args, log), args, log, name))

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
    """Run ``echoscp`` or ``storescp`` with ``argv`` in a thread with its own ``trio.run``.

    For tests and the demo: port ``0`` binds a free port (see ``Server.port``); the log goes to
    ``stream``, and to ``handler`` when given. A bad option or a port that cannot be bound
    raises :class:`~examples.tools.cli.ToolError`. On exit the server stops and the
    associations in progress get :data:`GRACE` seconds.
    """
    builders = {"echoscp": echoscp_server, "storescp": storescp_server}
    with common.server_args(tool, argv, _prog(tool), stream, handler=handler) as (args, log):
        server = builders[tool](args, log)
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

        thread = threading.Thread(target=run, name=f"trio {tool}", daemon=True)
        thread.start()
        token = ready.get()
        if isinstance(token, BaseException):
            thread.join()
            if isinstance(token, OSError):
                raise common.listen_failed(args, token) from token
            raise token
        try:
            yield server
        finally:
            with contextlib.suppress(trio.RunFinishedError):  # it ended by itself
                trio.from_thread.run_sync(server.shutdown, GRACE, trio_token=token)
            thread.join(GRACE + 5)
