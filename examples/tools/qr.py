"""Query/Retrieve (PS3.4 Annex C) without the network: what findscu, getscu, movescu and qrscp
share on every driver.

- The archive: :class:`Archive` indexes a folder of DICOM files (read with pydicom, pixel data
  left on disk) as patients, studies, series and images, for the Patient Root and Study Root
  information models (PS3.4 C.6.1, C.6.2).
- C-FIND matching (PS3.4 C.2.2.2): universal, single value, wildcard (``*``, ``?``), range
  (dates, times, date-times), list of UIDs, empty value; :meth:`Archive.find` answers a query
  identifier with one response identifier per match, :meth:`Archive.retrieve` lists the
  instances a C-GET or C-MOVE identifier names.
- Identifiers travel as data sets in their presentation context's transfer syntax:
  :func:`encode_identifier`, :func:`decode_identifier` (pydicom), :func:`transcode` between the
  little endian uncompressed syntaxes for a sub-operation that needs another one.
- C-GET and C-MOVE sub-operations: :class:`SubOperations` counts them and makes the pending and
  final responses (PS3.4 C.4.2.1.3, C.4.3.1.3).
- The command lines (after DCMTK's findscu, getscu, movescu) and their output; the async bodies
  of the tools, shared by the trio and asyncio drivers, are at the end.
"""

from __future__ import annotations

import argparse
import enum
import io
import logging
import re
import struct
import sys
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID

import dul
from dul import dimse

from . import cli, storage
from .cli import ExitCode, ToolError

__all__ = [
    "EXIT_INTERRUPTED",
    "Archive",
    "Entity",
    "Instance",
    "Level",
    "Model",
    "QueryError",
    "SubOperations",
    "decode_identifier",
    "demo_find",
    "element_values",
    "encode_identifier",
    "findscu_parser",
    "getscu_parser",
    "match_key",
    "movescu_parser",
    "parse_key",
    "qrscp_parser",
    "qrscp_policy",
    "transcode",
    "write_sample_archive",
]

# -- SOP classes, levels, statuses -------------------------------------------------------------

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: (implicit VR, little endian, deflated) of the syntaxes an identifier may travel in.
_ENCODINGS: dict[str, tuple[bool, bool, bool]] = {
    IMPLICIT_VR_LITTLE_ENDIAN: (True, True, False),
    EXPLICIT_VR_LITTLE_ENDIAN: (False, True, False),
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: (False, True, True),
    EXPLICIT_VR_BIG_ENDIAN: (False, False, False),
}
#: What the SCUs propose for the Q/R SOP class, and what qrscp accepts there.
QUERY_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
#: What getscu proposes for the storage SOP classes it receives on (as SCP, PS3.7 D.3.3.4).
GET_STORAGE_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

#: Exit status of an SCU interrupted with Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130

PENDING = 0xFF00
SUCCESS = 0x0000
CANCEL = 0xFE00
#: C-GET/C-MOVE warning: sub-operations complete, one or more failures or warnings.
SUBOPERATIONS_WARNING = 0xB000
#: C-GET/C-MOVE failure: unable to perform sub-operations (no association with the destination).
UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122


class Level(enum.IntEnum):
    """The Query/Retrieve levels, from the top of the hierarchy down (PS3.4 C.3)."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class Model(enum.Enum):
    """The information models: Patient Root (C.6.1) and Study Root (C.6.2)."""

    PATIENT_ROOT = "patient"
    STUDY_ROOT = "study"

    @property
    def find(self) -> str:
        """The C-FIND SOP class UID of the model."""
        return PATIENT_ROOT_FIND if self is Model.PATIENT_ROOT else STUDY_ROOT_FIND

    @property
    def get(self) -> str:
        """The C-GET SOP class UID of the model."""
        return PATIENT_ROOT_GET if self is Model.PATIENT_ROOT else STUDY_ROOT_GET

    @property
    def move(self) -> str:
        """The C-MOVE SOP class UID of the model."""
        return PATIENT_ROOT_MOVE if self is Model.PATIENT_ROOT else STUDY_ROOT_MOVE

    @property
    def levels(self) -> tuple[Level, ...]:
        """The levels the model has: the Study Root has no patient level."""
        if self is Model.PATIENT_ROOT:
            return tuple(Level)
        return (Level.STUDY, Level.SERIES, Level.IMAGE)

    @classmethod
    def of(cls, sop_class_uid: str) -> Model | None:
        """The model of a Q/R SOP class UID, or None."""
        for model in cls:
            if sop_class_uid in (model.find, model.get, model.move):
                return model
        return None


QR_SOP_CLASSES = tuple(uid for m in Model for uid in (m.find, m.get, m.move))


class QueryError(Exception):
    """A request that cannot be answered: the failure ``status`` of the final response."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


# -- which level an attribute belongs to ---------------------------------------------------------

_QR_LEVEL = 0x00080052
_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_AE_TITLE = 0x00080054
_INSTANCE_AVAILABILITY = 0x00080056
_FAILED_SOP_INSTANCE_UID_LIST = 0x00080058
_TIMEZONE_OFFSET = 0x00080201

_PATIENT_STUDY_ATTRIBUTES = {0x00101010, 0x00101020, 0x00101030, 0x00102180, 0x001021B0}
_STUDY_ATTRIBUTES = {
    0x00080020,  # Study Date
    0x00080030,  # Study Time
    0x00080050,  # Accession Number
    0x00080051,  # Issuer of Accession Number Sequence
    0x00080061,  # Modalities in Study
    0x00080062,  # SOP Classes in Study
    0x00080063,  # Anatomic Regions in Study Code Sequence
    0x00080090,  # Referring Physician's Name
    0x00081030,  # Study Description
    0x00081032,  # Procedure Code Sequence
    0x00081060,  # Name of Physician(s) Reading Study
    0x00081080,  # Admitting Diagnoses Description
    0x0020000D,  # Study Instance UID
    0x00200010,  # Study ID
    0x00201070,  # Other Study Numbers
    0x00201206,  # Number of Study Related Series
    0x00201208,  # Number of Study Related Instances
    0x00321060,  # Requested Procedure Description
}
_SERIES_ATTRIBUTES = {
    0x00080021,  # Series Date
    0x00080031,  # Series Time
    0x00080060,  # Modality
    0x0008103E,  # Series Description
    0x00180015,  # Body Part Examined
    0x00181030,  # Protocol Name
    0x0020000E,  # Series Instance UID
    0x00200011,  # Series Number
    0x00200060,  # Laterality
    0x00201209,  # Number of Series Related Instances
    0x00400244,  # Performed Procedure Step Start Date
    0x00400245,  # Performed Procedure Step Start Time
    0x00400275,  # Request Attributes Sequence
}
#: The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS = {
    Level.PATIENT: 0x00100020,  # Patient ID
    Level.STUDY: 0x0020000D,
    Level.SERIES: 0x0020000E,
    Level.IMAGE: 0x00080018,  # SOP Instance UID
}


def attribute_level(tag: int) -> Level:
    """The level of the entity an attribute describes (PS3.4 C.6.1.1); image when unknown."""
    if tag in _PATIENT_STUDY_ATTRIBUTES:
        return Level.STUDY
    if tag >> 16 == 0x0010 or tag in (0x00201200, 0x00201202, 0x00201204):
        return Level.PATIENT
    if tag in _STUDY_ATTRIBUTES:
        return Level.STUDY
    if tag in _SERIES_ATTRIBUTES:
        return Level.SERIES
    return Level.IMAGE


# -- attribute values, read without pydicom's value conversion ------------------------------------
#
# Query keys hold what no valid attribute does (``DOE*``, ``20200101-``, ``C?``): pydicom would
# warn about each when converting it. Values are read here from the raw bytes instead.

_TEXT_VRS = {
    "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
    "UR", "UT",
}  # fmt: skip
#: Text VRs whose values use the Specific Character Set (PS3.5 6.1.2.3).
_CHARSET_VRS = {"LO", "LT", "PN", "SH", "ST", "UC", "UT"}
#: Text VRs of one value (a backslash is text, not a separator).
_SINGLE_VALUE_VRS = {"LT", "ST", "UT", "UR"}
_BINARY_VRS = {
    "US": "H",
    "SS": "h",
    "UL": "I",
    "SL": "i",
    "FL": "f",
    "FD": "d",
    "UV": "Q",
    "SV": "q",
}
_PN_DELIMITERS = {0x5E, 0x3D}
_TEXT_DELIMITERS = {0x0D, 0x0A, 0x09, 0x0C}


def element_vr(dataset: Dataset, tag: int) -> str:
    """The VR of attribute ``tag`` of ``dataset``: as encoded, else the dictionary's."""
    item = dataset.get_item(tag)
    vr = getattr(item, "VR", None)
    if not vr:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    return str(vr).split(" or ")[0]


def _encodings(dataset: Dataset) -> list[str]:
    charset = _raw_texts(dataset, _SPECIFIC_CHARACTER_SET, "CS", ["iso8859"])
    try:
        return list(pydicom.charset.convert_encodings(charset or None))
    except Exception:  # an unknown character set: decode as ISO 8859-1
        return ["iso8859"]


