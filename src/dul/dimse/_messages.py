"""The DIMSE-C and DIMSE-N messages of PS3.7 §9.3 and §10.3, as attrs classes.

A message holds its command set only; the dataset travels beside it. A message's SOP class UID
need not equal its presentation context's abstract syntax: under a meta SOP class such as Basic
Grayscale Print Management, each command names its own SOP class.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs
from attrs import frozen

from .._errors import LocalProtocolError, RemoteProtocolError
from ._commands import ELEMENTS, CommandValue, _encode_value, decode_command, encode_command

__all__ = [
    "MESSAGE_CLASSES",
    "VERIFICATION_SOP_CLASS",
    "CCancelRequest",
    "CEchoRequest",
    "CEchoResponse",
    "CFindRequest",
    "CFindResponse",
    "CGetRequest",
    "CGetResponse",
    "CMoveRequest",
    "CMoveResponse",
    "CStoreRequest",
    "CStoreResponse",
    "DatasetPresence",
    "Message",
    "NActionRequest",
    "NActionResponse",
    "NCreateRequest",
    "NCreateResponse",
    "NDeleteRequest",
    "NDeleteResponse",
    "NEventReportRequest",
    "NEventReportResponse",
    "NGetRequest",
    "NGetResponse",
    "NSetRequest",
    "NSetResponse",
    "Priority",
    "Request",
    "Response",
    "StatusCategory",
    "decode_message",
    "encode_message",
    "status_category",
]

#: The Verification SOP Class, which C-ECHO serves (PS3.4 Annex A).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
_NO_DATASET = 0x0101  # CommandDataSetType: "no data set"; any other value means one follows
_DATASET = 0x0001  # what DCMTK and pynetdicom send when a data set follows


class Priority(enum.IntEnum):
    """Priority (0000,0700) of C-STORE, C-FIND, C-GET and C-MOVE requests."""

    MEDIUM = 0
    HIGH = 1
    LOW = 2


class DatasetPresence(enum.Enum):
    """Whether a message carries a data set (PS3.7 §9.3 and §10.3 tables)."""

    REQUIRED = "required"
    OPTIONAL = "optional"
    ABSENT = "absent"


class StatusCategory(enum.Enum):
    """The category of a DIMSE status code (PS3.7 Annex C)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


def status_category(status: int) -> StatusCategory:
    """The category of ``status`` per PS3.7 Annex C (service-specific codes included)."""
    if status == 0x0000:
        return StatusCategory.SUCCESS
    if status in (0xFF00, 0xFF01):
        return StatusCategory.PENDING
    if status == 0xFE00:
        return StatusCategory.CANCEL
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return StatusCategory.WARNING
    return StatusCategory.FAILURE


# Attribute name → command element (PS3.7 Annex E).
_FIELDS: dict[str, int] = {
    "affected_sop_class_uid": 0x0002,
    "requested_sop_class_uid": 0x0003,
    "message_id": 0x0110,
    "message_id_being_responded_to": 0x0120,
    "move_destination": 0x0600,
    "priority": 0x0700,
    "status": 0x0900,
    "offending_element": 0x0901,
    "error_comment": 0x0902,
    "error_id": 0x0903,
    "affected_sop_instance_uid": 0x1000,
    "requested_sop_instance_uid": 0x1001,
    "event_type_id": 0x1002,
    "attribute_identifier_list": 0x1005,
    "action_type_id": 0x1008,
    "remaining_suboperations": 0x1020,
    "completed_suboperations": 0x1021,
    "failed_suboperations": 0x1022,
    "warning_suboperations": 0x1023,
    "move_originator_aet": 0x1030,
    "move_originator_message_id": 0x1031,
}
Tags = tuple[tuple[int, int], ...]


@frozen(kw_only=True)
class Message:
    """Base of every DIMSE message.

    ``unknown_elements`` keeps the group-0000 elements this class lacks, raw, by element number.
    ``foreign_elements`` keeps, raw and in the order received, elements of other groups a peer
    put in its command set (Orthanc's C-GET-RSP carries (0008,0058)), by full tag; they are
    never sent (PS3.7 §6.3.1: a command set is group 0000).
    """

    COMMAND_FIELD: ClassVar[int]
    DATASET: ClassVar[DatasetPresence]

    unknown_elements: tuple[tuple[int, bytes], ...] = ()
    foreign_elements: tuple[tuple[int, bytes], ...] = ()

    def _check(self) -> None:
        """Conditional rules of PS3.7 a subclass enforces on send."""


