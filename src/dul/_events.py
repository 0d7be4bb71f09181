"""The events: one class per PDU, used in both directions (PS3.8 §9.3).

What ``next_event()`` returns and what ``send()`` takes are the same classes. P-DATA is the one
exception: a received P-DATA-TF is :class:`PDataReceived`, one to send is :class:`PData` (or, more
often, ``Connection.send_data``). Every class is an attrs class: frozen, slotted, keyword-only,
with tuples for sequences.
"""

from __future__ import annotations

import enum

from attrs import field, frozen

from ._codes import AbortSource, ContextResult, RejectResult, RejectSource

__all__ = [
    "DEFAULT_MAXIMUM_LENGTH",
    "DICOM_APPLICATION_CONTEXT",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "MAX_UNKNOWN_ITEMS",
    "Abort",
    "AssociateAccept",
    "AssociateReject",
    "AssociateRequest",
    "AsyncOpsWindow",
    "CloseCause",
    "ConnectionClosed",
    "Event",
    "PData",
    "PDataReceived",
    "PresentationContext",
    "PresentationContextAC",
    "PresentationDataValue",
    "ReleaseRequest",
    "ReleaseResponse",
    "RoleSelection",
    "SOPClassCommonExtendedNegotiation",
    "SOPClassExtendedNegotiation",
    "UnknownItem",
    "UserIdentity",
    "UserIdentityAC",
    "UserInformation",
]

#: The one application context name of DICOM (PS3.7 Annex A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
#: dul's implementation class UID: a UUID-derived UID made once (PS3.5 §B.2), never regenerated.
IMPLEMENTATION_CLASS_UID = "2.25.139105748215652040362284877616680975942"
#: dul's implementation version name (PS3.7 D.3.3.2.2: at most 16 characters).
IMPLEMENTATION_VERSION_NAME = "DUL_0.1.0"
#: The maximum length dul announces unless told otherwise: what it is willing to receive.
DEFAULT_MAXIMUM_LENGTH = 262_144
#: Items of unknown type kept per received PDU or user information item; the rest are counted
#: (``unknown_items_skipped``), not kept: 1 MiB of empty ones would be 262,000 objects.
MAX_UNKNOWN_ITEMS = 32


class WireStr(str):
    """A received string whose bytes on the wire were not canonical (padding, a trailing NUL).

    It compares, hashes and prints as the normalized ``str``; ``raw`` keeps the exact bytes so
    that a non-strict encoder (a proxy) can forward them unchanged.
    """

    __slots__ = ("raw",)
    raw: bytes

    def __new__(cls, value: str, raw: bytes) -> WireStr:
        self = super().__new__(cls, value)
        self.raw = raw
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return (WireStr, (str(self), self.raw))


# -- sub-items -------------------------------------------------------------------------------


