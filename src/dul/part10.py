"""DICOM Part 10 files, streamed: the File Meta Information read and written, never the data set.

A Part 10 file (PS3.10 §7.1) is a 128-byte preamble, the prefix ``DICM``, the File Meta
Information (group 0002, explicit VR little endian, led by its group length (0002,0000)), then
the data set in the transfer syntax the meta group names. :func:`read_file_meta` reads the meta
group and says where the data set starts, so that a sender streams the data set from there
without parsing it; :func:`encode_file_meta` builds the bytes a receiver writes before the data
set it streams in as it arrives.

Reading is strict about structure (a clear :class:`InvalidFileMeta` naming the fault and its byte
offset, never an IndexError) and tolerant where nothing is lost: a file without a preamble whose
meta group starts at byte 0 (what pydicom writes with ``enforce_file_format=False``), and a meta
group without (0002,0000) (read while the group is 0002, as pydicom and DCMTK do). Memory is
bounded by ``max_length``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import BinaryIO

import attrs

from ._events import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = [
    "DEFAULT_MAX_META_LENGTH",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "FILE_META_VERSION",
    "PREFIX",
    "FileMeta",
    "InvalidFileMeta",
    "MetaElement",
    "decode_file_meta",
    "encode_file_meta",
    "read_file_meta",
]

#: ``DICM``, after the 128-byte preamble (PS3.10 §7.1).
PREFIX = b"DICM"
#: (0002,0001) File Meta Information Version: version 1 (PS3.10 Table 7.1-1).
FILE_META_VERSION = b"\x00\x01"
#: The one transfer syntax whose data set is not a sequence of elements: it is deflated.
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
#: The most bytes of meta group read before giving up (real ones are a few hundred bytes).
DEFAULT_MAX_META_LENGTH = 1 << 20

_PREAMBLE_LENGTH = 128
_GROUP = 0x0002
# VRs with a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2, Table 7.1-1).
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL"}
    | {"SS", "ST", "TM", "UI", "UL", "US"}
)
# VRs padded with a space, not a NUL (PS3.5 §6.2).
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")  # PS3.5 §9.1

# The elements FileMeta has a field for: element number → (field name, the VR PS3.10 gives it).
_FIELDS: dict[int, tuple[str, str]] = {
    0x0002: ("media_storage_sop_class_uid", "UI"),
    0x0003: ("media_storage_sop_instance_uid", "UI"),
    0x0010: ("transfer_syntax", "UI"),
    0x0012: ("implementation_class_uid", "UI"),
    0x0013: ("implementation_version_name", "SH"),
    0x0016: ("source_ae_title", "AE"),
}


class InvalidFileMeta(ValueError):
    """Not a readable Part 10 file: ``offset`` is the byte of the file where the fault is."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (byte {offset})")
        self.offset = offset


class _NeedMore(Exception):
    """The buffer ends inside the meta group (internal: read_file_meta reads more)."""


@attrs.frozen(kw_only=True)
class MetaElement:
    """One element of group 0002 as in the file: tag, VR and value bytes (padding kept)."""

    tag: int  # (group << 16) | element, e.g. 0x00020010
    vr: str
    value: bytes

    @property
    def element(self) -> int:
        """The element number (the low 16 bits of the tag)."""
        return self.tag & 0xFFFF


@attrs.frozen(kw_only=True)
class FileMeta:
    """A file's File Meta Information (PS3.10 §7.1) and where its data set starts.

    UIDs come without their NUL padding, text without its spaces; ``elements`` holds every
    element but the group length as it is in the file (Private Information, Sending AE and the
    other optional ones included), so nothing read is lost.
    """

    transfer_syntax: str
    media_storage_sop_class_uid: str | None = None
    media_storage_sop_instance_uid: str | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    source_ae_title: str | None = None
    #: The value of (0002,0001) File Meta Information Version (``b"\\x00\\x01"``), if present.
    version: bytes | None = None
    elements: tuple[MetaElement, ...] = ()
    #: The 128-byte preamble, or None when the file has none (then it has no ``DICM`` either).
    preamble: bytes | None = None
    #: The value of (0002,0000), or None when the file lacks it.
    group_length: int | None = None
    #: The byte of the file where the data set starts (after the meta group).
    dataset_offset: int

    def element(self, tag: int) -> MetaElement | None:
        """The element with ``tag`` (e.g. ``0x00020102``, Private Information), if present."""
        return next((e for e in self.elements if e.tag == tag), None)


# -- reading ----------------------------------------------------------------------------------


