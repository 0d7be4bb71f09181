"""The Query/Retrieve tools on the blocking-sockets driver: findscu, getscu, movescu, qrscp.

``python -m examples.sockets.findscu ...`` runs these. Each ``*_main(argv)`` returns its exit
status (nothing calls ``sys.exit``); :func:`qrscp_in_thread` runs a qrscp in a thread of this
process, for tests and the demo. The Q/R logic that needs no network is
:mod:`examples.tools.qr`.

Ctrl-C on this driver: the socket is read by the thread that gets the signal, so the first
Ctrl-C is noted and the C-CANCEL goes out as soon as the next message has arrived (a pending
response, or a C-STORE of a C-GET); a second Ctrl-C aborts the association at once. The async
drivers send the C-CANCEL at once.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import select
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydicom.dataset import Dataset

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

from . import cli, qr, storage
from .blocking import serve
from .cli import ExitCode, ToolError

__all__ = [
    "findscu_main",
    "getscu_main",
    "movescu_main",
    "qrscp_in_thread",
    "qrscp_main",
    "qrscp_server",
]

PROG = "python -m examples.sockets.{}"
_BROKEN = (DriverError, *qr.BROKEN)
#: Data sets larger than this are streamed from the file, one chunk in memory at a time.
_CHUNK = 1 << 20


def _timeouts(args: argparse.Namespace) -> Timeouts:
    values = cli.timeout_values(args)
    connect = values.connect if hasattr(args, "connect_timeout") else values.acse
    return Timeouts(connect=connect, acse=values.acse, dimse=values.dimse)


# -- the SCUs ---------------------------------------------------------------------------------


def _associate(
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...],
    tracer: cli.Tracer,
) -> Association:
    """Open the association the options describe; any failure is ASSOCIATION_FAILED (61)."""
    try:
        return Association.request(
            args.peer,
            args.port,
            qr.associate_request(args, contexts, roles),
            timeouts=_timeouts(args),
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


def _context(assoc: Association, sop_class_uid: str) -> tuple[int, str]:
    """The accepted context of the Q/R SOP class and its transfer syntax; release if none."""
    try:
        context_id = assoc.context_for(sop_class_uid)
    except dul.LocalProtocolError as exc:
        assoc.release()
        raise qr.refused(sop_class_uid) from exc
    return context_id, assoc.session.contexts[context_id].transfer_syntax


class _Interrupt(qr.Interrupt):
    """Ctrl-C in the main thread: the first sets ``requested``, the second aborts."""

    def __enter__(self) -> _Interrupt:
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Canceller:
    """Sends the one C-CANCEL of a request: after ``--cancel N`` responses, or on Ctrl-C."""

    def __init__(
        self,
        assoc: Association,
        request: dimse.Request,
        context_id: int,
        args: argparse.Namespace,
        interrupt: qr.Interrupt,
        log: logging.Logger,
    ) -> None:
        self.assoc = assoc
        self.request = request
        self.context_id = context_id
        self.after = args.cancel
        self.interrupt = interrupt
        self.log = log
        self.sent = False

    def check(self, responses: int) -> None:
        """Send the C-CANCEL if it is time (called before waiting for each message)."""
        why = None if self.sent else qr.cancel_due(self.interrupt, self.after, responses)
        if why is None:
            return
        if self.interrupt.requested:
            self.log.warning("%s", why)
        else:
            self.log.info("%s", why)
        self.sent = True
        self.assoc.send(
            dimse.CCancelRequest(message_id_being_responded_to=self.request.message_id),
            context_id=self.context_id,
        )


def _run_request(
    args: argparse.Namespace,
    log: logging.Logger,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...],
    make_request: Callable[[int, str], dimse.Request],
    on_message: Callable[[Association, dimse.MessageReceived, Dataset | None], None],
) -> tuple[dimse.Response, bool]:
    """Open the association, send the request, hand each message to ``on_message`` until the
    final response; release. Returns (final response, whether Ctrl-C interrupted)."""
    identifier = qr.build_identifier(args.key, args.files)
    log.info("identifier:\n%s", qr.describe_identifier(identifier))
    sop_class = contexts[0].abstract_syntax
    assoc = _associate(args, contexts, roles, cli.Tracer(log, "SCU"))
    with _Interrupt() as interrupt:
        try:
            context_id, syntax = _context(assoc, sop_class)
            request = make_request(assoc.session.next_message_id(), sop_class)
            assoc.send(
                request, context_id=context_id, dataset=qr.encode_identifier(identifier, syntax)
            )
            canceller = _Canceller(assoc, request, context_id, args, interrupt, log)
            responses = 0
            while True:
                canceller.check(responses)
                event = assoc.receive_message()
                message = event.message
                if (
                    isinstance(message, dimse.Response)
                    and message.message_id_being_responded_to == request.message_id
                ):
                    data = event.dataset
                    if event.has_dataset and data is None:
                        data = b"".join(assoc.read_dataset())
                    found = qr.decode_or_none(data, syntax, log)
                    if not message.is_pending:
                        final = message
                        if found is not None:
                            log.info("final identifier:\n%s", qr.describe_identifier(found))
                        break
                    responses += 1
                    on_message(assoc, event, found)
                else:
                    on_message(assoc, event, None)
        except KeyboardInterrupt:
            log.error("interrupted again: association aborted")
            assoc.abort()
            raise ToolError(qr.EXIT_INTERRUPTED, "interrupted") from None  # type: ignore[arg-type]
        except _BROKEN as exc:
            assoc.abort()
            raise qr.broken(exc, AssociationAborted) from exc
        except BaseException:
            assoc.abort()
            raise
        _end(assoc, args, log)
    return final, interrupt.requested


# -- findscu ----------------------------------------------------------------------------------


def findscu_main(
    argv: Sequence[str] | None = None, *, stream: TextIO | None = None, out: TextIO | None = None
) -> int:
    """findscu: C-FIND; each match is printed to ``out`` (stdout). 0 on Success or Cancel."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return _findscu(args, log, out)

    return qr.run_tool("findscu", qr.findscu_parser(PROG.format("findscu")), body, argv, stream)