@frozen(kw_only=True)
class Request(Message):
    """A DIMSE request: it carries a Message ID."""

    message_id: int


@frozen(kw_only=True)
class Response(Message):
    """A DIMSE response, with the status-related fields every response may carry."""

    message_id_being_responded_to: int
    status: int = 0x0000
    error_comment: str | None = None
    error_id: int | None = None
    offending_element: Tags | None = None

    @property
    def category(self) -> StatusCategory:
        """The status category (success, warning, failure, cancel, pending)."""
        return status_category(self.status)

    @property
    def is_pending(self) -> bool:
        """True for a Pending status: more responses to the same request follow."""
        return self.category is StatusCategory.PENDING


# -- DIMSE-C (PS3.7 §9.3) ------------------------------------------------------------------


@frozen(kw_only=True)
class CStoreRequest(Request):
    """C-STORE-RQ (PS3.7 §9.3.1.1)."""

    COMMAND_FIELD = 0x0001
    DATASET = DatasetPresence.REQUIRED
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None

    def _check(self) -> None:
        _check_priority(self.priority)
        if (self.move_originator_aet is None) != (self.move_originator_message_id is None):
            raise LocalProtocolError(
                "C-STORE-RQ: Move Originator AE Title and Message ID go together (PS3.7 9.3.1.1)"
            )


@frozen(kw_only=True)
class CStoreResponse(Response):
    """C-STORE-RSP (PS3.7 §9.3.1.2)."""

    COMMAND_FIELD = 0x8001
    DATASET = DatasetPresence.ABSENT
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


@frozen(kw_only=True)
class CFindRequest(Request):
    """C-FIND-RQ (PS3.7 §9.3.2.1); the identifier is the data set."""

    COMMAND_FIELD = 0x0020
    DATASET = DatasetPresence.REQUIRED
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM

    def _check(self) -> None:
        _check_priority(self.priority)


@frozen(kw_only=True)
class CFindResponse(Response):
    """C-FIND-RSP (PS3.7 §9.3.2.2); a pending response carries a matching identifier."""

    COMMAND_FIELD = 0x8020
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None


@frozen(kw_only=True)
class CGetRequest(Request):
    """C-GET-RQ (PS3.7 §9.3.3.1); the identifier is the data set."""

    COMMAND_FIELD = 0x0010
    DATASET = DatasetPresence.REQUIRED
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM

    def _check(self) -> None:
        _check_priority(self.priority)


@frozen(kw_only=True)
class _SubOperations(Response):
    remaining_suboperations: int | None = None
    completed_suboperations: int | None = None
    failed_suboperations: int | None = None
    warning_suboperations: int | None = None

    def _check(self) -> None:
        if self.is_pending and self.remaining_suboperations is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: a Pending response needs the number of remaining "
                "sub-operations (PS3.7 9.3.3.2, 9.3.4.2)"
            )


@frozen(kw_only=True)
class CGetResponse(_SubOperations):
    """C-GET-RSP (PS3.7 §9.3.3.2); a data set may list the failed SOP instances."""

    COMMAND_FIELD = 0x8010
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None


@frozen(kw_only=True)
class CMoveRequest(Request):
    """C-MOVE-RQ (PS3.7 §9.3.4.1); the identifier is the data set."""

    COMMAND_FIELD = 0x0021
    DATASET = DatasetPresence.REQUIRED
    affected_sop_class_uid: str
    move_destination: str
    priority: int = Priority.MEDIUM

    def _check(self) -> None:
        _check_priority(self.priority)


@frozen(kw_only=True)
class CMoveResponse(_SubOperations):
    """C-MOVE-RSP (PS3.7 §9.3.4.2)."""

    COMMAND_FIELD = 0x8021
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None


@frozen(kw_only=True)
class CEchoRequest(Request):
    """C-ECHO-RQ (PS3.7 §9.3.5.1)."""

    COMMAND_FIELD = 0x0030
    DATASET = DatasetPresence.ABSENT
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS


@frozen(kw_only=True)
class CEchoResponse(Response):
    """C-ECHO-RSP (PS3.7 §9.3.5.2)."""

    COMMAND_FIELD = 0x8030
    DATASET = DatasetPresence.ABSENT
    affected_sop_class_uid: str | None = VERIFICATION_SOP_CLASS


