"""The storage logic of storescu and storescp that needs no network: any driver reuses it.

- Files to send: :func:`find_files` reads each file's meta group (with :mod:`dul.part10`, no
  pydicom) to learn its SOP class, instance and transfer syntax and where its data set starts;
  the data set itself is never loaded, a driver streams it from ``offset``. :func:`plan` groups
  the files into associations of at most 128 presentation contexts (one per SOP class and
  transfer syntax, PS3.8 §9.3.2.2, and a fallback per SOP class: :data:`PROPOSALS`).
- Files received: :class:`Part10Writer` writes the file meta group (PS3.10 §7.1) made from the
  C-STORE request and the presentation context, then the data set as it arrives.
- What a storage SCP accepts: :data:`STORAGE_SOP_CLASSES` (every one of :mod:`dul.uids`),
  :data:`TRANSFER_SYNTAXES`, :func:`storage_policy`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import dul
from dul import dimse, part10
from dul.uids import STORAGE_SOP_CLASSES

__all__ = [
    "COMMON_STORAGE_SOP_CLASSES",
    "PROPOSALS",
    "STORAGE_SOP_CLASSES",
    "TRANSFER_SYNTAXES",
    "AnyAbstractSyntax",
    "Batch",
    "DicomFile",
    "InvalidFile",
    "Part10Writer",
    "file_meta",
    "file_name",
    "find_files",
    "plan",
    "read_dicom_file",
    "storage_policy",
]

#: The common storage SOP classes (PS3.4 Annex B.5), each with the prefix of its files' names
#: (the modality, as DCMTK's storescp names files); what getscu proposes, in this order. What
#: storescp accepts is every storage SOP class: :data:`dul.uids.STORAGE_SOP_CLASSES`.
COMMON_STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2": "MG",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3": "IO",  # Digital Intra-Oral X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1": "IO",  # Digital Intra-Oral X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.2": "CT",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.3.1": "US",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.4": "MR",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.2": "MR",  # MR Spectroscopy
    "1.2.840.10008.5.1.4.1.1.6.1": "US",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.7": "SC",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1": "SC",  # Multi-frame Single Bit Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2": "SC",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3": "SC",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4": "SC",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.9.1.1": "ECG",  # 12-lead ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.2": "ECG",  # General ECG Waveform
    "1.2.840.10008.5.1.4.1.1.11.1": "PR",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.1.1": "XA",  # Enhanced XA Image
    "1.2.840.10008.5.1.4.1.1.12.2": "RF",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.12.2.1": "RF",  # Enhanced XRF Image
    "1.2.840.10008.5.1.4.1.1.13.1.3": "BT",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.20": "NM",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.66": "RAW",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.66.1": "REG",  # Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.77.1.1": "ES",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2": "GM",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4": "XC",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "OP",  # Ophthalmic Photography 8 Bit Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.4": "OPT",  # Ophthalmic Tomography Image
    "1.2.840.10008.5.1.4.1.1.77.1.6": "SM",  # VL Whole Slide Microscopy Image
    "1.2.840.10008.5.1.4.1.1.88.11": "SR",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33": "SR",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59": "KO",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.67": "SR",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.128": "PT",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.130": "PT",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.481.1": "RTIMAGE",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.4": "RTRECORD",  # RT Beams Treatment Record
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8": "RTPLAN",  # RT Ion Plan
}

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

#: The transfer syntaxes storescu can convert between (:mod:`examples.apps.convert`): the
#: uncompressed ones and deflate. Compressed pixel data is never re-encoded.
CONVERTIBLE = frozenset(
    {
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    }
)

_LOCAL_EXPLICIT = EXPLICIT_VR_LITTLE_ENDIAN if sys.byteorder == "little" else EXPLICIT_VR_BIG_ENDIAN
_OTHER_EXPLICIT = EXPLICIT_VR_BIG_ENDIAN if sys.byteorder == "little" else EXPLICIT_VR_LITTLE_ENDIAN

#: storescu's proposal options, after DCMTK's storescu: the fallback context proposed for each
#: SOP class besides the files' own transfer syntaxes, for its uncompressed and deflated files
#: (converted when the peer accepts only the fallback). ``file`` (-xs) proposes no fallback.
PROPOSALS: dict[str, tuple[str, ...]] = {
    "uncompressed": (_LOCAL_EXPLICIT, _OTHER_EXPLICIT, IMPLICIT_VR_LITTLE_ENDIAN),  # -x=
    "little": (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
    "big": (EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
    "implicit": (IMPLICIT_VR_LITTLE_ENDIAN,),
    "file": (),
}

#: What storescp accepts, in order of preference: the uncompressed syntaxes, deflate, then the
#: common compressed ones (stored as received: an SCP that writes bytes need not decode them).
TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Lossy (Near-Lossless)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # High-Throughput JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.202",  # High-Throughput JPEG 2000 with RPCL Options (Lossless Only)
    "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

#: Presentation context IDs are odd, 1..255: at most 128 in one A-ASSOCIATE-RQ (PS3.8 §9.3.2.2).
MAX_CONTEXTS = 128


# -- files to send ----------------------------------------------------------------------------


class InvalidFile(Exception):
    """A file that cannot be sent: not DICOM (PS3.10), or its meta group lacks what we need."""


@dataclass(frozen=True)
class DicomFile:
    """A DICOM file to send: its data set is ``length`` bytes from ``offset``, after the meta."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    offset: int
    length: int


