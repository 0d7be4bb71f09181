"""findscu, getscu and movescu (PS3.4 C.4.1-C.4.3): one request, its responses, C-CANCEL.

Written once for every driver. The request loop waits for each response interruptibly: the
first Ctrl-C (:class:`~examples.runtime.Interrupted`) sends the C-CANCEL at once (PS3.7 9.3.2.3),
as does ``--cancel N`` after N responses; the driver makes the second Ctrl-C an abort.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from pydicom.dataset import Dataset

import dul
from dul import dimse
from examples.apps import echo, storage
from examples.apps.common import message_name, requestor
from examples.runtime import (
    Association,
    DatasetReader,
    Interrupted,
    Service,
    Steps,
    acceptor,
)

from .common import (
    FindOutput,
    build_identifier,
    cancel_due,
    counters_text,
    decode_or_none,
    describe_identifier,
    find_exit_code,
    get_contexts,
    log_final,
    model_from_args,
    open_writer,
    peer_ae_title,
    refused,
    request_contexts,
    store_response,
)
from .model import SUCCESS
from .wire import encode_identifier

__all__ = ["Receiver", "findscu", "getscu", "movescu", "receive_store"]

#: What an SCU does with each message of its association but the final response.
OnMessage = Callable[[Association, dimse.MessageReceived, Dataset | None], Steps[None]]
#: The result of an SCU's service: the final response, and whether Ctrl-C interrupted.
Outcome = tuple[dimse.Response, bool]


def _request(
    args: argparse.Namespace,
    log: logging.Logger,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...],
    make_request: Callable[[int, str], dimse.Request],
    on_message: OnMessage,
) -> Service[Outcome]:
    """Associate, send the request, hand each message to ``on_message`` until the final
    response, release. The identifier is built first: a bad key fails before any network."""
    identifier = build_identifier(args.key, args.files)
    log.info("identifier:\n%s", describe_identifier(identifier))
    sop_class = contexts[0].abstract_syntax

    def work(assoc: Association) -> Steps[Outcome]:
        context_id = assoc.context_for(sop_class)
        if context_id is None:
            yield from assoc.release()
            raise refused(sop_class)
        syntax = assoc.contexts[context_id].transfer_syntax
        request = make_request(assoc.session.next_message_id(), sop_class)
        data = encode_identifier(identifier, syntax)
        yield from assoc.send(request, context_id=context_id, dataset=data)
        interrupted = cancelled = False
        responses = 0
        while True:
            why = None if cancelled else cancel_due(interrupted, args.cancel, responses)
            if why is not None:
                log.log(logging.WARNING if interrupted else logging.INFO, "%s", why)
                cancelled = True
                cancel = dimse.CCancelRequest(message_id_being_responded_to=request.message_id)
                yield from assoc.send(cancel, context_id=context_id)
            try:
                event = yield from assoc.receive_message(interruptible=True)
            except Interrupted:
                interrupted = True
                continue
            message = event.message
            if not (
                isinstance(message, dimse.Response)
                and message.message_id_being_responded_to == request.message_id
            ):
                yield from on_message(assoc, event, None)
                continue
            data = (yield from assoc.dataset(event).read_all()) if event.has_dataset else None
            found = decode_or_none(data, syntax, log)
            if not message.is_pending:
                if found is not None:
                    log.info("final identifier:\n%s", describe_identifier(found))
                return message, interrupted
            responses += 1
            yield from on_message(assoc, event, found)

    return requestor(args, log, contexts, work, roles=roles)


def _unexpected(
    assoc: Association, event: dimse.MessageReceived, log: logging.Logger
) -> Steps[None]:
    """A message that answers nothing we asked: drain its data set, note it."""
    yield from assoc.dataset(event).drain()
    log.warning("ignored an unexpected %s", message_name(event.message))


def findscu(args: argparse.Namespace, log: logging.Logger, out: TextIO | None) -> Service[int]:
    """findscu: C-FIND; each match printed to ``out``. Its exit status: 0 on Success or Cancel."""
    model = model_from_args(args)
    output = FindOutput(args, out)

    def on_message(
        assoc: Association, event: dimse.MessageReceived, found: Dataset | None
    ) -> Steps[None]:
        if isinstance(event.message, dimse.CFindResponse):
            output.match(found)
        else:
            yield from _unexpected(assoc, event, log)

    def make(message_id: int, sop_class: str) -> dimse.Request:
        return dimse.CFindRequest(message_id=message_id, affected_sop_class_uid=sop_class)

    scu = _request(args, log, request_contexts(model.find), (), make, on_message)

    def service(assoc: Association) -> Steps[int]:
        final, interrupted = yield from scu(assoc)
        log_final(log, final, f", {output.count} match(es)")
        return find_exit_code(final.status, interrupted=interrupted)

    return service


def receive_store(
    assoc: Association,
    event: dimse.MessageReceived,
    dataset: DatasetReader,
    directory: Path | None,
    log: logging.Logger,
) -> Steps[bool]:
    """A C-STORE-RQ received: its data set streamed into a file (none with ``directory``
    None), then the response. True when stored (or ignored)."""
    message = event.message
    assert isinstance(message, dimse.CStoreRequest)
    context = assoc.contexts.get(event.context_id)
    status, comment = SUCCESS, None
    writer = None
    if not event.has_dataset:
        status, comment = 0xC000, "the C-STORE-RQ announced no data set"
    elif directory is not None and context is not None:
        peer = peer_ae_title(assoc.connection)  # for the file meta group (0002,0016)
        writer = open_writer(directory, message, context.transfer_syntax, peer, log)
        if writer is None:
            status, comment = 0xA700, "cannot create the file"
    try:
        while (chunk := (yield from dataset.next())) is not None:
            if writer is None:
                continue
            try:
                writer.write(chunk)
            except OSError as exc:
                log.error("cannot write %s: %s", writer.path, exc)
                writer.discard()
                writer = None
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
    response = store_response(message, status, comment)
    yield from assoc.send(response, context_id=event.context_id)
    return status == SUCCESS


def getscu(args: argparse.Namespace, log: logging.Logger, directory: Path | None) -> Service[int]:
    """getscu: C-GET, the C-STOREs received on the same association into ``directory``."""
    model = model_from_args(args)
    contexts, roles = get_contexts(model.get)
    received = 0

    def on_message(
        assoc: Association, event: dimse.MessageReceived, found: Dataset | None
    ) -> Steps[None]:
        nonlocal received
        message = event.message
        if isinstance(message, dimse.CStoreRequest):
            dataset = assoc.dataset(event)
            received += yield from receive_store(assoc, event, dataset, directory, log)
        elif isinstance(message, dimse.CGetResponse):
            log.info("C-GET pending: %s", counters_text(message))
        else:
            yield from _unexpected(assoc, event, log)

    def make(message_id: int, sop_class: str) -> dimse.Request:
        return dimse.CGetRequest(message_id=message_id, affected_sop_class_uid=sop_class)

    scu = _request(args, log, contexts, roles, make, on_message)

    def service(assoc: Association) -> Steps[int]:
        final, interrupted = yield from scu(assoc)
        log_final(log, final, f" ({counters_text(final)}); {received} instance(s) received")
        return find_exit_code(final.status, interrupted=interrupted)

    return service


class Receiver:
    """movescu's own storage SCP (+P): each C-STORE data set received written as a file."""

    def __init__(self, directory: Path | None, log: logging.Logger, max_pdu: int) -> None:
        self.directory = directory
        self.log = log
        self.count = 0
        policy = storage.storage_policy(ae_title=None, maximum_length=max_pdu)
        handlers = {dimse.CStoreRequest: self.store, dimse.CEchoRequest: echo.respond}
        #: The per-association service of the receiver.
        self.service = acceptor(policy.evaluate, handlers)

    def store(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        if (yield from receive_store(assoc, event, dataset, self.directory, self.log)):
            self.count += 1


def movescu(
    args: argparse.Namespace, log: logging.Logger, receiver: Receiver | None
) -> Service[int]:
    """movescu: C-MOVE to ``--move`` (default: ourselves); ``receiver`` counts what arrives."""
    model = model_from_args(args)
    destination = args.move or args.aetitle

    def on_message(
        assoc: Association, event: dimse.MessageReceived, found: Dataset | None
    ) -> Steps[None]:
        if isinstance(event.message, dimse.CMoveResponse):
            log.info("C-MOVE pending: %s", counters_text(event.message))
        else:
            yield from _unexpected(assoc, event, log)

    def make(message_id: int, sop_class: str) -> dimse.Request:
        return dimse.CMoveRequest(
            message_id=message_id, affected_sop_class_uid=sop_class, move_destination=destination
        )

    scu = _request(args, log, request_contexts(model.move), (), make, on_message)

    def service(assoc: Association) -> Steps[int]:
        final, interrupted = yield from scu(assoc)
        extra = f" ({counters_text(final)})"
        if receiver is not None:
            extra += f"; {receiver.count} instance(s) received"
        log_final(log, final, extra)
        return find_exit_code(final.status, interrupted=interrupted)

    return service
