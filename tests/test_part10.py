"""dul.part10: the File Meta Information read and written, cross-checked with pydicom and DCMTK."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
from dul import part10
from dul.part10 import InvalidFileMeta, MetaElement

pydicom = pytest.importorskip("pydicom")
from examples.make_test_file import make_dataset  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filewriter import write_dataset  # noqa: E402

from peers import Dcmtk  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "2.25.199576711182542612163284067761649530405"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


def dataset_bytes(implicit: bool = False) -> bytes:
    """The test CT's data set alone, in explicit (or implicit) VR little endian."""
    ds = make_dataset()
    del ds.file_meta
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def pydicom_file(path: Path, *, preamble: bool = True, **meta: object) -> Path:
    """The test CT written by pydicom, with extra file meta elements (keyword=value)."""
    ds = make_dataset()
    for keyword, value in meta.items():
        setattr(ds.file_meta, keyword, value)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:  # what pydicom writes for a data set without preamble: no DICM, meta group at byte 0
        ds.preamble = None
        ds.save_as(path, enforce_file_format=False)
    return path


def read(path: Path) -> part10.FileMeta:
    with path.open("rb") as fp:
        meta = part10.read_file_meta(fp)
        assert fp.tell() == meta.dataset_offset
    return meta


def pydicom_offset(path: Path) -> int:
    """Where pydicom says the data set starts (after its own reading of the meta group)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with path.open("rb") as fp:
        read_preamble(fp, True)
        _read_file_meta_info(fp)
        return fp.tell()


# -- reading what pydicom and DCMTK wrote ------------------------------------------------------


def test_reads_a_file_pydicom_wrote(tmp_path: Path) -> None:
    path = pydicom_file(tmp_path / "ct.dcm")
    meta = read(path)
    assert meta.transfer_syntax == EXPLICIT
    assert meta.media_storage_sop_class_uid == CT
    assert meta.media_storage_sop_instance_uid == INSTANCE
    assert meta.implementation_class_uid == "2.25.144517647115632618827794391951524989268"
    assert meta.implementation_version_name == "DUL_EXAMPLE_1"
    assert meta.version == b"\x00\x01"
    assert meta.preamble == bytes(128)
    assert meta.dataset_offset == pydicom_offset(path)
    assert path.read_bytes()[meta.dataset_offset :] == dataset_bytes()


def test_reads_a_file_without_preamble_nor_group_length(tmp_path: Path) -> None:
    """pydicom's ``enforce_file_format=False`` without a preamble: the meta group at byte 0,
    and no (0002,0000) nor (0002,0001)."""
    path = pydicom_file(tmp_path / "bare.dcm", preamble=False)
    assert path.read_bytes()[:2] == b"\x02\x00"
    meta = read(path)
    assert meta.preamble is None
    assert meta.group_length is None
    assert meta.transfer_syntax == EXPLICIT
    assert meta.media_storage_sop_instance_uid == INSTANCE
    assert meta.dataset_offset == pydicom_offset(path)


def test_keeps_optional_elements(tmp_path: Path) -> None:
    path = pydicom_file(
        tmp_path / "opt.dcm",
        SourceApplicationEntityTitle="SOURCE",
        SendingApplicationEntityTitle="SENDER",
        ReceivingApplicationEntityTitle="RECEIVER",
        PrivateInformationCreatorUID="1.2.3.4",
        PrivateInformation=b"private!" * 1000,  # beyond the first read of 4 KiB
    )
    meta = read(path)
    assert meta.source_ae_title == "SOURCE"
    sending = meta.element(0x00020017)
    assert sending is not None
    assert (sending.vr, sending.value) == ("AE", b"SENDER")
    assert meta.element(0x00020018) == MetaElement(tag=0x00020018, vr="AE", value=b"RECEIVER")
    private = meta.element(0x00020102)
    assert private is not None
    assert private.value == b"private!" * 1000
    assert meta.dataset_offset == pydicom_offset(path)


@pytest.mark.interop
@pytest.mark.parametrize(
    "options",
    [(), ("+te",), ("+ti",), ("+tb",), ("+td",), ("-g",), ("+g",)],
    ids=["same", "explicit", "implicit", "big-endian", "deflated", "no-group-lengths", "lengths"],
)
def test_reads_files_dcmconv_wrote(tmp_path: Path, dcmtk: Dcmtk, options: tuple[str, ...]) -> None:
    source = pydicom_file(tmp_path / "in.dcm")
    out = tmp_path / "out.dcm"
    result = dcmtk.run("dcmconv", *options, str(source), str(out))
    assert result.returncode == 0, result.stderr
    meta = read(out)
    assert meta.implementation_version_name is not None
    assert meta.implementation_version_name.startswith("OFFIS_DCMTK")
    assert meta.media_storage_sop_instance_uid == INSTANCE
    assert meta.dataset_offset == pydicom_offset(out)
    ds = pydicom.dcmread(out)
    assert meta.transfer_syntax == ds.file_meta.TransferSyntaxUID


@pytest.mark.interop
def test_refuses_a_data_set_without_meta(tmp_path: Path, dcmtk: Dcmtk) -> None:
    """``dcmconv -F`` writes the data set alone: no file meta information, no transfer syntax."""
    out = tmp_path / "dataset.dcm"
    assert (
        dcmtk.run("dcmconv", "-F", str(pydicom_file(tmp_path / "in.dcm")), str(out)).returncode == 0
    )
    with pytest.raises(InvalidFileMeta, match="not a DICOM file"):
        read(out)


@pytest.mark.interop
def test_reads_what_dcmtk_storescp_stored(tmp_path: Path, dcmtk: Dcmtk) -> None:
    source = pydicom_file(tmp_path / "in.dcm")
    with dcmtk.storescp(tmp_path) as port:
        result = dcmtk.run("storescu", "-aet", "SENDER", "127.0.0.1", str(port), str(source))
        assert result.returncode == 0, result.stderr
    (stored,) = (tmp_path / "received").iterdir()
    meta = read(stored)
    assert meta.source_ae_title == "SENDER"
    assert meta.media_storage_sop_class_uid == CT
    assert meta.dataset_offset == pydicom_offset(stored)
    assert stored.read_bytes()[meta.dataset_offset :] == dataset_bytes()


# -- writing, read back by pydicom and DCMTK ---------------------------------------------------


def dul_file(path: Path, transfer_syntax: str = EXPLICIT, **options: object) -> Path:
    """The test CT as dul writes it: the meta group, then the data set streamed after it."""
    with path.open("wb") as fp:
        fp.write(
            part10.encode_file_meta(
                sop_class_uid=CT,
                sop_instance_uid=INSTANCE,
                transfer_syntax=transfer_syntax,
                **options,  # type: ignore[arg-type]
            )
        )
        fp.write(dataset_bytes(implicit=transfer_syntax == IMPLICIT))
    return path


@pytest.mark.parametrize("transfer_syntax", [EXPLICIT, IMPLICIT])
def test_pydicom_reads_what_dul_writes(tmp_path: Path, transfer_syntax: str) -> None:
    path = dul_file(tmp_path / "dul.dcm", transfer_syntax, source_ae_title="ME")
    ds = pydicom.dcmread(path)
    meta = ds.file_meta
    assert meta.MediaStorageSOPClassUID == CT
    assert meta.MediaStorageSOPInstanceUID == INSTANCE
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.ImplementationClassUID == dul.IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == dul.IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "ME"
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert ds.PatientName == "Test^Capture"
    assert ds.PixelData == make_dataset().PixelData
    assert read(path).dataset_offset == pydicom_offset(path)


@pytest.mark.interop
@pytest.mark.parametrize("preamble", [bytes(128), None], ids=["preamble", "no-preamble"])
def test_dcmdump_reads_what_dul_writes(
    tmp_path: Path, dcmtk: Dcmtk, preamble: bytes | None
) -> None:
    extra = [MetaElement(tag=0x00020017, vr="AE", value=b"SENDER")]
    path = dul_file(tmp_path / "dul.dcm", source_ae_title="SOURCE", extra=extra, preamble=preamble)
    result = dcmtk.run("dcmdump", "-M", "+L", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning about the meta group
    out = result.stdout
    assert "# Dicom-File-Format" in out
    assert f"(0002,0012) UI [{dul.IMPLEMENTATION_CLASS_UID}]" in out
    assert "(0002,0010) UI =LittleEndianExplicit" in out
    assert "(0002,0016) AE [SOURCE]" in out
    assert "(0002,0017) AE [SENDER]" in out
    assert "(0010,0010) PN [Test^Capture]" in out
    # DCMTK's own check of the meta group: dcmconv rewrites it only if it must.
    assert dcmtk.run("dcmconv", "+F", str(path), str(tmp_path / "c.dcm")).returncode == 0


def test_encode_and_decode_agree() -> None:
    data = part10.encode_file_meta(
        sop_class_uid=CT,
        sop_instance_uid="1.2.3",  # odd length: padded with a NUL
        transfer_syntax=EXPLICIT,
        source_ae_title="AE1",  # odd length: padded with a space
        implementation_version_name="V1",
    )
    meta = part10.decode_file_meta(data)
    assert meta.media_storage_sop_instance_uid == "1.2.3"
    assert meta.source_ae_title == "AE1"
    assert meta.implementation_version_name == "V1"
    assert meta.dataset_offset == len(data)
    assert meta.group_length == len(data) - 132 - 12
    assert meta.element(0x00020003) == MetaElement(tag=0x00020003, vr="UI", value=b"1.2.3\0")
    bare = part10.encode_file_meta(
        sop_class_uid=CT, sop_instance_uid=INSTANCE, transfer_syntax=EXPLICIT, preamble=None
    )
    assert bare == GOOD[132:]
    assert part10.decode_file_meta(bare).preamble is None


def test_extra_elements_are_sorted_in_padded_and_not_twice() -> None:
    data = part10.encode_file_meta(
        sop_class_uid=CT,
        sop_instance_uid=INSTANCE,
        transfer_syntax=EXPLICIT,
        extra=[
            MetaElement(tag=0x00020102, vr="OB", value=b"odd"),
            MetaElement(tag=0x00020017, vr="AE", value=b"SENDER1"),
        ],
    )
    meta = part10.decode_file_meta(data)
    assert [e.element for e in meta.elements] == [1, 2, 3, 0x10, 0x12, 0x13, 0x17, 0x102]
    assert meta.element(0x00020017) == MetaElement(tag=0x00020017, vr="AE", value=b"SENDER1 ")
    assert meta.element(0x00020102) == MetaElement(tag=0x00020102, vr="OB", value=b"odd\0")
    twice = MetaElement(tag=0x00020010, vr="UI", value=b"1.2.840.10008.1.2\0")
    with pytest.raises(ValueError, match=r"\(0002,0010\) is given twice"):
        part10.encode_file_meta(
            sop_class_uid=CT, sop_instance_uid=INSTANCE, transfer_syntax=EXPLICIT, extra=[twice]
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sop_class_uid", "1.2.840.10008.!.2"),
        ("sop_instance_uid", "1.02.3"),
        ("transfer_syntax", "1." + "2" * 70),
        ("source_ae_title", "A" * 17),
        ("source_ae_title", "BACK\\SLASH"),
        ("implementation_version_name", "ÉCOLE"),
    ],
)
def test_strict_encoding_refuses_bad_values(field: str, value: str) -> None:
    fields: dict[str, str] = {
        "sop_class_uid": CT,
        "sop_instance_uid": INSTANCE,
        "transfer_syntax": EXPLICIT,
        field: value,
    }
    with pytest.raises(ValueError, match=repr(value).strip("'")[:4]):
        part10.encode_file_meta(**fields)  # type: ignore[arg-type]
    # strict=False writes it as given (a peer's value, stored as received), and it reads back.
    data = part10.encode_file_meta(**fields, strict=False)  # type: ignore[arg-type]
    part10.decode_file_meta(data)


# -- refusing what is not a Part 10 file -------------------------------------------------------

GOOD = part10.encode_file_meta(
    sop_class_uid=CT, sop_instance_uid=INSTANCE, transfer_syntax=EXPLICIT
)
DATASET = dataset_bytes()
GROUP_LENGTH_AT = 132 + 8  # the value of (0002,0000)


def with_group_length(length: int) -> bytes:
    return GOOD[:GROUP_LENGTH_AT] + struct.pack("<L", length) + GOOD[GROUP_LENGTH_AT + 4 :]


def element(number: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 2, number, vr, len(value)) + value


def meta_of(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return bytes(128) + b"DICM" + element(0, b"UL", struct.pack("<L", len(body))) + body


@pytest.mark.parametrize(
    ("data", "message", "offset"),
    [
        (b"", "not a DICOM file", 0),
        (b"hello" * 100, "not a DICOM file: no 'DICM' at byte 128", 128),
        (bytes(128) + b"DICM", "no file meta information", 132),
        (bytes(128) + b"DICM\x02\x00", "ends inside an element header", 132),
        (GOOD[:200], "the file is too short, or the group length is wrong", GROUP_LENGTH_AT),
        (with_group_length(len(GOOD) - 143) + DATASET, "odd file meta group length", 140),
        (with_group_length(len(GOOD) - 144 + 8) + DATASET, "runs into element (0008,0005)", None),
        (with_group_length(len(GOOD) - 144 - 20) + DATASET, "ends at byte", None),
        (
            with_group_length(len(GOOD) - 144 - len(element(0x13, b"SH", b"DUL_0.1.0 "))) + DATASET,
            "group 0002 goes on after",
            None,
        ),
        (with_group_length(10**9) + DATASET, "above the limit", 140),
        (with_group_length(0) + DATASET, "group 0002 goes on after the 0 bytes", 144),
        (bytes(128) + b"DICM" + b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "no file meta", 132),
        (
            meta_of(element(2, b"UI", CT.encode() + b"\0"), element(3, b"UI", b"1.2\0")),
            "no (0002,0010)",
            132,
        ),
        (meta_of(element(0x10, b"XY", b"1.2\0")), "no valid VR", 148),
        (
            meta_of(element(0x10, b"UI", b"1.2"), element(0x12, b"UI", b"1.2")),
            "odd length 3",
            144,
        ),
        (meta_of(element(0x10, b"UI", b"1.2\xff")), "not ASCII", 132),
        (meta_of(element(0x10, b"LO", b"1.2\0")), "VR LO: PS3.10 Table 7.1-1 says UI", 132),
        (meta_of(element(0x10, b"UI", b"12"), element(0x10, b"UI", b"12")), "appears twice", 154),
        (
            meta_of(struct.pack("<HH2sHL", 2, 0x10, b"OB", 0, 0xFFFFFFFF)),
            "undefined length",
            144,
        ),
        (
            bytes(128) + b"DICM" + struct.pack("<HH2sHL", 2, 0, b"OB", 0, 4) + bytes(4),
            "must be UL of 4",
            132,
        ),
    ],
)
def test_refuses_with_the_fault_and_its_offset(
    data: bytes, message: str, offset: int | None
) -> None:
    with pytest.raises(
        InvalidFileMeta, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        part10.decode_file_meta(data)
    if offset is not None:
        assert info.value.offset == offset
    with pytest.raises(InvalidFileMeta):  # the same through a file
        part10.read_file_meta(io.BytesIO(data))


def test_every_truncation_is_refused_or_read_whole() -> None:
    """A file cut anywhere inside its meta group is 'too short'; cut after it, it reads."""
    data = GOOD + DATASET[:64]
    for end in range(len(data) + 1):
        try:
            meta = part10.read_file_meta(io.BytesIO(data[:end]))
        except InvalidFileMeta:
            assert end < len(GOOD)
        else:
            assert end >= len(GOOD)
            assert meta.dataset_offset == len(GOOD)


def test_max_length_bounds_what_is_read() -> None:
    big = part10.encode_file_meta(
        sop_class_uid=CT,
        sop_instance_uid=INSTANCE,
        transfer_syntax=EXPLICIT,
        extra=[MetaElement(tag=0x00020102, vr="OB", value=bytes(100_000))],
    )
    assert part10.read_file_meta(io.BytesIO(big)).dataset_offset == len(big)
    with pytest.raises(InvalidFileMeta, match="above the limit of 50000"):
        part10.read_file_meta(io.BytesIO(big), max_length=50_000)
    # Without a group length the same bound holds, element by element.
    bare = part10.decode_file_meta(big).elements
    body = b"".join(
        struct.pack("<HH2sHL", 2, e.element, b"OB", 0, len(e.value)) + e.value
        if e.vr == "OB"
        else element(e.element, e.vr.encode(), e.value)
        for e in bare
    )
    fp = io.BytesIO(body + DATASET)
    assert part10.read_file_meta(fp).dataset_offset == len(body)
    with pytest.raises(InvalidFileMeta, match="limit"):
        part10.read_file_meta(io.BytesIO(body + DATASET), max_length=50_000)


@given(st.binary(max_size=400), st.integers(0, 400))
def test_hostile_bytes_give_a_meta_or_a_clear_error(noise: bytes, at: int) -> None:
    """Whatever the bytes (noise over a good meta group, or noise alone): never IndexError."""
    for data in (GOOD[:at] + noise + GOOD[at + len(noise) :], noise, bytes(128) + b"DICM" + noise):
        try:
            meta = part10.decode_file_meta(data)
        except InvalidFileMeta as exc:
            assert 0 <= exc.offset <= len(data)
        else:
            assert meta.transfer_syntax
            assert meta.dataset_offset <= len(data)