@frozen(kw_only=True)
class CCancelRequest(Message):
    """C-CANCEL-RQ (PS3.7 §9.3.2.3): cancels the C-FIND, C-GET or C-MOVE it names."""

    COMMAND_FIELD = 0x0FFF
    DATASET = DatasetPresence.ABSENT
    message_id_being_responded_to: int


# -- DIMSE-N (PS3.7 §10.3) -----------------------------------------------------------------


@frozen(kw_only=True)
class NEventReportRequest(Request):
    """N-EVENT-REPORT-RQ (PS3.7 §10.3.1.1); event information is an optional data set."""

    COMMAND_FIELD = 0x0100
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int


@frozen(kw_only=True)
class NEventReportResponse(Response):
    """N-EVENT-REPORT-RSP (PS3.7 §10.3.1.2)."""

    COMMAND_FIELD = 0x8100
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    event_type_id: int | None = None


@frozen(kw_only=True)
class NGetRequest(Request):
    """N-GET-RQ (PS3.7 §10.3.2.1); no attribute list means all attributes."""

    COMMAND_FIELD = 0x0110
    DATASET = DatasetPresence.ABSENT
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    attribute_identifier_list: Tags | None = None


@frozen(kw_only=True)
class NGetResponse(Response):
    """N-GET-RSP (PS3.7 §10.3.2.2); the attribute list is the data set."""

    COMMAND_FIELD = 0x8110
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: Tags | None = None


@frozen(kw_only=True)
class NSetRequest(Request):
    """N-SET-RQ (PS3.7 §10.3.3.1); the modification list is the data set."""

    COMMAND_FIELD = 0x0120
    DATASET = DatasetPresence.REQUIRED
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@frozen(kw_only=True)
class NSetResponse(Response):
    """N-SET-RSP (PS3.7 §10.3.3.2)."""

    COMMAND_FIELD = 0x8120
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: Tags | None = None


@frozen(kw_only=True)
class NActionRequest(Request):
    """N-ACTION-RQ (PS3.7 §10.3.4.1); action information is an optional data set."""

    COMMAND_FIELD = 0x0130
    DATASET = DatasetPresence.OPTIONAL
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    action_type_id: int


@frozen(kw_only=True)
class NActionResponse(Response):
    """N-ACTION-RSP (PS3.7 §10.3.4.2)."""

    COMMAND_FIELD = 0x8130
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    action_type_id: int | None = None


@frozen(kw_only=True)
class NCreateRequest(Request):
    """N-CREATE-RQ (PS3.7 §10.3.5.1); without an instance UID the SCP assigns one."""

    COMMAND_FIELD = 0x0140
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None = None


@frozen(kw_only=True)
class NCreateResponse(Response):
    """N-CREATE-RSP (PS3.7 §10.3.5.2)."""

    COMMAND_FIELD = 0x8140
    DATASET = DatasetPresence.OPTIONAL
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


@frozen(kw_only=True)
class NDeleteRequest(Request):
    """N-DELETE-RQ (PS3.7 §10.3.6.1)."""

    COMMAND_FIELD = 0x0150
    DATASET = DatasetPresence.ABSENT
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@frozen(kw_only=True)
class NDeleteResponse(Response):
    """N-DELETE-RSP (PS3.7 §10.3.6.2)."""

    COMMAND_FIELD = 0x8150
    DATASET = DatasetPresence.ABSENT
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


def _check_priority(priority: int) -> None:
    if priority not in (0, 1, 2):
        raise LocalProtocolError(f"priority {priority!r} is not 0 (medium), 1 (high) or 2 (low)")


#: Each message class by its Command Field (0000,0100) value: what a decoder looks up.
MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.COMMAND_FIELD: cls
    for cls in (
        CStoreRequest,
        CStoreResponse,
        CFindRequest,
        CFindResponse,
        CGetRequest,
        CGetResponse,
        CMoveRequest,
        CMoveResponse,
        CEchoRequest,
        CEchoResponse,
        CCancelRequest,
        NEventReportRequest,
        NEventReportResponse,
        NGetRequest,
        NGetResponse,
        NSetRequest,
        NSetResponse,
        NActionRequest,
        NActionResponse,
        NCreateRequest,
        NCreateResponse,
        NDeleteRequest,
        NDeleteResponse,
    )
}
_CLASS_FIELDS: dict[type[Message], tuple[tuple[str, int, bool], ...]] = {
    cls: tuple(
        # Required on receive: no default, or a default that stands for a mandatory field
        # (Status, Priority): a response without Status must not read as Success.
        (f.name, _FIELDS[f.name], f.default is attrs.NOTHING or "None" not in str(f.type))
        for f in attrs.fields(cls)
        if f.name not in ("unknown_elements", "foreign_elements")
    )
    for cls in MESSAGE_CLASSES.values()
}


