"""The one front end of echoscu, echoscp, storescu and storescp, whatever the driver.

``python -m examples.storescu [--driver sockets|trio|asyncio] ...``: the options are parsed
(:mod:`examples.tools.cli`), the tool's service is built (:mod:`examples.apps`), and the driver
chosen runs it — as the requestor (:func:`run_requestor`) or, for a server, for each
association it accepts (``serve``). Nothing calls ``sys.exit``: a test or the demo runs a tool
in its own process (:func:`main`, :func:`server_in_thread`).
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import itertools
import logging
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TextIO

import dul
from examples.apps import echo
from examples.apps.common import BROKEN, ExitCode, ToolError, association_failed
from examples.runtime import Service, Timeouts
from examples.workers import run_workers

from . import cli, qr_cli

__all__ = ["TOOLS", "driver", "main", "server_in_thread"]

#: How a user runs a tool.
PROG = "python -m examples.{tool}"
#: Exit status of an SCU interrupted with Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


def driver(name: str) -> ModuleType:
    """The driver module ``examples.<name>.driver``; a missing library is a one-line error."""
    try:
        return importlib.import_module(f"examples.{name}.driver")
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise ToolError(
            ExitCode.USAGE,
            f"the {name} driver needs the {name} package, which is not installed: "
            "pip install -e '.[examples]' (the extra with every driver's dependency)",
        ) from exc


def _timeouts(args: argparse.Namespace) -> Timeouts:
    """The timeouts of the options; a server's own connections (a C-MOVE's) take -ta's."""
    values = cli.timeout_values(args)
    connect = values.connect if hasattr(args, "connect_timeout") else values.acse
    return Timeouts(connect=connect, acse=values.acse, dimse=values.dimse)


# -- requestors -------------------------------------------------------------------------------


def _run(
    args: argparse.Namespace,
    tracer: cli.Tracer,
    service: Service[Any],
    *,
    interruptible: bool = False,
) -> Any:
    """Run ``service`` as the requestor on the driver of ``args``; a failure to connect is 61.

    ``interruptible``: Ctrl-C is the service's (a C-CANCEL); a second one aborts (130).
    """
    ssl_context = cli.client_ssl_context(args)
    try:
        return driver(args.driver).run_requestor(
            service,
            args.peer,
            args.port,
            timeouts=_timeouts(args),
            ssl_context=ssl_context,
            server_hostname=getattr(args, "tls_server_name", None),
            on_event=tracer,
            interruptible=interruptible,
        )
    except BROKEN as exc:
        raise association_failed(exc) from exc
    except KeyboardInterrupt:
        if not interruptible:
            raise
        tracer.logger.error("interrupted again: association aborted")
        raise ToolError(EXIT_INTERRUPTED, "interrupted") from None  # type: ignore[arg-type]


# Each tool imports its own services when it runs: echoscu starts without the storage modules,
# and only the Q/R tools import pydicom.


def _findscu(args: argparse.Namespace, log: logging.Logger, out: TextIO | None = None) -> int:
    from examples.apps.qr import scu

    service = scu.findscu(args, log, out)
    return int(_run(args, cli.Tracer(log, "SCU"), service, interruptible=True))


def _getscu(args: argparse.Namespace, log: logging.Logger) -> int:
    from examples.apps.qr import scu
    from examples.apps.qr.common import output_directory

    service = scu.getscu(args, log, output_directory(args))
    return int(_run(args, cli.Tracer(log, "SCU"), service, interruptible=True))


def _movescu(args: argparse.Namespace, log: logging.Logger) -> int:
    from examples.apps.qr import scu
    from examples.apps.qr.common import output_directory

    if args.listen_port is None:
        service = scu.movescu(args, log, None)
        return int(_run(args, cli.Tracer(log, "SCU"), service, interruptible=True))
    receiver = scu.Receiver(output_directory(args), log, args.max_pdu)
    service = scu.movescu(args, log, receiver)

    try:
        serving = driver(args.driver).serving(
            receiver.service,
            args.bind,
            args.listen_port,
            timeouts=_timeouts(args),
            on_event=_ServerTracer(log, "STORE-SCP"),
        )
        server = serving.__enter__()
    except OSError as exc:
        raise ToolError(
            ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.listen_port}: {exc}"
        ) from exc
    try:
        log.info("listening on %s:%d for the C-STORE sub-operations", args.bind, server.port)
        return int(_run(args, cli.Tracer(log, "SCU"), service, interruptible=True))
    finally:
        serving.__exit__(None, None, None)


def _echoscu(args: argparse.Namespace, log: logging.Logger) -> int:
    failed = _run(args, cli.Tracer(log, "SCU"), echo.echoscu(args, log))
    return echo.echo_result(log, failed, args.repeat)