def read_dicom_file(path: Path) -> DicomFile:
    """Read ``path``'s preamble and meta group (PS3.10 §7.1) only; locate its data set."""
    try:
        with open(path, "rb") as fp:
            meta = part10.read_file_meta(fp)
            size = os.fstat(fp.fileno()).st_size
    except part10.InvalidFileMeta as exc:  # one line of ours, never pydicom's "force=True"
        raise InvalidFile(f"{path}: not a DICOM Part 10 file ({exc})") from exc
    except OSError as exc:
        raise InvalidFile(f"{path}: cannot read: {exc.strerror or exc}") from exc
    sop_class = meta.media_storage_sop_class_uid
    if not sop_class:
        raise InvalidFile(f"{path}: the file meta information has no MediaStorageSOPClassUID")
    sop_instance = meta.media_storage_sop_instance_uid
    if not sop_instance:
        raise InvalidFile(f"{path}: the file meta information has no MediaStorageSOPInstanceUID")
    if size <= meta.dataset_offset:
        raise InvalidFile(f"{path}: no data set after the file meta information")
    return DicomFile(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax=meta.transfer_syntax,
        offset=meta.dataset_offset,
        length=size - meta.dataset_offset,
    )


@dataclass
class Found:
    """What :func:`find_files` found: the files to send, and the problems met."""

    files: list[DicomFile] = field(default_factory=list)
    #: Paths named on the command line that are missing or not DICOM: an error.
    invalid: list[str] = field(default_factory=list)
    #: Files inside directories that are not DICOM: skipped, with a note.
    skipped: list[str] = field(default_factory=list)


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def find_files(paths: Iterable[str | Path]) -> Found:
    """The DICOM files among ``paths``, directories searched recursively, in a stable order."""
    found = Found()
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for candidate in _walk(path):
                try:
                    found.files.append(read_dicom_file(candidate))
                except InvalidFile as exc:
                    found.skipped.append(str(exc))
        elif path.exists():
            try:
                found.files.append(read_dicom_file(path))
            except InvalidFile as exc:
                found.invalid.append(str(exc))
        else:
            found.invalid.append(f"{path}: no such file or directory")
    return found


@dataclass(frozen=True)
class Batch:
    """The files of one association, with the presentation contexts they need."""

    contexts: tuple[dul.PresentationContext, ...]
    files: tuple[DicomFile, ...]


def plan(files: Sequence[DicomFile], fallback: Sequence[str] = ()) -> list[Batch]:
    """Group ``files`` into associations of at most 128 presentation contexts.

    Each SOP class gets a context for each transfer syntax of its files, the data set sent as it
    is in the file; and, when ``fallback`` names syntaxes those do not already propose and some
    of its files are uncompressed or deflated, one more context offering ``fallback`` (in that
    order), into which such a file is converted when its own syntax is refused. Only the SOP
    classes of the files are proposed (DCMTK's ``-R``).
    """
    by_class: dict[str, list[str]] = {}
    for dicom in files:
        syntaxes = by_class.setdefault(dicom.sop_class_uid, [])
        if dicom.transfer_syntax not in syntaxes:
            syntaxes.append(dicom.transfer_syntax)
    groups: list[list[tuple[str, tuple[str, ...]]]] = [[]]
    for sop_class, syntaxes in by_class.items():
        wanted: list[tuple[str, tuple[str, ...]]] = [(sop_class, (s,)) for s in syntaxes]
        if any(s in CONVERTIBLE for s in syntaxes) and not set(fallback) <= set(syntaxes):
            wanted.append((sop_class, tuple(fallback)))
        if len(groups[-1]) + len(wanted) > MAX_CONTEXTS:
            groups.append([])
        groups[-1].extend(wanted)
    batches = []
    for group in groups:
        contexts = tuple(
            dul.PresentationContext(
                context_id=2 * i + 1, abstract_syntax=sop_class, transfer_syntaxes=syntaxes
            )
            for i, (sop_class, syntaxes) in enumerate(group)
        )
        classes = {sop_class for sop_class, _ in group}
        batches.append(
            Batch(contexts=contexts, files=tuple(f for f in files if f.sop_class_uid in classes))
        )
    return batches