def _findscu(args: argparse.Namespace, log: logging.Logger, out: TextIO | None) -> int:
    model = qr.model_from_args(args)
    output = qr.FindOutput(args, out)

    def on_message(
        assoc: Association, event: dimse.MessageReceived, identifier: Dataset | None
    ) -> None:
        if isinstance(event.message, dimse.CFindResponse):
            output.match(identifier)
        else:
            _unexpected(assoc, event, log)

    final, interrupted = _run_request(
        args,
        log,
        qr.request_contexts(model.find),
        (),
        lambda message_id, sop_class: dimse.CFindRequest(
            message_id=message_id, affected_sop_class_uid=sop_class
        ),
        on_message,
    )
    qr.log_final(log, final, f", {output.count} match(es)")
    return qr.find_exit_code(final.status, interrupted=interrupted)


def _unexpected(assoc: Association, event: dimse.MessageReceived, log: logging.Logger) -> None:
    """A message that answers nothing we asked: drain its data set, note it."""
    if event.has_dataset and event.dataset is None:
        for _ in assoc.read_dataset():
            pass
    log.warning("ignored an unexpected %s", cli.message_name(event.message))


# -- getscu -----------------------------------------------------------------------------------


def getscu_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """getscu: C-GET, receiving the C-STOREs on the same association. 0 on Success."""
    return qr.run_tool("getscu", qr.getscu_parser(PROG.format("getscu")), _getscu, argv, stream)


