"""Query/Retrieve (PS3.4 Annex C), written once for every driver: findscu, getscu, movescu
(:mod:`~.scu`) and qrscp (:mod:`~.scp`) as services, over the archive and matching
(:mod:`~.archive`), the facts of the service class (:mod:`~.model`), identifiers on the wire and
sub-operations (:mod:`~.wire`) and what they share (:mod:`~.common`). Needs pydicom.
"""

from .archive import Archive, Entity, Instance, match_key, query_level, response_identifier
from .common import build_identifier, counters_text, parse_key
from .model import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXIT_INTERRUPTED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_GET,
    Key,
    Level,
    Model,
    QueryError,
    element_values,
    query_keys,
)
from .samples import write_sample_archive
from .wire import (
    TRANSCODABLE,
    SubOperations,
    decode_identifier,
    encode_identifier,
    qrscp_policy,
    transcode,
)

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXIT_INTERRUPTED",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "PATIENT_ROOT_GET",
    "TRANSCODABLE",
    "Archive",
    "Entity",
    "Instance",
    "Key",
    "Level",
    "Model",
    "QueryError",
    "SubOperations",
    "build_identifier",
    "counters_text",
    "decode_identifier",
    "element_values",
    "encode_identifier",
    "match_key",
    "parse_key",
    "qrscp_policy",
    "query_keys",
    "query_level",
    "response_identifier",
    "transcode",
    "write_sample_archive",
]
