"""dul.uids: the checked-in table matches pydicom's dictionary, and the storage rule holds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from dul import uids
from dul._uid_table import PYDICOM_VERSION


def test_the_table_matches_the_installed_pydicom() -> None:
    """Regenerated from pydicom (in a fresh interpreter), the table is the checked-in one.

    Another pydicom release has another dictionary: then the test skips, saying to regenerate
    (a failure would redden every checkout as soon as pydicom publishes a release). With the
    release the table was made from, any difference fails: a hand edit, or a rule change in the
    script that was not regenerated.
    """
    pydicom = pytest.importorskip("pydicom")
    if pydicom.__version__ != PYDICOM_VERSION:
        pytest.skip(
            f"the table is from pydicom {PYDICOM_VERSION}, pydicom {pydicom.__version__} is "
            "installed: run scripts/make_uids.py to regenerate it"
        )
    # In a fresh interpreter: importing pynetdicom (as earlier tests do) adds UIDs to pydicom's
    # dictionary in this one.
    script = ROOT / "scripts" / "make_uids.py"
    code = f"import runpy, sys; sys.stdout.write(runpy.run_path({str(script)!r})['generate']())"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", check=True
    )
    table = ROOT / "src" / "dul" / "_uid_table.py"
    assert result.stdout == table.read_text(encoding="utf-8")


def test_the_script_checks_from_the_command_line() -> None:
    pydicom = pytest.importorskip("pydicom")
    if pydicom.__version__ != PYDICOM_VERSION:
        pytest.skip(f"the table is from pydicom {PYDICOM_VERSION}")
    script = ROOT / "scripts" / "make_uids.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


@pytest.mark.parametrize(
    "name",
    [
        "CT Image Storage",
        "Enhanced CT Image Storage",
        "Segmentation Storage",
        "RT Plan Storage",
        "Encapsulated PDF Storage",
        "Secondary Capture Image Storage",
        "Digital X-Ray Image Storage - For Processing",
        "VL Whole Slide Microscopy Image Storage",
        "Hanging Protocol Storage",
        "Waveform Storage - Trial",  # retired: still received from old devices
        "Hardcopy Grayscale Image Storage SOP Class",  # retired
        "Label Map Segmentation Storage",  # newer than pydicom 3.0's dictionary
    ],
)
def test_storage_sop_classes_include(name: str) -> None:
    (uid,) = (uid for uid, known in uids.UID_NAMES.items() if known == name)
    assert uid in uids.STORAGE_SOP_CLASSES


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.1.20.1",  # Storage Commitment Push Model SOP Class
        "1.2.840.10008.1.20.2",  # Storage Commitment Pull Model SOP Class (retired)
        "1.2.840.10008.5.1.4.1.1.201.1.1",  # Storage Management SOP Instance
        "1.2.840.10008.4.2",  # Storage Service Class
        "1.2.840.10008.1.3.10",  # Media Storage Directory Storage: the DICOMDIR, never sent
        "1.2.840.10008.1.1",  # Verification
        "1.2.840.10008.5.1.4.1.2.2.1",  # Study Root Q/R FIND
        "1.2.840.10008.5.1.4.1.1.201.2",  # Inventory - FIND
        "1.2.840.10008.5.1.4.1.1.200.4",  # Protocol Approval Information Model - FIND
        "1.2.840.10008.1.2.1",  # a transfer syntax
    ],
)
def test_storage_sop_classes_exclude(uid: str) -> None:
    assert uid not in uids.STORAGE_SOP_CLASSES


def test_every_storage_sop_class_of_pynetdicom_is_one() -> None:
    """pynetdicom's storage list, typed from PS3.4 Annex B by other hands, is a subset."""
    sop_class = pytest.importorskip("pynetdicom.sop_class")
    theirs = {str(uid) for uid in sop_class._STORAGE_CLASSES.values()}
    assert theirs <= uids.STORAGE_SOP_CLASSES, sorted(theirs - uids.STORAGE_SOP_CLASSES)


def test_kinds_and_names() -> None:
    assert len(uids.STORAGE_SOP_CLASSES) > 200
    assert uids.STORAGE_SOP_CLASSES <= uids.SOP_CLASSES
    assert "1.2.840.10008.1.2.4.201" in uids.TRANSFER_SYNTAXES  # HTJ2K
    assert "1.2.840.10008.1.2.5" in uids.TRANSFER_SYNTAXES
    assert "1.2.840.10008.1.2.4.110" in uids.TRANSFER_SYNTAXES  # JPEG XL Lossless (2024)
    assert not uids.TRANSFER_SYNTAXES & uids.SOP_CLASSES
    assert uids.UID_KINDS["1.2.840.10008.3.1.1.1"] == "Application Context Name"
    assert uids.uid_name("1.2.840.10008.1.2.1") == "Explicit VR Little Endian"
    assert uids.uid_name("1.2.840.10008.1.2.1\0") == "Explicit VR Little Endian"
    assert uids.uid_name("1.2.3.4") == "1.2.3.4"
    assert uids.uid_for_keyword("CTImageStorage") == "1.2.840.10008.5.1.4.1.1.2"
    assert "1.2.840.10008.5.1.4.1.1.6" in uids.RETIRED_UIDS
    assert len(set(uids.UID_KEYWORDS.values())) == len(uids.UID_KEYWORDS)
    with pytest.raises(TypeError):
        uids.UID_NAMES["1.2.3"] = "mine"  # type: ignore[index]


def test_the_dump_names_uids_from_the_table() -> None:
    import dul

    request = dul.AssociateRequest(
        called_ae_title="ANY",
        calling_ae_title="ME",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=1,
                abstract_syntax="1.2.840.10008.5.1.4.1.1.66.4",
                transfer_syntaxes=("1.2.840.10008.1.2.4.201",),
            ),
        ),
    )
    text = dul.describe(request)
    assert "1.2.840.10008.5.1.4.1.1.66.4 (Segmentation Storage)" in text
    assert (
        "1.2.840.10008.1.2.4.201 (High-Throughput JPEG 2000 Image Compression (Lossless Only))"
        in text
    )