def _raw_texts(dataset: Dataset, tag: int, vr: str, encodings: list[str]) -> list[str]:
    item = dataset.get_item(tag)
    if isinstance(item, DataElement):
        return _converted_values(item)
    raw = getattr(item, "value", None)
    if not raw:
        return []
    if vr in _BINARY_VRS:
        code = _BINARY_VRS[vr]
        size = struct.calcsize(code)
        order = "<" if getattr(item, "is_little_endian", True) else ">"
        count = len(raw) // size
        return [str(v) for v in struct.unpack(f"{order}{count}{code}", raw[: count * size])]
    if vr not in _TEXT_VRS:
        return []
    if vr in _CHARSET_VRS:
        delimiters = _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
        text = pydicom.charset.decode_bytes(bytes(raw), encodings, delimiters)
    else:
        text = bytes(raw).decode("latin-1")
    if vr in _SINGLE_VALUE_VRS:
        parts = [text.rstrip(" \0")]
    else:
        parts = [part.strip(" \0") for part in text.split("\\")]
    return [] if all(not part for part in parts) else parts


def _converted_values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "" or element.VR == "SQ":
        return []
    if isinstance(value, (bytes, bytearray)):
        return []
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(v).strip(" \0") for v in items]


def element_values(dataset: Dataset, tag: int) -> tuple[str, ...]:
    """The values of attribute ``tag`` of ``dataset`` as texts (padding removed); () if empty."""
    if tag not in dataset:
        return ()
    vr = element_vr(dataset, tag)
    encodings = _encodings(dataset) if vr in _CHARSET_VRS else []
    return tuple(_raw_texts(dataset, tag, vr, encodings))


def make_element(tag: int, vr: str, values: Sequence[str]) -> DataElement:
    """An element from texts, with no validation (a key may hold ``DOE*`` or a range)."""
    value: Any
    if vr == "SQ":
        value = []
    elif not values:
        value = None
    elif vr in _BINARY_VRS:
        numbers = [float(v) if vr in ("FL", "FD") else int(float(v)) for v in values]
        value = numbers if len(numbers) > 1 else numbers[0]
    elif vr in _TEXT_VRS:
        value = "\\".join(values)
    else:
        value = None
    return DataElement(tag, vr, value, validation_mode=pydicom.config.IGNORE)


@dataclass(frozen=True)
class Key:
    """One attribute of a query identifier: its tag, VR and values (texts)."""

    tag: int
    vr: str
    values: tuple[str, ...]


def query_keys(identifier: Dataset) -> list[Key]:
    """The attributes of an identifier, read raw."""
    return [
        Key(int(tag), element_vr(identifier, tag), element_values(identifier, tag))
        for tag in sorted(identifier.keys())
    ]


# -- the archive ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One DICOM file of the archive: where its data set is, and its attributes (no pixels)."""

    file: storage.DicomFile
    dataset: Dataset = field(repr=False, compare=False)

    @property
    def sop_class_uid(self) -> str:
        return self.file.sop_class_uid

    @property
    def sop_instance_uid(self) -> str:
        return self.file.sop_instance_uid

    @property
    def transfer_syntax(self) -> str:
        return self.file.transfer_syntax

    def key(self, level: Level) -> str:
        """The value of the unique key of ``level`` (Patient ID: falls back on the name)."""
        if level is Level.IMAGE:
            return self.sop_instance_uid
        value = "\\".join(element_values(self.dataset, UNIQUE_KEYS[level]))
        if level is Level.PATIENT and not value:
            return "name:" + "\\".join(element_values(self.dataset, 0x00100010))
        return value

    def read(self) -> bytes:
        """The data set as stored in the file."""
        with open(self.file.path, "rb") as fp:
            fp.seek(self.file.offset)
            data = fp.read(self.file.length)
        if len(data) != self.file.length:
            raise OSError(f"{self.file.path}: the file shrank")
        return data


#: Attributes computed over the entities below (PS3.4 C.3.4): (level, VR, what is counted).
_COMPUTED: dict[int, tuple[Level, str, str]] = {
    0x00201200: (Level.PATIENT, "IS", "studies"),
    0x00201202: (Level.PATIENT, "IS", "series"),
    0x00201204: (Level.PATIENT, "IS", "instances"),
    0x00201206: (Level.STUDY, "IS", "series"),
    0x00201208: (Level.STUDY, "IS", "instances"),
    0x00201209: (Level.SERIES, "IS", "instances"),
    0x00080061: (Level.STUDY, "CS", "modalities"),
    0x00080062: (Level.STUDY, "UI", "sop classes"),
}


@dataclass
class Entity:
    """A patient, study, series or image of the archive: the instances below it."""

    level: Level
    instances: list[Instance]

    def attribute(self, tag: int) -> tuple[str, tuple[str, ...]] | None:
        """(VR, values) of the entity's attribute ``tag``: computed (counts, modalities) or
        from its first file; None when it has none."""
        computed = _COMPUTED.get(tag)
        if computed is not None and computed[0] is self.level:
            return computed[1], self._computed(computed[2])
        dataset = self.instances[0].dataset
        if tag not in dataset:
            return None
        return element_vr(dataset, tag), element_values(dataset, tag)

    def _computed(self, what: str) -> tuple[str, ...]:
        if what == "modalities":
            found = {v for i in self.instances for v in element_values(i.dataset, 0x00080060)}
            return tuple(sorted(found))
        if what == "sop classes":
            return tuple(sorted({i.sop_class_uid for i in self.instances}))
        level = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.IMAGE}[what]
        return (str(len({i.key(level) for i in self.instances})),)


class Archive:
    """A read-only archive: the DICOM files of a folder, indexed for C-FIND, C-GET and C-MOVE."""

    def __init__(self, instances: Iterable[Instance]) -> None:
        self.instances = list(instances)

    @classmethod
    def from_directory(cls, directory: Path | str, log: logging.Logger | None = None) -> Archive:
        """Index the DICOM files under ``directory`` (recursively); other files are skipped."""
        found = storage.find_files([directory])
        if found.invalid:
            raise ToolError(ExitCode.USAGE, "; ".join(found.invalid))
        instances = []
        for dicom in found.files:
            try:
                dataset = pydicom.dcmread(dicom.path, stop_before_pixels=True)
            except Exception as exc:  # pydicom raises many kinds on a corrupt file
                if log is not None:
                    log.warning("skipped %s: %s", dicom.path, exc)
                continue
            instance = Instance(dicom, dataset)
            if not (instance.key(Level.STUDY) and instance.key(Level.SERIES)):
                if log is not None:
                    log.warning("skipped %s: no study or series instance UID", dicom.path)
                continue
            instances.append(instance)
        if log is not None:
            for note in found.skipped:
                log.info("skipped %s", note)
        return cls(instances)

    def __len__(self) -> int:
        return len(self.instances)

    def entities(self, level: Level) -> list[Entity]:
        """The entities of ``level``, in the order of their first file."""
        groups: dict[tuple[str, ...], list[Instance]] = {}
        for instance in self.instances:
            path = tuple(instance.key(lv) for lv in Level if lv <= level)
            groups.setdefault(path, []).append(instance)
        return [Entity(level, members) for members in groups.values()]

    def _matching(self, identifier: Dataset, model: Model) -> tuple[Level, list[Key], list[Entity]]:
        keys = query_keys(identifier)
        level = query_level(keys, model)
        matched = [k for k in keys if k.tag not in _NOT_MATCHED and attribute_level(k.tag) <= level]
        entities = [
            entity
            for entity in self.entities(level)
            if all(match_key(key, entity.attribute(key.tag)) for key in matched)
        ]
        return level, keys, entities

    def find(
        self, identifier: Dataset, model: Model, *, retrieve_ae_title: str | None = None
    ) -> list[Dataset]:
        """C-FIND: a response identifier for each match (PS3.4 C.4.1.2); raises QueryError."""
        level, keys, entities = self._matching(identifier, model)
        return [response_identifier(keys, e, level, retrieve_ae_title) for e in entities]

    def retrieve(self, identifier: Dataset, model: Model) -> list[Instance]:
        """C-GET/C-MOVE: the instances the identifier's unique keys select; raises QueryError.

        A retrieval selects on the unique keys of its level and the levels above only (PS3.4
        C.4.2.2.1, C.4.3.2.1): every other key is ignored, as are keys no data set can hold
        (group 0002, which Orthanc sends). The level's own unique key must be there.
        """
        keys = query_keys(identifier)
        level = query_level(keys, model)
        unique = {UNIQUE_KEYS[lv] for lv in model.levels if lv <= level}
        selected = [k for k in keys if k.tag in unique and k.values]
        if not any(k.tag == UNIQUE_KEYS[level] for k in selected):
            raise QueryError(
                IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                f"a {level.name}-level retrieval needs the unique key "
                f"({UNIQUE_KEYS[level] >> 16:04X},{UNIQUE_KEYS[level] & 0xFFFF:04X})",
            )
        return [
            instance
            for entity in self.entities(level)
            if all(match_key(key, entity.attribute(key.tag)) for key in selected)
            for instance in entity.instances
        ]

    @property
    def sop_classes(self) -> set[str]:
        """The SOP classes of the files in the archive."""
        return {i.sop_class_uid for i in self.instances}


_NOT_MATCHED = {
    _QR_LEVEL,
    _SPECIFIC_CHARACTER_SET,
    _RETRIEVE_AE_TITLE,
    _INSTANCE_AVAILABILITY,
    _TIMEZONE_OFFSET,
}


def query_level(keys: Sequence[Key], model: Model) -> Level:
    """The Query/Retrieve Level of an identifier; QueryError 0xA900 when missing or invalid."""
    text = next(("\\".join(k.values) for k in keys if k.tag == _QR_LEVEL), "").upper()
    try:
        level = Level[text]
    except KeyError:
        raise QueryError(
            IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            f"Query/Retrieve Level {text!r} is not one of {', '.join(lv.name for lv in Level)}"
            if text
            else "the identifier has no Query/Retrieve Level (0008,0052)",
        ) from None
    if level not in model.levels:
        raise QueryError(
            IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            f"the {model.value} root model has no {level.name} level",
        )
    return level


