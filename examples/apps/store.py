"""C-STORE (PS3.7 9.1.1): storescu's service, and storescp's, written once for every driver.

storescu sends each file's data set as it is in the file, streamed from disk: a data set that
fits in one chunk goes out with its command in one gather-write; a larger one one chunk (a whole
number of PDUs, about 1 MiB) per :class:`~examples.runtime.Send`, so an async driver awaits the
write before the next chunk is read, and a slow peer slows the reading. When the peer refused
the file's own transfer syntax and accepted a fallback (:data:`storage.PROPOSALS`), an
uncompressed or deflated data set is re-encoded first (:mod:`examples.apps.convert`, pydicom,
imported only then); compressed pixel data never is: that file fails.
storescp streams each data set received into a Part 10 file, named only once complete.
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path
from typing import Protocol

from dul import dimse
from examples.runtime import (
    Abort,
    Association,
    AssociationAborted,
    DatasetReader,
    DriverError,
    Service,
    Steps,
    acceptor,
)

from . import echo, storage
from .common import UID_NAMES, ExitCode, ToolError, negotiation, requestor

__all__ = [
    "Counter",
    "StoreReceiver",
    "StoreSCP",
    "chunk_size",
    "store_batch",
    "storescp",
    "storescp_policy",
]

#: dul's fragment size when the peer sets no maximum length.
_UNLIMITED_FRAGMENT = 1 << 20
#: About how many bytes storescu reads from a file at a time.
_CHUNK = 1 << 20


class Counter(Protocol):
    """What storescu reports its progress to (the front end's progress display)."""

    def add(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...


# -- storescu ---------------------------------------------------------------------------------


def chunk_size(assoc: Association) -> int:
    """A whole number of the fragments dul cuts for this peer, about 1 MiB: full PDUs."""
    fragment = (assoc.connection.max_send_length or _UNLIMITED_FRAGMENT) - 6
    fragment -= fragment % 2
    return fragment * max(1, _CHUNK // fragment)


def store_batch(
    args: argparse.Namespace,
    log: logging.Logger,
    batch: storage.Batch,
    progress: Counter,
    stored: list[storage.DicomFile] | None = None,
) -> Service[int]:
    """The service of one storescu association: the files of ``batch``; returns how many failed.

    Without ``--no-halt`` it stops at the first failure. Each file the peer acknowledged is
    appended to ``stored`` as its response arrives, so an association that ends early still
    tells which were stored.
    """

    def work(assoc: Association) -> Steps[int]:
        failures = 0
        size = chunk_size(assoc)
        pending: dict[int, storage.DicomFile] = {}  # in flight, by message ID
        for dicom in batch.files:
            while pending and not assoc.session.can_invoke:  # the window is full (D.3.3.3)
                failures += not (yield from _collect(assoc, pending, log, progress, stored))
            if failures and not args.no_halt:
                break
            message_id = yield from _send_file(assoc, dicom, size, log, progress)
            if message_id is None:
                failures += 1
            else:
                pending[message_id] = dicom
            if failures and not args.no_halt:
                break
        while pending:
            failures += not (yield from _collect(assoc, pending, log, progress, stored))
        return failures

    return requestor(args, log, batch.contexts, work)


def _send_file(
    assoc: Association,
    dicom: storage.DicomFile,
    size: int,
    log: logging.Logger,
    progress: Counter,
) -> Steps[int | None]:
    """Send the C-STORE-RQ of one file, its data set streamed from disk (or converted): its
    message ID, or None when the peer accepted no context it can go in."""
    context_id = assoc.context_for(dicom.sop_class_uid, dicom.transfer_syntax)
    converted: bytes | None = None
    if context_id is None:
        target = _fallback(assoc, dicom, log)
        if target is None:
            progress.file_done()
            return None
        context_id, syntax = target
        try:
            converted = _convert(dicom, syntax, log)
        except Exception as exc:  # pydicom's errors are many: any one fails this file only
            log.error("%s: cannot convert it to %s: %s", dicom.path, _name(syntax), exc)
            progress.file_done()
            return None
    log.info("sending %s (%d bytes)", dicom.path, dicom.length)
    request = dimse.CStoreRequest(
        message_id=assoc.session.next_message_id(),
        affected_sop_class_uid=dicom.sop_class_uid,
        affected_sop_instance_uid=dicom.sop_instance_uid,
    )
    try:
        if converted is not None:
            yield from _send_bytes(assoc, request, context_id, converted, size, progress)
        else:
            with open(dicom.path, "rb") as fp:
                if dicom.length <= size:  # small: command and data set in one gather-write
                    yield from _send_bytes(
                        assoc, request, context_id, _read_small(fp, dicom), size, progress
                    )
                else:
                    yield from assoc.send(request, context_id=context_id, dataset_follows=True)
                    sent = 0
                    for chunk in storage.read_chunks(fp, dicom, size):
                        sent += len(chunk)
                        last = sent == dicom.length
                        yield from assoc.send_dataset(context_id, chunk, is_last=last)
                        progress.add(len(chunk))
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        yield Abort()  # a data set was announced and cannot be finished
        raise ToolError(
            ExitCode.INVALID_INPUT_FILE, f"{dicom.path}: read failed, association aborted: {exc}"
        ) from exc
    return request.message_id


def _name(uid: str) -> str:
    return UID_NAMES.get(uid, uid)


def _fallback(
    assoc: Association, dicom: storage.DicomFile, log: logging.Logger
) -> tuple[int, str] | None:
    """The accepted context (ID, transfer syntax) ``dicom`` can be converted into, or None
    (logged: the peer refused the file's own syntax, and nothing it accepted will do)."""
    refused = (
        f"{dicom.path}: the peer refused {_name(dicom.sop_class_uid)} in "
        f"{_name(dicom.transfer_syntax)}, the file's transfer syntax"
    )
    if dicom.transfer_syntax not in storage.CONVERTIBLE:
        log.error("%s; compressed pixel data is not re-encoded: not sent", refused)
        return None
    for context in assoc.contexts.values():
        if (
            context.abstract_syntax == dicom.sop_class_uid
            and context.transfer_syntax in storage.CONVERTIBLE
        ):
            return context.context_id, context.transfer_syntax
    if not any(c.abstract_syntax == dicom.sop_class_uid for c in assoc.contexts.values()):
        log.error("%s, and accepted no presentation context for it: not sent", refused)
    else:
        log.error("%s, and accepted no syntax it can be converted to: not sent", refused)
    return None


def _convert(dicom: storage.DicomFile, syntax: str, log: logging.Logger) -> bytes:
    from . import convert  # pydicom: only when a file needs converting

    log.info("converting %s from %s to %s", dicom.path, _name(dicom.transfer_syntax), _name(syntax))
    return convert.reencode(dicom, syntax)


def _send_bytes(
    assoc: Association,
    request: dimse.CStoreRequest,
    context_id: int,
    data: bytes,
    size: int,
    progress: Counter,
) -> Steps[None]:
    """Send ``request`` with the data set ``data``: in one gather-write when it fits a chunk."""
    if len(data) <= size:
        yield from assoc.send(request, context_id=context_id, dataset=data)
        progress.add(len(data))
        return
    yield from assoc.send(request, context_id=context_id, dataset_follows=True)
    view = memoryview(data)
    for start in range(0, len(data), size):
        chunk = view[start : start + size]
        yield from assoc.send_dataset(context_id, chunk, is_last=start + size >= len(data))
        progress.add(len(chunk))


def _collect(
    assoc: Association,
    pending: dict[int, storage.DicomFile],
    log: logging.Logger,
    progress: Counter,
    stored: list[storage.DicomFile] | None,
) -> Steps[bool]:
    """Wait for the next C-STORE-RSP, for one of the ``pending`` files: True when stored."""
    response, _ = yield from assoc.receive_response()
    dicom = pending.pop(response.message_id_being_responded_to, None)
    if dicom is None:
        raise DriverError(f"a response to message {response.message_id_being_responded_to}")
    progress.file_done()
    ok = _stored(log, dicom, response)
    if ok and stored is not None:
        stored.append(dicom)
    return ok


def _read_small(fp: io.BufferedIOBase, dicom: storage.DicomFile) -> bytes:
    fp.seek(dicom.offset)
    data = fp.read(dicom.length)
    if len(data) != dicom.length:
        raise OSError("the file shrank while it was being sent")
    return data


def _stored(log: logging.Logger, dicom: storage.DicomFile, response: dimse.Response) -> bool:
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


# -- storescp ---------------------------------------------------------------------------------


def storescp_policy(args: argparse.Namespace) -> dimse.AcceptorPolicy:
    """storescp accepts the storage SOP classes (or all, --accept-all) and Verification."""
    return storage.storage_policy(
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
        accept_all=args.accept_all,
    )


def storescp(args: argparse.Namespace, log: logging.Logger) -> Service[None]:
    """storescp's per-association service (checks first that the output can be written)."""
    scp = StoreSCP(args, log)
    handlers = {dimse.CEchoRequest: echo.respond, dimse.CStoreRequest: scp.handle}
    return acceptor(negotiation(storescp_policy(args), args, log), handlers)


def _writable(directory: Path) -> bool:
    probe = directory / ".dul-write-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


class StoreSCP:
    """What storescp does with each C-STORE-RQ.

    Built from the options, it checks first that the output directory can be written
    (CANNOT_WRITE_OUTPUT, 40).
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

    def handle(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        """Answer a C-STORE-RQ: stream the data set into a Part 10 file, then respond."""
        receiver = StoreReceiver(self, assoc, event)
        try:
            while (chunk := (yield from dataset.next())) is not None:
                if why := receiver.abort_reason(finished=False):
                    yield Abort()
                    raise self.aborting(why)
                receiver.write(chunk)
            if why := receiver.abort_reason(finished=True):
                yield Abort()
                raise self.aborting(why)
        except BaseException:
            receiver.discard()
            raise
        yield from assoc.send(receiver.response(), context_id=event.context_id)

    def aborting(self, why: str) -> AssociationAborted:
        """Log that the handler aborts the association (for tests); the error it then raises."""
        self.log.warning("aborting the association %s", why)
        return AssociationAborted(f"aborted {why}")


class StoreReceiver:
    """One C-STORE-RQ being received: its data set streamed into a Part 10 file, then a response.

    The file meta group comes from the request and its presentation context (PS3.10 §7.1); the
    file gets its name only once complete (:class:`storage.Part10Writer`). A failure to write
    does not stop the receiving: the data set is read to its end, and the response says 0xA700.
    """

    def __init__(self, scp: StoreSCP, assoc: Association, event: dimse.MessageReceived) -> None:
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

    def _open(self, assoc: Association, context_id: int) -> storage.Part10Writer | None:
        message = self.message
        context = assoc.contexts[context_id]
        request = assoc.request
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