def read_file_meta(fp: BinaryIO, *, max_length: int = DEFAULT_MAX_META_LENGTH) -> FileMeta:
    """Read the preamble and meta group of the file ``fp`` (open, binary, seekable, at byte 0).

    Leaves ``fp`` at the first byte of the data set (``dataset_offset``); reads little more than
    the meta group (4 KiB at first, more only for a larger group, at most ``max_length``).
    Raises :class:`InvalidFileMeta`, and ``OSError`` as ``fp.read`` does.
    """
    buffer = bytearray()
    want = 4096
    cap = max_length + 4096  # the preamble, the group length element and a peek beyond
    while True:
        while len(buffer) < want:
            chunk = fp.read(want - len(buffer))
            if not chunk:
                break
            buffer += chunk
        at_end = len(buffer) < want
        try:
            meta = decode_file_meta(buffer, max_length=max_length, complete=at_end)
        except _NeedMore:
            if want >= cap:  # pragma: no cover - decode_file_meta refuses a group this large
                raise InvalidFileMeta(
                    "file meta information above the limit", len(buffer)
                ) from None
            want = min(want * 4, cap)
            continue
        fp.seek(meta.dataset_offset)
        return meta


def decode_file_meta(
    data: bytes | bytearray | memoryview,
    *,
    max_length: int = DEFAULT_MAX_META_LENGTH,
    complete: bool = True,
) -> FileMeta:
    """The meta group of a file whose first bytes are ``data`` (the whole file, or its start).

    With ``complete=True`` (the default), ``data`` is the whole file and one that ends inside the
    meta group is refused; ``data`` may also go on past the meta group (into the data set).
    """
    try:
        return _decode(memoryview(data).cast("B"), max_length, complete)
    except _NeedMore:
        if complete:
            raise InvalidFileMeta(
                "the file ends inside the file meta information: too short", len(data)
            ) from None
        raise


def _decode(data: memoryview, max_length: int, complete: bool) -> FileMeta:
    size = len(data)
    preamble: bytes | None = None
    if size < _PREAMBLE_LENGTH + 4 and not complete:
        raise _NeedMore
    if size >= _PREAMBLE_LENGTH + 4 and data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] == PREFIX:
        preamble = bytes(data[:_PREAMBLE_LENGTH])
        start = _PREAMBLE_LENGTH + 4
    elif (
        size >= 6
        and data[0] == 2
        and data[1] == 0
        and bytes(data[4:6]).decode("latin-1") in (_LONG_VRS | _SHORT_VRS)
    ):
        start = 0  # no preamble, no DICM: the meta group starts the file
    else:
        raise InvalidFileMeta(
            f"not a DICOM file: no {PREFIX.decode()!r} at byte {_PREAMBLE_LENGTH} "
            "and no file meta information (group 0002) at byte 0 (PS3.10 §7.1)",
            _PREAMBLE_LENGTH if size >= _PREAMBLE_LENGTH + 4 else 0,
        )

    elements: list[MetaElement] = []
    pos = start
    group_length: int | None = None
    end: int | None = None  # the end the group length declares
    limit = start + 12 + max_length  # no element of the group may end beyond
    first = _element_at(data, pos, complete, limit)
    if first is None or first[0] >> 16 != _GROUP:
        raise InvalidFileMeta("no file meta information (group 0002) after the prefix", pos)
    if first[0] == 0x00020000:
        tag, vr, value_start, value_end = first
        if vr != "UL" or value_end - value_start != 4:
            raise InvalidFileMeta(
                f"(0002,0000) File Meta Information Group Length is {vr} of "
                f"{value_end - value_start} bytes: it must be UL of 4 (PS3.10 §7.1)",
                pos,
            )
        group_length = int.from_bytes(data[value_start:value_end], "little")
        if group_length % 2:
            raise InvalidFileMeta(
                f"odd file meta group length {group_length}: elements have even lengths "
                "(PS3.5 §7.1)",
                value_start,
            )
        if group_length > max_length:
            raise InvalidFileMeta(
                f"file meta group length {group_length} is above the limit of {max_length}",
                value_start,
            )
        pos = value_end
        end = pos + group_length
        if end > size:
            if not complete:
                raise _NeedMore
            raise InvalidFileMeta(
                f"the file meta group length says {group_length} bytes, only {size - pos} "
                "remain: the file is too short, or the group length is wrong",
                value_start,
            )

    seen: set[int] = set()
    while end is None or pos < end:
        if end is not None and pos + 8 > end:
            raise InvalidFileMeta(
                f"the file meta group length {group_length} ends inside an element header",
                pos,
            )
        found = _element_at(data, pos, complete or end is not None, limit)
        if found is None:
            break  # the file ends right after a meta group without group length
        tag, vr, value_start, value_end = found
        if tag >> 16 != _GROUP:
            if end is None:
                break  # no group length: the group ends where group 0002 does
            raise InvalidFileMeta(
                f"the file meta group length {group_length} runs into element "
                f"({tag >> 16:04X},{tag & 0xFFFF:04X}), outside group 0002",
                pos,
            )
        if end is not None and value_end > end:
            raise InvalidFileMeta(
                f"element (0002,{tag & 0xFFFF:04X}) ends at byte {value_end}, after the end "
                f"of the meta group that the group length {group_length} gives (byte {end})",
                pos,
            )
        if tag == 0x00020000:
            raise InvalidFileMeta("(0002,0000) Group Length is not the first element", pos)
        if tag in seen:
            raise InvalidFileMeta(f"element (0002,{tag & 0xFFFF:04X}) appears twice", pos)
        seen.add(tag)
        elements.append(MetaElement(tag=tag, vr=vr, value=bytes(data[value_start:value_end])))
        pos = value_end
    syntax = next((e.value for e in elements if e.element == 0x0010), b"").rstrip(b"\0 ")
    if end is not None and syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.encode():
        # More of group 0002 after the end the group length gives: the length is too short.
        if size >= pos + 2 and data[pos] == 2 and data[pos + 1] == 0:
            raise InvalidFileMeta(
                f"group 0002 goes on after the {group_length} bytes its group length gives",
                pos,
            )
        if size < pos + 2 and not complete:
            raise _NeedMore
    fields = _fields(elements, start)
    version = next((e.value for e in elements if e.element == 0x0001), None)
    return FileMeta(
        transfer_syntax=fields["transfer_syntax"],
        media_storage_sop_class_uid=fields.get("media_storage_sop_class_uid"),
        media_storage_sop_instance_uid=fields.get("media_storage_sop_instance_uid"),
        implementation_class_uid=fields.get("implementation_class_uid"),
        implementation_version_name=fields.get("implementation_version_name"),
        source_ae_title=fields.get("source_ae_title"),
        version=version,
        elements=tuple(elements),
        preamble=preamble,
        group_length=group_length,
        dataset_offset=pos,
    )


