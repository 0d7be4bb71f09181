"""The tools on the blocking-sockets driver: ``python -m examples.sockets.<tool>`` runs these.

Each ``*_main(argv)`` parses the command line with :mod:`examples.tools.cli`, runs the tool, and
returns its exit status; nothing calls ``sys.exit``, so a test or the demo can run a tool in
their own process. :func:`storescp_server` and :func:`echoscp_server` build a server without
running it; :func:`server_in_thread` runs one in a thread. Everything that does not wait on the
network is :mod:`examples.tools.common`'s, shared with the trio and asyncio tools.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO, cast

import dul
from dul import dimse
from examples.sockets.driver import Association, DatasetReader, Server, echo_handler

from . import cli, common, storage
from .cli import ExitCode, ToolError

__all__ = [
    "echoscp_main",
    "echoscp_server",
    "echoscu_main",
    "serve",
    "server_in_thread",
    "storescp_main",
    "storescp_server",
    "storescu_main",
]


def _prog(tool: str) -> str:
    return common.PROG.format(driver="sockets", tool=tool)


def _request(
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    tracer: cli.Tracer,
) -> Association:
    """Open the association the options describe; any failure is ASSOCIATION_FAILED (61)."""
    request = common.association_request(args, contexts)
    ssl_context = cli.client_ssl_context(args)
    try:
        return Association.request(
            args.peer,
            args.port,
            request,
            timeouts=common.driver_timeouts(args),
            ssl_context=ssl_context,
            server_hostname=getattr(args, "tls_server_name", None),
            on_event=tracer,
        )
    except common.BROKEN as exc:
        raise common.association_failed(exc) from exc


def _end(assoc: Association, args: argparse.Namespace, log: logging.Logger) -> None:
    """Release (or, with --abort, abort) the association."""
    if args.abort:
        log.info("aborting the association, as --abort asks")
        assoc.abort()
        return
    try:
        assoc.release()
    except common.BROKEN as exc:
        raise common.release_failed(exc) from exc


# -- echoscu ----------------------------------------------------------------------------------


def echoscu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscu: C-ECHO the peer; 0 when every response said Success."""
    return common.run_tool("echoscu", cli.echoscu_parser(_prog("echoscu")), _echoscu, argv, stream)


def _echoscu(args: argparse.Namespace, log: logging.Logger) -> int:
    assoc = _request(args, common.ECHO_CONTEXTS, cli.Tracer(log, "SCU"))
    failed = 0
    try:
        if common.context_for(assoc, dimse.VERIFICATION_SOP_CLASS) is None:
            assoc.release()
            raise ToolError(ExitCode.ASSOCIATION_FAILED, common.VERIFICATION_REFUSED)
        for _ in range(args.repeat):
            if not common.echo_status(log, assoc.echo()):
                failed += 1
    except common.BROKEN as exc:
        assoc.abort()
        raise common.broken(exc) from exc
    except BaseException:
        assoc.abort()
        raise
    _end(assoc, args, log)
    return common.echo_result(log, failed, args.repeat)


# -- storescu ---------------------------------------------------------------------------------


