"""Negotiation helpers: an acceptor policy and the requestor's view of what was agreed.

PS3.8 §7.1.1 and PS3.7 Annex D.3.3: presentation contexts, SCP/SCU role selection (D.3.3.4),
the asynchronous operations window (D.3.3.3), extended negotiation (D.3.3.5-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from attrs import field, frozen

from .._codes import ContextResult, RejectReasonUser, RejectResult, RejectSource
from .._events import (
    DEFAULT_MAXIMUM_LENGTH,
    DICOM_APPLICATION_CONTEXT,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    PresentationContextAC,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
)

__all__ = [
    "AcceptorPolicy",
    "NegotiatedContext",
    "negotiated_contexts",
    "operations_window",
]

#: The default transfer syntax of DICOM, which every application supports (PS3.5 §10.1).
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: Explicit VR Little Endian (PS3.5 §A.2).
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: What a policy accepts when it names no transfer syntaxes for an abstract syntax.
DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


@frozen(kw_only=True)
class NegotiatedContext:
    """An accepted presentation context and the roles each side may play on its SOP class."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    requestor_is_scu: bool = True
    requestor_is_scp: bool = False

    @property
    def acceptor_is_scu(self) -> bool:
        """The acceptor may act as SCU exactly when the requestor may act as SCP."""
        return self.requestor_is_scp

    @property
    def acceptor_is_scp(self) -> bool:
        """The acceptor may act as SCP exactly when the requestor may act as SCU."""
        return self.requestor_is_scu


def negotiated_contexts(
    request: AssociateRequest, accept: AssociateAccept
) -> dict[int, NegotiatedContext]:
    """The accepted contexts of an association, with roles per PS3.7 Table D.3-11.

    Without a role selection answer, the requestor is SCU and the acceptor SCP. With one, the
    acceptor's answer counts, but never beyond what the requestor proposed.
    """
    proposed = {c.context_id: c for c in request.presentation_contexts}
    asked = {r.sop_class_uid: r for r in request.user_information.role_selections}
    answered = {r.sop_class_uid: r for r in accept.user_information.role_selections}
    contexts = {}
    for context in accept.presentation_contexts:
        ours = proposed.get(context.context_id)
        if ours is None or context.result != ContextResult.ACCEPTANCE:
            continue
        scu, scp = True, False
        answer, proposal = answered.get(ours.abstract_syntax), asked.get(ours.abstract_syntax)
        if answer is not None and proposal is not None:
            scu = answer.scu_role and proposal.scu_role
            scp = answer.scp_role and proposal.scp_role
        contexts[context.context_id] = NegotiatedContext(
            context_id=context.context_id,
            abstract_syntax=ours.abstract_syntax,
            transfer_syntax=context.transfer_syntax,
            requestor_is_scu=scu,
            requestor_is_scp=scp,
        )
    return contexts


def operations_window(request: AssociateRequest, accept: AssociateAccept) -> AsyncOpsWindow:
    """The agreed asynchronous operations window (PS3.7 D.3.3.3): 1/1 unless both sent one.

    ``invoked`` bounds the requestor's outstanding requests, ``performed`` the acceptor's; 0 means
    unlimited.
    """
    if request.user_information.async_ops_window is None:
        return AsyncOpsWindow(invoked=1, performed=1)
    return accept.user_information.async_ops_window or AsyncOpsWindow(invoked=1, performed=1)


def _at_most(asked: int, offered: int) -> int:
    """The smaller of two window sizes where 0 means unlimited."""
    if asked == 0:
        return offered
    if offered == 0:
        return asked
    return min(asked, offered)