def response_identifier(
    keys: Sequence[Key], entity: Entity, level: Level, retrieve_ae_title: str | None = None
) -> Dataset:
    """The identifier of one C-FIND match: the keys asked for, with the entity's values.

    Keys below the query level, and sequences, come back empty (no sequence matching).
    """
    response = Dataset()
    charset = entity.attribute(_SPECIFIC_CHARACTER_SET)
    if charset is not None and charset[1]:
        response.add(make_element(_SPECIFIC_CHARACTER_SET, "CS", charset[1]))
    for key in keys:
        tag, vr = key.tag, key.vr
        if tag == _SPECIFIC_CHARACTER_SET:
            continue
        if tag == _QR_LEVEL:
            response.add(make_element(tag, "CS", [level.name]))
        elif tag == _RETRIEVE_AE_TITLE and retrieve_ae_title:
            response.add(make_element(tag, "AE", [retrieve_ae_title]))
        elif tag == _INSTANCE_AVAILABILITY:
            response.add(make_element(tag, "CS", ["ONLINE"]))
        elif vr == "SQ" or attribute_level(tag) > level:
            response.add(make_element(tag, vr, []))
        else:
            found = entity.attribute(tag)
            if found is None or found[0] == "SQ":
                response.add(make_element(tag, vr, []))
            else:
                response.add(make_element(tag, found[0], found[1]))
    return response


# -- matching (PS3.4 C.2.2.2) -------------------------------------------------------------------

#: The VRs wildcard matching applies to (PS3.4 C.2.2.2.4).
_WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
_RANGE_VRS = {"DA", "TM", "DT"}
_NUMBER_VRS = {"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"}


def match_key(key: Key, attribute: tuple[str, tuple[str, ...]] | None) -> bool:
    """Whether an entity's attribute (VR, values) matches the query ``key`` (PS3.4 C.2.2.2).

    Empty key: universal. ``""``: empty value matching. UI: list of UIDs. DA, TM, DT: single
    value or range (``a-b``, ``-b``, ``a-``). Texts: ``*``/``?`` wildcards, PN case-insensitive.
    Several values in the key match when any does; an entity's attribute with several values
    matches when any of them does. Sequences are not matched.
    """
    vr, wanted = key.vr, key.values
    if vr == "SQ":
        return True
    if not wanted or (vr in _WILDCARD_VRS and wanted == ("*",)):
        return True  # universal matching (C.2.2.2.3)
    have = attribute[1] if attribute is not None else ()
    if wanted == ('""',):
        return not have  # empty value matching
    if not have:
        return False
    if vr in _RANGE_VRS:
        return any(_in_range(vr, w, h) for w in wanted for h in have)
    if vr in _WILDCARD_VRS:
        flags = re.IGNORECASE if vr == "PN" else 0
        patterns = [re.compile(_wildcard(w), flags | re.DOTALL) for w in wanted]
        return any(p.fullmatch(h) for p in patterns for h in have)
    if vr in _NUMBER_VRS:
        return any(_same_number(w, h) for w in wanted for h in have)
    return any(w == h for w in wanted for h in have)  # UI list, and the rest: exact


def _wildcard(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def _normal(vr: str, text: str, upper: bool) -> str:
    """A date, time or date-time made comparable: digits only, padded to full precision.

    A lower bound pads with the earliest value, an upper bound with the latest, so that
    ``-1200`` includes 12:00:59 (PS3.4 C.2.2.2.5).
    """
    text = text.split("+")[0].split("&")[0] if vr == "DT" else text
    if vr == "DT" and "-" in text[1:]:  # a time zone offset: ignored
        text = text[0] + text[1:].split("-")[0]
    digits = text.replace(":", "").replace(".", "") if vr != "DA" else text.replace(".", "")
    if vr == "DA":
        full = "99991231" if upper else "00000101"
        return (digits + full[len(digits) :])[:8]
    # TM: HHMMSS.FFFFFF; DT: YYYYMMDDHHMMSS.FFFFFF (fraction kept as digits after seconds)
    if vr == "TM":
        whole, _, fraction = text.replace(":", "").partition(".")
        full = "235959" if upper else "000000"
        whole = (whole + full[len(whole) :])[:6]
        fraction = (fraction + ("9" if upper else "0") * 6)[:6]
        return whole + fraction
    whole, _, fraction = text.partition(".")
    full = "99991231235959" if upper else "00000101000000"
    whole = (whole + full[len(whole) :])[:14]
    fraction = (fraction + ("9" if upper else "0") * 6)[:6]
    return whole + fraction


def _in_range(vr: str, key: str, value: str) -> bool:
    """Single value or range matching of a date, time or date-time (PS3.4 C.2.2.2.5)."""
    if "-" not in key or (vr == "DT" and key.count("-") == 1 and _dt_offset_only(key)):
        if vr == "DA":
            return key.replace(".", "") == value.replace(".", "")
        return _normal(vr, value, False) >= _normal(vr, key, False) and _normal(
            vr, value, False
        ) <= _normal(vr, key, True)
    low, _, high = key.partition("-")
    point = _normal(vr, value, False)
    if low and point < _normal(vr, low, False):
        return False
    return not (high and point > _normal(vr, high, True))


def _dt_offset_only(key: str) -> bool:
    """A DT key whose only hyphen is a time zone offset (``20200101120000-0500``)."""
    head, _, tail = key.partition("-")
    return len(head) >= 8 and len(tail) == 4 and tail.isdigit()


# -- identifiers on the wire ------------------------------------------------------------------


def _encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    try:
        return _ENCODINGS[transfer_syntax]
    except KeyError:
        raise QueryError(
            UNABLE_TO_PROCESS, f"cannot encode an identifier in transfer syntax {transfer_syntax}"
        ) from None


def decode_identifier(data: bytes | bytearray | memoryview, transfer_syntax: str) -> Dataset:
    """The data set ``data``, encoded in ``transfer_syntax`` (an uncompressed one or deflate)."""
    implicit, little, deflated = _encoding(transfer_syntax)
    raw = bytes(data)
    try:
        if deflated:
            raw = zlib.decompress(raw, -15)
        return read_dataset(io.BytesIO(raw), implicit, little)
    except Exception as exc:
        raise QueryError(UNABLE_TO_PROCESS, f"cannot decode the identifier: {exc}") from exc


def encode_identifier(dataset: Dataset, transfer_syntax: str) -> bytes:
    """``dataset`` encoded in ``transfer_syntax`` (an uncompressed one or deflate)."""
    implicit, little, deflated = _encoding(transfer_syntax)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, dataset)
    data = fp.getvalue()
    if deflated:
        packer = zlib.compressobj(wbits=-15)
        data = packer.compress(data) + packer.flush()
        data += b"\0" * (len(data) % 2)
    return bytes(data)


#: The syntaxes :func:`transcode` converts between: pixel data bytes stay as they are.
TRANSCODABLE = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)


def transcode(data: bytes, source: str, target: str) -> bytes:
    """A data set re-encoded from ``source`` to ``target``, both in :data:`TRANSCODABLE`."""
    if source == target:
        return data
    if source not in TRANSCODABLE or target not in TRANSCODABLE:
        raise ValueError(f"cannot transcode from {source} to {target}")
    return encode_identifier(decode_identifier(data, source), target)


# -- the SCP side of a retrieval ---------------------------------------------------------------