def _storescu(args: argparse.Namespace, log: logging.Logger) -> int:
    files, progress = _storescu_inputs(args, log)
    tracer = cli.Tracer(log, "SCU")
    failures = 0
    stored_files: list[Any] = []  # acknowledged by the peer, even if the association then ends
    ended: ToolError | None = None
    try:
        from examples.apps import storage, store

        for batch in storage.plan(files, storage.PROPOSALS[args.propose]):
            service = store.store_batch(args, log, batch, progress, stored_files)
            failures += _run(args, tracer, service)
            if failures and not args.no_halt:
                break
    except ToolError as exc:  # the association failed or ended: say what was stored first
        ended = exc
    finally:
        progress.finish()
    total, stored = len(files), len(stored_files)
    log.info(
        "%d of %d files stored, %.1f MB in %.2f s",
        stored,
        total,
        progress.bytes / 1e6,
        progress.elapsed,
    )
    if stored < total:  # files never sent (halted at the first failure) are not stored either
        unsent = total - progress.files
        halted = ""
        if unsent and ended is None:
            halted = f" ({unsent} not sent: halted at the first failure; -nh goes on)"
        log.error("%d of %d files not stored%s", total - stored, total, halted)
        done = {id(dicom) for dicom in stored_files}
        missing = [dicom for dicom in files if id(dicom) not in done]
        for dicom in missing[:_NAMED_NOT_STORED]:
            log.error("not stored: %s", dicom.path)
        if len(missing) > _NAMED_NOT_STORED:
            log.error("... and %d more not stored", len(missing) - _NAMED_NOT_STORED)
    if ended is not None:
        raise ended
    return ExitCode.OK if stored == total else ExitCode.REQUEST_FAILED


#: How many files storescu names when some were not stored (the count says the rest).
_NAMED_NOT_STORED = 20


def _storescu_inputs(
    args: argparse.Namespace, log: logging.Logger
) -> tuple[list[Any], cli.Progress]:
    """The files to send (or the error that ends storescu first), and their progress display."""
    from examples.apps import storage

    found = storage.find_files(args.files)
    for note in found.skipped:
        log.info("skipped %s", note)
    if found.invalid:
        for problem in found.invalid:
            log.error("%s", problem)
        raise ToolError(ExitCode.INVALID_INPUT_FILE, "invalid input file(s): nothing sent")
    if not found.files:
        raise ToolError(ExitCode.NO_VALID_INPUT_FILES, "no DICOM file found in the inputs")
    # This run's handler is the newest: another run of the tool may still hold an older one.
    stream: TextIO = getattr(log.handlers[-1], "stream", sys.stderr) if log.handlers else sys.stderr
    enabled = args.progress if args.progress is not None else stream.isatty()
    progress = cli.Progress(
        len(found.files), sum(f.length for f in found.files), stream, enabled=enabled
    )
    return found.files, progress


# -- acceptors --------------------------------------------------------------------------------


class _ContextLocal:
    """Attributes local to the running thread and, within it, to the running task.

    :class:`cli.Tracer` keeps an association's number in a ``threading.local``: right for the
    sockets driver (a thread per association), wrong under trio and asyncio, whose associations
    all run in one thread. A context variable is per thread too, and each trio or asyncio task
    runs in its own copy of the context, so this serves all three drivers.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_var", contextvars.ContextVar("dul-tools-local"))

    def _values(self) -> dict[str, Any]:
        var: contextvars.ContextVar[dict[str, Any]] = object.__getattribute__(self, "_var")
        values = var.get(None)
        if values is None:
            values = {}
            var.set(values)
        return values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values()[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._values()[name]
        except KeyError:
            raise AttributeError(name) from None


class _ServerTracer(cli.Tracer):
    """The acceptor's tracer: associations numbered per task (or thread), whatever the driver."""

    def __init__(self, logger: logging.Logger, label: str = "SCP") -> None:
        super().__init__(logger, label, per_association=True)
        self._local = _ContextLocal()  # type: ignore[assignment]


def _close_logger(log: logging.Logger) -> Callable[[Any], None]:
    """The ``on_close`` of a server: one line saying how each association ended."""

    def on_close(assoc: Any) -> None:
        request = assoc.connection.request
        who = f"from {request.calling_ae_title!r}" if request is not None else "(no request)"
        if assoc.closed is not None:
            cause = assoc.closed.cause.value
        elif assoc.connection.state is dul.State.AWAITING_TRANSPORT_CLOSE:
            cause = "aborted locally"  # we sent an A-ABORT (on purpose, or on a timeout)
        else:
            cause = f"closed in {assoc.connection.state.label}"
        log.info("association %s ended: %s", who, cause)

    return on_close


def _server_options(args: argparse.Namespace, log: logging.Logger) -> dict[str, Any]:
    """The keyword arguments every driver's server takes, from an acceptor's options."""
    return {
        "max_associations": args.max_associations,
        "timeouts": _timeouts(args),
        "ssl_context": cli.server_ssl_context(args),
        "on_event": _ServerTracer(log),
        "on_close": _close_logger(log),
    }


