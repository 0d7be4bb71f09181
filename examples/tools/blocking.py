"""The tools on the blocking-sockets driver: ``python -m examples.sockets.<tool>`` runs these.

Each ``*_main(argv)`` parses the command line with :mod:`examples.tools.cli`, runs the tool, and
returns its exit status; nothing calls ``sys.exit``, so a test or the demo can run a tool in
their own process. :func:`storescp_server` and :func:`echoscp_server` build a server without
running it; :func:`server_in_thread` runs one in a thread.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO, cast

import dul
from dul import dimse
from examples.sockets.driver import (
    Association,
    AssociationAborted,
    AssociationRejected,
    DatasetReader,
    DriverError,
    Server,
    Timeouts,
    echo_handler,
)

from . import cli, storage
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

PROG = "python -m examples.sockets.{}"
#: dul's fragment size when the peer sets no maximum length (dul._connection.UNLIMITED_FRAGMENT).
_UNLIMITED_FRAGMENT = 1 << 20
#: About how many bytes storescu reads from a file at a time.
_CHUNK = 1 << 20

#: A-ASSOCIATE failures and what ends an established association, as exceptions.
_BROKEN = (DriverError, TimeoutError, dul.ProtocolError, OSError)


def _run(
    name: str,
    parser: cli.Parser,
    body: Callable[[argparse.Namespace, logging.Logger], int],
    argv: list[str] | None,
    stream: TextIO | None,
) -> int:
    """Parse ``argv``, run ``body`` with a logger; a :class:`ToolError` becomes its exit code."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (1)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    with cli.tool_logger(name, args, stream) as log:
        try:
            return body(args, log)
        except ToolError as exc:
            log.critical("%s", exc)
            return exc.code


def _timeouts(args: argparse.Namespace) -> Timeouts:
    values = cli.timeout_values(args)
    return Timeouts(connect=values.connect, acse=values.acse, dimse=values.dimse)


def _request(
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    tracer: cli.Tracer,
) -> Association:
    """Open the association the options describe; any failure is ASSOCIATION_FAILED (61)."""
    request = dul.AssociateRequest(
        called_ae_title=args.call,
        calling_ae_title=args.aetitle,
        presentation_contexts=contexts,
        user_information=dul.UserInformation(maximum_length=args.max_pdu),
    )
    ssl_context = cli.client_ssl_context(args)
    try:
        return Association.request(
            args.peer,
            args.port,
            request,
            timeouts=_timeouts(args),
            ssl_context=ssl_context,
            server_hostname=getattr(args, "tls_server_name", None),
            on_event=tracer,
        )
    except AssociationRejected as exc:
        raise ToolError(ExitCode.ASSOCIATION_FAILED, str(exc)) from exc
    except TimeoutError as exc:
        raise ToolError(
            ExitCode.ASSOCIATION_FAILED, "timed out waiting for the association answer"
        ) from exc
    except _BROKEN as exc:
        raise ToolError(ExitCode.ASSOCIATION_FAILED, f"no association: {exc}") from exc


def _end(assoc: Association, args: argparse.Namespace, log: logging.Logger) -> None:
    """Release (or, with --abort, abort) the association."""
    if args.abort:
        log.info("aborting the association, as --abort asks")
        assoc.abort()
        return
    try:
        assoc.release()
    except TimeoutError as exc:
        raise ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the release") from exc
    except _BROKEN as exc:
        raise ToolError(ExitCode.ASSOCIATION_ABORTED, f"release failed: {exc}") from exc


def _broken(exc: BaseException) -> ToolError:
    """What ended an established association, as the error the user reads."""
    if isinstance(exc, AssociationAborted):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association aborted: {exc}")
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the peer")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association failed: {exc}")


# -- echoscu ----------------------------------------------------------------------------------