@frozen(kw_only=True)
class AcceptorPolicy:
    """What an acceptor supports, and how it answers an A-ASSOCIATE-RQ.

    ``contexts`` maps each supported abstract syntax to its transfer syntaxes in order of
    preference (an empty sequence means :data:`DEFAULT_TRANSFER_SYNTAXES`). ``ae_title``, when
    set, is the only called AE title accepted. ``scp_roles`` lists the SOP classes for which the
    requestor may take the SCP role through role selection (C-GET's storage sub-operations); the
    SCU role it proposes on a supported SOP class is its default, and granted.
    """

    contexts: Mapping[str, Sequence[str]]
    ae_title: str | None = None
    refuse_blank_calling_ae: bool = True
    scp_roles: frozenset[str] = field(default=frozenset(), converter=frozenset)
    maximum_length: int = DEFAULT_MAXIMUM_LENGTH
    async_ops_window: AsyncOpsWindow | None = None
    #: Answers a SOP class extended negotiation item, or None to leave it unanswered.
    extended_negotiation: Callable[[SOPClassExtendedNegotiation], bytes | None] | None = None
    #: Verifies a user identity: a server response (bytes) to accept, None to reject (RJ 1/1).
    user_identity: Callable[[UserIdentity], bytes | None] | None = None

    def evaluate(self, request: AssociateRequest) -> AssociateAccept | AssociateReject:
        """The A-ASSOCIATE-AC or -RJ answering ``request``."""
        rejection = self._reject_reason(request)
        if rejection is not None:
            return request.reject(
                result=RejectResult.PERMANENT, source=RejectSource.SERVICE_USER, reason=rejection
            )
        identity_answer: UserIdentityAC | None = None
        identity = request.user_information.user_identity
        if self.user_identity is not None and isinstance(identity, UserIdentity):
            response = self.user_identity(identity)
            if response is None:
                return request.reject(reason=RejectReasonUser.NO_REASON_GIVEN)
            if identity.positive_response_requested:
                identity_answer = UserIdentityAC(server_response=response)
        contexts = tuple(
            self._answer(c.abstract_syntax, c.transfer_syntaxes, c.context_id)
            for c in request.presentation_contexts
        )
        info = request.user_information
        return request.accept(
            contexts,
            UserInformation(
                maximum_length=self.maximum_length,
                async_ops_window=self._window(info.async_ops_window),
                role_selections=tuple(self._roles(info.role_selections)),
                extended_negotiations=tuple(self._extended(info.extended_negotiations)),
                user_identity=identity_answer,
            ),
        )

    def _reject_reason(self, request: AssociateRequest) -> int | None:
        if request.application_context_name != DICOM_APPLICATION_CONTEXT:
            return RejectReasonUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED
        if request.called_ae_title == "" or (
            self.ae_title is not None and request.called_ae_title != self.ae_title
        ):
            return RejectReasonUser.CALLED_AE_TITLE_NOT_RECOGNIZED
        if self.refuse_blank_calling_ae and request.calling_ae_title == "":
            return RejectReasonUser.CALLING_AE_TITLE_NOT_RECOGNIZED
        return None

    def _answer(
        self, abstract_syntax: str, proposed: Sequence[str], context_id: int
    ) -> PresentationContextAC:
        supported = self.contexts.get(abstract_syntax)
        if supported is None:
            result, transfer = ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, proposed[0]
        else:
            preferred = [ts for ts in (supported or DEFAULT_TRANSFER_SYNTAXES) if ts in proposed]
            if preferred:
                result, transfer = ContextResult.ACCEPTANCE, preferred[0]
            else:
                result, transfer = ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, proposed[0]
        return PresentationContextAC(context_id=context_id, result=result, transfer_syntax=transfer)

    def _roles(self, proposals: Iterable[RoleSelection]) -> Iterable[RoleSelection]:
        """Grant at most what was proposed (PS3.7 D.3.3.4); answer each proposal once."""
        for proposal in proposals:
            if proposal.sop_class_uid not in self.contexts:
                continue
            yield RoleSelection(
                sop_class_uid=proposal.sop_class_uid,
                scu_role=proposal.scu_role,
                scp_role=proposal.scp_role and proposal.sop_class_uid in self.scp_roles,
            )

    def _window(self, asked: AsyncOpsWindow | None) -> AsyncOpsWindow | None:
        if asked is None or self.async_ops_window is None:
            return None  # never send the item unless asked (some devices drop 0/0 offers)
        return AsyncOpsWindow(
            invoked=_at_most(asked.invoked, self.async_ops_window.invoked),
            performed=_at_most(asked.performed, self.async_ops_window.performed),
        )

    def _extended(
        self, items: Iterable[SOPClassExtendedNegotiation]
    ) -> Iterable[SOPClassExtendedNegotiation]:
        if self.extended_negotiation is None:
            return
        for item in items:
            answer = self.extended_negotiation(item)
            if answer is not None:
                yield SOPClassExtendedNegotiation(
                    sop_class_uid=item.sop_class_uid, application_information=answer
                )