def _element_at(
    data: memoryview, pos: int, complete: bool, limit: int
) -> tuple[int, str, int, int] | None:
    """The element header at ``pos``: (tag, VR, value start, value end); None at the very end."""
    size = len(data)
    if pos == size and complete:
        return None
    if pos + 8 > size:
        if complete:
            raise InvalidFileMeta(
                f"the file ends inside an element header of the file meta information "
                f"({size - pos} of 8 bytes)",
                pos,
            )
        raise _NeedMore
    group, element = struct.unpack_from("<HH", data, pos)
    tag = group << 16 | element
    if group != _GROUP:
        return tag, "", pos, pos  # the caller decides: group 0002 is over, or a lying length
    vr = bytes(data[pos + 4 : pos + 6]).decode("latin-1")
    if vr in _LONG_VRS:
        if pos + 12 > size:
            if complete:
                raise InvalidFileMeta("the file ends inside an element header", pos)
            raise _NeedMore
        (length,) = struct.unpack_from("<L", data, pos + 8)
        value_start = pos + 12
    elif vr in _SHORT_VRS:
        (length,) = struct.unpack_from("<H", data, pos + 6)
        value_start = pos + 8
    else:
        raise InvalidFileMeta(
            f"element (0002,{element:04X}) has no valid VR ({data[pos + 4 : pos + 6].hex(' ')}): "
            "the file meta information is explicit VR little endian (PS3.10 §7.1)",
            pos + 4,
        )
    if length == _UNDEFINED_LENGTH:
        raise InvalidFileMeta(
            f"element (0002,{element:04X}) has an undefined length: not allowed in the file "
            "meta information",
            pos,
        )
    if length % 2:
        raise InvalidFileMeta(
            f"element (0002,{element:04X}) has an odd length {length} (PS3.5 §7.1)", pos
        )
    value_end = value_start + length
    if value_end > limit:
        raise InvalidFileMeta(
            f"element (0002,{element:04X}) of {length} bytes takes the file meta information "
            f"past byte {limit}, the limit of its size (max_length)",
            pos,
        )
    if value_end > size:
        if complete:
            raise InvalidFileMeta(
                f"element (0002,{element:04X}) declares {length} bytes, the file ends after "
                f"{size - value_start}",
                pos,
            )
        raise _NeedMore
    return tag, vr, value_start, value_end


