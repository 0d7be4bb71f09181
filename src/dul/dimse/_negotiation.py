"""Negotiation helpers: an acceptor policy and the requestor's view of what was agreed.

PS3.8 §7.1.1 and PS3.7 Annex D.3.3: presentation contexts, SCP/SCU role selection (D.3.3.4),
the asynchronous operations window (D.3.3.3), extended negotiation (D.3.3.5-6).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from attrs import field, frozen

from .._codes import ContextResult, RejectReasonUser, RejectResult, RejectSource
from .._events import (
    DEFAULT_MAXIMUM_LENGTH,
    DICOM_APPLICATION_CONTEXT,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    PresentationContext,
    PresentationContextAC,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
)
from .._pdu import is_valid_uid

__all__ = [
    "AcceptorPolicy",
    "ContextRule",
    "NegotiatedContext",
    "UIDMatch",
    "any_uid",
    "negotiated_contexts",
    "operations_window",
]

#: The default transfer syntax of DICOM, which every application supports (PS3.5 §10.1).
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: Explicit VR Little Endian (PS3.5 §A.2).
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: What a policy accepts when it names no transfer syntaxes for an abstract syntax.
DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

#: UIDs a :class:`ContextRule` accepts: a set (or any collection) of them, or a predicate.
UIDMatch = Collection[str] | Callable[[str], bool]


def any_uid(uid: str) -> bool:
    """A :data:`UIDMatch` that matches every (valid) UID: "any transfer syntax"."""
    return True


def _matches(match: UIDMatch, uid: str) -> bool:
    if callable(match):
        return match(uid)
    return uid == match if isinstance(match, str) else uid in match


@frozen(kw_only=True)
class ContextRule:
    """Accept every abstract syntax ``abstract_syntaxes`` matches, with a transfer syntax
    ``transfer_syntaxes`` matches.

    Each is a :data:`UIDMatch`: a set of UIDs or a predicate. Transfer syntaxes given as a
    sequence (a tuple or list) are in our order of preference, as in ``AcceptorPolicy.contexts``;
    given as a set or a predicate, the requestor's order decides (the first it proposed that
    matches). A value that is not a valid UID never matches.
    """

    abstract_syntaxes: UIDMatch
    transfer_syntaxes: UIDMatch = DEFAULT_TRANSFER_SYNTAXES


def _choose(supported: UIDMatch, proposed: Sequence[str]) -> str | None:
    if isinstance(supported, (tuple, list)):  # ours, in our order of preference
        return next((ts for ts in supported if ts in proposed), None)
    return next((ts for ts in proposed if _matches(supported, ts)), None)


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
    unlimited. The acceptor's values "shall be equal or less" than those proposed: an answer
    above the proposal, or 0 answering a non-zero proposal, is capped at the proposal.
    """
    asked = request.user_information.async_ops_window
    answered = accept.user_information.async_ops_window
    if asked is None or answered is None:
        return AsyncOpsWindow(invoked=1, performed=1)
    return AsyncOpsWindow(
        invoked=_at_most(asked.invoked, answered.invoked),
        performed=_at_most(asked.performed, answered.performed),
    )


def _at_most(asked: int, offered: int) -> int:
    """The smaller of two window sizes where 0 means unlimited."""
    if asked == 0:
        return offered
    if offered == 0:
        return asked
    return min(asked, offered)


def _uid_match(match: UIDMatch) -> UIDMatch:
    return match if callable(match) or isinstance(match, (str, frozenset)) else frozenset(match)


@frozen(kw_only=True)
class AcceptorPolicy:
    """What an acceptor supports, and how it answers an A-ASSOCIATE-RQ.

    ``contexts`` maps each supported abstract syntax to its transfer syntaxes in order of
    preference (an empty sequence means :data:`DEFAULT_TRANSFER_SYNTAXES`). ``rules`` accept
    by rule what ``contexts`` does not name: the first :class:`ContextRule` whose abstract
    syntaxes match answers. ``ae_title``, when set, is the only called AE title accepted.
    ``scp_roles`` (a set or a predicate) names the SOP classes for which the requestor may take
    the SCP role through role selection (C-GET's storage sub-operations); the SCU role it
    proposes on a supported SOP class is its default, and granted.

    A proposed abstract or transfer syntax that is not a valid UID (PS3.5 §9.1) is treated as
    unsupported, so that nothing the peer chose can make the A-ASSOCIATE-AC fail to encode.

    For example, Verification in either little endian, every storage SOP class in any transfer
    syntax the requestor prefers, and the C-GET SCP role for them::

        storage = dul.uids.STORAGE_SOP_CLASSES  # a frozenset; a predicate would do too
        policy = AcceptorPolicy(
            contexts={VERIFICATION_SOP_CLASS: ()},
            rules=(ContextRule(abstract_syntaxes=storage, transfer_syntaxes=any_uid),),
            scp_roles=storage,
        )
    """

    contexts: Mapping[str, Sequence[str]] = field(factory=dict)
    rules: tuple[ContextRule, ...] = field(default=(), converter=tuple)
    ae_title: str | None = None
    refuse_blank_calling_ae: bool = True
    scp_roles: UIDMatch = field(default=frozenset(), converter=_uid_match)
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
        contexts = tuple(self._answer(c) for c in request.presentation_contexts)
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

    def _supported(self, abstract_syntax: str) -> UIDMatch | None:
        """The transfer syntaxes accepted for ``abstract_syntax``, or None if unsupported."""
        if not is_valid_uid(abstract_syntax):
            return None
        named = self.contexts.get(abstract_syntax)
        if named is not None:
            return tuple(named) or DEFAULT_TRANSFER_SYNTAXES
        for rule in self.rules:
            if _matches(rule.abstract_syntaxes, abstract_syntax):
                return rule.transfer_syntaxes
        return None

    def _answer(self, proposal: PresentationContext) -> PresentationContextAC:
        valid = [ts for ts in proposal.transfer_syntaxes if is_valid_uid(ts)]
        supported = self._supported(proposal.abstract_syntax)
        chosen = None if supported is None else _choose(supported, valid)
        if chosen is not None:
            result, transfer = ContextResult.ACCEPTANCE, chosen
        else:
            result = (
                ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
                if supported is None
                else ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
            )
            # Not significant when not accepted (PS3.8 §9.3.3.2), but a valid UID all the same.
            transfer = valid[0] if valid else IMPLICIT_VR_LITTLE_ENDIAN
        return PresentationContextAC(
            context_id=proposal.context_id, result=result, transfer_syntax=transfer
        )

    def _roles(self, proposals: Iterable[RoleSelection]) -> Iterable[RoleSelection]:
        """Grant at most what was proposed (PS3.7 D.3.3.4); answer each proposal once."""
        for proposal in proposals:
            uid = proposal.sop_class_uid
            if self._supported(uid) is None:
                continue
            yield RoleSelection(
                sop_class_uid=uid,
                scu_role=proposal.scu_role,
                scp_role=proposal.scp_role and _matches(self.scp_roles, uid),
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
            if not is_valid_uid(item.sop_class_uid):
                continue  # the answer echoes it: never let a peer's value fail our send
            answer = self.extended_negotiation(item)
            if answer is not None:
                yield SOPClassExtendedNegotiation(
                    sop_class_uid=item.sop_class_uid, application_information=answer
                )