def _receive_store(
    assoc: Association,
    event: dimse.MessageReceived,
    reader: DatasetReader,
    directory: Path | None,
    log: logging.Logger,
) -> bool:
    """A C-STORE-RQ received: its data set streamed into a file, then the response. True if
    stored (or ignored)."""
    message = event.message
    assert isinstance(message, dimse.CStoreRequest)
    context = assoc.session.contexts.get(event.context_id)
    peer = qr.peer_ae_title(assoc.connection)  # for the file meta group (0002,0016)
    status, comment = qr.SUCCESS, None
    writer = None
    if not event.has_dataset:
        status, comment = 0xC000, "the C-STORE-RQ announced no data set"
    elif directory is not None and context is not None:
        writer = qr.open_writer(directory, message, context.transfer_syntax, peer, log)
        if writer is None:
            status, comment = 0xA700, "cannot create the file"
    try:
        for chunk in reader:
            if writer is not None:
                writer.write(chunk)
    except OSError as exc:
        if writer is None or isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        log.error("cannot write %s: %s", writer.path, exc)
        writer.discard()
        writer = None
        reader.drain()
        status, comment = 0xA700, "cannot write the file"
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        try:
            path = writer.commit()
            log.info("stored %s (%d bytes)", path, writer.size)
        except OSError as exc:
            log.error("cannot store %s: %s", writer.path, exc)
            status, comment = 0xA700, "cannot store the file"
    assoc.send(qr.store_response(message, status, comment), context_id=event.context_id)
    return status == qr.SUCCESS


def _getscu(args: argparse.Namespace, log: logging.Logger) -> int:
    directory = qr.output_directory(args)
    model = qr.model_from_args(args)
    contexts, roles = qr.get_contexts(model.get)
    received = 0

    def on_message(
        assoc: Association, event: dimse.MessageReceived, identifier: Dataset | None
    ) -> None:
        nonlocal received
        message = event.message
        if isinstance(message, dimse.CStoreRequest):
            received += _receive_store(assoc, event, DatasetReader(assoc, event), directory, log)
        elif isinstance(message, dimse.CGetResponse):
            log.info("C-GET pending: %s", qr.counters_text(message))
        else:
            _unexpected(assoc, event, log)

    final, interrupted = _run_request(
        args,
        log,
        contexts,
        roles,
        lambda message_id, sop_class: dimse.CGetRequest(
            message_id=message_id, affected_sop_class_uid=sop_class
        ),
        on_message,
    )
    qr.log_final(log, final, f" ({qr.counters_text(final)}); {received} instance(s) received")
    return qr.find_exit_code(final.status, interrupted=interrupted)


# -- movescu ----------------------------------------------------------------------------------


def movescu_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """movescu: C-MOVE; with +P PORT, receive the instances too. 0 on Success."""
    return qr.run_tool("movescu", qr.movescu_parser(PROG.format("movescu")), _movescu, argv, stream)


class _Receiver:
    """movescu's own storage SCP (+P): writes each C-STORE data set received as a file."""

    def __init__(self, directory: Path | None, log: logging.Logger) -> None:
        self.directory = directory
        self.log = log
        self.count = 0
        self._lock = threading.Lock()

    def __call__(
        self, assoc: Association, event: dimse.MessageReceived, reader: DatasetReader
    ) -> None:
        if _receive_store(assoc, event, reader, self.directory, self.log):
            with self._lock:
                self.count += 1


