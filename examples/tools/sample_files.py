"""Sample DICOM files of a chosen size and transfer syntax, for the tests, benchmarks and demo.

Built on :mod:`examples.make_test_file`'s CT image: the pixel matrix is resized to reach the
wanted size, and each file gets its own SOP instance UID (derived from ``index``, so runs are
reproducible). Needs pydicom (the ``examples`` extra).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pydicom
from pydicom.uid import UID

from examples.make_test_file import make_dataset

__all__ = ["TRANSFER_SYNTAX_NAMES", "dataset_bytes", "write_sample"]

#: Short names of the transfer syntaxes sample files come in.
TRANSFER_SYNTAX_NAMES = {
    "implicit": "1.2.840.10008.1.2",
    "explicit": "1.2.840.10008.1.2.1",
    "big": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99",
}

#: A UUID-derived root (PS3.5 B.2) for the instance UIDs of sample files, fixed once.
_UID_ROOT = "2.25.27311426587240911128151925437316024"


def write_sample(
    path: Path,
    transfer_syntax: str = TRANSFER_SYNTAX_NAMES["explicit"],
    *,
    size: int = 9000,
    index: int = 0,
    sop_class_uid: str | None = None,
) -> Path:
    """Write a CT image of about ``size`` bytes of data set to ``path``; return ``path``."""
    ds = make_dataset()
    side = max(8, math.isqrt(max(size - 1000, 128) // 2))
    ds.Rows = ds.Columns = side
    period = struct.pack("<4096H", *((i * 7) % 4096 for i in range(4096)))  # a 12-bit ramp
    ds.PixelData = (period * (side * side // 4096 + 1))[: 2 * side * side]
    uid = UID(f"{_UID_ROOT}{index}")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    if sop_class_uid is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian = transfer_syntax != TRANSFER_SYNTAX_NAMES["big"]
        ds.is_implicit_VR = transfer_syntax == TRANSFER_SYNTAX_NAMES["implicit"]
        ds.save_as(path, write_like_original=False)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its meta group: its data set, as encoded in the file."""
    from examples.apps.storage import read_dicom_file

    dicom = read_dicom_file(path)
    with open(path, "rb") as fp:
        fp.seek(dicom.offset)
        return fp.read()
