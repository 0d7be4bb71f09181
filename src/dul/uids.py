"""UIDs by name and kind (PS3.6 Annex A), and which SOP classes are storage SOP classes.

The table is generated from pydicom's UID dictionary by ``scripts/make_uids.py`` and checked in
(``dul._uid_table``), so dul needs no pydicom at run time; a test compares it with the installed
pydicom. Storage SOP classes (PS3.4 Annex B and the services that C-STORE composite instances)
include the retired ones: an SCP still receives them from old modalities.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ._uid_table import PYDICOM_VERSION as _PYDICOM_VERSION
from ._uid_table import STORAGE, UIDS

__all__ = [
    "PYDICOM_VERSION",
    "RETIRED_UIDS",
    "SOP_CLASSES",
    "STORAGE_SOP_CLASSES",
    "TRANSFER_SYNTAXES",
    "UID_KEYWORDS",
    "UID_KINDS",
    "UID_NAMES",
    "uid_for_keyword",
    "uid_name",
]

#: The pydicom release the table was generated from (``scripts/make_uids.py``).
PYDICOM_VERSION: str = _PYDICOM_VERSION
#: UID → name, as PS3.6 Annex A spells it ("CT Image Storage", "Explicit VR Little Endian").
UID_NAMES: Mapping[str, str] = MappingProxyType(
    {uid: entry[0] for uid, entry in UIDS.items() if entry[0]}
)
#: UID → keyword, pydicom's and PS3.6's ("CTImageStorage", "ExplicitVRLittleEndian").
UID_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {uid: entry[1] for uid, entry in UIDS.items() if entry[1]}
)
#: UID → kind: "SOP Class", "Transfer Syntax", "Well-known SOP Instance", "Meta SOP Class", …
UID_KINDS: Mapping[str, str] = MappingProxyType({uid: entry[2] for uid, entry in UIDS.items()})
#: The UIDs PS3.6 lists as retired (still met in old files and devices).
RETIRED_UIDS: frozenset[str] = frozenset(uid for uid, entry in UIDS.items() if entry[3])
#: Every SOP class (kind "SOP Class"; meta SOP classes are in :data:`UID_KINDS`).
SOP_CLASSES: frozenset[str] = frozenset(
    uid for uid, entry in UIDS.items() if entry[2] == "SOP Class"
)
#: Every storage SOP class, retired ones included (the rule: ``scripts/make_uids.py``).
STORAGE_SOP_CLASSES: frozenset[str] = frozenset(STORAGE)
#: Every transfer syntax PS3.6 defines, retired ones included.
TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    uid for uid, entry in UIDS.items() if entry[2] == "Transfer Syntax"
)

_BY_KEYWORD = {keyword: uid for uid, keyword in UID_KEYWORDS.items()}


def uid_name(uid: str) -> str:
    """The name of ``uid`` (PS3.6 Annex A), or ``uid`` itself when the table does not know it."""
    return UID_NAMES.get(str(uid).rstrip("\0 "), uid)


def uid_for_keyword(keyword: str) -> str:
    """The UID whose keyword is ``keyword`` (``"CTImageStorage"``); KeyError if there is none."""
    return _BY_KEYWORD[keyword]