def _movescu(args: argparse.Namespace, log: logging.Logger) -> int:
    model = qr.model_from_args(args)
    destination = args.move or args.aetitle
    receiver = None
    server = None
    if args.listen_port is not None:
        receiver = _Receiver(qr.output_directory(args), log)
        policy = storage.storage_policy(ae_title=None, maximum_length=args.max_pdu)
        try:
            server = Server(
                args.bind,
                args.listen_port,
                policy=policy,
                handlers={dimse.CStoreRequest: receiver, dimse.CEchoRequest: echo_handler},
                timeouts=_timeouts(args),
                on_event=cli.Tracer(log, "STORE-SCP", per_association=True),
            )
        except OSError as exc:
            raise ToolError(
                ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.listen_port}: {exc}"
            ) from exc
        log.info("listening on %s:%d for the C-STORE sub-operations", args.bind, server.port)

    def on_message(
        assoc: Association, event: dimse.MessageReceived, identifier: Dataset | None
    ) -> None:
        if isinstance(event.message, dimse.CMoveResponse):
            log.info("C-MOVE pending: %s", qr.counters_text(event.message))
        else:
            _unexpected(assoc, event, log)

    with server if server is not None else contextlib.nullcontext():
        final, interrupted = _run_request(
            args,
            log,
            qr.request_contexts(model.move),
            (),
            lambda message_id, sop_class: dimse.CMoveRequest(
                message_id=message_id,
                affected_sop_class_uid=sop_class,
                move_destination=destination,
            ),
            on_message,
        )
    extra = f" ({qr.counters_text(final)})"
    if receiver is not None:
        extra += f"; {receiver.count} instance(s) received"
    qr.log_final(log, final, extra)
    return qr.find_exit_code(final.status, interrupted=interrupted)


# -- qrscp ------------------------------------------------------------------------------------


