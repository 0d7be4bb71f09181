"""Write a small, deterministic CT image as a DICOM file (for storescu captures and examples).

64 x 64 pixels, 16 bits allocated, 12 stored: a disc of water in air with a faint ramp. Every UID
and date is fixed, so the file is byte-for-byte the same on every run and pydicom version::

    python examples/make_test_file.py /tmp/ct-64x64.dcm
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
EXPLICIT_VR_LITTLE_ENDIAN = UID("1.2.840.10008.1.2.1")

# UUID-derived UIDs (PS3.5 B.2), made once and fixed here.
STUDY_INSTANCE_UID = "2.25.52716093113291931130624161075318772140"
SERIES_INSTANCE_UID = "2.25.225473094104205657150954577963218727879"
SOP_INSTANCE_UID = UID("2.25.199576711182542612163284067761649530405")
FRAME_OF_REFERENCE_UID = "2.25.40586014914341429941885745446443695297"
# Names the writer of the file (this script) in the file meta information.
IMPLEMENTATION_CLASS_UID = UID("2.25.144517647115632618827794391951524989268")
IMPLEMENTATION_VERSION_NAME = "DUL_EXAMPLE_1"

ROWS = COLUMNS = 64


def pixel_data() -> bytes:
    """Stored values (HU + 1024): water (1024) inside a disc of radius 26, air (0) outside."""
    values = []
    for y in range(ROWS):
        for x in range(COLUMNS):
            inside = (x - 31.5) ** 2 + (y - 31.5) ** 2 < 26**2
            values.append(1024 + (x + y) % 16 if inside else 0)
    return struct.pack(f"<{len(values)}H", *values)


def make_dataset() -> Dataset:
    """Return the CT image, file meta information included."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = SOP_INSTANCE_UID
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = SOP_INSTANCE_UID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = "DUL0001"
    ds.Modality = "CT"
    ds.Manufacturer = "dul"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "dul test capture"
    ds.SeriesDescription = "64x64 phantom"
    ds.PatientName = "Test^Capture"
    ds.PatientID = "DUL-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.SliceThickness = "5"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = STUDY_INSTANCE_UID
    ds.SeriesInstanceUID = SERIES_INSTANCE_UID
    ds.StudyID = "1"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.ImagePositionPatient = ["-160", "-160", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.PixelSpacing = ["5", "5"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.PixelData = pixel_data()
    return ds


def write(path: Path) -> None:
    """Write the CT image to ``path`` as a DICOM file (PS3.10)."""
    ds = make_dataset()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        ds.save_as(path, write_like_original=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the file to write")
    args = parser.parse_args(argv)
    write(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
