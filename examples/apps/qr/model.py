"""Query/Retrieve facts: the SOP classes, levels, information models and statuses (PS3.4 C),
which level an attribute belongs to, and attribute values read without pydicom's conversion."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

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