@dataclass
class SubOperations:
    """The C-STORE sub-operations of a C-GET or C-MOVE and their counters (PS3.4 C.4.2.1.3)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, status: int | None, sop_instance_uid: str) -> None:
        """Count one sub-operation done: its C-STORE status, or None when it could not run."""
        self.remaining -= 1
        category = None if status is None else dimse.status_category(status)
        if category is dimse.StatusCategory.SUCCESS:
            self.completed += 1
        elif category is dimse.StatusCategory.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def _response(
        self, cls: type[dimse.Response], request: dimse.Request, status: int, remaining: int | None
    ) -> dimse.Response:
        return cls(  # type: ignore[call-arg]
            message_id_being_responded_to=request.message_id,
            affected_sop_class_uid=getattr(request, "affected_sop_class_uid", None),
            status=status,
            remaining_suboperations=remaining,
            completed_suboperations=self.completed,
            failed_suboperations=self.failed,
            warning_suboperations=self.warning,
        )

    def pending(self, cls: type[dimse.Response], request: dimse.Request) -> dimse.Response:
        """A Pending response with the counters (PS3.7 9.3.3.2, 9.3.4.2)."""
        return self._response(cls, request, PENDING, self.remaining)

    def final(
        self, cls: type[dimse.Response], request: dimse.Request, *, cancelled: bool = False
    ) -> tuple[dimse.Response, Dataset | None]:
        """The final response and its identifier (the Failed SOP Instance UID List, if any).

        Cancel (0xFE00) keeps the remaining count (PS3.7 9.3.3.2); failures or warnings give
        0xB000; nothing could be sent at all gives 0xA702.
        """
        remaining: int | None = None
        if cancelled:
            status, remaining = CANCEL, self.remaining
        elif self.failed and not self.completed and not self.warning:
            status = UNABLE_TO_PERFORM_SUBOPERATIONS
        elif self.failed or self.warning:
            status = SUBOPERATIONS_WARNING
        else:
            status = SUCCESS
        identifier = None
        if self.failed_uids and status != SUCCESS:
            identifier = Dataset()
            identifier.add(DataElement(_FAILED_SOP_INSTANCE_UID_LIST, "UI", self.failed_uids))
        return self._response(cls, request, status, remaining), identifier


def storage_context(
    contexts: Mapping[int, dimse.NegotiatedContext], instance: Instance, *, acceptor: bool
) -> tuple[int, str] | None:
    """An accepted context to C-STORE ``instance`` on, and its transfer syntax, or None.

    ``acceptor``: we are the association acceptor sending C-STOREs (C-GET), so the context must
    give us the SCU role (the requestor took the SCP role, PS3.7 D.3.3.4). The file's own
    transfer syntax is preferred; another little endian uncompressed one will be transcoded to.
    """
    usable = [
        c
        for c in contexts.values()
        if c.abstract_syntax == instance.sop_class_uid
        and (c.acceptor_is_scu if acceptor else c.requestor_is_scu)
    ]
    for context in usable:
        if context.transfer_syntax == instance.transfer_syntax:
            return context.context_id, context.transfer_syntax
    if instance.transfer_syntax in TRANSCODABLE:
        for context in usable:
            if context.transfer_syntax in TRANSCODABLE:
                return context.context_id, context.transfer_syntax
    return None


def instance_data(instance: Instance, transfer_syntax: str) -> bytes:
    """The data set of ``instance`` in ``transfer_syntax`` (transcoded when it differs)."""
    return transcode(instance.read(), instance.transfer_syntax, transfer_syntax)


def move_batches(
    instances: Sequence[Instance],
) -> list[tuple[tuple[dul.PresentationContext, ...], list[Instance]]]:
    """The sub-associations of a C-MOVE: the contexts of each (128 at most) and its instances.

    For each SOP class and transfer syntax of the files, a context offering that syntax alone,
    so that an SCP accepting it receives the files bit for bit as stored; then, for a file that
    can be transcoded, a second context offering the other syntaxes, the fallback for an SCP
    that refuses the first (issue 16 item 4). :func:`storage_context` prefers the first. The two
    contexts of a file never fall in different batches, nor does a file.
    """
    groups: dict[tuple[str, str], list[Instance]] = {}
    for instance in instances:
        groups.setdefault((instance.sop_class_uid, instance.transfer_syntax), []).append(instance)
    batches: list[tuple[list[tuple[str, tuple[str, ...]]], list[Instance]]] = []
    for (sop_class, syntax), members in groups.items():
        proposals = [(sop_class, (syntax,))]
        if syntax in TRANSCODABLE:
            proposals.append((sop_class, tuple(s for s in TRANSCODABLE[:2] if s != syntax)))
        if not batches or len(batches[-1][0]) + len(proposals) > storage.MAX_CONTEXTS:
            batches.append(([], []))
        batches[-1][0].extend(proposals)
        batches[-1][1].extend(members)
    return [
        (
            tuple(
                dul.PresentationContext(
                    context_id=2 * n + 1, abstract_syntax=sop_class, transfer_syntaxes=syntaxes
                )
                for n, (sop_class, syntaxes) in enumerate(proposals)
            ),
            members,
        )
        for proposals, members in batches
    ]


def qrscp_policy(
    *, ae_title: str | None, maximum_length: int, archive: Archive
) -> dimse.AcceptorPolicy:
    """What qrscp accepts: the Q/R SOP classes, Verification, and the storage SOP classes.

    The storage SOP classes are there for C-GET: the requestor may take the SCP role on them
    (PS3.7 D.3.3.4), so that we send it C-STORE sub-operations on the same association.
    """
    storage_classes = set(storage.STORAGE_SOP_CLASSES) | archive.sop_classes
    syntaxes: tuple[str, ...] = (
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    )
    contexts: dict[str, Sequence[str]] = dict.fromkeys(QR_SOP_CLASSES, syntaxes)
    contexts[dimse.VERIFICATION_SOP_CLASS] = QUERY_TRANSFER_SYNTAXES
    contexts.update(dict.fromkeys(sorted(storage_classes), storage.TRANSFER_SYNTAXES))
    return dimse.AcceptorPolicy(
        contexts=contexts,
        ae_title=ae_title,
        maximum_length=maximum_length,
        scp_roles=frozenset(storage_classes),  # type: ignore[arg-type]
    )


# -- the SCU side: contexts, identifiers, output ------------------------------------------------


def parse_key(text: str) -> tuple[int, str, str | None]:
    """A ``-k`` option: ``gggg,eeee=value``, ``Keyword=value`` or just the key (empty value).

    Returns (tag, VR, value or None). The VR is the data dictionary's.
    """
    name, sep, value = text.partition("=")
    name = name.strip().strip("()")
    match = re.fullmatch(r"([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})", name)
    tag = int(match.group(1) + match.group(2), 16) if match else tag_for_keyword(name)
    if tag is None:
        raise ToolError(ExitCode.USAGE, f"-k {text}: unknown attribute {name!r}")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise ToolError(ExitCode.USAGE, f"-k {text}: {Tag(tag)} is not in the dictionary") from None
    if vr == "SQ" and value:
        raise ToolError(ExitCode.USAGE, f"-k {text}: a sequence takes no value here")
    if "or" in vr:  # US or SS, OB or OW: the first
        vr = vr.split(" or ")[0]
    return tag, vr, (value if sep else None)


def build_identifier(keys: Sequence[str], files: Sequence[str] = ()) -> Dataset:
    """The query identifier: the data set of the query files (the first), then the ``-k`` keys."""
    identifier = Dataset()
    for name in files[:1]:
        try:
            query = pydicom.dcmread(name, force=True)
        except Exception as exc:
            raise ToolError(ExitCode.USAGE, f"cannot read the query file {name}: {exc}") from exc
        for found in query_keys(query):  # rebuilt from raw values: a key may be no valid value
            if found.tag >> 16 != 0x0002:
                identifier.add(make_element(found.tag, found.vr, found.values))
    for key in keys:
        tag, vr, value = parse_key(key)
        values = [] if value is None else value.split("\\")
        try:
            identifier.add(make_element(tag, vr, values))
        except ValueError as exc:
            raise ToolError(ExitCode.USAGE, f"-k {key}: {exc}") from exc
    if _QR_LEVEL not in identifier:
        raise ToolError(ExitCode.USAGE, "no Query/Retrieve Level: -k QueryRetrieveLevel=STUDY")
    return identifier


def describe_identifier(identifier: Dataset) -> str:
    """An identifier, one attribute a line: ``(0010,0010) PN PatientName: DOE^JOHN``."""
    lines = []
    for key in query_keys(identifier):
        name = keyword_for_tag(key.tag) or "?"
        value = "\\".join(key.values) if key.vr != "SQ" else "(sequence)"
        lines.append(f"({key.tag >> 16:04X},{key.tag & 0xFFFF:04X}) {key.vr} {name}: {value}")
    return "\n".join(lines) if lines else "(empty)"


def request_contexts(sop_class_uid: str) -> tuple[dul.PresentationContext, ...]:
    """The one context findscu and movescu propose: the model's SOP class."""
    return (
        dul.PresentationContext(
            context_id=1,
            abstract_syntax=sop_class_uid,
            transfer_syntaxes=QUERY_TRANSFER_SYNTAXES,
        ),
    )


def get_contexts(
    sop_class_uid: str,
) -> tuple[tuple[dul.PresentationContext, ...], tuple[dul.RoleSelection, ...]]:
    """getscu's contexts and role selections: the C-GET SOP class, then each storage SOP class
    with the SCP role proposed, so that the C-STOREs come back on this association
    (PS3.7 D.3.3.4; PS3.4 C.4.3)."""
    classes = list(storage.COMMON_STORAGE_SOP_CLASSES)[: storage.MAX_CONTEXTS - 1]
    contexts = [request_contexts(sop_class_uid)[0]]
    for n, uid in enumerate(classes, start=1):
        contexts.append(
            dul.PresentationContext(
                context_id=2 * n + 1,
                abstract_syntax=uid,
                transfer_syntaxes=GET_STORAGE_TRANSFER_SYNTAXES,
            )
        )
    roles = tuple(
        dul.RoleSelection(sop_class_uid=uid, scu_role=False, scp_role=True) for uid in classes
    )
    return tuple(contexts), roles


def model_from_args(args: argparse.Namespace) -> Model:
    """The information model -P/-S chose."""
    return Model.STUDY_ROOT if args.study_root else Model.PATIENT_ROOT


def counters_text(response: dimse.Response) -> str:
    """``remaining 3, completed 5, failed 0, warning 0`` of a C-GET/C-MOVE response."""
    names = ("remaining", "completed", "failed", "warning")
    parts = []
    for name in names:
        value = getattr(response, f"{name}_suboperations", None)
        if value is not None:
            parts.append(f"{name} {value}")
    done = [getattr(response, f"{name}_suboperations", None) for name in names[1:]]
    if not response.is_pending and done == [0, 0, 0]:
        parts.append("no instance matched: nothing was retrieved")
    return ", ".join(parts) or "no counters"


def status_text(status: int) -> str:
    """``0xFE00 (cancel)``."""
    return f"0x{status:04X} ({dimse.status_category(status).value})"


class FindOutput:
    """What findscu does with each match: print it to ``out``, and extract it to a file (-X)."""

    def __init__(self, args: argparse.Namespace, out: TextIO | None) -> None:
        self.out = out if out is not None else sys.stdout
        self.extract = args.extract
        self.directory = Path(args.output_directory)
        self.count = 0
        if self.extract and not self.directory.is_dir():
            raise ToolError(ExitCode.CANNOT_WRITE_OUTPUT, f"no output directory {self.directory}")

    def match(self, identifier: Dataset | None) -> None:
        self.count += 1
        self.out.write(f"# Find response {self.count} (pending)\n")
        if identifier is None:
            self.out.write("(no identifier)\n\n")
            return
        self.out.write(describe_identifier(identifier) + "\n\n")
        self.out.flush()
        if self.extract:
            path = self.directory / f"rsp{self.count:04d}.dcm"
            path.write_bytes(encode_identifier(identifier, EXPLICIT_VR_LITTLE_ENDIAN))


