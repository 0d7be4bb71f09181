"""C-ECHO-RQ and C-ECHO-RSP command sets, built and parsed by hand for the loopback tests.

dul's DIMSE layer does not exist yet; these few functions are what the interop tests need to
exchange a C-ECHO with DCMTK. A command set is group 0000 in implicit VR little endian
(PS3.7 §6.3.1), its elements in ascending tag order, each a 4-byte tag, a 4-byte length and an
even-length value; the C-ECHO fields are those of PS3.7 §9.3.5 (Tables 9.3-12 and 9.3-13).
"""

from __future__ import annotations

import struct

from attrs import frozen

__all__ = [
    "C_ECHO_RQ",
    "C_ECHO_RSP",
    "NO_DATASET",
    "VERIFICATION_SOP_CLASS",
    "EchoCommand",
    "decode_echo",
    "encode_echo_rq",
    "encode_echo_rsp",
    "parse_command",
]

#: The Verification SOP class, the abstract syntax of C-ECHO (PS3.4 Annex A).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
#: Command Field values (PS3.7 Annex E).
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
#: Command Data Set Type: "no data set" (PS3.7 Table E.1-1; any other value means one follows).
NO_DATASET = 0x0101

# Element numbers in group 0000 (PS3.7 Annex E).
COMMAND_GROUP_LENGTH = 0x0000
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900

_ELEMENT_HEADER = struct.Struct("<HHI")  # group, element, value length
_US = struct.Struct("<H")
_UL = struct.Struct("<I")


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT_HEADER.pack(0x0000, element, len(value)) + value


def _uid(uid: str) -> bytes:
    """A UI value: ASCII, padded to even length with one NUL (PS3.5 §6.2)."""
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """Prefix the elements with Command Group Length: the bytes that follow it (PS3.7 §6.3.1)."""
    body = b"".join(_element(element, value) for element, value in sorted(elements))
    return _element(COMMAND_GROUP_LENGTH, _UL.pack(len(body))) + body


def encode_echo_rq(message_id: int) -> bytes:
    """The command set of a C-ECHO-RQ (PS3.7 Table 9.3-12)."""
    return _command(
        [
            (AFFECTED_SOP_CLASS_UID, _uid(VERIFICATION_SOP_CLASS)),
            (COMMAND_FIELD, _US.pack(C_ECHO_RQ)),
            (MESSAGE_ID, _US.pack(message_id)),
            (COMMAND_DATA_SET_TYPE, _US.pack(NO_DATASET)),
        ]
    )


def encode_echo_rsp(message_id_being_responded_to: int, status: int = 0x0000) -> bytes:
    """The command set of a C-ECHO-RSP (PS3.7 Table 9.3-13); status 0000H is success."""
    return _command(
        [
            (AFFECTED_SOP_CLASS_UID, _uid(VERIFICATION_SOP_CLASS)),
            (COMMAND_FIELD, _US.pack(C_ECHO_RSP)),
            (MESSAGE_ID_BEING_RESPONDED_TO, _US.pack(message_id_being_responded_to)),
            (COMMAND_DATA_SET_TYPE, _US.pack(NO_DATASET)),
            (STATUS, _US.pack(status)),
        ]
    )


def parse_command(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """Split a command set into {element number: value bytes}.

    Raises ValueError unless it is all group 0000, in ascending order, with a Command Group
    Length that counts exactly the bytes after it.
    """
    data = bytes(data)
    elements: dict[int, bytes] = {}
    offset = 0
    previous = -1
    while offset < len(data):
        if len(data) - offset < _ELEMENT_HEADER.size:
            raise ValueError(f"{len(data) - offset} trailing bytes at {offset}: not an element")
        group, element, length = _ELEMENT_HEADER.unpack_from(data, offset)
        start = offset + _ELEMENT_HEADER.size
        if group != 0x0000:
            raise ValueError(
                f"element ({group:04X},{element:04X}) at {offset} is not in group 0000"
            )
        if element <= previous:
            raise ValueError(f"element (0000,{element:04X}) at {offset} is out of order")
        if start + length > len(data):
            raise ValueError(f"element (0000,{element:04X}) overruns the command set")
        elements[element] = data[start : start + length]
        previous = element
        offset = start + length
    group_length = elements.get(COMMAND_GROUP_LENGTH)
    if group_length is None or len(group_length) != 4:
        raise ValueError("no Command Group Length (0000,0000) of 4 bytes")
    if _UL.unpack(group_length)[0] != len(data) - 12:
        raise ValueError(
            f"Command Group Length says {_UL.unpack(group_length)[0]}, "
            f"{len(data) - 12} bytes follow it"
        )
    return elements


@frozen(kw_only=True)
class EchoCommand:
    """A decoded C-ECHO command: ``message_id`` is the Message ID Being Responded To of an RSP."""

    command_field: int
    message_id: int
    affected_sop_class_uid: str | None
    dataset_type: int
    status: int | None = None

    @property
    def is_request(self) -> bool:
        return self.command_field == C_ECHO_RQ


def _us(elements: dict[int, bytes], element: int) -> int:
    raw = elements.get(element)
    if raw is None or len(raw) != 2:
        raise ValueError(f"(0000,{element:04X}) is missing or not a US")
    value: int = _US.unpack(raw)[0]
    return value


def decode_echo(data: bytes | bytearray | memoryview) -> EchoCommand:
    """Decode a C-ECHO-RQ or C-ECHO-RSP command set; ValueError for anything else."""
    elements = parse_command(data)
    field = _us(elements, COMMAND_FIELD)
    if field not in (C_ECHO_RQ, C_ECHO_RSP):
        raise ValueError(f"Command Field {field:#06x} is not C-ECHO")
    uid = elements.get(AFFECTED_SOP_CLASS_UID)
    is_rsp = field == C_ECHO_RSP
    return EchoCommand(
        command_field=field,
        message_id=_us(elements, MESSAGE_ID_BEING_RESPONDED_TO if is_rsp else MESSAGE_ID),
        affected_sop_class_uid=None if uid is None else uid.rstrip(b"\0 ").decode("ascii"),
        dataset_type=_us(elements, COMMAND_DATA_SET_TYPE),
        status=_us(elements, STATUS) if is_rsp else None,
    )