class _QRSCP:
    """The handlers of qrscp: C-FIND, C-GET and C-MOVE over one :class:`qr.Archive`."""

    def __init__(
        self,
        args: argparse.Namespace,
        log: logging.Logger,
        archive: qr.Archive,
        destinations: dict[str, tuple[str, int]],
    ) -> None:
        self.log = log
        self.archive = archive
        self.destinations = destinations
        self.ae_title = args.aetitle
        self.delay = args.delay
        self.timeouts = _timeouts(args)
        self.max_pdu = args.max_pdu

    # -- common -----------------------------------------------------------------------------

    def _parse(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        reader: DatasetReader,
        response_class: type[dimse.Response],
    ) -> tuple[qr.Model, Any, str] | None:
        """The request's model, identifier and transfer syntax; None once a failure is sent."""
        message = event.message
        assert isinstance(message, dimse.Request)
        sop_class = getattr(message, "affected_sop_class_uid", "")
        syntax = assoc.session.contexts[event.context_id].transfer_syntax
        data = reader.read_all()
        model = qr.Model.of(sop_class)
        try:
            if model is None:
                raise qr.QueryError(qr.SOP_CLASS_NOT_SUPPORTED, f"{sop_class} is not a Q/R model")
            identifier = qr.decode_identifier(data, syntax)
        except qr.QueryError as exc:
            self._fail(assoc, event, response_class, exc)
            return None
        self.log.info("identifier:\n%s", qr.describe_identifier(identifier))
        return model, identifier, syntax

    def _fail(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        response_class: type[dimse.Response],
        exc: qr.QueryError,
    ) -> None:
        message = event.message
        assert isinstance(message, dimse.Request)
        self.log.warning("%s: status 0x%04X: %s", cli.message_name(message), exc.status, exc)
        assoc.send(qr.failure_response(message, response_class, exc), context_id=event.context_id)

    def _wait(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def _cancelled(self, assoc: Association, request: dimse.Request) -> bool:
        """Whether a C-CANCEL for ``request`` has arrived; reads only what is there already.

        Readiness is the socket's: a C-CANCEL that came in the same read as the request itself
        is seen once the operation ends (as a C-CANCEL arriving late is, PS3.7 9.3.2.3).
        """
        sock = assoc.sock
        while self._readable(sock):
            event = assoc.receive_message()
            message = event.message
            if isinstance(message, dimse.CCancelRequest):
                if message.message_id_being_responded_to == request.message_id:
                    self.log.info("C-CANCEL received for message %d", request.message_id)
                    return True
                continue
            raise DriverError(
                f"{cli.message_name(message)} received while {cli.message_name(request)} runs"
            )
        return False

    @staticmethod
    def _readable(sock: Any) -> bool:
        if sock.fileno() < 0:
            return True  # closed: the next read reports it
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        return bool(select.select([sock], [], [], 0)[0])

    # -- C-FIND -----------------------------------------------------------------------------

    def find(self, assoc: Association, event: dimse.MessageReceived, reader: DatasetReader) -> None:
        """C-FIND: a pending response per match, then Success (or Cancel)."""
        message = event.message
        assert isinstance(message, dimse.CFindRequest)
        parsed = self._parse(assoc, event, reader, dimse.CFindResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            matches = self.archive.find(identifier, model, retrieve_ae_title=self.ae_title)
        except qr.QueryError as exc:
            self._fail(assoc, event, dimse.CFindResponse, exc)
            return
        self.log.info("C-FIND: %d match(es)", len(matches))
        status = qr.SUCCESS
        for match in matches:
            self._wait()
            if self._cancelled(assoc, message):
                status = qr.CANCEL
                break
            assoc.send(
                dimse.CFindResponse(
                    message_id_being_responded_to=message.message_id,
                    affected_sop_class_uid=message.affected_sop_class_uid,
                    status=qr.PENDING,
                ),
                context_id=event.context_id,
                dataset=qr.encode_identifier(match, syntax),
            )
        assoc.send(
            dimse.CFindResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                status=status,
            ),
            context_id=event.context_id,
        )

    # -- C-GET ------------------------------------------------------------------------------

    def get(self, assoc: Association, event: dimse.MessageReceived, reader: DatasetReader) -> None:
        """C-GET: C-STORE each match back on this association (PS3.4 C.4.3.3)."""
        message = event.message
        assert isinstance(message, dimse.CGetRequest)
        parsed = self._parse(assoc, event, reader, dimse.CGetResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            instances = self.archive.retrieve(identifier, model)
        except qr.QueryError as exc:
            self._fail(assoc, event, dimse.CGetResponse, exc)
            return
        self.log.info("C-GET: %d instance(s) to send", len(instances))
        ops = qr.SubOperations(len(instances))
        cancelled = False
        for instance in instances:
            self._wait()
            if self._cancelled(assoc, message):
                cancelled = True
                break
            status, cancelled = self._store_back(assoc, message, instance)
            ops.record(status, instance.sop_instance_uid)
            if cancelled:
                break
            if ops.remaining:
                assoc.send(ops.pending(dimse.CGetResponse, message), context_id=event.context_id)
        self._send_final(assoc, event, ops, dimse.CGetResponse, syntax, cancelled)

    def _send_final(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        ops: qr.SubOperations,
        response_class: type[dimse.Response],
        syntax: str,
        cancelled: bool,
    ) -> None:
        message = event.message
        assert isinstance(message, dimse.Request)
        response, failed = ops.final(response_class, message, cancelled=cancelled)
        self.log.info(
            "%s final: status %s (%s)",
            cli.message_name(response),
            qr.status_text(response.status),
            qr.counters_text(response),
        )
        assoc.send(
            response,
            context_id=event.context_id,
            dataset=qr.encode_identifier(failed, syntax) if failed is not None else None,
        )

    def _store_back(
        self, assoc: Association, get: dimse.CGetRequest, instance: qr.Instance
    ) -> tuple[int | None, bool]:
        """One C-STORE sub-operation of a C-GET: (its status or None, whether cancelled)."""
        found = qr.storage_context(assoc.session.contexts, instance, acceptor=True)
        if found is None:
            self.log.warning(
                "no context with the SCP role for the requestor to send %s (%s) on",
                instance.sop_instance_uid,
                cli.UID_NAMES.get(instance.sop_class_uid, instance.sop_class_uid),
            )
            return None, False
        context_id, syntax = found
        store = dimse.CStoreRequest(
            message_id=assoc.session.next_message_id(),
            affected_sop_class_uid=instance.sop_class_uid,
            affected_sop_instance_uid=instance.sop_instance_uid,
            priority=get.priority,
        )
        if not self._send_instance(assoc, store, context_id, instance, syntax):
            return None, False
        cancelled = False
        while True:
            event = assoc.receive_message()
            message = event.message
            if isinstance(message, dimse.CCancelRequest):
                cancelled |= message.message_id_being_responded_to == get.message_id
                continue
            if (
                isinstance(message, dimse.CStoreResponse)
                and message.message_id_being_responded_to == store.message_id
            ):
                return message.status, cancelled
            raise DriverError(f"{cli.message_name(message)} received instead of a C-STORE-RSP")

    def _send_instance(
        self,
        assoc: Association,
        store: dimse.CStoreRequest,
        context_id: int,
        instance: qr.Instance,
        syntax: str,
    ) -> bool:
        """Send a C-STORE-RQ and the instance's data set; False if the file cannot be read."""
        try:
            if syntax == instance.transfer_syntax and instance.file.length > _CHUNK:
                with open(instance.file.path, "rb") as fp:
                    assoc.send(store, context_id=context_id, dataset_follows=True)
                    assoc.send_dataset_stream(
                        context_id,
                        storage.read_chunks(fp, instance.file, _CHUNK),  # type: ignore[arg-type]
                        instance.file.length,
                    )
                return True
            data = qr.instance_data(instance, syntax)
        except (OSError, ValueError, qr.QueryError) as exc:
            if isinstance(exc, (TimeoutError, ConnectionError)):
                raise
            self.log.error("cannot read %s: %s", instance.file.path, exc)
            return False
        assoc.send(store, context_id=context_id, dataset=data)
        return True

    # -- C-MOVE -----------------------------------------------------------------------------

    def move(self, assoc: Association, event: dimse.MessageReceived, reader: DatasetReader) -> None:
        """C-MOVE: C-STORE each match to the destination over a sub-association (C.4.2.3)."""
        message = event.message
        assert isinstance(message, dimse.CMoveRequest)
        parsed = self._parse(assoc, event, reader, dimse.CMoveResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        address = self.destinations.get(message.move_destination)
        try:
            if address is None:
                raise qr.QueryError(
                    qr.MOVE_DESTINATION_UNKNOWN,
                    f"unknown move destination {message.move_destination!r}",
                )
            instances = self.archive.retrieve(identifier, model)
        except qr.QueryError as exc:
            self._fail(assoc, event, dimse.CMoveResponse, exc)
            return
        assert address is not None
        self.log.info(
            "C-MOVE: %d instance(s) to %s at %s:%d",
            len(instances),
            message.move_destination,
            *address,
        )
        originator = qr.peer_ae_title(assoc.connection) or ""
        ops = qr.SubOperations(len(instances))
        cancelled = False
        for contexts, batch in qr.move_batches(instances):
            cancelled = self._move_batch(
                assoc, event, message, address, contexts, batch, ops, originator
            )
            if cancelled:
                break
        self._send_final(assoc, event, ops, dimse.CMoveResponse, syntax, cancelled)

    def _move_batch(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        move: dimse.CMoveRequest,
        address: tuple[str, int],
        contexts: tuple[dul.PresentationContext, ...],
        batch: list[qr.Instance],
        ops: qr.SubOperations,
        originator: str,
    ) -> bool:
        """The sub-association for one batch of instances; True if cancelled."""
        request = dul.AssociateRequest(
            called_ae_title=move.move_destination,
            calling_ae_title=self.ae_title,
            presentation_contexts=contexts,
            user_information=dul.UserInformation(maximum_length=self.max_pdu),
        )
        try:
            sub = Association.request(
                *address,
                request,
                timeouts=self.timeouts,
                on_event=cli.Tracer(self.log, "MOVE-SCU"),
            )
        except (*_BROKEN, AssociationRejected) as exc:
            self.log.error("no association with %s: %s", move.move_destination, exc)
            for instance in batch:
                ops.record(None, instance.sop_instance_uid)
            return False
        cancelled = False
        try:
            for n, instance in enumerate(batch):
                self._wait()
                if self._cancelled(assoc, move):
                    cancelled = True
                    break
                try:
                    status = self._move_one(sub, move, instance, originator)
                except _BROKEN as exc:
                    self.log.error("the association with %s broke: %s", move.move_destination, exc)
                    sub.abort()
                    for lost in batch[n:]:
                        ops.record(None, lost.sop_instance_uid)
                    break
                ops.record(status, instance.sop_instance_uid)
                if ops.remaining:
                    assoc.send(ops.pending(dimse.CMoveResponse, move), context_id=event.context_id)
        except BaseException:  # the originating association broke: drop the sub-association
            sub.abort()
            raise
        if sub.connection.state is dul.State.ESTABLISHED:
            try:
                sub.release()
            except _BROKEN:
                sub.abort()
        return cancelled

    def _move_one(
        self, sub: Association, move: dimse.CMoveRequest, instance: qr.Instance, originator: str
    ) -> int | None:
        found = qr.storage_context(sub.session.contexts, instance, acceptor=False)
        if found is None:
            self.log.warning(
                "the destination accepted no context for %s", instance.sop_instance_uid
            )
            return None
        context_id, syntax = found
        store = dimse.CStoreRequest(
            message_id=sub.session.next_message_id(),
            affected_sop_class_uid=instance.sop_class_uid,
            affected_sop_instance_uid=instance.sop_instance_uid,
            priority=move.priority,
            move_originator_aet=originator or None,
            move_originator_message_id=move.message_id if originator else None,
        )
        if not self._send_instance(sub, store, context_id, instance, syntax):
            return None
        response, _ = sub.receive_response()
        return response.status


def qrscp_server(args: argparse.Namespace, log: logging.Logger) -> Server:
    """A qrscp server, bound, not yet serving; ``args`` from :func:`qr.qrscp_parser`."""
    archive, destinations, policy = qr.qrscp_setup(args, log)
    scp = _QRSCP(args, log, archive, destinations)
    handlers: dict[type[dimse.Message], Any] = {
        dimse.CEchoRequest: echo_handler,
        dimse.CFindRequest: scp.find,
        dimse.CGetRequest: scp.get,
        dimse.CMoveRequest: scp.move,
    }
    try:
        return Server(
            args.bind,
            args.port,
            policy=policy,
            handlers=handlers,
            max_associations=args.max_associations,
            timeouts=_timeouts(args),
            on_event=cli.Tracer(log, "SCP", per_association=True),
            on_close=qr.on_close_logger(log),
        )
    except OSError as exc:
        raise ToolError(
            ExitCode.NETWORK_SETUP, f"cannot listen on {args.bind}:{args.port}: {exc}"
        ) from exc


def qrscp_main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    """qrscp: serve a folder of DICOM files until interrupted."""

    def body(args: argparse.Namespace, log: logging.Logger) -> int:
        return serve(qrscp_server(args, log), args, log, "qrscp")

    return qr.run_tool("qrscp", qr.qrscp_parser(PROG.format("qrscp")), body, argv, stream)


_loggers = itertools.count(1)


@contextlib.contextmanager
def qrscp_in_thread(argv: Sequence[str], stream: TextIO | None = None) -> Iterator[Server]:
    """Run qrscp with ``argv`` in a thread of this process until the block exits.

    Port ``0`` binds a free port (``Server.port``); the log goes to ``stream``. A bad option
    raises :class:`ToolError`.
    """
    args = qr.parse(qr.qrscp_parser(PROG.format("qrscp")), list(argv))
    if isinstance(args, int):
        raise ToolError(ExitCode.USAGE, f"qrscp: bad arguments {list(argv)}")
    with (
        cli.tool_logger(f"qrscp.{next(_loggers)}", args, stream) as log,
        qrscp_server(args, log) as server,
    ):
        yield server
