"""What the tools do between two waits, written once for the three drivers.

:mod:`~examples.tools.blocking` (threads), :mod:`~examples.tools.trio_tools` and
:mod:`~examples.tools.asyncio_tools` run the same four tools; they differ only in how they wait
for the network. Every decision that needs no waiting is here: the A-ASSOCIATE-RQ the options
describe, which failure ends a tool with which exit code and message, the files storescu sends
and how it reports each response, the acceptor policies, the options every server takes, and
what storescp does with a C-STORE-RQ (:class:`StoreSCP`). The drivers' ``Association`` classes
share their attribute names (``session``, ``connection``, ``closed``), which is all this module
reads of them.
"""

from __future__ import annotations

import argparse
import contextvars
import io
import itertools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import dul
from dul import dimse
from examples.sockets.driver import (
    AssociationAborted,
    AssociationRejected,
    DriverError,
    Timeouts,
)

from . import cli, storage
from .cli import ExitCode, ToolError

__all__ = [
    "BROKEN",
    "ECHO_CONTEXTS",
    "PROG",
    "VERIFICATION_REFUSED",
    "StoreReceiver",
    "StoreSCP",
    "association_failed",
    "association_request",
    "broken",
    "chunk_size",
    "context_for",
    "driver_timeouts",
    "echo_result",
    "echo_status",
    "echoscp_policy",
    "file_chunks",
    "listen_failed",
    "listening",
    "no_context",
    "read_failed",
    "read_small",
    "release_failed",
    "run_tool",
    "server_args",
    "server_options",
    "store_result",
    "storescp_policy",
    "storescu_inputs",
    "storescu_result",
]

#: How a user runs a tool: ``PROG.format(driver="trio", tool="echoscu")``.
PROG = "python -m examples.{driver}.{tool}"
#: dul's fragment size when the peer sets no maximum length (dul._connection.UNLIMITED_FRAGMENT).
_UNLIMITED_FRAGMENT = 1 << 20
#: About how many bytes storescu reads from a file at a time.
_CHUNK = 1 << 20

#: What ends an association attempt or an established association, as exceptions: every driver
#: raises these (its own transport errors become :class:`DriverError` or ``OSError``).
BROKEN = (DriverError, TimeoutError, dul.ProtocolError, OSError)


def run_tool(
    name: str,
    parser: cli.Parser,
    body: Callable[[argparse.Namespace, logging.Logger], int],
    argv: list[str] | None,
    stream: TextIO | None,
) -> int:
    """Parse ``argv``, run ``body`` with a logger; a :class:`ToolError` becomes its exit code.

    Nothing calls ``sys.exit``: a test or the demo runs a tool in its own process.
    """
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


def driver_timeouts(args: argparse.Namespace) -> Timeouts:
    """The timeouts of the options, in the form every driver takes."""
    values = cli.timeout_values(args)
    return Timeouts(connect=values.connect, acse=values.acse, dimse=values.dimse)


# -- requestors -------------------------------------------------------------------------------


def association_request(
    args: argparse.Namespace, contexts: tuple[dul.PresentationContext, ...]
) -> dul.AssociateRequest:
    """The A-ASSOCIATE-RQ of a requestor's options, proposing ``contexts``."""
    return dul.AssociateRequest(
        called_ae_title=args.call,
        calling_ae_title=args.aetitle,
        presentation_contexts=contexts,
        user_information=dul.UserInformation(maximum_length=args.max_pdu),
    )


def association_failed(exc: BaseException) -> ToolError:
    """Why no association was made (one of :data:`BROKEN`): ASSOCIATION_FAILED (61)."""
    if isinstance(exc, AssociationRejected):
        return ToolError(ExitCode.ASSOCIATION_FAILED, str(exc))
    if isinstance(exc, TimeoutError):
        return ToolError(
            ExitCode.ASSOCIATION_FAILED, "timed out waiting for the association answer"
        )
    return ToolError(ExitCode.ASSOCIATION_FAILED, f"no association: {exc}")