def find_exit_code(status: int, *, interrupted: bool) -> int:
    """findscu/getscu/movescu's exit status: 0 for Success, Cancel (asked with --cancel) and
    warnings, but 62 for failed sub-operations (0xB000) and failures; 130 after Ctrl-C."""
    if interrupted:
        return EXIT_INTERRUPTED
    if status == SUBOPERATIONS_WARNING or dimse.status_category(status) in (
        dimse.StatusCategory.FAILURE,
        dimse.StatusCategory.PENDING,
    ):
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


def open_writer(
    directory: Path | None,
    message: dimse.CStoreRequest,
    transfer_syntax: str,
    source_ae_title: str | None,
    log: logging.Logger,
) -> storage.Part10Writer | None:
    """A Part 10 file for a C-STORE data set received (None with ``--ignore`` or on error)."""
    if directory is None:
        return None
    meta = storage.file_meta(
        message.affected_sop_class_uid,
        message.affected_sop_instance_uid,
        transfer_syntax,
        source_ae_title,
    )
    name = storage.file_name(message.affected_sop_class_uid, message.affected_sop_instance_uid)
    try:
        return storage.Part10Writer(directory, name, meta)
    except OSError as exc:
        log.error("cannot create %s: %s", directory / name, exc)
        return None


def store_response(
    message: dimse.CStoreRequest, status: int, comment: str | None = None
) -> dimse.CStoreResponse:
    """The C-STORE-RSP answering ``message``."""
    return dimse.CStoreResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
        status=status,
        error_comment=comment,
    )


def parse_destinations(pairs: Sequence[Sequence[str]] | None) -> dict[str, tuple[str, int]]:
    """qrscp's ``--move AETITLE HOST:PORT`` options as a table."""
    table = {}
    for ae_title, address in pairs or ():
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ToolError(ExitCode.USAGE, f"--move {ae_title} {address}: not HOST:PORT")
        table[ae_title] = (host, int(port))
    return table


# -- the command lines ------------------------------------------------------------------------


def _qr_options(parser: cli.Parser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("query/retrieve options")
    model = group.add_mutually_exclusive_group()
    model.add_argument(
        "-P",
        "--patient",
        dest="study_root",
        action="store_false",
        default=False,
        help="use the Patient Root information model (default)",
    )
    model.add_argument(
        "-S",
        "--study",
        dest="study_root",
        action="store_true",
        help="use the Study Root information model",
    )
    group.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help='a key of the identifier: gggg,eeee="value" or Keyword="value" (wildcards * and ?, '
        "ranges 20200101-20201231, UID lists a\\b); no value asks for the attribute "
        "(repeatable; overrides the query file)",
    )
    group.add_argument(
        "--cancel",
        type=int,
        default=None,
        metavar="N",
        help="send a C-CANCEL after N pending responses (Ctrl-C sends one too)",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="dcmfile-in",
        help="a DICOM file holding the query identifier (the -k keys override it)",
    )
    return group


_EPILOG = (
    "Ctrl-C while responses are pending sends a C-CANCEL (exit status 130); a second Ctrl-C "
    "aborts the association."
)


def findscu_parser(prog: str = "findscu") -> cli.Parser:
    """The options of findscu: query with C-FIND."""
    parser = cli._parser(
        prog,
        "Query a Q/R SCP with C-FIND (PS3.4 C.4.1) and print each match.",
        f"example:\n  findscu -S -k QueryRetrieveLevel=STUDY -k PatientName='DOE*' "
        f"-k StudyDate=20200101- -k StudyInstanceUID -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    cli._requestor_options(parser, "FINDSCU")
    group = _qr_options(parser)
    group.add_argument(
        "-X",
        "--extract",
        action="store_true",
        help="also write each match to rsp0001.dcm, rsp0002.dcm... (explicit VR little endian "
        "data sets) in the output directory",
    )
    group.add_argument(
        "-od",
        "--output-directory",
        default=".",
        metavar="DIR",
        help="where -X writes (default: .)",
    )
    return parser


def getscu_parser(prog: str = "getscu") -> cli.Parser:
    """The options of getscu: retrieve with C-GET."""
    parser = cli._parser(
        prog,
        "Retrieve with C-GET (PS3.4 C.4.3): the SCP sends the matching instances back on the "
        "same association with C-STORE; we propose the SCP role for the storage SOP classes "
        "(PS3.7 D.3.3.4) and write each one as a file.",
        "example:\n  getscu -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=1.2.3 "
        f"-od received/ -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    cli._requestor_options(parser, "GETSCU")
    group = _qr_options(parser)
    _output_options(group)
    return parser


def _output_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "-od",
        "--output-directory",
        default=".",
        metavar="DIR",
        help="write the instances received into DIR, which must exist (default: .)",
    )
    group.add_argument(
        "--ignore", action="store_true", help="receive the instances but write nothing"
    )


def movescu_parser(prog: str = "movescu") -> cli.Parser:
    """The options of movescu: retrieve with C-MOVE."""
    parser = cli._parser(
        prog,
        "Retrieve with C-MOVE (PS3.4 C.4.2): the SCP sends the matching instances to the move "
        "destination over an association of its own. With +P PORT, we are the destination: "
        "a storage SCP listens on PORT meanwhile and writes each instance as a file.",
        "example:\n  movescu -S -k QueryRetrieveLevel=SERIES -k SeriesInstanceUID=1.2.3 "
        f"-aem MOVESCU +P 11113 -od received/ -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    parser.prefix_chars = "-+"  # +P, as DCMTK spells it (groups made from now on accept '+')
    cli._requestor_options(parser, "MOVESCU")
    group = _qr_options(parser)
    group.add_argument(
        "-aem",
        "--move",
        default=None,
        metavar="AETITLE",
        type=cli._ae_title,
        help="the move destination's AE title (default: our own, -aet)",
    )
    group.add_argument(
        "+P",
        "--port",
        dest="listen_port",
        type=cli._port,
        default=None,
        metavar="PORT",
        help="listen on PORT for the C-STORE sub-operations while the C-MOVE runs",
    )
    group.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address +P listens on (default: 127.0.0.1)",
    )
    _output_options(group)
    return parser


def qrscp_parser(prog: str = "qrscp") -> cli.Parser:
    """The options of qrscp: a Q/R SCP serving a folder of DICOM files."""
    parser = cli._parser(
        prog,
        "A Query/Retrieve SCP (PS3.4 Annex C) serving the DICOM files of a folder, indexed at "
        "start: C-FIND (Patient Root and Study Root), C-GET (C-STOREs on the same association, "
        "to a requestor that took the SCP role for the storage SOP classes), C-MOVE (C-STOREs "
        "over a new association to a destination of the --move table), C-CANCEL, C-ECHO.",
        "example:\n  qrscp -aet QRSCP --move STORESCP 127.0.0.1:11113 11112 archive/",
    )
    cli._acceptor_options(parser, "QRSCP")
    parser.add_argument("directory", help="the folder of DICOM files to serve")
    group = parser.add_argument_group("query/retrieve options")
    group.add_argument(
        "--move",
        nargs=2,
        action="append",
        metavar=("AETITLE", "HOST:PORT"),
        help="a C-MOVE destination: its AE title and address (repeatable)",
    )
    group.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="(for tests) wait this long before each pending response or sub-operation",
    )
    return parser


def parse(parser: cli.Parser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """Parse ``argv``: the options, or an exit status (0 for --help, 1 for a usage error)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    if getattr(args, "cancel", None) is not None and args.cancel < 0:
        parser.print_usage(sys.stderr)
        return ExitCode.USAGE
    return args


def run_tool(
    name: str,
    parser: cli.Parser,
    body: Callable[[argparse.Namespace, logging.Logger], int],
    argv: Sequence[str] | None,
    stream: TextIO | None,
) -> int:
    """Parse ``argv``, run ``body`` with a logger; a :class:`ToolError` becomes its exit code."""
    args = parse(parser, list(argv) if argv is not None else None)
    if isinstance(args, int):
        return args
    with cli.tool_logger(name, args, stream) as log:
        try:
            return body(args, log)
        except ToolError as exc:
            log.critical("%s", exc)
            return exc.code


def output_directory(args: argparse.Namespace) -> Path | None:
    """Where received instances go (None with --ignore); ToolError when it is not a folder."""
    if args.ignore:
        return None
    directory = Path(args.output_directory)
    if not directory.is_dir():
        raise ToolError(ExitCode.CANNOT_WRITE_OUTPUT, f"no output directory {directory}")
    return directory


def associate_request(
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...] = (),
) -> dul.AssociateRequest:
    """The A-ASSOCIATE-RQ of an SCU, from its options."""
    return dul.AssociateRequest(
        called_ae_title=args.call,
        calling_ae_title=args.aetitle,
        presentation_contexts=contexts,
        user_information=dul.UserInformation(maximum_length=args.max_pdu, role_selections=roles),
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


# -- the demo -----------------------------------------------------------------------------------


def demo_find(
    archive: Path,
    keys: Sequence[str] = (
        "QueryRetrieveLevel=STUDY",
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyInstanceUID",
        "NumberOfStudyRelatedInstances",
    ),
    *,
    stream: TextIO | None = None,
) -> int:
    """Serve ``archive`` with dul's qrscp (blocking sockets) on a free loopback port and query
    it with dul's findscu (-v, Study Root): the trace and the matches go to ``stream``
    (stdout). Returns findscu's exit status."""
    from . import qr_blocking

    out = stream if stream is not None else sys.stdout
    with qr_blocking.qrscp_in_thread(["-v", "-aet", "QRSCP", "0", str(archive)], out) as server:
        argv = ["-v", "-S", "-aec", "QRSCP"]
        for key in keys:
            argv += ["-k", key]
        argv += ["127.0.0.1", str(server.port)]
        return qr_blocking.findscu_main(argv, stream=out, out=out)


# -- what every driver's tools share ------------------------------------------------------------


class Interrupt:
    """Ctrl-C during a request: the first asks for a C-CANCEL, the second aborts.

    ``requested`` is set by the first; an SCU's loop sends the C-CANCEL when it sees it, and
    on the async drivers the signal's task sends it at once through ``cancel_now``.
    """

    def __init__(self) -> None:
        self.requested = False
        self.cancel_now: Callable[[], Coroutine[Any, Any, None]] | None = None


#: Errors that end an association once established (each driver adds its DriverError).
BROKEN = (TimeoutError, dul.ProtocolError, OSError)


def broken(exc: BaseException, aborted: type[Exception]) -> ToolError:
    """What ended an established association, as the error the user reads."""
    if isinstance(exc, aborted):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association aborted: {exc}")
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the peer")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association failed: {exc}")