def read_chunks(fp: io.BufferedIOBase, dicom: DicomFile, chunk_size: int) -> Iterator[memoryview]:
    """The data set of ``dicom``, from the open file ``fp``, in pieces of ``chunk_size`` bytes.

    One buffer is reused: each piece is valid until the next is asked for, which suits a driver
    that writes a piece before asking for the next. ``chunk_size`` is even, so every piece but
    the last has an even length, as PS3.8 Annex E.1 wants of fragments.
    """
    if chunk_size % 2:
        raise ValueError("the chunk size must be even")
    buffer = bytearray(min(chunk_size, dicom.length))
    view = memoryview(buffer)
    fp.seek(dicom.offset)
    remaining = dicom.length
    while remaining:
        size = min(len(buffer), remaining)
        filled = 0
        while filled < size:
            n = fp.readinto(view[filled:size])
            if not n:
                raise OSError(f"{dicom.path}: the file shrank while it was being sent")
            filled += n
        remaining -= size
        yield view[:size]


# -- files received ---------------------------------------------------------------------------


def file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str | None = None,
) -> bytes:
    """The preamble, ``DICM`` and the file meta group of a Part 10 file (PS3.10 §7.1).

    The SOP class and instance come from the C-STORE-RQ, the transfer syntax from its
    presentation context, the implementation class UID and version name are dul's. The values
    are a peer's: written as received (:func:`dul.part10.encode_file_meta`, ``strict=False``).
    """
    return part10.encode_file_meta(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax=transfer_syntax,
        source_ae_title=source_ae_title,
        strict=False,
    )


def file_name(sop_class_uid: str, sop_instance_uid: str) -> str:
    """``<modality>.<SOP instance UID>``, as DCMTK names files; safe whatever the peer sent."""
    prefix = COMMON_STORAGE_SOP_CLASSES.get(sop_class_uid, "UNKNOWN")
    uid = re.sub(r"[^0-9.]", "_", sop_instance_uid)[:64] or "no-instance-uid"
    return f"{prefix}.{uid}"


class Part10Writer:
    """A DICOM file written as its data set arrives, and moved into place only when complete.

    The bytes go to a hidden ``.<name>.<random>.part`` file first (unique: two associations
    may store the same instance at once), so a reader of the directory never sees half a file,
    and an interrupted transfer leaves no file under the final name.
    """

    def __init__(self, directory: Path, name: str, meta: bytes) -> None:
        self.path = directory / name
        fd, part = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
        self._part = Path(part)
        # A large buffer: fragments arrive 16 KiB at a time, one write syscall each otherwise.
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=1 << 20)
        self.size = 0
        try:
            self.write(meta)
        except BaseException:
            self.discard()
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        assert self._file is not None
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> Path:
        """Close the file and give it its name (replacing any older one); return its path."""
        assert self._file is not None
        try:
            self._file.close()
            self._file = None
            os.replace(self._part, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Close and delete the partial file (closing flushes: on a full disk that fails too)."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        self._part.unlink(missing_ok=True)


# -- what a storage SCP accepts ---------------------------------------------------------------


class AnyAbstractSyntax(Mapping[str, Sequence[str]]):
    """A policy's contexts that accept every abstract syntax, with the same transfer syntaxes."""

    def __init__(self, transfer_syntaxes: Sequence[str]) -> None:
        self._syntaxes = tuple(transfer_syntaxes)

    def __getitem__(self, key: str) -> Sequence[str]:
        return self._syntaxes

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def storage_policy(
    *,
    ae_title: str | None,
    maximum_length: int,
    accept_all: bool = False,
) -> dimse.AcceptorPolicy:
    """The acceptor policy of storescp: the storage SOP classes (or all), and Verification."""
    contexts: Mapping[str, Sequence[str]]
    if accept_all:
        contexts = AnyAbstractSyntax(TRANSFER_SYNTAXES)
    else:
        contexts = dict.fromkeys(sorted(STORAGE_SOP_CLASSES), TRANSFER_SYNTAXES)
        contexts[dimse.VERIFICATION_SOP_CLASS] = TRANSFER_SYNTAXES[:2]
    return dimse.AcceptorPolicy(contexts=contexts, ae_title=ae_title, maximum_length=maximum_length)