def release_failed(exc: BaseException) -> ToolError:
    """Why the release did not complete: ASSOCIATION_ABORTED (70)."""
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the release")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"release failed: {exc}")


def broken(exc: BaseException) -> ToolError:
    """What ended an established association, as the error the user reads (70)."""
    if isinstance(exc, AssociationAborted):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association aborted: {exc}")
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the peer")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association failed: {exc}")


def context_for(assoc: Any, abstract_syntax: str, transfer_syntax: str | None = None) -> int | None:
    """The ID of a context the peer accepted for ``abstract_syntax``, or None."""
    try:
        context_id: int = assoc.context_for(abstract_syntax, transfer_syntax)
    except dul.LocalProtocolError:
        return None
    return context_id


# -- echoscu ----------------------------------------------------------------------------------

#: echoscu proposes the Verification SOP Class in implicit VR little endian, as DCMTK's does.
ECHO_CONTEXTS = (
    dul.PresentationContext(
        context_id=1,
        abstract_syntax=dimse.VERIFICATION_SOP_CLASS,
        transfer_syntaxes=(dimse.IMPLICIT_VR_LITTLE_ENDIAN,),
    ),
)

#: The error when the peer accepts no Verification context.
VERIFICATION_REFUSED = "the peer refused the Verification SOP Class"


def echo_status(log: logging.Logger, status: int) -> bool:
    """Log a C-ECHO response's status; True when it is Success."""
    log.info("C-ECHO response: status 0x%04X (%s)", status, dimse.status_category(status).value)
    return status == 0x0000


def echo_result(log: logging.Logger, failed: int, repeat: int) -> int:
    """echoscu's exit status: OK when every response said Success."""
    if failed:
        log.error("%d of %d C-ECHO requests failed", failed, repeat)
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


# -- storescu ---------------------------------------------------------------------------------


def storescu_inputs(
    args: argparse.Namespace, log: logging.Logger
) -> tuple[list[storage.DicomFile], cli.Progress]:
    """The files to send (or the error that ends storescu first), and their progress display."""
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


def chunk_size(assoc: Any) -> int:
    """A whole number of the fragments dul cuts for this peer, about 1 MiB: full PDUs."""
    fragment = (assoc.connection.max_send_length or _UNLIMITED_FRAGMENT) - 6
    fragment -= fragment % 2
    return fragment * max(1, _CHUNK // fragment)


def no_context(log: logging.Logger, dicom: storage.DicomFile) -> None:
    """Say that a file cannot be sent: the peer accepted no context for it."""
    log.error(
        "%s: the peer accepted no presentation context for %s in %s",
        dicom.path,
        cli.UID_NAMES.get(dicom.sop_class_uid, dicom.sop_class_uid),
        cli.UID_NAMES.get(dicom.transfer_syntax, dicom.transfer_syntax),
    )


def read_small(fp: io.BufferedIOBase, dicom: storage.DicomFile) -> bytes:
    """The whole data set of ``dicom`` (one that fits in a chunk), read from the open ``fp``."""
    fp.seek(dicom.offset)
    data = fp.read(dicom.length)
    if len(data) != dicom.length:
        raise OSError("the file shrank while it was being sent")
    return data


def file_chunks(
    fp: io.BufferedIOBase,
    dicom: storage.DicomFile,
    size: int,
    progress: cli.Progress,
) -> Iterator[bytes | memoryview]:
    """The data set of ``dicom`` in chunks of ``size`` bytes, counted in ``progress``.

    A chunk is a view of one reused buffer, valid until the next is asked for: the drivers
    write it (or copy it, where a transport would keep it) before asking for the next.
    """
    for chunk in storage.read_chunks(fp, dicom, size):
        progress.add(len(chunk))
        yield chunk


def read_failed(dicom: storage.DicomFile, exc: OSError) -> ToolError:
    """A file could not be read while its data set was being sent (the association is aborted)."""
    return ToolError(
        ExitCode.INVALID_INPUT_FILE, f"{dicom.path}: read failed, association aborted: {exc}"
    )


def store_result(log: logging.Logger, dicom: storage.DicomFile, response: dimse.Response) -> bool:
    """Log the C-STORE response for ``dicom``; True when it was stored (Success or Warning)."""
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


def storescu_result(log: logging.Logger, progress: cli.Progress, total: int, failures: int) -> int:
    """storescu's summary line and exit status: OK when every file was stored.

    Files never sent (storescu halts at the first failure unless -nh) count as not stored.
    """
    stored = progress.files - failures
    log.info(
        "%d of %d files stored, %.1f MB in %.2f s",
        stored,
        total,
        progress.bytes / 1e6,
        progress.elapsed,
    )
    if stored < total:
        unsent = total - progress.files
        halted = f" ({unsent} not sent: halted at the first failure; -nh goes on)" if unsent else ""
        log.error("%d of %d files not stored%s", total - stored, total, halted)
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


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

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, "SCP", per_association=True)
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