def log_final(log: logging.Logger, response: dimse.Response, extra: str = "") -> None:
    """The final response of an SCU's request, as the user reads it."""
    name = cli.message_name(response).removesuffix("-RSP")
    text = f"{name} final response: status {status_text(response.status)}{extra}"
    if response.error_comment:
        text += f": {response.error_comment}"
    if response.category in (dimse.StatusCategory.SUCCESS, dimse.StatusCategory.CANCEL):
        log.info("%s", text)
    else:
        log.warning("%s", text)


def decode_or_none(data: bytes | None, syntax: str, log: logging.Logger) -> Dataset | None:
    """A response's identifier, or None (none sent, or undecodable: logged)."""
    if not data:
        return None
    try:
        return decode_identifier(data, syntax)
    except QueryError as exc:
        log.error("%s", exc)
        return None


def refused(sop_class_uid: str) -> ToolError:
    """The error of an SCU whose Q/R SOP class the peer did not accept."""
    name = cli.UID_NAMES.get(sop_class_uid, sop_class_uid)
    return ToolError(ExitCode.ASSOCIATION_FAILED, f"the peer refused {name}")


def cancel_due(interrupt: Interrupt, after: int | None, responses: int) -> str | None:
    """Why to send the C-CANCEL now (Ctrl-C, or ``--cancel N`` responses received), or None."""
    if interrupt.requested:
        return "interrupted: sending C-CANCEL (Ctrl-C again aborts)"
    if after is not None and responses >= after:
        return f"sending C-CANCEL after {responses} responses, as --cancel asks"
    return None


def failure_response(
    request: dimse.Request, response_class: type[dimse.Response], exc: QueryError
) -> dimse.Response:
    """The final response of a request the SCP cannot answer."""
    return response_class(  # type: ignore[call-arg]
        message_id_being_responded_to=request.message_id,
        affected_sop_class_uid=getattr(request, "affected_sop_class_uid", None),
        status=exc.status,
        error_comment=exc.comment[:64],
    )


def peer_ae_title(connection: dul.Connection) -> str | None:
    """The AE title of the other side of an association (for the file meta group)."""
    request = connection.request
    if request is None:
        return None
    if connection.role is dul.Role.REQUESTOR:
        return request.called_ae_title
    return request.calling_ae_title


# -- the async tools, shared by the trio and asyncio drivers --------------------------------------
#
# The trio and asyncio drivers have the same API, ``async`` where it waits: the bodies below run
# on either. What differs (sleeping, a lock, looking for a C-CANCEL without waiting, running a
# server) comes from the driver's module as an :class:`AsyncRuntime`.


class AsyncRuntime(Protocol):
    """What the shared async bodies need from a driver (see qr_trio.py, qr_asyncio.py)."""

    @property
    def association(self) -> Any:
        """The driver's ``Association`` class (``request`` opens one)."""

    @property
    def driver_error(self) -> type[Exception]:
        """The driver's ``DriverError`` (the two below are ones)."""

    @property
    def aborted(self) -> type[Exception]:
        """The driver's ``AssociationAborted``."""

    @property
    def rejected(self) -> type[Exception]:
        """The driver's ``AssociationRejected``."""

    def timeouts(self, args: argparse.Namespace) -> Any: ...

    async def sleep(self, seconds: float) -> None: ...

    async def poll(self, assoc: Any) -> object | None:
        """The next event of ``assoc`` if one has arrived already, else None (no waiting)."""

    def lock(self) -> Any:
        """An async lock (``async with``)."""


async def async_associate(
    runtime: AsyncRuntime,
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...],
    tracer: cli.Tracer,
) -> Any:
    """Open the association the options describe; any failure is ASSOCIATION_FAILED (61)."""
    try:
        return await runtime.association.request(
            args.peer,
            args.port,
            associate_request(args, contexts, roles),
            timeouts=runtime.timeouts(args),
            on_event=tracer,
        )
    except runtime.rejected as exc:
        raise ToolError(ExitCode.ASSOCIATION_FAILED, str(exc)) from exc
    except TimeoutError as exc:
        raise ToolError(
            ExitCode.ASSOCIATION_FAILED, "timed out waiting for the association answer"
        ) from exc
    except (*BROKEN, runtime.driver_error) as exc:
        raise ToolError(ExitCode.ASSOCIATION_FAILED, f"no association: {exc}") from exc


async def async_end(
    assoc: Any, runtime: AsyncRuntime, args: argparse.Namespace, log: logging.Logger
) -> None:
    """Release (or, with --abort, abort) the association."""
    if args.abort:
        log.info("aborting the association, as --abort asks")
        await assoc.abort()
        return
    try:
        await assoc.release()
    except TimeoutError as exc:
        raise ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the release") from exc
    except (*BROKEN, runtime.driver_error) as exc:
        raise ToolError(ExitCode.ASSOCIATION_ABORTED, f"release failed: {exc}") from exc


class AsyncSCU:
    """One C-FIND, C-GET or C-MOVE of findscu, getscu or movescu on an async driver."""

    def __init__(
        self,
        runtime: AsyncRuntime,
        args: argparse.Namespace,
        log: logging.Logger,
        interrupt: Interrupt,
    ) -> None:
        self.runtime = runtime
        self.args = args
        self.log = log
        self.interrupt = interrupt
        self.assoc: Any = None
        self._lock = runtime.lock()
        self._request: dimse.Request | None = None
        self._context_id = 0
        self._cancelled = False
        self._final = False

    async def send(self, message: dimse.Message, *, context_id: int, **kwargs: Any) -> None:
        """Send a message; the C-CANCEL of the signal's task may be sent meanwhile."""
        async with self._lock:
            await self.assoc.send(message, context_id=context_id, **kwargs)

    async def cancel(
        self, why: str = "interrupted: sending C-CANCEL (Ctrl-C again aborts)"
    ) -> None:
        """Send the C-CANCEL of the request in progress (once; not after its final response)."""
        if self._request is None or self._cancelled or self._final:
            return
        self._cancelled = True
        self.log.log(logging.WARNING if self.interrupt.requested else logging.INFO, "%s", why)
        await self.send(
            dimse.CCancelRequest(message_id_being_responded_to=self._request.message_id),
            context_id=self._context_id,
        )

    async def run(
        self,
        contexts: tuple[dul.PresentationContext, ...],
        roles: tuple[dul.RoleSelection, ...],
        make_request: Callable[[int, str], dimse.Request],
        on_message: Callable[[Any, dimse.MessageReceived, Dataset | None], Awaitable[None]],
    ) -> tuple[dimse.Response, bool]:
        """Open the association, send the request, hand each message to ``on_message`` until
        the final response; release. Returns (final response, whether Ctrl-C interrupted)."""
        args, log = self.args, self.log
        identifier = build_identifier(args.key, args.files)
        log.info("identifier:\n%s", describe_identifier(identifier))
        sop_class = contexts[0].abstract_syntax
        assoc = self.assoc = await async_associate(
            self.runtime, args, contexts, roles, cli.Tracer(log, "SCU")
        )
        errors = (*BROKEN, self.runtime.driver_error)
        try:
            try:
                context_id = assoc.context_for(sop_class)
            except dul.LocalProtocolError as exc:
                await assoc.release()
                raise refused(sop_class) from exc
            syntax = assoc.session.contexts[context_id].transfer_syntax
            request = make_request(assoc.session.next_message_id(), sop_class)
            await self.send(
                request, context_id=context_id, dataset=encode_identifier(identifier, syntax)
            )
            self._request, self._context_id = request, context_id
            self.interrupt.cancel_now = self.cancel
            responses = 0
            while True:
                why = (
                    None if self._cancelled else cancel_due(self.interrupt, args.cancel, responses)
                )
                if why is not None:
                    await self.cancel(why)
                event = await assoc.receive_message()
                message = event.message
                if (
                    isinstance(message, dimse.Response)
                    and message.message_id_being_responded_to == request.message_id
                ):
                    data = event.dataset
                    if event.has_dataset and data is None:
                        data = b"".join([bytes(c) async for c in assoc.read_dataset()])
                    found = decode_or_none(data, syntax, log)
                    if not message.is_pending:
                        self._final = True
                        if found is not None:
                            log.info("final identifier:\n%s", describe_identifier(found))
                        break
                    responses += 1
                    await on_message(assoc, event, found)
                else:
                    await on_message(assoc, event, None)
        except errors as exc:
            await assoc.abort()
            raise broken(exc, self.runtime.aborted) from exc
        except BaseException:
            await assoc.abort()
            raise
        finally:
            self.interrupt.cancel_now = None
        await async_end(assoc, self.runtime, args, log)
        return message, self.interrupt.requested

    async def unexpected(self, assoc: Any, event: dimse.MessageReceived) -> None:
        """A message that answers nothing we asked: drain its data set, note it."""
        if event.has_dataset and event.dataset is None:
            async for _ in assoc.read_dataset():
                pass
        self.log.warning("ignored an unexpected %s", cli.message_name(event.message))