def echoscu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscu: C-ECHO the peer; 0 when every response said Success."""
    return _run("echoscu", cli.echoscu_parser(PROG.format("echoscu")), _echoscu, argv, stream)


def _echoscu(args: argparse.Namespace, log: logging.Logger) -> int:
    contexts = (
        dul.PresentationContext(
            context_id=1,
            abstract_syntax=dimse.VERIFICATION_SOP_CLASS,
            transfer_syntaxes=(dimse.IMPLICIT_VR_LITTLE_ENDIAN,),
        ),
    )
    assoc = _request(args, contexts, cli.Tracer(log, "SCU"))
    failed = 0
    try:
        try:
            assoc.context_for(dimse.VERIFICATION_SOP_CLASS)
        except dul.LocalProtocolError as exc:
            assoc.release()
            raise ToolError(
                ExitCode.ASSOCIATION_FAILED, "the peer refused the Verification SOP Class"
            ) from exc
        for _ in range(args.repeat):
            status = assoc.echo()
            category = dimse.status_category(status).value
            log.info("C-ECHO response: status 0x%04X (%s)", status, category)
            if status != 0x0000:
                failed += 1
    except _BROKEN as exc:
        assoc.abort()
        raise _broken(exc) from exc
    except BaseException:
        assoc.abort()
        raise
    _end(assoc, args, log)
    if failed:
        log.error("%d of %d C-ECHO requests failed", failed, args.repeat)
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


# -- storescu ---------------------------------------------------------------------------------


def storescu_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescu: C-STORE files; 0 when every file was stored (Success or Warning)."""
    return _run("storescu", cli.storescu_parser(PROG.format("storescu")), _storescu, argv, stream)


