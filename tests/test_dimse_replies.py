"""Replies built by the requests: ``request.response(...)`` and ``request.refuse(...)``.

What each response echoes is typed here from the PS3.7 tables (§9.3 for DIMSE-C, §10.3 for
DIMSE-N: the fields marked "=" in the response column), not from dul's own table.
"""

from __future__ import annotations

import pytest

from dul import LocalProtocolError
from dul.dimse import (
    MESSAGE_CLASSES,
    VERIFICATION_SOP_CLASS,
    CEchoRequest,
    CEchoResponse,
    CFindRequest,
    CFindResponse,
    CGetRequest,
    CGetResponse,
    CMoveRequest,
    CMoveResponse,
    CStoreRequest,
    CStoreResponse,
    NActionRequest,
    NActionResponse,
    NCreateRequest,
    NCreateResponse,
    NDeleteRequest,
    NDeleteResponse,
    NEventReportRequest,
    NEventReportResponse,
    NGetRequest,
    NGetResponse,
    NSetRequest,
    NSetResponse,
    Request,
    Response,
    decode_message,
    encode_message,
)

SOP_CLASS, INSTANCE = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"

#: Each request class, a request of it, and the response PS3.7 says answers it with status 0.
CASES: list[tuple[Request, Response]] = [
    (
        CStoreRequest(
            message_id=7, affected_sop_class_uid=SOP_CLASS, affected_sop_instance_uid=INSTANCE
        ),
        CStoreResponse(
            message_id_being_responded_to=7,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
        ),
    ),
    (
        CFindRequest(message_id=8, affected_sop_class_uid=SOP_CLASS),
        CFindResponse(message_id_being_responded_to=8, affected_sop_class_uid=SOP_CLASS),
    ),
    (
        CGetRequest(message_id=9, affected_sop_class_uid=SOP_CLASS),
        CGetResponse(message_id_being_responded_to=9, affected_sop_class_uid=SOP_CLASS),
    ),
    (
        CMoveRequest(message_id=10, affected_sop_class_uid=SOP_CLASS, move_destination="DEST"),
        CMoveResponse(message_id_being_responded_to=10, affected_sop_class_uid=SOP_CLASS),
    ),
    (
        CEchoRequest(message_id=11),
        CEchoResponse(
            message_id_being_responded_to=11, affected_sop_class_uid=VERIFICATION_SOP_CLASS
        ),
    ),
    (
        NEventReportRequest(
            message_id=12,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
            event_type_id=3,
        ),
        NEventReportResponse(
            message_id_being_responded_to=12,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
            event_type_id=3,
        ),
    ),
    (  # the requested SOP class and instance come back as the affected ones (PS3.7 10.3.2)
        NGetRequest(
            message_id=13,
            requested_sop_class_uid=SOP_CLASS,
            requested_sop_instance_uid=INSTANCE,
            attribute_identifier_list=((0x0010, 0x0010),),
        ),
        NGetResponse(
            message_id_being_responded_to=13,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
        ),
    ),
    (
        NSetRequest(
            message_id=14, requested_sop_class_uid=SOP_CLASS, requested_sop_instance_uid=INSTANCE
        ),
        NSetResponse(
            message_id_being_responded_to=14,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
        ),
    ),
    (
        NActionRequest(
            message_id=15,
            requested_sop_class_uid=SOP_CLASS,
            requested_sop_instance_uid=INSTANCE,
            action_type_id=4,
        ),
        NActionResponse(
            message_id_being_responded_to=15,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
            action_type_id=4,
        ),
    ),
    (
        NCreateRequest(
            message_id=16, affected_sop_class_uid=SOP_CLASS, affected_sop_instance_uid=INSTANCE
        ),
        NCreateResponse(
            message_id_being_responded_to=16,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
        ),
    ),
    (  # no instance proposed: the SCP names the one it created, through **fields
        NCreateRequest(message_id=17, affected_sop_class_uid=SOP_CLASS),
        NCreateResponse(message_id_being_responded_to=17, affected_sop_class_uid=SOP_CLASS),
    ),
    (
        NDeleteRequest(
            message_id=18, requested_sop_class_uid=SOP_CLASS, requested_sop_instance_uid=INSTANCE
        ),
        NDeleteResponse(
            message_id_being_responded_to=18,
            affected_sop_class_uid=SOP_CLASS,
            affected_sop_instance_uid=INSTANCE,
        ),
    ),
]
IDS = [f"{type(rq).__name__}-{rq.message_id}" for rq, _ in CASES]


def test_every_request_class_is_covered() -> None:
    requests = {c for c in MESSAGE_CLASSES.values() if issubclass(c, Request)}
    assert {type(rq) for rq, _ in CASES} == requests


@pytest.mark.parametrize(("request_", "expected"), CASES, ids=IDS)
def test_response_echoes_what_ps3_7_says(request_: Request, expected: Response) -> None:
    response = request_.response()
    assert response == expected
    message, has_dataset = decode_message(encode_message(response, False))
    assert (message, has_dataset) == (expected, False)


@pytest.mark.parametrize(("request_", "expected"), CASES, ids=IDS)
@pytest.mark.parametrize("status", [0x0122, 0x0211, 0xA700, 0xC000, 0xFE00, 0xB000])
def test_refuse(request_: Request, expected: Response, status: int) -> None:
    """Any request refused with a status: its response class, the echoes, the comment."""
    refusal = request_.refuse(status, error_comment="not here")
    assert type(refusal) is type(expected)
    assert refusal.status == status and refusal.error_comment == "not here"
    assert refusal.message_id_being_responded_to == request_.message_id
    assert getattr(refusal, "affected_sop_class_uid", None) == getattr(
        expected, "affected_sop_class_uid", None
    )
    assert not refusal.is_pending
    assert decode_message(encode_message(refusal, False))[0] == refusal


@pytest.mark.parametrize("status", [0x0000, 0xFF00, 0xFF01])
def test_refuse_needs_a_failure_warning_or_cancel(status: int) -> None:
    with pytest.raises(LocalProtocolError, match="refuse"):
        CEchoRequest(message_id=1).refuse(status)


def test_fields_complete_or_override_the_echoes() -> None:
    create = NCreateRequest(message_id=3, affected_sop_class_uid=SOP_CLASS)
    assert create.response(affected_sop_instance_uid="9.8.7").affected_sop_instance_uid == "9.8.7"
    get = CGetRequest(message_id=4, affected_sop_class_uid=SOP_CLASS)
    pending = get.response(0xFF00, remaining_suboperations=2, completed_suboperations=1)
    assert pending == CGetResponse(
        message_id_being_responded_to=4,
        status=0xFF00,
        affected_sop_class_uid=SOP_CLASS,
        remaining_suboperations=2,
        completed_suboperations=1,
    )
    with pytest.raises(TypeError):
        get.response(no_such_field=1)