async def async_receive_store(
    assoc: Any,
    event: dimse.MessageReceived,
    reader: Any,
    directory: Path | None,
    log: logging.Logger,
    send: Callable[..., Awaitable[None]],
) -> bool:
    """A C-STORE-RQ received: its data set streamed into a file, then the response (with
    ``send``). True when stored (or ignored with --ignore)."""
    message = event.message
    assert isinstance(message, dimse.CStoreRequest)
    context = assoc.session.contexts.get(event.context_id)
    status, comment = SUCCESS, None
    writer = None
    if not event.has_dataset:
        status, comment = 0xC000, "the C-STORE-RQ announced no data set"
    elif directory is not None and context is not None:
        writer = open_writer(
            directory, message, context.transfer_syntax, peer_ae_title(assoc.connection), log
        )
        if writer is None:
            status, comment = 0xA700, "cannot create the file"
    try:
        async for chunk in reader:
            if writer is not None:
                try:
                    writer.write(chunk)
                except OSError as exc:
                    log.error("cannot write %s: %s", writer.path, exc)
                    writer.discard()
                    writer = None
                    status, comment = 0xA700, "cannot write the file"
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        try:
            path = writer.commit()
            log.info("stored %s (%d bytes)", path, writer.size)
        except OSError as exc:
            log.error("cannot store %s: %s", writer.path, exc)
            status, comment = 0xA700, "cannot store the file"
    await send(store_response(message, status, comment), context_id=event.context_id)
    return status == SUCCESS


async def async_findscu(
    runtime: AsyncRuntime,
    args: argparse.Namespace,
    log: logging.Logger,
    interrupt: Interrupt,
    out: TextIO | None,
) -> int:
    """findscu's body on an async driver."""
    model = model_from_args(args)
    output = FindOutput(args, out)
    scu = AsyncSCU(runtime, args, log, interrupt)

    async def on_message(assoc: Any, event: dimse.MessageReceived, found: Dataset | None) -> None:
        if isinstance(event.message, dimse.CFindResponse):
            output.match(found)
        else:
            await scu.unexpected(assoc, event)

    final, interrupted = await scu.run(
        request_contexts(model.find),
        (),
        lambda message_id, sop_class: dimse.CFindRequest(
            message_id=message_id, affected_sop_class_uid=sop_class
        ),
        on_message,
    )
    log_final(log, final, f", {output.count} match(es)")
    return find_exit_code(final.status, interrupted=interrupted)


async def async_getscu(
    runtime: AsyncRuntime,
    args: argparse.Namespace,
    log: logging.Logger,
    interrupt: Interrupt,
    reader_class: Any,
) -> int:
    """getscu's body on an async driver (``reader_class``: the driver's DatasetReader)."""
    directory = output_directory(args)
    model = model_from_args(args)
    contexts, roles = get_contexts(model.get)
    scu = AsyncSCU(runtime, args, log, interrupt)
    received = 0

    async def on_message(assoc: Any, event: dimse.MessageReceived, found: Dataset | None) -> None:
        nonlocal received
        message = event.message
        if isinstance(message, dimse.CStoreRequest):
            reader = reader_class(assoc, event)
            received += await async_receive_store(assoc, event, reader, directory, log, scu.send)
        elif isinstance(message, dimse.CGetResponse):
            log.info("C-GET pending: %s", counters_text(message))
        else:
            await scu.unexpected(assoc, event)

    final, interrupted = await scu.run(
        contexts,
        roles,
        lambda message_id, sop_class: dimse.CGetRequest(
            message_id=message_id, affected_sop_class_uid=sop_class
        ),
        on_message,
    )
    log_final(log, final, f" ({counters_text(final)}); {received} instance(s) received")
    return find_exit_code(final.status, interrupted=interrupted)


class AsyncReceiver:
    """movescu's own storage SCP (+P) on an async driver: writes each data set received."""

    def __init__(self, directory: Path | None, log: logging.Logger) -> None:
        self.directory = directory
        self.log = log
        self.count = 0

    async def __call__(self, assoc: Any, event: dimse.MessageReceived, reader: Any) -> None:
        if await async_receive_store(assoc, event, reader, self.directory, self.log, assoc.send):
            self.count += 1


async def async_movescu(
    runtime: AsyncRuntime,
    args: argparse.Namespace,
    log: logging.Logger,
    interrupt: Interrupt,
    receiver: AsyncReceiver | None,
) -> int:
    """movescu's body on an async driver; the driver runs ``receiver``'s server meanwhile."""
    model = model_from_args(args)
    destination = args.move or args.aetitle
    scu = AsyncSCU(runtime, args, log, interrupt)

    async def on_message(assoc: Any, event: dimse.MessageReceived, found: Dataset | None) -> None:
        if isinstance(event.message, dimse.CMoveResponse):
            log.info("C-MOVE pending: %s", counters_text(event.message))
        else:
            await scu.unexpected(assoc, event)

    final, interrupted = await scu.run(
        request_contexts(model.move),
        (),
        lambda message_id, sop_class: dimse.CMoveRequest(
            message_id=message_id, affected_sop_class_uid=sop_class, move_destination=destination
        ),
        on_message,
    )
    extra = f" ({counters_text(final)})"
    if receiver is not None:
        extra += f"; {receiver.count} instance(s) received"
    log_final(log, final, extra)
    return find_exit_code(final.status, interrupted=interrupted)


#: Data sets larger than this are streamed from their file by the SCP, a chunk at a time.
STREAM_CHUNK = 1 << 20