def _fields(elements: list[MetaElement], start: int) -> dict[str, str]:
    """The text fields of FileMeta from the elements; the transfer syntax is required."""
    fields: dict[str, str] = {}
    for item in elements:
        known = _FIELDS.get(item.element)
        if known is None:
            continue
        name, vr = known
        if item.vr != vr:
            raise InvalidFileMeta(
                f"element (0002,{item.element:04X}) has VR {item.vr}: PS3.10 Table 7.1-1 says {vr}",
                start,
            )
        if vr == "UI":
            try:
                text = item.value.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidFileMeta(
                    f"element (0002,{item.element:04X}) is not ASCII: not a UID", start
                ) from None
            fields[name] = text.rstrip("\0 ")
        else:
            fields[name] = item.value.decode("ascii", "replace").strip(" \0")
    if not fields.get("transfer_syntax"):
        raise InvalidFileMeta(
            "the file meta information has no (0002,0010) Transfer Syntax UID: "
            "the data set cannot be read (PS3.10 §7.1)",
            start,
        )
    return fields


# -- writing ----------------------------------------------------------------------------------


def encode_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str | None = None,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME,
    extra: Iterable[MetaElement] = (),
    preamble: bytes | None = bytes(_PREAMBLE_LENGTH),
    strict: bool = True,
) -> bytes:
    """The preamble, ``DICM`` and meta group of a file whose data set (in ``transfer_syntax``)
    is then written after it, as it is (PS3.10 §7.1).

    The implementation class UID and version name are dul's unless given. ``extra`` adds other
    group 0002 elements (e.g. (0002,0017) Sending AE Title), sorted in with the rest.
    ``preamble=None`` writes neither preamble nor ``DICM`` (not a conformant file, as pydicom's
    ``enforce_file_format=False`` writes). With ``strict`` (the default) a value that is not a
    valid UID, AE title or SH raises ``ValueError``; ``strict=False`` writes what it is given
    (non-ASCII replaced), for values a peer sent.
    """
    if preamble is not None and len(preamble) != _PREAMBLE_LENGTH:
        raise ValueError(f"a preamble is {_PREAMBLE_LENGTH} bytes, not {len(preamble)}")
    values = {
        0x0001: ("OB", FILE_META_VERSION),
        0x0002: ("UI", _uid(sop_class_uid, "SOP class UID", strict)),
        0x0003: ("UI", _uid(sop_instance_uid, "SOP instance UID", strict)),
        0x0010: ("UI", _uid(transfer_syntax, "transfer syntax", strict)),
        0x0012: ("UI", _uid(implementation_class_uid, "implementation class UID", strict)),
    }
    if implementation_version_name is not None:
        text = _text(implementation_version_name, "implementation version name", strict)
        values[0x0013] = ("SH", text)
    if source_ae_title:
        values[0x0016] = ("AE", _text(source_ae_title, "source AE title", strict))
    for item in extra:
        if item.tag >> 16 != _GROUP or item.tag == 0x00020000:
            raise ValueError(f"tag {item.tag:08X}: only group 0002 elements but the group length")
        if item.vr not in _LONG_VRS | _SHORT_VRS:
            raise ValueError(f"{item.vr!r} is not a VR")
        if item.element in values:
            raise ValueError(f"(0002,{item.element:04X}) is given twice")
        pad = b" " if item.vr in _TEXT_VRS else b"\0"  # PS3.5 §6.2
        values[item.element] = (item.vr, item.value + pad * (len(item.value) % 2))
    body = b"".join(_encode_element(element, *values[element]) for element in sorted(values))
    head = b"" if preamble is None else bytes(preamble) + PREFIX
    return head + _encode_element(0x0000, "UL", struct.pack("<L", len(body))) + body


def _encode_element(element: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002 (PS3.5 §7.1.2)."""
    code = vr.encode("ascii")
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHL", _GROUP, element, code, 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"(0002,{element:04X}) {vr}: {len(value)} bytes, above 65534")
    return struct.pack("<HH2sH", _GROUP, element, code, len(value)) + value


def _uid(value: str, what: str, strict: bool) -> bytes:
    """A UI value, padded with a NUL to an even length (PS3.5 §6.2)."""
    if strict and not (len(value) <= 64 and _UID.fullmatch(value)):
        raise ValueError(
            f"{what} {value!r} is not a UID (PS3.5 §9.1: numbers without leading zeros, "
            "separated by dots, at most 64 characters)"
        )
    data = value.encode("ascii", "replace")
    return data + b"\0" if len(data) % 2 else data


def _text(value: str, what: str, strict: bool) -> bytes:
    """An AE or SH value, padded with a space to an even length (PS3.5 §6.2)."""
    if strict and not (
        0 < len(value) <= 16
        and value.isascii()
        and value.isprintable()
        and "\\" not in value
        and value.strip(" ")
    ):
        raise ValueError(f"{what} {value!r}: 1 to 16 printable ASCII characters, no backslash")
    data = value.encode("ascii", "replace")
    return data + b" " if len(data) % 2 else data