def storescu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescu: C-STORE files; 0 when every file was stored (Success or Warning)."""
    parser = cli.storescu_parser(_prog("storescu"))
    return common.run_tool("storescu", parser, _storescu, argv, stream)


def _storescu(args: argparse.Namespace, log: logging.Logger) -> int:
    files, progress = common.storescu_inputs(args, log)
    tracer = cli.Tracer(log, "SCU")
    failures = 0
    try:
        for batch in storage.plan(files):
            failures += _store_batch(args, log, tracer, batch, progress)
            if failures and not args.no_halt:
                break
    finally:
        progress.finish()
    return common.storescu_result(log, progress, len(files), failures)


def _store_batch(
    args: argparse.Namespace,
    log: logging.Logger,
    tracer: cli.Tracer,
    batch: storage.Batch,
    progress: cli.Progress,
) -> int:
    """Store the files of one association; return how many failed."""
    assoc = _request(args, batch.contexts, tracer)
    failures = 0
    try:
        chunk_size = common.chunk_size(assoc)
        for dicom in batch.files:
            if not _store_file(assoc, dicom, chunk_size, log, progress):
                failures += 1
                if not args.no_halt:
                    break
    except common.BROKEN as exc:
        assoc.abort()
        raise common.broken(exc) from exc
    except BaseException:
        assoc.abort()
        raise
    _end(assoc, args, log)
    return failures


def _store_file(
    assoc: Association,
    dicom: storage.DicomFile,
    chunk_size: int,
    log: logging.Logger,
    progress: cli.Progress,
) -> bool:
    """C-STORE one file, its data set streamed from disk; True when stored.

    A data set of at most ``chunk_size`` bytes is read whole and sent with its command in one
    gather-write; a larger one is streamed, one chunk in memory at a time.
    """
    context_id = common.context_for(assoc, dicom.sop_class_uid, dicom.transfer_syntax)
    if context_id is None:
        common.no_context(log, dicom)
        progress.file_done()
        return False
    log.info("sending %s (%d bytes)", dicom.path, dicom.length)
    try:
        with open(dicom.path, "rb") as fp:
            if dicom.length <= chunk_size:  # small: command and data set in one gather-write
                data = common.read_small(fp, dicom)
                response = assoc.store(
                    dicom.sop_class_uid, dicom.sop_instance_uid, data, context_id=context_id
                )
                progress.add(len(data))
            else:
                chunks = common.file_chunks(fp, dicom, chunk_size, progress)
                response = assoc.store(
                    dicom.sop_class_uid,
                    dicom.sop_instance_uid,
                    cast("Iterator[bytes]", chunks),  # memoryviews do: the driver slices them
                    length=dicom.length,
                    context_id=context_id,
                )
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        assoc.abort()  # a data set was announced and cannot be finished
        raise common.read_failed(dicom, exc) from exc
    progress.file_done()
    return common.store_result(log, dicom, response)


# -- the servers ------------------------------------------------------------------------------


def _server(
    args: argparse.Namespace,
    log: logging.Logger,
    policy: dimse.AcceptorPolicy,
    handlers: dict[type[dimse.Message], object],
) -> Server:
    try:
        return Server(
            args.bind,
            args.port,
            policy=policy,
            handlers=handlers,  # type: ignore[arg-type]
            **common.server_options(args, log),
        )
    except OSError as exc:
        raise common.listen_failed(args, exc) from exc


def echoscp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """An echoscp server, bound, not yet serving."""
    return _server(args, log, common.echoscp_policy(args), {dimse.CEchoRequest: echo_handler})


def storescp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """A storescp server, bound, not yet serving; ``args`` from :func:`cli.storescp_parser`."""
    scp = common.StoreSCP(args, log)

    def store(assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader) -> None:
        """Answer a C-STORE-RQ: stream the data set into a Part 10 file, then respond."""
        receiver = scp.receive(assoc, event)
        try:
            for chunk in dataset:
                if why := receiver.abort_reason(finished=False):
                    assoc.abort()
                    raise scp.aborting(why)
                receiver.write(chunk)
            if why := receiver.abort_reason(finished=True):
                assoc.abort()
                raise scp.aborting(why)
        except BaseException:
            receiver.discard()
            raise
        assoc.send(receiver.response(), context_id=event.context_id)

    handlers = {dimse.CEchoRequest: echo_handler, dimse.CStoreRequest: store}
    return _server(args, log, common.storescp_policy(args), handlers)  # type: ignore[arg-type]


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


def serve(server: Server, args: argparse.Namespace, log: logging.Logger, name: str) -> int:
    """Serve until Ctrl-C or SIGTERM, then wait for the associations in progress."""
    common.listening(log, args, name, server.port)
    with _sigterm_as_interrupt():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log.info("%s: interrupted, stopping", name)
        finally:
            started = time.monotonic()
            server.shutdown()
            log.debug("stopped in %.2f s", time.monotonic() - started)
    return ExitCode.OK


@contextmanager
def server_in_thread(
    tool: str,
    argv: Sequence[str],
    stream: TextIO | None = None,
    *,
    handler: logging.Handler | None = None,
) -> Iterator[Server]:
    """Run ``echoscp`` or ``storescp`` with ``argv`` in a thread of this process, until exit.

    For tests and the demo: port ``0`` binds a free port (see ``Server.port``); the log goes to
    ``stream``, and to ``handler`` when given. A bad option raises :class:`ToolError`.
    """
    builders = {"echoscp": echoscp_server, "storescp": storescp_server}
    with (
        common.server_args(tool, argv, _prog(tool), stream, handler=handler) as (args, log),
        builders[tool](args, log) as server,
    ):
        yield server


def echoscp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscp: answer C-ECHO until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return serve(echoscp_server(args, log), args, log, "echoscp")

    return common.run_tool("echoscp", cli.echoscp_parser(_prog("echoscp")), body, argv, stream)


def storescp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescp: receive C-STORE data sets into files until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return serve(storescp_server(args, log), args, log, "storescp")

    return common.run_tool("storescp", cli.storescp_parser(_prog("storescp")), body, argv, stream)