class AsyncQRSCP:
    """qrscp's handlers on an async driver: C-FIND, C-GET and C-MOVE over an :class:`Archive`.

    The same steps as the blocking driver's (``qr_blocking._QRSCP``), awaited.
    """

    def __init__(
        self,
        runtime: AsyncRuntime,
        args: argparse.Namespace,
        log: logging.Logger,
        archive: Archive,
        destinations: dict[str, tuple[str, int]],
    ) -> None:
        self.runtime = runtime
        self.log = log
        self.archive = archive
        self.destinations = destinations
        self.ae_title = args.aetitle
        self.delay = args.delay
        self.timeouts = runtime.timeouts(args)
        self.max_pdu = args.max_pdu
        self._errors = (*BROKEN, runtime.driver_error)

    async def _parse(
        self,
        assoc: Any,
        event: dimse.MessageReceived,
        reader: Any,
        response_class: type[dimse.Response],
    ) -> tuple[Model, Dataset, str] | None:
        message = event.message
        assert isinstance(message, dimse.Request)
        sop_class = getattr(message, "affected_sop_class_uid", "")
        syntax = assoc.session.contexts[event.context_id].transfer_syntax
        data = await reader.read_all()
        model = Model.of(sop_class)
        try:
            if model is None:
                raise QueryError(SOP_CLASS_NOT_SUPPORTED, f"{sop_class} is not a Q/R model")
            identifier = decode_identifier(data, syntax)
        except QueryError as exc:
            await self._fail(assoc, event, response_class, exc)
            return None
        self.log.info("identifier:\n%s", describe_identifier(identifier))
        return model, identifier, syntax

    async def _fail(
        self,
        assoc: Any,
        event: dimse.MessageReceived,
        response_class: type[dimse.Response],
        exc: QueryError,
    ) -> None:
        message = event.message
        assert isinstance(message, dimse.Request)
        self.log.warning("%s: status 0x%04X: %s", cli.message_name(message), exc.status, exc)
        await assoc.send(
            failure_response(message, response_class, exc), context_id=event.context_id
        )

    async def _wait(self) -> None:
        if self.delay:
            await self.runtime.sleep(self.delay)

    async def _cancelled(self, assoc: Any, request: dimse.Request) -> bool:
        """Whether a C-CANCEL for ``request`` has arrived (looks, never waits)."""
        while True:
            event = await self.runtime.poll(assoc)
            if event is None:
                return False
            if isinstance(event, dimse.MessageReceived) and isinstance(
                event.message, dimse.CCancelRequest
            ):
                if event.message.message_id_being_responded_to == request.message_id:
                    self.log.info("C-CANCEL received for message %d", request.message_id)
                    return True
                continue
            what = (
                cli.message_name(event.message)
                if isinstance(event, dimse.MessageReceived)
                else type(event).__name__
            )
            raise self.runtime.aborted(f"{what} received while {cli.message_name(request)} runs")

    async def find(self, assoc: Any, event: dimse.MessageReceived, reader: Any) -> None:
        """C-FIND: a pending response per match, then Success (or Cancel)."""
        message = event.message
        assert isinstance(message, dimse.CFindRequest)
        parsed = await self._parse(assoc, event, reader, dimse.CFindResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            matches = self.archive.find(identifier, model, retrieve_ae_title=self.ae_title)
        except QueryError as exc:
            await self._fail(assoc, event, dimse.CFindResponse, exc)
            return
        self.log.info("C-FIND: %d match(es)", len(matches))
        status = SUCCESS
        for match in matches:
            await self._wait()
            if await self._cancelled(assoc, message):
                status = CANCEL
                break
            await assoc.send(
                dimse.CFindResponse(
                    message_id_being_responded_to=message.message_id,
                    affected_sop_class_uid=message.affected_sop_class_uid,
                    status=PENDING,
                ),
                context_id=event.context_id,
                dataset=encode_identifier(match, syntax),
            )
        await assoc.send(
            dimse.CFindResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                status=status,
            ),
            context_id=event.context_id,
        )

    async def get(self, assoc: Any, event: dimse.MessageReceived, reader: Any) -> None:
        """C-GET: C-STORE each match back on this association (PS3.4 C.4.3.3)."""
        message = event.message
        assert isinstance(message, dimse.CGetRequest)
        parsed = await self._parse(assoc, event, reader, dimse.CGetResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        try:
            instances = self.archive.retrieve(identifier, model)
        except QueryError as exc:
            await self._fail(assoc, event, dimse.CGetResponse, exc)
            return
        self.log.info("C-GET: %d instance(s) to send", len(instances))
        ops = SubOperations(len(instances))
        cancelled = False
        for instance in instances:
            await self._wait()
            if await self._cancelled(assoc, message):
                cancelled = True
                break
            status, cancelled = await self._store_back(assoc, message, instance)
            ops.record(status, instance.sop_instance_uid)
            if cancelled:
                break
            if ops.remaining:
                await assoc.send(
                    ops.pending(dimse.CGetResponse, message), context_id=event.context_id
                )
        await self._send_final(assoc, event, ops, dimse.CGetResponse, syntax, cancelled)

    async def _send_final(
        self,
        assoc: Any,
        event: dimse.MessageReceived,
        ops: SubOperations,
        response_class: type[dimse.Response],
        syntax: str,
        cancelled: bool,
    ) -> None:
        message = event.message
        assert isinstance(message, dimse.Request)
        response, failed = ops.final(response_class, message, cancelled=cancelled)
        self.log.info(
            "%s final: status %s (%s)",
            cli.message_name(response),
            status_text(response.status),
            counters_text(response),
        )
        await assoc.send(
            response,
            context_id=event.context_id,
            dataset=encode_identifier(failed, syntax) if failed is not None else None,
        )

    async def _store_back(
        self, assoc: Any, get: dimse.CGetRequest, instance: Instance
    ) -> tuple[int | None, bool]:
        """One C-STORE sub-operation of a C-GET: (its status or None, whether cancelled)."""
        found = storage_context(assoc.session.contexts, instance, acceptor=True)
        if found is None:
            self.log.warning(
                "no context with the SCP role for the requestor to send %s (%s) on",
                instance.sop_instance_uid,
                cli.UID_NAMES.get(instance.sop_class_uid, instance.sop_class_uid),
            )
            return None, False
        context_id, syntax = found
        store = dimse.CStoreRequest(
            message_id=assoc.session.next_message_id(),
            affected_sop_class_uid=instance.sop_class_uid,
            affected_sop_instance_uid=instance.sop_instance_uid,
            priority=get.priority,
        )
        if not await self._send_instance(assoc, store, context_id, instance, syntax):
            return None, False
        cancelled = False
        while True:
            event = await assoc.receive_message()
            message = event.message
            if isinstance(message, dimse.CCancelRequest):
                cancelled |= message.message_id_being_responded_to == get.message_id
                continue
            if (
                isinstance(message, dimse.CStoreResponse)
                and message.message_id_being_responded_to == store.message_id
            ):
                return message.status, cancelled
            raise self.runtime.aborted(
                f"{cli.message_name(message)} received instead of a C-STORE-RSP"
            )

    async def _send_instance(
        self,
        assoc: Any,
        store: dimse.CStoreRequest,
        context_id: int,
        instance: Instance,
        syntax: str,
    ) -> bool:
        """Send a C-STORE-RQ and the instance's data set; False if the file cannot be read."""
        try:
            if syntax == instance.transfer_syntax and instance.file.length > STREAM_CHUNK:
                with open(instance.file.path, "rb") as fp:
                    await assoc.send(store, context_id=context_id, dataset_follows=True)
                    await assoc.send_dataset_stream(
                        context_id,
                        storage.read_chunks(fp, instance.file, STREAM_CHUNK),
                        instance.file.length,
                    )
                return True
            data = instance_data(instance, syntax)
        except (OSError, ValueError, QueryError) as exc:
            if isinstance(exc, (TimeoutError, ConnectionError)):
                raise
            self.log.error("cannot read %s: %s", instance.file.path, exc)
            return False
        await assoc.send(store, context_id=context_id, dataset=data)
        return True

    async def move(self, assoc: Any, event: dimse.MessageReceived, reader: Any) -> None:
        """C-MOVE: C-STORE each match to the destination over a sub-association (C.4.2.3)."""
        message = event.message
        assert isinstance(message, dimse.CMoveRequest)
        parsed = await self._parse(assoc, event, reader, dimse.CMoveResponse)
        if parsed is None:
            return
        model, identifier, syntax = parsed
        address = self.destinations.get(message.move_destination)
        try:
            if address is None:
                raise QueryError(
                    MOVE_DESTINATION_UNKNOWN,
                    f"unknown move destination {message.move_destination!r}",
                )
            instances = self.archive.retrieve(identifier, model)
        except QueryError as exc:
            await self._fail(assoc, event, dimse.CMoveResponse, exc)
            return
        self.log.info(
            "C-MOVE: %d instance(s) to %s at %s:%d",
            len(instances),
            message.move_destination,
            *address,
        )
        originator = peer_ae_title(assoc.connection) or ""
        ops = SubOperations(len(instances))
        cancelled = False
        for contexts, batch in move_batches(instances):
            cancelled = await self._move_batch(
                assoc, event, message, address, contexts, batch, ops, originator
            )
            if cancelled:
                break
        await self._send_final(assoc, event, ops, dimse.CMoveResponse, syntax, cancelled)

    async def _move_batch(
        self,
        assoc: Any,
        event: dimse.MessageReceived,
        move: dimse.CMoveRequest,
        address: tuple[str, int],
        contexts: tuple[dul.PresentationContext, ...],
        batch: list[Instance],
        ops: SubOperations,
        originator: str,
    ) -> bool:
        """The sub-association for one batch of instances; True if cancelled."""
        request = dul.AssociateRequest(
            called_ae_title=move.move_destination,
            calling_ae_title=self.ae_title,
            presentation_contexts=contexts,
            user_information=dul.UserInformation(maximum_length=self.max_pdu),
        )
        try:
            sub = await self.runtime.association.request(
                *address,
                request,
                timeouts=self.timeouts,
                on_event=cli.Tracer(self.log, "MOVE-SCU"),
            )
        except self._errors as exc:
            self.log.error("no association with %s: %s", move.move_destination, exc)
            for instance in batch:
                ops.record(None, instance.sop_instance_uid)
            return False
        cancelled = False
        try:
            for n, instance in enumerate(batch):
                await self._wait()
                if await self._cancelled(assoc, move):
                    cancelled = True
                    break
                try:
                    status = await self._move_one(sub, move, instance, originator)
                except self._errors as exc:
                    self.log.error("the association with %s broke: %s", move.move_destination, exc)
                    await sub.abort()
                    for lost in batch[n:]:
                        ops.record(None, lost.sop_instance_uid)
                    break
                ops.record(status, instance.sop_instance_uid)
                if ops.remaining:
                    await assoc.send(
                        ops.pending(dimse.CMoveResponse, move), context_id=event.context_id
                    )
        except BaseException:  # the originating association broke: drop the sub-association
            await sub.abort()
            raise
        if sub.connection.state is dul.State.ESTABLISHED:
            try:
                await sub.release()
            except self._errors:
                await sub.abort()
        return cancelled

    async def _move_one(
        self, sub: Any, move: dimse.CMoveRequest, instance: Instance, originator: str
    ) -> int | None:
        found = storage_context(sub.session.contexts, instance, acceptor=False)
        if found is None:
            self.log.warning(
                "the destination accepted no context for %s", instance.sop_instance_uid
            )
            return None
        context_id, syntax = found
        store = dimse.CStoreRequest(
            message_id=sub.session.next_message_id(),
            affected_sop_class_uid=instance.sop_class_uid,
            affected_sop_instance_uid=instance.sop_instance_uid,
            priority=move.priority,
            move_originator_aet=originator or None,
            move_originator_message_id=move.message_id if originator else None,
        )
        if not await self._send_instance(sub, store, context_id, instance, syntax):
            return None
        response, _ = await sub.receive_response()
        return int(response.status)


def qrscp_setup(
    args: argparse.Namespace, log: logging.Logger
) -> tuple[Archive, dict[str, tuple[str, int]], dimse.AcceptorPolicy]:
    """What qrscp serves, on any driver: the archive, the move destinations, the policy."""
    if not Path(args.directory).is_dir():
        raise ToolError(ExitCode.USAGE, f"{args.directory} is not a folder")
    archive = Archive.from_directory(args.directory, log)
    log.info("serving %d instance(s) from %s", len(archive), args.directory)
    destinations = parse_destinations(args.move)
    policy = qrscp_policy(
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
        archive=archive,
    )
    return archive, destinations, policy


def on_close_logger(log: logging.Logger) -> Callable[[Any], None]:
    """A server's ``on_close``: logs how each association ended (any driver)."""

    def on_close(assoc: Any) -> None:
        request = assoc.connection.request
        who = f"from {request.calling_ae_title!r}" if request is not None else "(no request)"
        if assoc.closed is not None:
            cause = assoc.closed.cause.value
        elif assoc.connection.state is dul.State.AWAITING_TRANSPORT_CLOSE:
            cause = "aborted locally"
        else:
            cause = f"closed in {assoc.connection.state.label}"
        log.info("association %s ended: %s", who, cause)

    return on_close