@frozen(kw_only=True)
class PresentationContext:
    """A presentation context as proposed in an A-ASSOCIATE-RQ (item 20H, PS3.8 §9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@frozen(kw_only=True)
class PresentationContextAC:
    """A presentation context as answered in an A-ASSOCIATE-AC (item 21H, PS3.8 §9.3.3.2).

    ``transfer_syntax`` is not significant unless ``result`` is 0 (acceptance); an empty string
    stands for a transfer syntax sub-item that was absent or empty.
    """

    context_id: int
    result: int = ContextResult.ACCEPTANCE
    transfer_syntax: str = ""

    @property
    def accepted(self) -> bool:
        """True when the context was accepted."""
        return self.result == ContextResult.ACCEPTANCE


@frozen(kw_only=True)
class AsyncOpsWindow:
    """Asynchronous operations window (54H… 53H, PS3.7 D.3.3.3); 0 means unlimited."""

    invoked: int = 1
    performed: int = 1


@frozen(kw_only=True)
class RoleSelection:
    """SCP/SCU role selection for one SOP class (54H, PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@frozen(kw_only=True)
class SOPClassExtendedNegotiation:
    """SOP class extended negotiation (56H, PS3.7 D.3.3.5): opaque service-class bytes."""

    sop_class_uid: str
    application_information: bytes


@frozen(kw_only=True)
class SOPClassCommonExtendedNegotiation:
    """SOP class common extended negotiation (57H, PS3.7 D.3.3.6)."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()


@frozen(kw_only=True)
class UserIdentity:
    """User identity negotiation, requestor side (58H, PS3.7 D.3.3.7).

    ``secondary`` (the passcode) is significant only for type 2 (username and passcode).
    """

    identity_type: int
    primary: bytes
    secondary: bytes = b""
    positive_response_requested: bool = False


@frozen(kw_only=True)
class UserIdentityAC:
    """User identity negotiation, acceptor side (59H, PS3.7 D.3.3.7)."""

    server_response: bytes = b""


@frozen(kw_only=True)
class UnknownItem:
    """An item or sub-item of a type dul does not know: kept raw and re-encoded unchanged.

    PS3.8 §9.3.1 (and Annex D.2 for user information) says such items are skipped, not fatal.
    """

    item_type: int
    data: bytes


@frozen(kw_only=True)
class UserInformation:
    """The user information item (50H, PS3.8 Annex D; PS3.7 Annex D.3.3).

    The defaults are what dul announces: on receive, an absent sub-item is ``None`` or ``()``.
    Sub-items are encoded in ascending type order, unknown ones last. Received, at most
    ``MAX_UNKNOWN_ITEMS`` unknown sub-items are kept; ``unknown_items_skipped`` counts the others.
    """

    maximum_length: int | None = DEFAULT_MAXIMUM_LENGTH
    implementation_class_uid: str | None = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
    async_ops_window: AsyncOpsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiations: tuple[SOPClassExtendedNegotiation, ...] = ()
    common_extended_negotiations: tuple[SOPClassCommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentity | UserIdentityAC | None = None
    unknown_items: tuple[UnknownItem, ...] = ()
    unknown_items_skipped: int = 0


# -- the PDUs --------------------------------------------------------------------------------


@frozen(kw_only=True)
class AssociateRequest:
    """A-ASSOCIATE-RQ (01H, PS3.8 §9.3.2).

    AE titles are ``str`` without padding. An all-space AE title arrives as ``""``: the codec
    delivers it, and it is the application's policy to refuse it (see :meth:`reject`). Received,
    at most ``MAX_UNKNOWN_ITEMS`` items of unknown type are kept, and ``unknown_items_skipped``
    counts the others (PS3.8 §9.3.1 lets them all be ignored); they are never encoded.
    """

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContext, ...]
    user_information: UserInformation = UserInformation()
    application_context_name: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    unknown_items: tuple[UnknownItem, ...] = ()
    unknown_items_skipped: int = 0

    def accept(
        self,
        presentation_contexts: tuple[PresentationContextAC, ...],
        user_information: UserInformation = UserInformation(),
    ) -> AssociateAccept:
        """Build the A-ASSOCIATE-AC answering this request, echoing its AE titles byte-exact."""
        return AssociateAccept(
            called_ae_title=self.called_ae_title,
            calling_ae_title=self.calling_ae_title,
            presentation_contexts=presentation_contexts,
            user_information=user_information,
            application_context_name=self.application_context_name,
        )

    def reject(
        self,
        result: int = RejectResult.PERMANENT,
        source: int = RejectSource.SERVICE_USER,
        reason: int = 1,
    ) -> AssociateReject:
        """Build an A-ASSOCIATE-RJ for this request (by default: permanent, user, no reason)."""
        return AssociateReject(result=result, source=source, reason=reason)


@frozen(kw_only=True)
class AssociateAccept:
    """A-ASSOCIATE-AC (02H, PS3.8 §9.3.3).

    The AE titles echo the request's; PS3.8 says they are not tested on receive. Unknown items
    are kept and counted as in :class:`AssociateRequest`.
    """

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation = UserInformation()
    application_context_name: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    unknown_items: tuple[UnknownItem, ...] = ()
    unknown_items_skipped: int = 0


@frozen(kw_only=True)
class AssociateReject:
    """A-ASSOCIATE-RJ (03H, PS3.8 §9.3.4). Read ``reason`` with ``reason_name``."""

    result: int = RejectResult.PERMANENT
    source: int = RejectSource.SERVICE_USER
    reason: int = 1

    @property
    def reason_name(self) -> str:
        """The reason in words: its meaning depends on the source."""
        from ._codes import reject_reason_name

        return reject_reason_name(self.source, self.reason)


@frozen(kw_only=True)
class PresentationDataValue:
    """One PDV of a P-DATA-TF (PS3.8 §9.3.5, Annex E.2).

    Received, ``data`` is a ``memoryview``: a slice of the PDU body (no copy), or of one copy
    joining the P-DATA-TF's consecutive fragments of a stream when several of them held data.
    """

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview = field(repr=lambda d: f"<{len(d)} bytes>")


@frozen(kw_only=True)
class PData:
    """A P-DATA-TF to send, PDV by PDV (04H). ``Connection.send_data`` fragments for you."""

    values: tuple[PresentationDataValue, ...]


@frozen(kw_only=True)
class PDataReceived:
    """A P-DATA-TF that arrived (04H): the fragments of one message (PS3.8 Annex E.1).

    One or two PDVs, on one context: the command's fragments (up to its last one), then the data
    set's, each stream's consecutive fragments joined into one PDV, whatever number the PDU held.
    """

    values: tuple[PresentationDataValue, ...]


@frozen(kw_only=True)
class ReleaseRequest:
    """A-RELEASE-RQ (05H, PS3.8 §9.3.6)."""

    def response(self) -> ReleaseResponse:
        """The A-RELEASE-RP that answers this request."""
        return ReleaseResponse()


@frozen(kw_only=True)
class ReleaseResponse:
    """A-RELEASE-RP (06H, PS3.8 §9.3.7)."""


@frozen(kw_only=True)
class Abort:
    """A-ABORT (07H, PS3.8 §9.3.8).

    ``source`` 0 is the service user (its ``reason`` is not significant), 2 the service provider
    (reason from :class:`~dul.AbortReason`); source 1 is reserved.
    """

    source: int = AbortSource.SERVICE_USER
    reason: int = 0


class CloseCause(enum.Enum):
    """Why a connection ended, as told by :class:`ConnectionClosed`."""

    #: The association was released normally (AR-3, AR-5 after our A-RELEASE-RP).
    RELEASED = "released"
    #: The association request was rejected (AE-4, or AE-8/AE-6 then the transport closed).
    REJECTED = "rejected"
    #: The peer sent an A-ABORT (AA-3).
    ABORTED_BY_PEER = "aborted by peer"
    #: The local user sent an A-ABORT (AA-1 on Evt15).
    ABORTED_LOCALLY = "aborted locally"
    #: The provider aborted: the peer broke the protocol (AA-8, or AA-1 in Sta2), or the
    #: transport closed with no release or abort (AA-4, an A-P-ABORT; AA-5 in Sta2).
    ABORTED_BY_PROVIDER = "aborted by provider"
    #: The ARTIM timer expired while awaiting an A-ASSOCIATE-RQ (AA-2 on Evt18 in Sta2). In
    #: Sta13 the cause stays how the association ended (released, rejected, aborted).
    ARTIM_EXPIRED = "ARTIM expired"


@frozen(kw_only=True)
class ConnectionClosed:
    """The last event of every connection: it is over, and ``cause`` says why."""

    cause: CloseCause


#: Every event class a connection deals in.
Event = (
    AssociateRequest
    | AssociateAccept
    | AssociateReject
    | PData
    | PDataReceived
    | ReleaseRequest
    | ReleaseResponse
    | Abort
    | ConnectionClosed
)