def _listen_failed(args: argparse.Namespace, exc: OSError) -> ToolError:
    return ToolError(ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {exc}")


def _serve(name: str, build: Callable[[argparse.Namespace, logging.Logger], Service[None]]) -> Any:
    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        service = cli.access_control(args, log).guard(build(args, log))

        def listening(port: int) -> None:  # on port 0 the user cannot guess it: always print
            log.info("%s listening on %s:%d", name, args.bind, port)
            if args.port == 0:
                print(f"{name}: listening on {args.bind}:{port}", flush=True)

        serve = driver(args.driver).serve
        options = _server_options(args, log)

        def stopping() -> None:
            log.info("%s: interrupted, stopping", name)

        if args.workers > 1:
            try:
                listener = socket.create_server((args.bind, args.port), backlog=1024)
            except OSError as exc:
                raise _listen_failed(args, exc) from exc
            listening(listener.getsockname()[1])

            def worker(sock: socket.socket) -> None:
                serve(service, args.bind, args.port, listener=sock, **options)

            return run_workers(listener, args.workers, worker, log=log)
        try:
            serve(
                service,
                args.bind,
                args.port,
                on_listening=listening,
                on_stopping=stopping,
                **options,
            )
        except OSError as exc:
            raise _listen_failed(args, exc) from exc
        return ExitCode.OK

    return body


def _echoscp(args: argparse.Namespace, log: logging.Logger) -> Service[None]:
    return echo.echoscp(args, log)


def _storescp(args: argparse.Namespace, log: logging.Logger) -> Service[None]:
    from examples.apps import store

    return store.storescp(args, log)


def _qrscp(args: argparse.Namespace, log: logging.Logger) -> Service[None]:
    from examples.apps.qr import scp

    return scp.qrscp(args, log, _timeouts(args), cli.Tracer(log, "MOVE-SCU"))


#: Each tool: its parser, and what it does with the options and a logger.
TOOLS: dict[
    str, tuple[Callable[[str], cli.Parser], Callable[[argparse.Namespace, logging.Logger], int]]
] = {
    "echoscu": (cli.echoscu_parser, _echoscu),
    "storescu": (cli.storescu_parser, _storescu),
    "echoscp": (cli.echoscp_parser, _serve("echoscp", _echoscp)),
    "storescp": (cli.storescp_parser, _serve("storescp", _storescp)),
    "findscu": (qr_cli.findscu_parser, _findscu),
    "getscu": (qr_cli.getscu_parser, _getscu),
    "movescu": (qr_cli.movescu_parser, _movescu),
    "qrscp": (qr_cli.qrscp_parser, _serve("qrscp", _qrscp)),
}
_SERVICES = {"echoscp": _echoscp, "storescp": _storescp, "qrscp": _qrscp}


def main(
    tool: str,
    argv: Sequence[str] | None = None,
    *,
    stream: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run ``tool`` with ``argv`` (default: the command line); its exit status.

    The log goes to ``stream`` (stderr); findscu prints its matches to ``out`` (stdout). A
    :class:`ToolError` becomes its exit code, logged; ``--help`` is 0, a usage error 1.
    """
    make_parser, body = TOOLS[tool]
    try:
        args = make_parser(PROG.format(tool=tool)).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (1)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    with cli.tool_logger(tool, args, stream) as log:
        try:
            driver(args.driver)  # a missing driver library is said before any work starts
            return _findscu(args, log, out) if tool == "findscu" else body(args, log)
        except ToolError as exc:
            log.critical("%s", exc)
            return exc.code


_loggers = itertools.count(1)


@contextmanager
def server_in_thread(
    tool: str,
    argv: Sequence[str],
    stream: TextIO | None = None,
    *,
    handler: logging.Handler | None = None,
) -> Iterator[Any]:
    """Run ``echoscp`` or ``storescp`` with ``argv`` in a thread of this process, until exit.

    For tests and the demo: port ``0`` binds a free port (see ``.port`` of what is yielded);
    ``--driver`` in ``argv`` picks the driver. The log goes to ``stream``, and to ``handler``
    when given; a bad option or a port that cannot be bound raises :class:`ToolError`.
    """
    parser = TOOLS[tool][0](PROG.format(tool=tool))
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        raise ToolError(ExitCode.USAGE, f"{tool}: bad arguments {list(argv)}") from exc
    with cli.tool_logger(f"{tool}.{next(_loggers)}", args, stream) as log:
        if handler is not None:
            log.addHandler(handler)
        try:
            service = cli.access_control(args, log).guard(_SERVICES[tool](args, log))
            options = _server_options(args, log)
            try:
                serving = driver(args.driver).serving(service, args.bind, args.port, **options)
                server = serving.__enter__()
            except OSError as exc:
                raise _listen_failed(args, exc) from exc
            try:
                log.info("%s listening on %s:%d", tool, args.bind, server.port)
                yield server
            finally:
                serving.__exit__(None, None, None)
        finally:
            if handler is not None:
                log.removeHandler(handler)


def entry(tool: str) -> Callable[[], int]:
    """The ``main`` of ``python -m examples.<tool>``."""

    def run() -> int:
        return main(tool)

    run.__doc__ = f"{tool}: see ``python -m examples.{tool} --help``."
    return run