def _chunk_size(assoc: Association) -> int:
    """A whole number of the fragments dul cuts, about 1 MiB: full PDUs on the wire."""
    fragment = (assoc.connection.max_send_length or _UNLIMITED_FRAGMENT) - 6
    fragment -= fragment % 2
    return fragment * max(1, _CHUNK // fragment)


def _storescu(args: argparse.Namespace, log: logging.Logger) -> int:
    found = storage.find_files(args.files)
    for note in found.skipped:
        log.info("skipped %s", note)
    if found.invalid:
        for problem in found.invalid:
            log.error("%s", problem)
        raise ToolError(ExitCode.INVALID_INPUT_FILE, "invalid input file(s): nothing sent")
    if not found.files:
        raise ToolError(ExitCode.NO_VALID_INPUT_FILES, "no DICOM file found in the inputs")
    stream: TextIO = getattr(log.handlers[0], "stream", sys.stderr) if log.handlers else sys.stderr
    enabled = args.progress if args.progress is not None else stream.isatty()
    progress = cli.Progress(
        len(found.files), sum(f.length for f in found.files), stream, enabled=enabled
    )
    tracer = cli.Tracer(log, "SCU")
    failures = 0
    try:
        for batch in storage.plan(found.files):
            failures += _store_batch(args, log, tracer, batch, progress)
            if failures and not args.no_halt:
                break
    finally:
        progress.finish()
    log.info(
        "%d of %d files stored, %.1f MB in %.2f s",
        progress.files - failures,
        len(found.files),
        progress.bytes / 1e6,
        progress.elapsed,
    )
    if failures:
        log.error("%d file(s) not stored", failures)
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


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
        chunk_size = _chunk_size(assoc)
        for dicom in batch.files:
            if not _store_file(assoc, dicom, chunk_size, log, progress):
                failures += 1
                if not args.no_halt:
                    break
    except _BROKEN as exc:
        assoc.abort()
        raise _broken(exc) from exc
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
    try:
        context_id = assoc.context_for(dicom.sop_class_uid, dicom.transfer_syntax)
    except dul.LocalProtocolError:
        log.error(
            "%s: the peer accepted no presentation context for %s in %s",
            dicom.path,
            cli.UID_NAMES.get(dicom.sop_class_uid, dicom.sop_class_uid),
            cli.UID_NAMES.get(dicom.transfer_syntax, dicom.transfer_syntax),
        )
        progress.file_done()
        return False

    def chunks(fp: io.BufferedIOBase) -> Iterator[memoryview]:
        for chunk in storage.read_chunks(fp, dicom, chunk_size):
            yield chunk
            progress.add(len(chunk))

    log.info("sending %s (%d bytes)", dicom.path, dicom.length)
    try:
        with open(dicom.path, "rb") as fp:
            if dicom.length <= chunk_size:  # small: command and data set in one gather-write
                fp.seek(dicom.offset)
                data = fp.read(dicom.length)
                if len(data) != dicom.length:
                    raise OSError("the file shrank while it was being sent")
                response = assoc.store(
                    dicom.sop_class_uid, dicom.sop_instance_uid, data, context_id=context_id
                )
                progress.add(len(data))
            else:
                response = assoc.store(
                    dicom.sop_class_uid,
                    dicom.sop_instance_uid,
                    cast("Iterator[bytes]", chunks(fp)),  # memoryviews do: the driver slices them
                    length=dicom.length,
                    context_id=context_id,
                )
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        assoc.abort()  # a data set was announced and cannot be finished
        raise ToolError(
            ExitCode.INVALID_INPUT_FILE, f"{dicom.path}: read failed, association aborted: {exc}"
        ) from exc
    progress.file_done()
    category = response.category
    text = f"{dicom.path}: status 0x{response.status:04X} ({category.value})"
    if response.error_comment:
        text += f": {response.error_comment}"
    if category is dimse.StatusCategory.SUCCESS:
        log.info("%s", text)
        return True
    if category is dimse.StatusCategory.WARNING:
        log.warning("%s", text)
        return True
    log.error("%s", text)
    return False


# -- the servers ------------------------------------------------------------------------------


def _server(
    args: argparse.Namespace,
    log: logging.Logger,
    policy: dimse.AcceptorPolicy,
    handlers: dict[type[dimse.Message], object],
) -> Server:
    tracer = cli.Tracer(log, "SCP", per_association=True)

    def on_close(assoc: Association) -> None:
        request = assoc.connection.request
        who = f"from {request.calling_ae_title!r}" if request is not None else "(no request)"
        if assoc.closed is not None:
            cause = assoc.closed.cause.value
        elif assoc.connection.state is dul.State.AWAITING_TRANSPORT_CLOSE:
            cause = "aborted locally"  # we sent an A-ABORT (on purpose, or on a timeout)
        else:
            cause = f"closed in {assoc.connection.state.label}"
        log.info("association %s ended: %s", who, cause)

    try:
        return Server(
            args.bind,
            args.port,
            policy=policy,
            handlers=handlers,  # type: ignore[arg-type]
            max_associations=args.max_associations,
            timeouts=_timeouts(args),
            ssl_context=cli.server_ssl_context(args),
            on_event=tracer,
            on_close=on_close,
        )
    except OSError as exc:
        raise ToolError(
            ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {exc}"
        ) from exc


def echoscp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """An echoscp server, bound, not yet serving."""
    policy = dimse.AcceptorPolicy(
        contexts={dimse.VERIFICATION_SOP_CLASS: ()},
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
    )
    return _server(args, log, policy, {dimse.CEchoRequest: echo_handler})


def storescp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """A storescp server, bound, not yet serving; ``args`` from :func:`cli.storescp_parser`."""
    directory = Path(args.output_directory)
    if not args.ignore and not (directory.is_dir() and _writable(directory)):
        raise ToolError(
            ExitCode.CANNOT_WRITE_OUTPUT, f"cannot write into the output directory {directory}"
        )
    policy = storage.storage_policy(
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
        accept_all=args.accept_all,
    )
    handler = _StoreHandler(args, log, directory)
    return _server(
        args, log, policy, {dimse.CEchoRequest: echo_handler, dimse.CStoreRequest: handler}
    )


def _writable(directory: Path) -> bool:
    probe = directory / ".dul-write-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


class _StoreHandler:
    """Answers a C-STORE-RQ: streams the data set into a Part 10 file, then responds."""

    def __init__(self, args: argparse.Namespace, log: logging.Logger, directory: Path) -> None:
        self.log = log
        self.directory = directory
        self.ignore = args.ignore
        self.abort_after = args.abort_after
        self.abort_during = args.abort_during

    def __call__(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> None:
        message = event.message
        assert isinstance(message, dimse.CStoreRequest)
        status, comment = 0x0000, None
        writer = None
        if not event.has_dataset:
            status, comment = 0xC000, "the C-STORE-RQ announced no data set"
        elif not self.ignore:
            writer = self._open(assoc, event.context_id, message)
            if writer is None:
                status, comment = 0xA700, "cannot create the file"
        try:
            for chunk in dataset:
                if self.abort_during:
                    self._abort(assoc, "while receiving a data set, as --abort-during asks")
                if writer is not None:
                    try:
                        writer.write(chunk)
                    except OSError as exc:
                        self.log.error("cannot write %s: %s", writer.path, exc)
                        writer.discard()
                        writer = None
                        status, comment = 0xA700, "cannot write the file"
            if self.abort_after:
                self._abort(assoc, "after receiving a data set, as --abort-after asks")
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        if writer is not None:
            try:
                path = writer.commit()
                self.log.info("stored %s (%d bytes)", path, writer.size)
            except OSError as exc:
                self.log.error("cannot store %s: %s", writer.path, exc)
                status, comment = 0xA700, "cannot store the file"
        assoc.send(
            dimse.CStoreResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                affected_sop_instance_uid=message.affected_sop_instance_uid,
                status=status,
                error_comment=comment,
            ),
            context_id=event.context_id,
        )

    def _open(
        self, assoc: Association, context_id: int, message: dimse.CStoreRequest
    ) -> storage.Part10Writer | None:
        context = assoc.session.contexts[context_id]
        request = assoc.connection.request
        meta = storage.file_meta(
            message.affected_sop_class_uid,
            message.affected_sop_instance_uid,
            context.transfer_syntax,
            request.calling_ae_title if request is not None else None,
        )
        name = storage.file_name(message.affected_sop_class_uid, message.affected_sop_instance_uid)
        try:
            return storage.Part10Writer(self.directory, name, meta)
        except OSError as exc:
            self.log.error("cannot create %s: %s", self.directory / name, exc)
            return None

    def _abort(self, assoc: Association, why: str) -> None:
        self.log.warning("aborting the association %s", why)
        assoc.abort()
        raise AssociationAborted(f"aborted {why}", dul.CloseCause.ABORTED_LOCALLY)


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
    host, port = args.bind, server.port
    log.info("%s listening on %s:%d", name, host, port)
    if args.port == 0:  # the user cannot guess it: always say
        print(f"{name}: listening on {host}:{port}", flush=True)
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


_loggers = itertools.count(1)


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
    parsers = {"echoscp": cli.echoscp_parser, "storescp": cli.storescp_parser}
    builders = {"echoscp": echoscp_server, "storescp": storescp_server}
    parser = parsers[tool](PROG.format(tool))
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        raise ToolError(ExitCode.USAGE, f"{tool}: bad arguments {list(argv)}") from exc
    with cli.tool_logger(f"{tool}.{next(_loggers)}", args, stream) as log:
        if handler is not None:
            log.addHandler(handler)
        try:
            with builders[tool](args, log) as server:
                yield server
        finally:
            if handler is not None:
                log.removeHandler(handler)


def echoscp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """echoscp: answer C-ECHO until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return serve(echoscp_server(args, log), args, log, "echoscp")

    return _run("echoscp", cli.echoscp_parser(PROG.format("echoscp")), body, argv, stream)


def storescp_main(argv: list[str] | None = None, *, stream: TextIO | None = None) -> int:
    """storescp: receive C-STORE data sets into files until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return serve(storescp_server(args, log), args, log, "storescp")

    return _run("storescp", cli.storescp_parser(PROG.format("storescp")), body, argv, stream)
