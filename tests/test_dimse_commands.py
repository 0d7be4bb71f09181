"""The command-set codec (PS3.7 §6.3, Annex E): group 0000 in implicit VR little endian.

The element table is checked against pydicom's data dictionary, the encoding against pydicom's
writer and reader, and every kind of malformed command set against a RemoteProtocolError that
names the element at fault.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dul import LocalProtocolError, RemoteProtocolError
from dul.dimse import ELEMENTS, decode_command, encode_command
from dul.testing import command_tags, lo_texts, uids

US, UL = struct.Struct("<H"), struct.Struct("<L")


def element(number: int, value: bytes) -> bytes:
    """One raw group-0000 element: tag, 4-byte length, value."""
    return struct.pack("<HHL", 0x0000, number, len(value)) + value


def with_group_length(body: bytes, length: int | None = None) -> bytes:
    """``body`` preceded by CommandGroupLength, ``len(body)`` unless ``length`` says otherwise."""
    return element(0x0000, UL.pack(len(body) if length is None else length)) + body


def pydicom_read(data: bytes) -> Dataset:
    return read_dataset(DicomBytesIO(data), is_implicit_VR=True, is_little_endian=True)


def pydicom_write(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


MESSAGE_ID = element(0x0110, US.pack(7))
#: A C-ECHO-RQ's elements after CommandGroupLength, raw: 26 + 10 + 10 + 10 bytes.
ECHO_BODY = (
    element(0x0002, b"1.2.840.10008.1.1\0")
    + element(0x0100, US.pack(0x0030))
    + MESSAGE_ID
    + element(0x0800, US.pack(0x0101))
)


#: An element of another group, as Orthanc puts one in its C-GET-RSP: Failed SOP Instance UID List.
FOREIGN = struct.pack("<HHL", 0x0008, 0x0058, 10) + b"1.2.3.4.5\0"

# -- the element table -----------------------------------------------------------------------------


@pytest.mark.parametrize("number", sorted(ELEMENTS))
def test_element_table_matches_pydicom_dictionary(number: int) -> None:
    """Keyword and VR of every command element are those of PS3.6 (pydicom's dictionary)."""
    keyword, vr = ELEMENTS[number]
    assert (keyword, vr) == (dictionary_keyword(number), dictionary_VR(number))


# -- encoding --------------------------------------------------------------------------------------

#: Values of each VR the codec knows, for a command of every known element.
_VALUES: dict[str, st.SearchStrategy[object]] = {
    "US": st.integers(0, 0xFFFF),
    "UL": st.integers(0, 0xFFFF_FFFF),
    "UI": uids(),
    "AE": st.sampled_from(["A", "STORESCP", "ANY-SCP", "X" * 16, "TWO WORDS"]),
    "LO": lo_texts(),
    "AT": command_tags(),
}


@st.composite
def commands(draw: st.DrawFn) -> dict[int, object]:
    """A mapping of some known elements (never CommandGroupLength) to values of their VR."""
    numbers = draw(st.sets(st.sampled_from(sorted(set(ELEMENTS) - {0x0000})), min_size=1))
    return {n: draw(_VALUES[ELEMENTS[n][1]]) for n in numbers}


def _pydicom_value(vr: str, value: object) -> object:
    if vr == "AT":
        assert isinstance(value, tuple)
        return [(group << 16) | elem for group, elem in value]
    return value


def _from_pydicom(vr: str, value: object) -> object:
    if vr == "AT":  # one tag, several, or none
        tags = [] if value is None else [value] if isinstance(value, int) else list(value)
        return tuple((int(t) >> 16, int(t) & 0xFFFF) for t in tags)
    return value


@given(commands())
def test_encoding_matches_pydicom_both_ways(elements: dict[int, object]) -> None:
    """What we encode pydicom reads back identically, and pydicom's encoding is ours, byte for
    byte (same order, same padding: NUL for UI, space for AE and LO)."""
    ours = encode_command(elements)  # type: ignore[arg-type]

    ds = pydicom_read(ours)
    assert ds.CommandGroupLength == len(ours) - 12
    assert sorted(el.tag.element for el in ds) == sorted({0x0000, *elements})
    for number, value in elements.items():
        keyword, vr = ELEMENTS[number]
        assert _from_pydicom(vr, ds[keyword].value) == value, keyword

    theirs = Dataset()
    theirs.CommandGroupLength = 0
    for number, value in elements.items():
        keyword, vr = ELEMENTS[number]
        setattr(theirs, keyword, _pydicom_value(vr, value))
    theirs.CommandGroupLength = len(pydicom_write(theirs)) - 12
    written = pydicom_write(theirs)
    assert written == ours
    assert decode_command(written) == {0x0000: len(written) - 12, **elements}


def test_group_length_is_computed_first() -> None:
    """CommandGroupLength counts the bytes after its own 12; a given one is replaced."""
    data = encode_command({0x0110: 7, 0x0800: 0x0101, 0x0002: "1.2.840.10008.1.1", 0x0000: 999})
    assert data[:8] == element(0x0000, b"")[:4] + UL.pack(4)
    assert UL.unpack_from(data, 8)[0] == len(data) - 12
    assert data[12:] == ECHO_BODY.replace(element(0x0100, US.pack(0x0030)), b"")


def test_odd_values_are_padded() -> None:
    """PS3.5 §7.1.1: even value lengths; UI pads with NUL, AE and LO with a space."""
    data = encode_command({0x0002: "1.2.3", 0x0600: "ABC", 0x0902: "odd"})
    assert element(0x0002, b"1.2.3\0") in data
    assert element(0x0600, b"ABC ") in data
    assert element(0x0902, b"odd ") in data
    assert decode_command(data) == {0: len(data) - 12, 2: "1.2.3", 0x0600: "ABC", 0x0902: "odd"}


def test_unknown_elements_are_kept_raw() -> None:
    """An element the table lacks (here a retired one) is decoded as bytes and re-encoded."""
    raw = ECHO_BODY + element(0x4000, b"retired!")
    data = with_group_length(raw)
    decoded = decode_command(data)
    assert decoded[0x4000] == b"retired!"
    assert encode_command(decoded) == data


# -- tolerated on receive (docs/conformance.md, "Command sets received") -------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(with_group_length(ECHO_BODY, len(ECHO_BODY) + 2), id="group-length-too-big"),
        pytest.param(with_group_length(ECHO_BODY, 0), id="group-length-zero"),
        pytest.param(ECHO_BODY, id="no-group-length"),
        pytest.param(
            with_group_length(ECHO_BODY[26:36] + ECHO_BODY[:26] + ECHO_BODY[36:]), id="out-of-order"
        ),
    ],
)
def test_decode_tolerates_what_loses_nothing(data: bytes) -> None:
    """A CommandGroupLength that is wrong or missing, elements out of order: the values are
    all there, so they are decoded (pydicom's reader does the same)."""
    decoded = decode_command(data)
    decoded.pop(0x0000, None)
    expected = {0x0002: "1.2.840.10008.1.1", 0x0100: 0x0030, 0x0110: 7, 0x0800: 0x0101}
    assert decoded == expected
    assert {el.tag.element: el.value for el in pydicom_read(data) if el.tag.element} == expected


