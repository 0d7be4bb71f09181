"""C-ECHO (PS3.7 9.1.5), the DICOM "ping": echoscu's service, and the handler every SCP uses."""

from __future__ import annotations

import argparse
import logging

import dul
from dul import dimse
from examples.runtime import Association, DatasetReader, Service, Steps, acceptor

from .common import ExitCode, ToolError, negotiation, requestor

__all__ = [
    "ECHO_CONTEXTS",
    "VERIFICATION_REFUSED",
    "echo",
    "echo_result",
    "echoscp",
    "echoscp_policy",
    "echoscu",
    "respond",
]

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


def echo(assoc: Association, context_id: int) -> Steps[int]:
    """One C-ECHO: the status of the response."""
    request = dimse.CEchoRequest(message_id=assoc.session.next_message_id())
    yield from assoc.send(request, context_id=context_id)
    response, _ = yield from assoc.receive_response()
    return response.status


def echoscu(args: argparse.Namespace, log: logging.Logger) -> Service[int]:
    """echoscu: ``--repeat`` C-ECHOs; the service returns how many did not say Success."""

    def work(assoc: Association) -> Steps[int]:
        context_id = assoc.context_for(dimse.VERIFICATION_SOP_CLASS)
        if context_id is None:
            yield from assoc.release()
            raise ToolError(ExitCode.ASSOCIATION_FAILED, VERIFICATION_REFUSED)
        failed = 0
        for _ in range(args.repeat):
            status = yield from echo(assoc, context_id)
            category = dimse.status_category(status).value
            log.info("C-ECHO response: status 0x%04X (%s)", status, category)
            failed += status != 0x0000
        return failed

    return requestor(args, log, ECHO_CONTEXTS, work)


def echo_result(log: logging.Logger, failed: int, repeat: int) -> int:
    """echoscu's exit status: OK when every response said Success."""
    if failed:
        log.error("%d of %d C-ECHO requests failed", failed, repeat)
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


def respond(
    assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
) -> Steps[None]:
    """Answer a C-ECHO-RQ with Success."""
    message = event.message
    assert isinstance(message, dimse.CEchoRequest)
    response = dimse.CEchoResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
    )
    yield from assoc.send(response, context_id=event.context_id)


def echoscp_policy(args: argparse.Namespace) -> dimse.AcceptorPolicy:
    """echoscp accepts the Verification SOP Class only."""
    return dimse.AcceptorPolicy(
        contexts={dimse.VERIFICATION_SOP_CLASS: ()},
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
    )


def echoscp(args: argparse.Namespace, log: logging.Logger) -> Service[None]:
    """echoscp's per-association service: C-ECHO answered, anything else 0x0211."""
    return acceptor(negotiation(echoscp_policy(args), args, log), {dimse.CEchoRequest: respond})
