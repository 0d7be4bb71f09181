"""Hypothesis strategies for every PDU and item of dul, for property-based tests.

Every strategy draws valid values only: what ``dul.encode(event, strict=True)`` accepts and what
decodes back to an equal event. Items of types dul does not know (:class:`~dul.UnknownItem`) are
drawn now and then, since PS3.8 §9.3.1 says a receiver skips them.

hypothesis is not a dependency of dul: import this module only where hypothesis is installed::

    from hypothesis import given
    from dul.testing import pdus

    @given(pdus())
    def test_round_trip(pdu): ...
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ._codes import AbortReason, AbortSource, ContextResult, ItemType, UserIdentityType
from ._events import (
    DICOM_APPLICATION_CONTEXT,
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    PData,
    PresentationContext,
    PresentationContextAC,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownItem,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
)

__all__ = [
    "PDU",
    "WELL_KNOWN_UIDS",
    "aborts",
    "ae_titles",
    "associate_accepts",
    "associate_rejects",
    "associate_requests",
    "async_ops_windows",
    "common_extended_negotiations",
    "context_ids",
    "extended_negotiations",
    "implementation_version_names",
    "maximum_lengths",
    "pdata",
    "pdus",
    "presentation_contexts",
    "presentation_contexts_ac",
    "presentation_data_values",
    "release_requests",
    "release_responses",
    "role_selections",
    "uids",
    "unknown_items",
    "user_identities",
    "user_identities_ac",
    "user_information",
]

#: Some UIDs real associations carry: SOP classes, transfer syntaxes, implementation class UIDs.
WELL_KNOWN_UIDS = (
    DICOM_APPLICATION_CONTEXT,
    "1.2.840.10008.1.1",  # Verification
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.2.2.1",  # Study Root Query/Retrieve - FIND
    "1.2.276.0.7230010.3.0.3.6.7",  # DCMTK 3.6.7
    "2.25.139105748215652040362284877616680975942",
)

_UID_MAX = 64
# Printable ASCII without the backslash (PS3.5 Table 6.2-1, AE: "Default Character Repertoire
# excluding character code 5CH ... and all control characters").
_AE_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x5C)
_UNKNOWN_ITEM_TYPES = tuple(t for t in range(256) if t not in set(ItemType))
_DEFINED_REJECT_REASONS = (1, 2, 3, 7)
_PROVIDER_ABORT_REASONS = tuple(int(r) for r in AbortReason)

#: What :func:`pdus` draws: the events that ``encode`` turns into each of the seven PDUs.
PDU = (
    AssociateRequest
    | AssociateAccept
    | AssociateReject
    | PData
    | ReleaseRequest
    | ReleaseResponse
    | Abort
)

_bytes16 = st.integers(min_value=0, max_value=0xFFFF)


@st.composite
def _built_uids(draw: st.DrawFn) -> str:
    """Digits and dots, no leading zero in a component (PS3.5 §9.1), at most 64 characters."""
    # Few draws per UID (each draw costs): a root of one to three short components, then big
    # numbers until the 64 characters are reached or the count runs out.
    root = draw(st.lists(st.integers(0, 999), min_size=1, max_size=3))
    tail = draw(st.lists(st.integers(0, 10**24), max_size=4))
    uid = ".".join(map(str, root))
    for component in map(str, tail):
        if len(uid) + 1 + len(component) > _UID_MAX:
            break
        uid += "." + component
    return uid


def uids() -> st.SearchStrategy[str]:
    """A UID: digits and dots, components without leading zeros (PS3.5 §9.1), 1 to 64 chars."""
    return st.one_of(st.sampled_from(WELL_KNOWN_UIDS), _built_uids())


def ae_titles() -> st.SearchStrategy[str]:
    """An AE title as a user composes it: 1 to 16 printable ASCII characters, no backslash.

    Spaces may occur inside, never leading or trailing (they are padding on the wire, PS3.8
    §9.3.2).
    """
    return st.text(alphabet=_AE_ALPHABET, min_size=1, max_size=16).filter(
        lambda title: title.strip(" ") == title
    )


def context_ids() -> st.SearchStrategy[int]:
    """A presentation context ID: odd, 1 to 255 (PS3.8 §9.3.2.2)."""
    return st.integers(min_value=0, max_value=127).map(lambda n: 2 * n + 1)


def presentation_contexts(
    context_id: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[PresentationContext]:
    """A presentation context as proposed (item 20H): one abstract, 1 to 3 transfer syntaxes."""
    return st.builds(
        PresentationContext,
        context_id=context_ids() if context_id is None else context_id,
        abstract_syntax=uids(),
        transfer_syntaxes=st.lists(uids(), min_size=1, max_size=3).map(tuple),
    )


@st.composite
def _context_ac(draw: st.DrawFn, context_id: st.SearchStrategy[int]) -> PresentationContextAC:
    result = draw(st.sampled_from([int(r) for r in ContextResult]))
    if result == ContextResult.ACCEPTANCE:
        transfer = draw(uids())
    else:  # not significant when rejected (PS3.8 §9.3.3.2): empty or a UID
        transfer = draw(st.one_of(st.just(""), uids()))
    return PresentationContextAC(
        context_id=draw(context_id), result=result, transfer_syntax=transfer
    )


def presentation_contexts_ac(
    context_id: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[PresentationContextAC]:
    """A presentation context as answered (item 21H): a result 0-4 and, if accepted, a syntax."""
    return _context_ac(context_ids() if context_id is None else context_id)


def maximum_lengths() -> st.SearchStrategy[int]:
    """A maximum length (51H, PS3.8 Annex D.1): any 32-bit value, 0 meaning unlimited."""
    return st.one_of(
        st.sampled_from([0, 4096, 16382, 16384, 262_144]),
        st.integers(min_value=0, max_value=0xFFFF_FFFF),
    )


def implementation_version_names() -> st.SearchStrategy[str]:
    """An implementation version name (55H, PS3.7 D.3.3.2.2): 1 to 16 characters.

    Printable ASCII without backslash, as an AE title; no leading or trailing space (a receiver
    strips them, so strict encoding refuses them).
    """
    return st.text(alphabet=_AE_ALPHABET, min_size=1, max_size=16).filter(
        lambda name: name.strip(" ") == name
    )


def async_ops_windows() -> st.SearchStrategy[AsyncOpsWindow]:
    """An asynchronous operations window (53H, PS3.7 D.3.3.3); 0 means unlimited."""
    return st.builds(AsyncOpsWindow, invoked=_bytes16, performed=_bytes16)


def role_selections() -> st.SearchStrategy[RoleSelection]:
    """An SCP/SCU role selection (54H, PS3.7 D.3.3.4)."""
    return st.builds(
        RoleSelection, sop_class_uid=uids(), scu_role=st.booleans(), scp_role=st.booleans()
    )


def extended_negotiations() -> st.SearchStrategy[SOPClassExtendedNegotiation]:
    """An SOP class extended negotiation (56H, PS3.7 D.3.3.5) with opaque service bytes."""
    return st.builds(
        SOPClassExtendedNegotiation,
        sop_class_uid=uids(),
        application_information=st.binary(max_size=32),
    )


def common_extended_negotiations() -> st.SearchStrategy[SOPClassCommonExtendedNegotiation]:
    """An SOP class common extended negotiation (57H, PS3.7 D.3.3.6); A-ASSOCIATE-RQ only."""
    return st.builds(
        SOPClassCommonExtendedNegotiation,
        sop_class_uid=uids(),
        service_class_uid=uids(),
        related_general_sop_classes=st.lists(uids(), max_size=3).map(tuple),
    )


def user_identities() -> st.SearchStrategy[UserIdentity]:
    """A user identity negotiation as requested (58H, PS3.7 D.3.3.7): non-empty primary field."""
    return st.builds(
        UserIdentity,
        identity_type=st.one_of(
            st.sampled_from([int(t) for t in UserIdentityType]), st.integers(1, 255)
        ),
        primary=st.binary(min_size=1, max_size=64),
        secondary=st.binary(max_size=32),
        positive_response_requested=st.booleans(),
    )


def user_identities_ac() -> st.SearchStrategy[UserIdentityAC]:
    """A user identity server response (59H, PS3.7 D.3.3.7)."""
    return st.builds(UserIdentityAC, server_response=st.binary(max_size=64))


def unknown_items() -> st.SearchStrategy[UnknownItem]:
    """An item of a type that is not in :class:`~dul.ItemType` (skipped and kept, PS3.8 §9.3.1)."""
    return st.builds(
        UnknownItem,
        item_type=st.sampled_from(_UNKNOWN_ITEM_TYPES),
        data=st.binary(max_size=32),
    )


def _sometimes(
    strategy: st.SearchStrategy[UnknownItem],
) -> st.SearchStrategy[tuple[UnknownItem, ...]]:
    """Mostly no unknown items; now and then one or two."""
    return st.one_of(st.just(()), st.lists(strategy, min_size=1, max_size=2).map(tuple))


def user_information(for_request: bool = True) -> st.SearchStrategy[UserInformation]:
    """A user information item (50H, PS3.8 Annex D; PS3.7 Annex D.3.3).

    The maximum length and implementation class UID are always there (mandatory); the other
    sub-items come and go. ``for_request`` picks the sub-items of an A-ASSOCIATE-RQ (user identity
    58H, common extended negotiation) or of an A-ASSOCIATE-AC (user identity 59H).
    """
    if for_request:
        identity: st.SearchStrategy[UserIdentity | UserIdentityAC | None] = (
            st.none() | user_identities()
        )
        common = st.lists(
            common_extended_negotiations(), max_size=2, unique_by=lambda c: c.sop_class_uid
        )
    else:
        identity = st.none() | user_identities_ac()
        common = st.just([])
    return st.builds(
        UserInformation,
        maximum_length=maximum_lengths(),
        implementation_class_uid=uids(),
        implementation_version_name=st.none() | implementation_version_names(),
        async_ops_window=st.none() | async_ops_windows(),
        role_selections=st.lists(
            role_selections(), max_size=2, unique_by=lambda r: r.sop_class_uid
        ).map(tuple),
        extended_negotiations=st.lists(
            extended_negotiations(), max_size=2, unique_by=lambda e: e.sop_class_uid
        ).map(tuple),
        common_extended_negotiations=common.map(tuple),
        user_identity=identity,
        unknown_items=_sometimes(unknown_items()),
    )


def _protocol_versions() -> st.SearchStrategy[int]:
    """Mostly 1; sometimes another 16-bit value with bit 0 set (only bit 0 is tested, §9.3.2)."""
    return st.one_of(st.just(1), _bytes16.map(lambda v: v | 1))


def _application_context_names() -> st.SearchStrategy[str]:
    return st.one_of(st.just(DICOM_APPLICATION_CONTEXT), uids())


def associate_requests() -> st.SearchStrategy[AssociateRequest]:
    """An A-ASSOCIATE-RQ (01H): 1 to 6 presentation contexts with unique IDs."""
    return st.builds(
        AssociateRequest,
        called_ae_title=ae_titles(),
        calling_ae_title=ae_titles(),
        presentation_contexts=st.lists(
            presentation_contexts(), min_size=1, max_size=6, unique_by=lambda c: c.context_id
        ).map(tuple),
        user_information=user_information(for_request=True),
        application_context_name=_application_context_names(),
        protocol_version=_protocol_versions(),
        unknown_items=_sometimes(unknown_items()),
    )


def associate_accepts() -> st.SearchStrategy[AssociateAccept]:
    """An A-ASSOCIATE-AC (02H): 1 to 6 answered presentation contexts with unique IDs."""
    return st.builds(
        AssociateAccept,
        called_ae_title=ae_titles(),
        calling_ae_title=ae_titles(),
        presentation_contexts=st.lists(
            presentation_contexts_ac(), min_size=1, max_size=6, unique_by=lambda c: c.context_id
        ).map(tuple),
        user_information=user_information(for_request=False),
        application_context_name=_application_context_names(),
        protocol_version=_protocol_versions(),
        unknown_items=_sometimes(unknown_items()),
    )


def associate_rejects() -> st.SearchStrategy[AssociateReject]:
    """An A-ASSOCIATE-RJ (03H): result 1-2, source 1-3, any reason byte (PS3.8 Table 9-21)."""
    return st.builds(
        AssociateReject,
        result=st.sampled_from([1, 2]),
        source=st.sampled_from([1, 2, 3]),
        reason=st.one_of(st.sampled_from(_DEFINED_REJECT_REASONS), st.integers(0, 255)),
    )


def presentation_data_values() -> st.SearchStrategy[PresentationDataValue]:
    """One PDV with at least one byte of data (PS3.8 Annex E.1)."""
    return st.builds(
        PresentationDataValue,
        context_id=context_ids(),
        is_command=st.booleans(),
        is_last=st.booleans(),
        data=st.binary(min_size=1, max_size=256),
    )


@st.composite
def _one_message_pdvs(draw: st.DrawFn) -> tuple[PresentationDataValue, ...]:
    """A fragment of a command, of a data set, or a command's last one and a data set's: the
    PDVs of one P-DATA-TF carry one message (PS3.8 Annex E.1)."""
    first = draw(presentation_data_values())
    if not (first.is_command and first.is_last and draw(st.booleans())):
        return (first,)
    second = PresentationDataValue(
        context_id=first.context_id,
        is_command=False,
        is_last=draw(st.booleans()),
        data=draw(st.binary(min_size=1, max_size=256)),
    )
    return (first, second)


def pdata() -> st.SearchStrategy[PData]:
    """A P-DATA-TF (04H) to send: one PDV, or a command's last and a data set fragment.
    Decoded, it comes back as ``PDataReceived``, the same PDVs."""
    return st.builds(PData, values=_one_message_pdvs())


def release_requests() -> st.SearchStrategy[ReleaseRequest]:
    """An A-RELEASE-RQ (05H): it has no fields."""
    return st.just(ReleaseRequest())


def release_responses() -> st.SearchStrategy[ReleaseResponse]:
    """An A-RELEASE-RP (06H): it has no fields."""
    return st.just(ReleaseResponse())


def aborts() -> st.SearchStrategy[Abort]:
    """An A-ABORT (07H): a user abort with any reason byte, or a provider abort with a defined
    reason (PS3.8 Table 9-26).
    """
    return st.one_of(
        st.builds(Abort, source=st.just(int(AbortSource.SERVICE_USER)), reason=st.integers(0, 255)),
        st.builds(
            Abort,
            source=st.just(int(AbortSource.SERVICE_PROVIDER)),
            reason=st.sampled_from(_PROVIDER_ABORT_REASONS),
        ),
    )


def pdus() -> st.SearchStrategy[PDU]:
    """Any one of the seven PDUs."""
    return st.one_of(
        associate_requests(),
        associate_accepts(),
        associate_rejects(),
        pdata(),
        release_requests(),
        release_responses(),
        aborts(),
    )


# =============================================================================================
# DIMSE messages (PS3.7 §9.3, §10.3): strategies for dul.dimse.
# This section is kept with the DIMSE tests (tests/test_dimse_*.py); the PDU strategies above
# are not touched by it.
# =============================================================================================

import attrs as _attrs  # noqa: E402 - this section's own imports, kept with it

from . import dimse as _dimse  # noqa: E402

__all__ += [
    "DIMSE_MESSAGE_CLASSES",
    "DIMSE_STATUSES",
    "command_tags",
    "dimse_messages",
    "dimse_statuses",
    "lo_texts",
    "unknown_command_elements",
]

#: Every DIMSE-C and DIMSE-N message class, requests and responses (PS3.7 §9.3, §10.3).
DIMSE_MESSAGE_CLASSES: tuple[type[_dimse.Message], ...] = (
    _dimse.CStoreRequest,
    _dimse.CStoreResponse,
    _dimse.CFindRequest,
    _dimse.CFindResponse,
    _dimse.CGetRequest,
    _dimse.CGetResponse,
    _dimse.CMoveRequest,
    _dimse.CMoveResponse,
    _dimse.CEchoRequest,
    _dimse.CEchoResponse,
    _dimse.CCancelRequest,
    _dimse.NEventReportRequest,
    _dimse.NEventReportResponse,
    _dimse.NGetRequest,
    _dimse.NGetResponse,
    _dimse.NSetRequest,
    _dimse.NSetResponse,
    _dimse.NActionRequest,
    _dimse.NActionResponse,
    _dimse.NCreateRequest,
    _dimse.NCreateResponse,
    _dimse.NDeleteRequest,
    _dimse.NDeleteResponse,
)

#: Status codes of PS3.7 Annex C and the service classes of PS3.4, one or two of each kind.
DIMSE_STATUSES = (
    0x0000,  # success
    0x0001,  # warning: requested optional attributes are not supported
    0x0107,  # warning: attribute list error
    0x0116,  # warning: attribute value out of range
    0xB000,  # warning: coercion of data elements (C-STORE), sub-operations complete (C-MOVE)
    0x0110,  # failure: processing failure
    0x0122,  # failure: SOP class not supported
    0x0211,  # failure: unrecognized operation
    0xA700,  # failure: out of resources
    0xA801,  # failure: move destination unknown
    0xC000,  # failure: unable to process
    0xFE00,  # cancel
    0xFF00,  # pending
    0xFF01,  # pending: optional keys not supported
)
_PENDING = (0xFF00, 0xFF01)


def dimse_statuses() -> st.SearchStrategy[int]:
    """A DIMSE status: a defined code now and then, otherwise any 16-bit value."""
    return st.one_of(st.sampled_from(DIMSE_STATUSES), _bytes16)


def lo_texts() -> st.SearchStrategy[str]:
    """An LO value (Error Comment): up to 64 printable ASCII characters, no backslash.

    No trailing space: it is padding on the wire (PS3.5 §6.2), stripped when read.
    """
    return st.text(alphabet=_AE_ALPHABET, max_size=64).filter(lambda t: t.rstrip(" ") == t)


def command_tags() -> st.SearchStrategy[tuple[tuple[int, int], ...]]:
    """An AT value (Offending Element, Attribute Identifier List): 0 to 4 (group, element)."""
    return st.lists(st.tuples(_bytes16, _bytes16), max_size=4).map(tuple)


def unknown_command_elements() -> st.SearchStrategy[tuple[tuple[int, bytes], ...]]:
    """Elements of group 0000 that no message class defines, raw, in ascending order.

    Values have an even length, as every DICOM value (PS3.5 §7.1.1).
    """
    element = st.integers(min_value=1, max_value=0xFFFF).filter(lambda e: e not in _dimse.ELEMENTS)
    value = st.binary(max_size=16).map(lambda b: b + b"\0" * (len(b) % 2))
    return st.lists(st.tuples(element, value), max_size=3, unique_by=lambda e: e[0]).map(
        lambda items: tuple(sorted(items))
    )


#: A strategy for each message field, by attribute name.
_DIMSE_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "affected_sop_class_uid": uids(),
    "requested_sop_class_uid": uids(),
    "affected_sop_instance_uid": uids(),
    "requested_sop_instance_uid": uids(),
    "message_id": _bytes16,
    "message_id_being_responded_to": _bytes16,
    "move_destination": ae_titles(),
    "priority": st.sampled_from([0, 1, 2]),
    "status": dimse_statuses(),
    "offending_element": command_tags(),
    "error_comment": lo_texts(),
    "error_id": _bytes16,
    "event_type_id": _bytes16,
    "attribute_identifier_list": command_tags(),
    "action_type_id": _bytes16,
    "remaining_suboperations": _bytes16,
    "completed_suboperations": _bytes16,
    "failed_suboperations": _bytes16,
    "warning_suboperations": _bytes16,
    "move_originator_aet": ae_titles(),
    "move_originator_message_id": _bytes16,
}


@st.composite
def _dimse_message(draw: st.DrawFn, cls: type[_dimse.Message]) -> tuple[_dimse.Message, bool]:
    values: dict[str, object] = {}
    for attribute in _attrs.fields(cls):
        if attribute.name in ("unknown_elements", "foreign_elements"):
            continue
        strategy = _DIMSE_FIELDS[attribute.name]
        if attribute.default is not _attrs.NOTHING and "None" in str(attribute.type):
            strategy = st.none() | strategy
        values[attribute.name] = draw(strategy)
    # The conditional rules encode_message enforces: the move originator is a pair (PS3.7
    # 9.3.1.1); a Pending C-GET/C-MOVE response counts the remaining sub-operations (9.3.3.2).
    if "move_originator_aet" in values and values["move_originator_aet"] is None:
        values["move_originator_message_id"] = None
    if "move_originator_message_id" in values and values["move_originator_message_id"] is None:
        values["move_originator_aet"] = None
    if (
        "remaining_suboperations" in values
        and values["status"] in _PENDING
        and values["remaining_suboperations"] is None
    ):
        values["remaining_suboperations"] = draw(_bytes16)
    message = cls(unknown_elements=draw(unknown_command_elements()), foreign_elements=(), **values)
    if cls.DATASET is _dimse.DatasetPresence.OPTIONAL:
        return message, draw(st.booleans())
    return message, cls.DATASET is _dimse.DatasetPresence.REQUIRED


def dimse_messages(
    *classes: type[_dimse.Message],
) -> st.SearchStrategy[tuple[_dimse.Message, bool]]:
    """A DIMSE message of one of ``classes`` (all of them by default) and whether a data set
    goes with it, following the presence rules of PS3.7 §9.3 and §10.3.

    Every field is drawn, optional ones now and then absent; unknown elements come along, as
    a receiver keeps them.
    """
    return st.one_of([_dimse_message(cls) for cls in classes or DIMSE_MESSAGE_CLASSES])


# -- mutated streams: for fuzzing dul, or another stack -----------------------------------------

from ._layers import (  # noqa: E402 - re-exported: dul.testing is the public face of dul._layers
    Layer,
    mutate_command_set,
    mutate_commands,
    mutate_datasets,
    mutate_items,
    mutate_layer,
)
from ._mutate import RECEIVING_SCENARIOS as _RECEIVING_SCENARIOS  # noqa: E402
from ._mutate import (  # noqa: E402 - re-exported: dul.testing is the public face of dul._mutate
    Chunks,
    InvariantError,
    Outcome,
    Scenario,
    chunk,
    chunked,
    connection_in,
    default_accept,
    default_request,
    feed,
    length_fields,
    mutate,
    mutated_streams,
    pdu_spans,
    pdu_streams,
    random_pick,
)
from ._mutate import Pick as _Pick  # noqa: E402
from ._streams import ASSUMED_MAXIMUM_LENGTH as _ASSUMED_MAXIMUM_LENGTH  # noqa: E402
from ._streams import DEFLATED_EXPLICIT_LE as _DEFLATED_EXPLICIT_LE  # noqa: E402
from ._streams import EXPLICIT_BE as _EXPLICIT_BE  # noqa: E402
from ._streams import EXPLICIT_LE as _EXPLICIT_LE  # noqa: E402
from ._streams import IMPLICIT_LE as _IMPLICIT_LE  # noqa: E402
from ._streams import (  # noqa: E402 - re-exported: dul.testing is the public face of dul._streams
    AssociationPlan,
    DataElement,
    PlannedMessage,
    ScriptedRequestor,
    encode_dataset,
    message_pdata,
)

# The constants, documented here where autodoc reads dul.testing's comments.
#: ``pick(lo, hi)`` returns an int in ``[lo, hi]``: where every mutation takes its choices from
#: (``random_pick(rng)``, or ``lambda lo, hi: draw(st.integers(lo, hi))`` under hypothesis).
Pick = _Pick
#: Every (role, state) in which a connection can receive bytes, as :class:`Scenario` values for
#: :func:`connection_in`: 17 of them (Sta13 three ways). Sta1 and Sta4 cannot receive.
RECEIVING_SCENARIOS = _RECEIVING_SCENARIOS
#: The peer's maximum length :meth:`AssociationPlan.stream` assumes when no answer is given:
#: 16384, DCMTK's and pynetdicom's default.
ASSUMED_MAXIMUM_LENGTH = _ASSUMED_MAXIMUM_LENGTH
#: Implicit VR Little Endian (PS3.5 §A.1): the default transfer syntax, every acceptor's.
IMPLICIT_LE = _IMPLICIT_LE
#: Explicit VR Little Endian (PS3.5 §A.2).
EXPLICIT_LE = _EXPLICIT_LE
#: Deflated Explicit VR Little Endian (PS3.5 §A.5).
DEFLATED_EXPLICIT_LE = _DEFLATED_EXPLICIT_LE
#: Explicit VR Big Endian (PS3.5 §A.3, retired; DCMTK still accepts it).
EXPLICIT_BE = _EXPLICIT_BE

__all__ += [
    "ASSUMED_MAXIMUM_LENGTH",
    "DEFLATED_EXPLICIT_LE",
    "EXPLICIT_BE",
    "EXPLICIT_LE",
    "IMPLICIT_LE",
    "RECEIVING_SCENARIOS",
    "STORAGE_SOP_CLASSES",
    "AssociationPlan",
    "Chunks",
    "DataElement",
    "InvariantError",
    "Layer",
    "Outcome",
    "Pick",
    "PlannedMessage",
    "Scenario",
    "ScriptedRequestor",
    "association_plans",
    "association_streams",
    "chunk",
    "chunked",
    "connection_in",
    "datasets",
    "default_accept",
    "default_request",
    "dimse_pdata",
    "encode_dataset",
    "feed",
    "layered_mutations",
    "length_fields",
    "message_pdata",
    "mutate",
    "mutate_command_set",
    "mutate_commands",
    "mutate_datasets",
    "mutate_items",
    "mutate_layer",
    "mutated_streams",
    "pdu_spans",
    "pdu_streams",
    "random_pick",
]


def dimse_pdata(
    *classes: type[_dimse.Message],
    context_id: st.SearchStrategy[int] | None = None,
    max_length: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[bytes]:
    """The P-DATA-TF PDUs of a message from :func:`dimse_messages` (of ``classes``), with a data
    set of drawn bytes or elements when it has one, built by :func:`message_pdata`: no
    association needed.

    ``context_id`` and ``max_length`` (the peer's maximum length: 0, or 8 and up) are drawn
    from the strategies given, by default any context ID and a few usual and unusual lengths.
    """
    ids = context_ids() if context_id is None else context_id
    lengths = (
        st.one_of(st.sampled_from([0, 4096, 16384]), st.integers(8, 1024))
        if max_length is None
        else max_length
    )
    bodies = st.one_of(
        st.binary(min_size=1, max_size=256),
        datasets().map(lambda elements: encode_dataset(elements, IMPLICIT_LE)),
    )

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        message, has_dataset = draw(dimse_messages(*classes))
        dataset = draw(bodies) if has_dataset else None
        return message_pdata(message, dataset, context_id=draw(ids), max_length=draw(lengths))

    return build()


def layered_mutations(
    streams: Sequence[bytes] | st.SearchStrategy[bytes],
    layers: Sequence[Layer] = tuple(Layer),
    max_mutations: int = 3,
) -> st.SearchStrategy[bytes]:
    """One of ``streams`` (or a stream drawn from the strategy) with 1 to ``max_mutations``
    mutations, each at a layer drawn from ``layers`` (:func:`mutate_layer`).

    With ``layers=[Layer.COMMAND]``, say, every stream still frames as PDUs and P-DATA-TF, and
    what a peer gets wrong is in its DIMSE decoder.
    """
    source = streams if isinstance(streams, st.SearchStrategy) else st.sampled_from(streams)
    which = st.sampled_from(tuple(layers))

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data, other = draw(source), draw(source)

        def pick(lo: int, hi: int) -> int:
            return draw(st.integers(lo, hi))

        for _ in range(draw(st.integers(1, max_mutations))):
            data = mutate_layer(data, draw(which), pick, other)
        return data

    return build()


# -- whole associations: for fuzzing a live peer past its association phase -------------------

#: Storage SOP classes of PS3.4 Annex B that every DCMTK storescp (3.6 and later) and pynetdicom
#: accept by default: CR, CT, MR, NM, US, Secondary Capture, XA, RF, DX, MG, PET, RT Image.
STORAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.1",
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.20",
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.12.1",
    "1.2.840.10008.5.1.4.1.1.12.2",
    "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2",
    "1.2.840.10008.5.1.4.1.1.128",
    "1.2.840.10008.5.1.4.1.1.481.1",
)

_TEXT = "".join(c for c in _AE_ALPHABET if c not in "^=")
_CS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ "


def _text(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=max_size).map(lambda t: t.strip(" "))


#: Optional attributes of a data set: (tag, VR, values), their VRs those of PS3.6.
_ATTRIBUTES: tuple[tuple[int, str, st.SearchStrategy[str | int]], ...] = (
    (0x0008_0020, "DA", st.dates().map(lambda d: d.strftime("%Y%m%d"))),  # Study Date
    (0x0008_0030, "TM", st.times().map(lambda t: t.strftime("%H%M%S"))),  # Study Time
    (0x0008_0050, "SH", _text(_TEXT, 16)),  # Accession Number
    (0x0008_0060, "CS", _text(_CS, 16)),  # Modality
    (0x0008_103E, "LO", _text(_TEXT, 64)),  # Series Description
    (0x0010_0010, "PN", st.lists(_text(_TEXT, 12), max_size=3).map("^".join)),  # Patient Name
    (0x0010_0020, "LO", _text(_TEXT, 64)),  # Patient ID
    (0x0010_0030, "DA", st.dates().map(lambda d: d.strftime("%Y%m%d"))),  # Birth Date
    (0x0010_0040, "CS", st.sampled_from(["M", "F", "O", ""])),  # Patient's Sex
    (0x0020_000D, "UI", uids()),  # Study Instance UID
    (0x0020_000E, "UI", uids()),  # Series Instance UID
    (0x0020_0011, "IS", st.integers(-99_999, 999_999).map(str)),  # Series Number
    (0x0020_0013, "IS", st.integers(0, 999_999).map(str)),  # Instance Number
    (0x0028_0010, "US", _bytes16),  # Rows
    (0x0028_0011, "US", _bytes16),  # Columns
)


def datasets(
    sop_class_uid: str | None = None, sop_instance_uid: str | None = None
) -> st.SearchStrategy[tuple[DataElement, ...]]:
    """A small, flat data set: SOP Class and SOP Instance UIDs (drawn when not given), then a
    few patient, study and series attributes with values valid for their VRs.

    Encode it with :func:`encode_dataset` in the transfer syntax a context was accepted with.
    """

    @st.composite
    def build(draw: st.DrawFn) -> tuple[DataElement, ...]:
        elements = [
            DataElement(0x0008_0016, "UI", sop_class_uid or draw(uids())),
            DataElement(0x0008_0018, "UI", sop_instance_uid or draw(uids())),
        ]
        chosen = draw(st.sets(st.integers(0, len(_ATTRIBUTES) - 1), max_size=8))
        for index in sorted(chosen):
            tag, vr, values = _ATTRIBUTES[index]
            elements.append(DataElement(tag, vr, draw(values)))
        return tuple(elements)

    return build()


def _plan_user_information() -> st.SearchStrategy[UserInformation]:
    """User information a real requestor sends: a maximum length, now and then the version
    name, an operations window of 1/1, a user identity asking for no response."""
    return st.builds(
        UserInformation,
        maximum_length=st.sampled_from([0, 4096, 16384, 65536, 1 << 20]),
        implementation_version_name=st.none() | implementation_version_names(),
        async_ops_window=st.none() | st.just(AsyncOpsWindow(invoked=1, performed=1)),
        user_identity=st.none()
        | st.builds(
            UserIdentity,
            identity_type=st.just(int(UserIdentityType.USERNAME)),
            primary=st.binary(min_size=1, max_size=16),
        ),
    )


def association_plans(
    sop_classes: Sequence[str] = STORAGE_SOP_CLASSES,
    transfer_syntaxes: Sequence[str] = (IMPLICIT_LE, EXPLICIT_LE),
    *,
    verification: bool = True,
    max_contexts: int = 6,
    max_messages: int = 6,
    syntaxes_per_context: int = 1,
) -> st.SearchStrategy[AssociationPlan]:
    """A coherent association for a live peer: an A-ASSOCIATE-RQ proposing 1 to
    ``max_contexts`` contexts (Verification, when ``verification``, and SOP classes of
    ``sop_classes``), then up to ``max_messages`` requests on them: C-ECHO on Verification,
    C-STORE with a small data set of the context's SOP class (:func:`datasets`) elsewhere.

    Each context proposes ``syntaxes_per_context`` transfer syntaxes drawn from
    ``transfer_syntaxes``. With one (the default), the bytes of
    :meth:`AssociationPlan.stream` fit any acceptor that supports the SOP classes and transfer
    syntaxes (Implicit VR Little Endian is every acceptor's, PS3.5 §10.1); with more, play the
    plan with :meth:`AssociationPlan.requestor`, which follows the peer's answer.
    """
    abstracts = ((_dimse.VERIFICATION_SOP_CLASS,) if verification else ()) + tuple(sop_classes)
    per_context = min(syntaxes_per_context, len(transfer_syntaxes))

    @st.composite
    def build(draw: st.DrawFn) -> AssociationPlan:
        ids = draw(st.lists(context_ids(), min_size=1, max_size=max_contexts, unique=True))
        contexts = tuple(
            PresentationContext(
                context_id=i,
                abstract_syntax=draw(st.sampled_from(abstracts)),
                transfer_syntaxes=tuple(
                    draw(
                        st.lists(
                            st.sampled_from(tuple(transfer_syntaxes)),
                            min_size=1,
                            max_size=per_context,
                            unique=True,
                        )
                    )
                ),
            )
            for i in ids
        )
        request = AssociateRequest(
            called_ae_title=draw(ae_titles()),
            calling_ae_title=draw(ae_titles()),
            presentation_contexts=contexts,
            user_information=draw(_plan_user_information()),
        )
        messages = []
        first_id = draw(st.integers(1, 0xFFFF - max_messages))
        for n in range(draw(st.integers(0, max_messages))):
            context = draw(st.sampled_from(contexts))
            message_id = first_id + n
            if context.abstract_syntax == _dimse.VERIFICATION_SOP_CLASS:
                messages.append(
                    PlannedMessage(context.context_id, _dimse.CEchoRequest(message_id=message_id))
                )
                continue
            instance = draw(uids())
            store = _dimse.CStoreRequest(
                message_id=message_id,
                affected_sop_class_uid=context.abstract_syntax,
                affected_sop_instance_uid=instance,
                priority=draw(st.sampled_from([0, 1, 2])),
            )
            elements = draw(datasets(context.abstract_syntax, instance))
            messages.append(PlannedMessage(context.context_id, store, elements))
        return AssociationPlan(request, tuple(messages))

    return build()


def association_streams(
    sop_classes: Sequence[str] = STORAGE_SOP_CLASSES,
    transfer_syntaxes: Sequence[str] = (IMPLICIT_LE, EXPLICIT_LE),
    *,
    max_length: int = ASSUMED_MAXIMUM_LENGTH,
) -> st.SearchStrategy[bytes]:
    """The bytes of a whole association from :func:`association_plans`, written in advance
    (:meth:`AssociationPlan.stream`): request, messages, release, for a peer that accepts
    every context and announces a maximum length of ``max_length`` or more (0: unlimited).
    """
    return association_plans(sop_classes, transfer_syntaxes).map(
        lambda plan: plan.stream(max_length=max_length)
    )
