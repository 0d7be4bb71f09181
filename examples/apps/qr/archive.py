"""The archive qrscp serves and C-FIND matching (PS3.4 C.2.2.2).

:class:`Archive` indexes a folder of DICOM files (read with pydicom, pixel data left on disk) as
patients, studies, series and images, for the Patient Root and Study Root models (C.6.1, C.6.2);
:meth:`Archive.find` answers a query identifier with one response identifier per match,
:meth:`Archive.retrieve` lists the instances a C-GET or C-MOVE identifier names. Matching:
universal, single value, wildcard, range, list of UIDs, empty value."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from examples.apps import storage
from examples.apps.common import ExitCode, ToolError

from .model import (
    _INSTANCE_AVAILABILITY,
    _QR_LEVEL,
    _RETRIEVE_AE_TITLE,
    _SPECIFIC_CHARACTER_SET,
    _TIMEZONE_OFFSET,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    UNIQUE_KEYS,
    Key,
    Level,
    Model,
    QueryError,
    attribute_level,
    element_values,
    element_vr,
    make_element,
    query_keys,
)

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