def server_options(args: argparse.Namespace, log: logging.Logger) -> dict[str, Any]:
    """The keyword arguments every driver's ``Server`` takes, from an acceptor's options."""
    return {
        "max_associations": args.max_associations,
        "timeouts": driver_timeouts(args),
        "ssl_context": cli.server_ssl_context(args),
        "on_event": _ServerTracer(log),
        "on_close": _close_logger(log),
    }


def listen_failed(args: argparse.Namespace, exc: OSError) -> ToolError:
    """The port cannot be bound: NETWORK_SETUP (60)."""
    return ToolError(ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {exc}")


def listening(log: logging.Logger, args: argparse.Namespace, name: str, port: int) -> None:
    """Say where a server listens; on port 0 the user cannot guess it, so always print it."""
    log.info("%s listening on %s:%d", name, args.bind, port)
    if args.port == 0:
        print(f"{name}: listening on {args.bind}:{port}", flush=True)


def echoscp_policy(args: argparse.Namespace) -> dimse.AcceptorPolicy:
    """echoscp accepts the Verification SOP Class only."""
    return dimse.AcceptorPolicy(
        contexts={dimse.VERIFICATION_SOP_CLASS: ()},
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
    )


def storescp_policy(args: argparse.Namespace) -> dimse.AcceptorPolicy:
    """storescp accepts the storage SOP classes (or all, --accept-all) and Verification."""
    return storage.storage_policy(
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
        accept_all=args.accept_all,
    )


def _writable(directory: Path) -> bool:
    probe = directory / ".dul-write-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


class StoreSCP:
    """What storescp does with each C-STORE-RQ, whatever the driver.

    A driver's handler asks :meth:`receive` for a :class:`StoreReceiver`, feeds it the data set
    as it arrives, and sends the response it makes. Built from the options, it checks first that
    the output directory can be written (CANNOT_WRITE_OUTPUT, 40).
    """

    def __init__(self, args: argparse.Namespace, log: logging.Logger) -> None:
        self.log = log
        self.directory = Path(args.output_directory)
        self.ignore: bool = args.ignore
        self.abort_after: bool = args.abort_after
        self.abort_during: bool = args.abort_during
        if not self.ignore and not (self.directory.is_dir() and _writable(self.directory)):
            raise ToolError(
                ExitCode.CANNOT_WRITE_OUTPUT,
                f"cannot write into the output directory {self.directory}",
            )

    def receive(self, assoc: Any, event: dimse.MessageReceived) -> StoreReceiver:
        """Start receiving the data set of ``event``, a C-STORE-RQ on ``assoc``."""
        return StoreReceiver(self, assoc, event)

    def aborting(self, why: str) -> AssociationAborted:
        """Log that the handler aborts the association (for tests); the error it then raises."""
        self.log.warning("aborting the association %s", why)
        return AssociationAborted(f"aborted {why}", dul.CloseCause.ABORTED_LOCALLY)


class StoreReceiver:
    """One C-STORE-RQ being received: its data set streamed into a Part 10 file, then a response.

    The file meta group comes from the request and its presentation context (PS3.10 §7.1); the
    file gets its name only once complete (:class:`storage.Part10Writer`). A failure to write
    does not stop the receiving: the data set is read to its end, and the response says 0xA700.
    """

    def __init__(self, scp: StoreSCP, assoc: Any, event: dimse.MessageReceived) -> None:
        message = event.message
        assert isinstance(message, dimse.CStoreRequest)
        self.scp = scp
        self.message = message
        self.status, self.comment = 0x0000, None
        self.writer: storage.Part10Writer | None = None
        if not event.has_dataset:
            self.status, self.comment = 0xC000, "the C-STORE-RQ announced no data set"
        elif not scp.ignore:
            self.writer = self._open(assoc, event.context_id)
            if self.writer is None:
                self.status, self.comment = 0xA700, "cannot create the file"

    def _open(self, assoc: Any, context_id: int) -> storage.Part10Writer | None:
        message = self.message
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
            return storage.Part10Writer(self.scp.directory, name, meta)
        except OSError as exc:
            self.scp.log.error("cannot create %s: %s", self.scp.directory / name, exc)
            return None

    def abort_reason(self, *, finished: bool) -> str | None:
        """Why to abort now (--abort-during, before a fragment; --abort-after, after the last)."""
        if not finished and self.scp.abort_during:
            return "while receiving a data set, as --abort-during asks"
        if finished and self.scp.abort_after:
            return "after receiving a data set, as --abort-after asks"
        return None

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a fragment of the data set to the file."""
        if self.writer is None:
            return
        try:
            self.writer.write(chunk)
        except OSError as exc:
            self.scp.log.error("cannot write %s: %s", self.writer.path, exc)
            self.writer.discard()
            self.writer = None
            self.status, self.comment = 0xA700, "cannot write the file"

    def discard(self) -> None:
        """The data set will not be complete: delete the partial file."""
        if self.writer is not None:
            self.writer.discard()
            self.writer = None

    def response(self) -> dimse.CStoreResponse:
        """Give the complete file its name; the C-STORE-RSP saying how it went."""
        if self.writer is not None:
            try:
                path = self.writer.commit()
                self.scp.log.info("stored %s (%d bytes)", path, self.writer.size)
            except OSError as exc:
                self.scp.log.error("cannot store %s: %s", self.writer.path, exc)
                self.status, self.comment = 0xA700, "cannot store the file"
            self.writer = None
        message = self.message
        return dimse.CStoreResponse(
            message_id_being_responded_to=message.message_id,
            affected_sop_class_uid=message.affected_sop_class_uid,
            affected_sop_instance_uid=message.affected_sop_instance_uid,
            status=self.status,
            error_comment=self.comment,
        )


_loggers = itertools.count(1)


@contextmanager
def server_args(
    tool: str,
    argv: Sequence[str],
    prog: str,
    stream: TextIO | None = None,
    *,
    handler: logging.Handler | None = None,
) -> Iterator[tuple[argparse.Namespace, logging.Logger]]:
    """The options and a logger of ``echoscp`` or ``storescp`` run in this process, for a test.

    The log goes to ``stream``, and to ``handler`` when given; a bad option raises
    :class:`ToolError` (USAGE).
    """
    parsers = {"echoscp": cli.echoscp_parser, "storescp": cli.storescp_parser}
    parser = parsers[tool](prog)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        raise ToolError(ExitCode.USAGE, f"{tool}: bad arguments {list(argv)}") from exc
    with cli.tool_logger(f"{tool}.{next(_loggers)}", args, stream) as log:
        if handler is not None:
            log.addHandler(handler)
        try:
            yield args, log
        finally:
            if handler is not None:
                log.removeHandler(handler)
