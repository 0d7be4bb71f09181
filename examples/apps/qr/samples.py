"""A small sample archive (patients, studies, series, images of 8x8 pixels, fixed UIDs), for
trying the tools and for tests."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .model import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

# -- sample data --------------------------------------------------------------------------------

#: A UUID-derived root (PS3.5 B.2) for the UIDs of the sample archive, made once.
_SAMPLE_ROOT = "2.25.179536565782057534153425101251671424019"
_SAMPLE_PATIENTS = (("DOE^JOHN", "M", "19700101"), ("ROE^JANE", "F", "19800202"))


def write_sample_archive(
    directory: Path,
    *,
    patients: int = 2,
    studies: int = 2,
    series: int = 2,
    images: int = 2,
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
) -> list[Path]:
    """Write a small archive of CT images (8x8 pixels): patients x studies x series x images.

    Patient ``p`` is ``QR-PID<p+1>`` (DOE^JOHN, ROE^JANE, then PAT<n>^TEST); study ``s`` of
    patient ``p`` is dated 2020-03-15 plus ``2p + s`` years. UIDs are fixed: every run writes the
    same files. Returns the paths, in a stable order.
    """
    from examples.make_test_file import make_dataset

    paths = []
    for p in range(patients):
        name, sex, birth = (
            _SAMPLE_PATIENTS[p] if p < len(_SAMPLE_PATIENTS) else (f"PAT{p + 1}^TEST", "O", "")
        )
        for s in range(studies):
            year = 2020 + 2 * p + s
            for r in range(series):
                for i in range(images):
                    ds = make_dataset()
                    ds.PatientName, ds.PatientSex, ds.PatientBirthDate = name, sex, birth
                    ds.PatientID = f"QR-PID{p + 1}"
                    ds.StudyInstanceUID = f"{_SAMPLE_ROOT}.{p + 1}.{s + 1}"
                    ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{year}0315"
                    ds.StudyTime = f"{10 + s:02d}3000"
                    ds.AccessionNumber = f"ACC{p + 1}{s + 1}"
                    ds.StudyID = str(s + 1)
                    ds.StudyDescription = f"study {s + 1} of {name}"
                    ds.SeriesInstanceUID = f"{_SAMPLE_ROOT}.{p + 1}.{s + 1}.{r + 1}"
                    ds.SeriesNumber = str(r + 1)
                    ds.SeriesDescription = f"series {r + 1}"
                    uid = UID(f"{_SAMPLE_ROOT}.{p + 1}.{s + 1}.{r + 1}.{i + 1}")
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
                    ds.InstanceNumber = str(i + 1)
                    ds.Rows = ds.Columns = 8
                    ds.PixelData = struct.pack(
                        "<64H", *((p * 1000 + s * 100 + r * 10 + i + k) for k in range(64))
                    )
                    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
                    path = directory / f"p{p + 1}s{s + 1}r{r + 1}i{i + 1}.dcm"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _save(ds, path, transfer_syntax)
                    paths.append(path)
    return paths


def _save(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian = transfer_syntax != EXPLICIT_VR_BIG_ENDIAN
        ds.is_implicit_VR = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
        ds.save_as(path, write_like_original=False)