def test_foreign_elements_are_kept_under_their_full_tag() -> None:
    """Elements of another group decode as raw bytes keyed by their 32-bit tag, in the order
    received; the group-0000 CommandGroupLength is kept as it came (counting group 0000 only,
    as DCMTK writes it)."""
    group_length = struct.pack("<HHL", 0x0008, 0x0000, 4) + UL.pack(len(FOREIGN))
    data = with_group_length(ECHO_BODY) + group_length + FOREIGN
    decoded = decode_command(data)
    assert list(decoded)[-2:] == [0x0008_0000, 0x0008_0058]
    assert decoded[0x0008_0000] == UL.pack(len(FOREIGN))
    assert decoded[0x0008_0058] == b"1.2.3.4.5\0"
    assert decoded[0x0000] == len(ECHO_BODY)


def test_encode_refuses_other_groups() -> None:
    """Strict on send: a command set is group 0000 only (PS3.7 §6.3.1)."""
    with pytest.raises(LocalProtocolError, match=r"element \(0008,0058\) is not in group 0000"):
        encode_command({0x0110: 7, 0x0008_0058: b"1.2.3.4.5\0"})


@pytest.mark.parametrize(
    ("elements", "problem"),
    [
        ({0x4000: 5}, r"unknown command element \(0000,4000\) needs bytes"),
        ({0x0110: 0x10000}, r"\(0000,0110\) MessageID must be an int from 0 to 65535"),
        ({0x0110: -1}, r"MessageID must be an int"),
        ({0x0110: True}, r"MessageID must be an int"),
        ({0x0110: "7"}, r"MessageID must be an int"),
        ({0x0002: "1.2.é"}, r"\(0000,0002\) AffectedSOPClassUID must be an ASCII str"),
        ({0x0002: "1" * 65}, r"AffectedSOPClassUID .* exceeds 64 characters"),
        ({0x0600: "A" * 17}, r"\(0000,0600\) MoveDestination .* exceeds 16 characters"),
        ({0x0901: [(1, 2)]}, r"\(0000,0901\) OffendingElement must be a tuple"),
        ({0x0901: ((1, 0x10000),)}, r"OffendingElement: .* is not a tuple of tags"),
        ({0x0901: ((1,),)}, r"OffendingElement: .* is not a tuple of tags"),
    ],
)
def test_encode_refuses_bad_values(elements: dict[int, object], problem: str) -> None:
    with pytest.raises(LocalProtocolError, match=problem):
        encode_command(elements)  # type: ignore[arg-type]