def encode_message(message: Message, has_dataset: bool) -> bytes:
    """Encode ``message``'s command set, validating it; ``has_dataset`` sets CommandDataSetType."""
    cls = type(message)
    if cls not in _CLASS_FIELDS:
        raise LocalProtocolError(f"{cls.__name__} is not a DIMSE message")
    if has_dataset and cls.DATASET is DatasetPresence.ABSENT:
        raise LocalProtocolError(f"{cls.__name__} carries no data set (PS3.7)")
    if not has_dataset and cls.DATASET is DatasetPresence.REQUIRED:
        raise LocalProtocolError(f"{cls.__name__} requires a data set (PS3.7)")
    message._check()
    if message.foreign_elements:
        tags = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t, _ in message.foreign_elements)
        raise LocalProtocolError(
            f"{cls.__name__}: foreign elements {tags} are not sent: a command set holds group "
            "0000 only (PS3.7 6.3.1)"
        )
    elements: dict[int, CommandValue | bytes] = {}
    for name, element, _required in _CLASS_FIELDS[cls]:
        value = getattr(message, name)
        if value is not None:
            elements[element] = value
    for element, raw in message.unknown_elements:
        if element in elements or element in (0x0000, 0x0100, 0x0800):
            raise LocalProtocolError(f"unknown element (0000,{element:04X}) clashes with a field")
        elements[element] = raw
    elements[0x0100] = message.COMMAND_FIELD
    elements[0x0800] = _DATASET if has_dataset else _NO_DATASET
    return encode_command(elements)


def decode_message(data: bytes | memoryview) -> tuple[Message, bool]:
    """Decode a command set into (message, whether a data set follows).

    Elements outside group 0000 go to ``foreign_elements``, as received. Raises
    :class:`RemoteProtocolError` naming the element at fault.
    """
    elements = decode_command(data)
    foreign = tuple(
        (tag, value) for tag, value in elements.items() if tag > 0xFFFF and isinstance(value, bytes)
    )
    for tag, _ in foreign:
        del elements[tag]
    field = elements.pop(0x0100, None)
    if not isinstance(field, int):
        raise RemoteProtocolError("command set has no CommandField (0000,0100)", reason=6)
    cls = MESSAGE_CLASSES.get(field)
    if cls is None:
        raise RemoteProtocolError(f"unknown CommandField {field:#06x}", reason=6)
    dataset_type = elements.pop(0x0800, None)
    if not isinstance(dataset_type, int):
        raise RemoteProtocolError(f"{cls.__name__} has no CommandDataSetType (0000,0800)", reason=6)
    elements.pop(0x0000, None)
    values: dict[str, Any] = {}
    for name, element, required in _CLASS_FIELDS[cls]:
        value = elements.pop(element, None)
        if value is None:
            if required:
                keyword = ELEMENTS[element][0]
                raise RemoteProtocolError(
                    f"{cls.__name__} lacks {keyword} (0000,{element:04X})", reason=6
                )
            values[name] = None  # absent: no default fills in (C-ECHO-RSP's SOP class is U)
            continue
        values[name] = value
    unknown = []
    for element, value in sorted(elements.items()):
        if isinstance(value, bytes):
            unknown.append((element, value))
        else:  # a known element this message does not define: keep its encoding
            vr = ELEMENTS[element][1]
            try:
                raw = _encode_value(element, vr, value)
            except LocalProtocolError:  # text we would not send (non-ASCII, too long): as it came
                text = str(value).encode("latin-1")
                raw = text + (b"\0" if vr == "UI" else b" ") * (len(text) % 2)
            unknown.append((element, raw))
    try:
        message = cls(unknown_elements=tuple(unknown), foreign_elements=foreign, **values)
    except TypeError as exc:  # pragma: no cover - required fields were checked above
        raise RemoteProtocolError(f"{cls.__name__}: {exc}", reason=6) from exc
    return message, dataset_type != _NO_DATASET
