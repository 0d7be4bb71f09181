"""The command set codec: group 0000 in implicit VR little endian (PS3.7 §6.3, §9.3, §10.3, E).

A command set is a flat list of elements ``(0000,eeee)``: 2-byte group, 2-byte element, 4-byte
length, value. Strict on send: only group 0000, in ascending order, CommandGroupLength
(0000,0000) computed. Tolerant on receive where nothing is lost (docs/conformance.md, "Command
sets received"): CommandGroupLength is not checked, elements may come in any order, and elements
of other groups (Orthanc's C-GET-RSP carries (0008,0058)) are kept raw under their full tag.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TypeAlias

from .._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ELEMENTS", "CommandValue", "decode_command", "encode_command"]

#: A decoded value: int (US, UL), str (UI, AE, LO), or a tuple of (group, element) tags (AT).
CommandValue: TypeAlias = "int | str | tuple[tuple[int, int], ...]"

#: The command elements of PS3.7 Annex E: element number → (keyword, VR).
ELEMENTS: dict[int, tuple[str, str]] = {
    0x0000: ("CommandGroupLength", "UL"),
    0x0002: ("AffectedSOPClassUID", "UI"),
    0x0003: ("RequestedSOPClassUID", "UI"),
    0x0100: ("CommandField", "US"),
    0x0110: ("MessageID", "US"),
    0x0120: ("MessageIDBeingRespondedTo", "US"),
    0x0600: ("MoveDestination", "AE"),
    0x0700: ("Priority", "US"),
    0x0800: ("CommandDataSetType", "US"),
    0x0900: ("Status", "US"),
    0x0901: ("OffendingElement", "AT"),
    0x0902: ("ErrorComment", "LO"),
    0x0903: ("ErrorID", "US"),
    0x1000: ("AffectedSOPInstanceUID", "UI"),
    0x1001: ("RequestedSOPInstanceUID", "UI"),
    0x1002: ("EventTypeID", "US"),
    0x1005: ("AttributeIdentifierList", "AT"),
    0x1008: ("ActionTypeID", "US"),
    0x1020: ("NumberOfRemainingSuboperations", "US"),
    0x1021: ("NumberOfCompletedSuboperations", "US"),
    0x1022: ("NumberOfFailedSuboperations", "US"),
    0x1023: ("NumberOfWarningSuboperations", "US"),
    0x1030: ("MoveOriginatorApplicationEntityTitle", "AE"),
    0x1031: ("MoveOriginatorMessageID", "US"),
}

_HEADER = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")
_PAD = {"UI": b"\0", "AE": b" ", "LO": b" "}
_MAX_TEXT = {"UI": 64, "AE": 16, "LO": 64}


def _fail(message: str, offset: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"command set: {message}", reason=6, offset=offset)


def _tag(tag: int) -> str:
    return f"({tag >> 16 & 0xFFFF:04X},{tag & 0xFFFF:04X})"


def _name(element: int) -> str:
    known = ELEMENTS.get(element)
    return f"(0000,{element:04X})" + (f" {known[0]}" if known else "")


def _encode_value(element: int, vr: str, value: CommandValue) -> bytes:
    if vr in ("US", "UL"):
        limit = 0xFFFF if vr == "US" else 0xFFFFFFFF
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise LocalProtocolError(
                f"{_name(element)} must be an int from 0 to {limit}, not {value!r}"
            )
        return (_US if vr == "US" else _UL).pack(value)
    if vr == "AT":
        if not isinstance(value, tuple):
            raise LocalProtocolError(f"{_name(element)} must be a tuple of (group, element) pairs")
        try:
            return b"".join(struct.pack("<HH", group, elem) for group, elem in value)
        except (struct.error, TypeError, ValueError) as exc:
            raise LocalProtocolError(f"{_name(element)}: {value!r} is not a tuple of tags") from exc
    if not isinstance(value, str) or not value.isascii():
        raise LocalProtocolError(f"{_name(element)} must be an ASCII str, not {value!r}")
    if len(value) > _MAX_TEXT[vr]:
        raise LocalProtocolError(f"{_name(element)} {value!r} exceeds {_MAX_TEXT[vr]} characters")
    raw = value.encode("ascii")
    return raw + _PAD[vr] if len(raw) % 2 else raw


def encode_command(elements: Mapping[int, CommandValue | bytes]) -> bytes:
    """Encode a command set from ``{element: value}``; CommandGroupLength is added first.

    Elements are written in ascending order, as PS3.5 §7.1 requires. Unknown elements must be
    given as ``bytes`` values (kept raw). Keys are element numbers of group 0000: a command set
    holds nothing else (PS3.7 §6.3.1), so a full tag of another group is refused.
    """
    parts = []
    for element in sorted(elements):
        if not 0 <= element <= 0xFFFF:
            raise LocalProtocolError(
                f"element {_tag(element)} is not in group 0000: a command set holds group 0000 "
                "only (PS3.7 6.3.1)"
            )
        if element == 0x0000:
            continue
        value = elements[element]
        known = ELEMENTS.get(element)
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)  # kept raw: an unknown element, or one re-encoded already
        elif known is None:
            raise LocalProtocolError(f"unknown command element {_name(element)} needs bytes")
        else:
            raw = _encode_value(element, known[1], value)
        parts.append(_HEADER.pack(0x0000, element, len(raw)) + raw)
    body = b"".join(parts)
    return _HEADER.pack(0x0000, 0x0000, 4) + _UL.pack(len(body)) + body


def _decode_value(element: int, vr: str, raw: bytes, offset: int) -> CommandValue:
    if vr == "US" or vr == "UL":
        size = 2 if vr == "US" else 4
        if len(raw) != size:
            raise _fail(f"{_name(element)} has length {len(raw)}, not {size}", offset)
        return int.from_bytes(raw, "little")
    if vr == "AT":
        if len(raw) % 4:
            raise _fail(f"{_name(element)} has length {len(raw)}, not a multiple of 4", offset)
        return tuple(struct.iter_unpack("<HH", raw))
    return (
        raw.decode("latin-1").rstrip("\0 ").lstrip(" ")
        if vr == "AE"
        else (raw.decode("latin-1").rstrip("\0 "))
    )


def decode_command(data: bytes | memoryview) -> dict[int, CommandValue | bytes]:
    """Decode a command set into ``{tag: value}``, in the order received.

    A group-0000 element's key is its element number; unknown ones are kept as ``bytes``. An
    element of another group is kept as ``bytes`` under its full tag (``0x00080058``). The
    CommandGroupLength received is returned as it came, not checked. Raises
    :class:`RemoteProtocolError` naming the element at fault: truncated, repeated, or a known
    element whose value does not fit its VR.
    """
    raw = bytes(data)
    elements: dict[int, CommandValue | bytes] = {}
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < 8:
            raise _fail(f"{len(raw) - pos} bytes left over after the last element", pos)
        group, element, length = _HEADER.unpack_from(raw, pos)
        tag = group << 16 | element
        name = _name(element) if group == 0x0000 else _tag(tag)
        if tag in elements:
            raise _fail(f"{name} is repeated", pos)
        value_at = pos + 8
        if value_at + length > len(raw):
            raise _fail(f"{name} declares {length} bytes, only {len(raw) - value_at} remain", pos)
        value = raw[value_at : value_at + length]
        known = ELEMENTS.get(tag)
        elements[tag] = value if known is None else _decode_value(element, known[1], value, pos)
        pos = value_at + length
    return elements
