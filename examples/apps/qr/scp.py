"""qrscp (PS3.4 C.4): C-FIND, C-GET and C-MOVE over an :class:`~.archive.Archive`, written once.

A C-CANCEL is looked for (:class:`~examples.runtime.Poll`, never waiting) before each pending
response and sub-operation. A C-GET's C-STOREs go back on the requestor's association (PS3.4
C.4.3.3); a C-MOVE's go to the destination over a sub-association this service opens itself
(:class:`~examples.runtime.Connect`, C.4.2.3), while the requestor's waits.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import dul
from dul import dimse
from examples.apps import echo, storage
from examples.apps.common import BROKEN, UID_NAMES, message_name, negotiation
from examples.runtime import (
    Association,
    DatasetReader,
    DriverError,
    Service,
    Sleep,
    Steps,
    Timeouts,
    acceptor,
)
from examples.runtime.steps import Connect

from .archive import Archive, Instance
from .common import (
    counters_text,
    describe_identifier,
    failure_response,
    peer_ae_title,
    qrscp_setup,
    status_text,
)
from .model import (
    CANCEL,
    MOVE_DESTINATION_UNKNOWN,
    PENDING,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    Model,
    QueryError,
)
from .wire import (
    SubOperations,
    decode_identifier,
    encode_identifier,
    instance_data,
    move_batches,
    storage_context,
)

__all__ = ["QRSCP", "qrscp"]

#: Data sets larger than this are streamed from their file, one chunk in memory at a time.
STREAM_CHUNK = 1 << 20
Trace = Callable[[str, object], None]


def qrscp(
    args: argparse.Namespace, log: logging.Logger, timeouts: Timeouts, sub_trace: Trace | None
) -> Service[None]:
    """qrscp's per-association service (the archive is indexed first, once)."""
    archive, destinations, policy = qrscp_setup(args, log)
    scp = QRSCP(args, log, archive, destinations, timeouts, sub_trace)
    handlers: dict[type[dimse.Message], Any] = {
        dimse.CEchoRequest: echo.respond,
        dimse.CFindRequest: scp.find,
        dimse.CGetRequest: scp.get,
        dimse.CMoveRequest: scp.move,
    }
    return acceptor(negotiation(policy, args, log), handlers)