# -- decoding malformed command sets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(
            with_group_length(ECHO_BODY)[:-1],
            r"\(0000,0800\) CommandDataSetType declares 2 bytes, only 1 remain",
            id="truncated-in-a-value",
        ),
        pytest.param(
            with_group_length(ECHO_BODY + element(0x1000, b"1.2.3.4\0"))[:-2],
            r"\(0000,1000\) AffectedSOPInstanceUID declares 8 bytes, only 6 remain",
            id="truncated-uid",
        ),
        pytest.param(
            with_group_length(ECHO_BODY)[:-3],
            r"7 bytes left over after the last element",
            id="truncated-in-a-header",
        ),
        pytest.param(
            element(0x0000, US.pack(66)) + ECHO_BODY,
            r"\(0000,0000\) CommandGroupLength has length 2, not 4",
            id="group-length-as-US",
        ),
        pytest.param(
            with_group_length(ECHO_BODY[:46] + element(0x0110, US.pack(8)) + ECHO_BODY[46:]),
            r"\(0000,0110\) MessageID is repeated",
            id="repeated",
        ),
        pytest.param(
            with_group_length(ECHO_BODY.replace(MESSAGE_ID, element(0x0110, UL.pack(7)))),
            r"\(0000,0110\) MessageID has length 4, not 2",
            id="US-with-4-bytes",
        ),
        pytest.param(
            with_group_length(ECHO_BODY.replace(MESSAGE_ID, element(0x0110, b""))),
            r"\(0000,0110\) MessageID has length 0, not 2",
            id="US-empty",
        ),
        pytest.param(
            with_group_length(ECHO_BODY + element(0x0901, b"\x10\x00\x10\x00\x20\x00")),
            r"\(0000,0901\) OffendingElement has length 6, not a multiple of 4",
            id="AT-with-6-bytes",
        ),
        pytest.param(
            with_group_length(ECHO_BODY + FOREIGN + FOREIGN),
            r"\(0008,0058\) is repeated",
            id="foreign-repeated",
        ),
        pytest.param(
            with_group_length(ECHO_BODY + FOREIGN[:-1]),
            r"\(0008,0058\) declares 10 bytes, only 9 remain",
            id="foreign-truncated",
        ),
        pytest.param(
            with_group_length(ECHO_BODY + struct.pack("<HHL", 0x0008, 0x1115, 0xFFFF_FFFF)),
            r"\(0008,1115\) declares 4294967295 bytes, only 0 remain",
            id="foreign-undefined-length",
        ),
    ],
)
def test_decode_refuses_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem) as info:
        decode_command(data)
    assert info.value.reason == 6  # invalid PDU parameter value, if it comes to an A-ABORT
    assert info.value.offset is not None


@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12)), max_size=6),
    st.integers(-4, 4),
    st.binary(max_size=3),
)
def test_decode_raises_only_remote_protocol_errors(
    elements: list[tuple[int, bytes]], skew: int, tail: bytes
) -> None:
    """Whatever the elements (any number, order, length) and however wrong the group length,
    the codec answers with a value or a RemoteProtocolError."""
    body = b"".join(element(number, value) for number, value in elements) + tail
    declared = max(len(body) + skew, 0)
    data = with_group_length(body, declared)
    with contextlib.suppress(RemoteProtocolError):
        decoded = decode_command(data)
        assert len(decoded) == 1 + len(elements)