class QRSCP:
    """The handlers of qrscp: C-FIND, C-GET and C-MOVE over one :class:`Archive`."""

    def __init__(
        self,
        args: argparse.Namespace,
        log: logging.Logger,
        archive: Archive,
        destinations: dict[str, tuple[str, int]],
        timeouts: Timeouts,
        sub_trace: Trace | None = None,
    ) -> None:
        self.log = log
        self.archive = archive
        self.destinations = destinations
        self.ae_title = args.aetitle
        self.delay = args.delay
        self.timeouts = timeouts
        self.max_pdu = args.max_pdu
        self.sub_trace = sub_trace

    # -- common -----------------------------------------------------------------------------

    def _parse(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        dataset: DatasetReader,
        response_class: type[dimse.Response],
    ) -> Steps[tuple[Model, Any, str] | None]:
        """The request's model, identifier and transfer syntax; None once a failure is sent."""
        message = event.message
        assert isinstance(message, dimse.Request)
        sop_class = getattr(message, "affected_sop_class_uid", "")
        syntax = assoc.contexts[event.context_id].transfer_syntax
        data = yield from dataset.read_all()
        model = Model.of(sop_class)
        try:
            if model is None:
                raise QueryError(SOP_CLASS_NOT_SUPPORTED, f"{sop_class} is not a Q/R model")
            identifier = decode_identifier(data, syntax)
        except QueryError as exc:
            yield from self._fail(assoc, event, response_class, exc)
            return None
        self.log.info("identifier:\n%s", describe_identifier(identifier))
        return model, identifier, syntax

    def _fail(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        response_class: type[dimse.Response],
        exc: QueryError,
    ) -> Steps[None]:
        message = event.message
        assert isinstance(message, dimse.Request)
        self.log.warning("%s: status 0x%04X: %s", message_name(message), exc.status, exc)
        response = failure_response(message, response_class, exc)
        yield from assoc.send(response, context_id=event.context_id)

    def _wait(self) -> Steps[None]:
        if self.delay:
            yield Sleep(self.delay)

    def _cancelled(self, assoc: Association, request: dimse.Request) -> Steps[bool]:
        """Whether a C-CANCEL for ``request`` has arrived; reads only what is there already.

        A C-CANCEL that arrives late is seen once the operation ends (PS3.7 9.3.2.3).
        """
        while (event := (yield from assoc.poll())) is not None:
            if not isinstance(event, dimse.MessageReceived):
                raise DriverError(f"{event} received while {message_name(request)} runs")
            message = event.message
            if isinstance(message, dimse.CCancelRequest):
                if message.message_id_being_responded_to == request.message_id:
                    self.log.info("C-CANCEL received for message %d", request.message_id)
                    return True
                continue
            raise DriverError(
                f"{message_name(message)} received while {message_name(request)} runs"
            )
        return False

    def _send_final(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        ops: SubOperations,
        response_class: type[dimse.Response],
        syntax: str,
        cancelled: bool,
    ) -> Steps[None]:
        message = event.message
        assert isinstance(message, dimse.Request)
        response, failed = ops.final(response_class, message, cancelled=cancelled)
        self.log.info(
            "%s final: status %s (%s)",
            message_name(response),
            status_text(response.status),
            counters_text(response),
        )
        data = encode_identifier(failed, syntax) if failed is not None else None
        yield from assoc.send(response, context_id=event.context_id, dataset=data)

    def _send_instance(
        self,
        assoc: Association,
        store: dimse.CStoreRequest,
        context_id: int,
        instance: Instance,
        syntax: str,
    ) -> Steps[bool]:
        """Send a C-STORE-RQ and the instance's data set; False if the file cannot be read.

        A large file in the syntax it is stored in is streamed, one chunk per write.
        """
        file = instance.file
        try:
            if syntax == instance.transfer_syntax and file.length > STREAM_CHUNK:
                with open(file.path, "rb") as fp:
                    yield from assoc.send(store, context_id=context_id, dataset_follows=True)
                    sent = 0
                    for chunk in storage.read_chunks(fp, file, STREAM_CHUNK):
                        sent += len(chunk)
                        last = sent == file.length
                        yield from assoc.send_dataset(context_id, chunk, is_last=last)
                return True
            data = instance_data(instance, syntax)
        except (OSError, ValueError, QueryError) as exc:
            if isinstance(exc, (TimeoutError, ConnectionError)):
                raise
            self.log.error("cannot read %s: %s", file.path, exc)
            return False
        yield from assoc.send(store, context_id=context_id, dataset=data)
        return True

    # -- C-FIND -----------------------------------------------------------------------------

    def find(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        """C-FIND: a pending response per match, then Success (or Cancel)."""
        message = event.message
        assert isinstance(message, dimse.CFindRequest)
        parsed = yield from self._parse(assoc, event, dataset, dimse.CFindResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            matches = self.archive.find(identifier, model, retrieve_ae_title=self.ae_title)
        except QueryError as exc:
            yield from self._fail(assoc, event, dimse.CFindResponse, exc)
            return
        self.log.info("C-FIND: %d match(es)", len(matches))
        status = SUCCESS
        for match in matches:
            yield from self._wait()
            if (yield from self._cancelled(assoc, message)):
                status = CANCEL
                break
            pending = dimse.CFindResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                status=PENDING,
            )
            data = encode_identifier(match, syntax)
            yield from assoc.send(pending, context_id=event.context_id, dataset=data)
        final = dimse.CFindResponse(
            message_id_being_responded_to=message.message_id,
            affected_sop_class_uid=message.affected_sop_class_uid,
            status=status,
        )
        yield from assoc.send(final, context_id=event.context_id)

    # -- C-GET ------------------------------------------------------------------------------

    def get(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        """C-GET: C-STORE each match back on this association (PS3.4 C.4.3.3)."""
        message = event.message
        assert isinstance(message, dimse.CGetRequest)
        parsed = yield from self._parse(assoc, event, dataset, dimse.CGetResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            instances = self.archive.retrieve(identifier, model)
        except QueryError as exc:
            yield from self._fail(assoc, event, dimse.CGetResponse, exc)
            return
        self.log.info("C-GET: %d instance(s) to send", len(instances))
        ops = SubOperations(len(instances))
        cancelled = False
        for instance in instances:
            yield from self._wait()
            if (yield from self._cancelled(assoc, message)):
                cancelled = True
                break
            status, cancelled = yield from self._store_back(assoc, message, instance)
            ops.record(status, instance.sop_instance_uid)
            if cancelled:
                break
            if ops.remaining:
                pending = ops.pending(dimse.CGetResponse, message)
                yield from assoc.send(pending, context_id=event.context_id)
        yield from self._send_final(assoc, event, ops, dimse.CGetResponse, syntax, cancelled)

    def _store_back(
        self, assoc: Association, get: dimse.CGetRequest, instance: Instance
    ) -> Steps[tuple[int | None, bool]]:
        """One C-STORE sub-operation of a C-GET: (its status or None, whether cancelled)."""
        found = storage_context(assoc.contexts, instance, acceptor=True)
        if found is None:
            self.log.warning(
                "no context with the SCP role for the requestor to send %s (%s) on",
                instance.sop_instance_uid,
                UID_NAMES.get(instance.sop_class_uid, instance.sop_class_uid),
            )
            return None, False
        context_id, syntax = found
        store = dimse.CStoreRequest(
            message_id=assoc.session.next_message_id(),
            affected_sop_class_uid=instance.sop_class_uid,
            affected_sop_instance_uid=instance.sop_instance_uid,
            priority=get.priority,
        )
        if not (yield from self._send_instance(assoc, store, context_id, instance, syntax)):
            return None, False
        cancelled = False
        while True:
            event = yield from assoc.receive_message()
            message = event.message
            if isinstance(message, dimse.CCancelRequest):
                cancelled |= message.message_id_being_responded_to == get.message_id
                continue
            if (
                isinstance(message, dimse.CStoreResponse)
                and message.message_id_being_responded_to == store.message_id
            ):
                return message.status, cancelled
            raise DriverError(f"{message_name(message)} received instead of a C-STORE-RSP")

    # -- C-MOVE -----------------------------------------------------------------------------

    def move(
        self, assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        """C-MOVE: C-STORE each match to the destination over a sub-association (C.4.2.3)."""
        message = event.message
        assert isinstance(message, dimse.CMoveRequest)
        parsed = yield from self._parse(assoc, event, dataset, dimse.CMoveResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        address = self.destinations.get(message.move_destination)
        try:
            if address is None:
                raise QueryError(
                    MOVE_DESTINATION_UNKNOWN,
                    f"unknown move destination {message.move_destination!r}",
                )
            instances = self.archive.retrieve(identifier, model)
        except QueryError as exc:
            yield from self._fail(assoc, event, dimse.CMoveResponse, exc)
            return
        assert address is not None
        self.log.info(
            "C-MOVE: %d instance(s) to %s at %s:%d",
            len(instances),
            message.move_destination,
            *address,
        )
        originator = peer_ae_title(assoc.connection) or ""
        ops = SubOperations(len(instances))
        cancelled = False
        for contexts, batch in move_batches(instances):
            cancelled = yield from self._move_batch(
                assoc, event, message, address, contexts, batch, ops, originator
            )
            if cancelled:
                break
        yield from self._send_final(assoc, event, ops, dimse.CMoveResponse, syntax, cancelled)

    def _move_batch(
        self,
        assoc: Association,
        event: dimse.MessageReceived,
        move: dimse.CMoveRequest,
        address: tuple[str, int],
        contexts: tuple[dul.PresentationContext, ...],
        batch: list[Instance],
        ops: SubOperations,
        originator: str,
    ) -> Steps[bool]:
        """The sub-association for one batch of instances; True if cancelled."""
        request = dul.AssociateRequest(
            called_ae_title=move.move_destination,
            calling_ae_title=self.ae_title,
            presentation_contexts=contexts,
            user_information=dul.UserInformation(maximum_length=self.max_pdu),
        )
        try:
            sub: Association = yield Connect(*address, self.timeouts, self.sub_trace)
            yield from sub.associate(request)
        except BROKEN as exc:
            self.log.error("no association with %s: %s", move.move_destination, exc)
            for instance in batch:
                ops.record(None, instance.sop_instance_uid)
            return False
        cancelled = False
        try:
            for n, instance in enumerate(batch):
                yield from self._wait()
                if (yield from self._cancelled(assoc, move)):
                    cancelled = True
                    break
                try:
                    status = yield from self._move_one(sub, move, instance, originator)
                except BROKEN as exc:
                    self.log.error("the association with %s broke: %s", move.move_destination, exc)
                    yield from sub.abort()
                    for lost in batch[n:]:
                        ops.record(None, lost.sop_instance_uid)
                    break
                ops.record(status, instance.sop_instance_uid)
                if ops.remaining:
                    pending = ops.pending(dimse.CMoveResponse, move)
                    yield from assoc.send(pending, context_id=event.context_id)
        except BaseException:  # the originating association broke: drop the sub-association
            yield from sub.abort()
            raise
        if sub.connection.state is dul.State.ESTABLISHED:
            try:
                yield from sub.release()
            except BROKEN:
                yield from sub.abort()
        return cancelled

    def _move_one(
        self, sub: Association, move: dimse.CMoveRequest, instance: Instance, originator: str
    ) -> Steps[int | None]:
        found = storage_context(sub.contexts, instance, acceptor=False)
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
        if not (yield from self._send_instance(sub, store, context_id, instance, syntax)):
            return None
        response, _ = yield from sub.receive_response()
        return response.status
