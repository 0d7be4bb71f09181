"""Association negotiation helpers: AcceptorPolicy, negotiated_contexts, operations_window.

PS3.8 §7.1.1 and §9.3.3 (presentation context results, A-ASSOCIATE-RJ reasons), PS3.7 Annex
D.3.3 (asynchronous operations window, SCP/SCU role selection, extended negotiation, user
identity). Each answer the policy builds is also sent through a real Connection pair, so that
what it composes is something a Connection accepts to send and its peer decodes.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
from dimse_peer import SessionPair
from dul import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    PresentationContext,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
)
from dul.dimse import (
    DEFAULT_TRANSFER_SYNTAXES,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    AcceptorPolicy,
    CEchoRequest,
    NegotiatedContext,
    negotiated_contexts,
    operations_window,
)
from dul.testing import async_ops_windows, role_selections
from helpers import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, VERIFICATION, ConnectionPair

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT, EXPLICIT = IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN
SOP_CLASSES = (VERIFICATION, CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, "1.2.840.10008.5.1.4.1.1.7")
TRANSFER_SYNTAXES = (IMPLICIT, EXPLICIT, DEFLATED, JPEG_BASELINE)


def context(context_id: int, abstract: str, *transfer: str) -> PresentationContext:
    return PresentationContext(
        context_id=context_id, abstract_syntax=abstract, transfer_syntaxes=transfer
    )


def associate_request(
    *contexts: PresentationContext,
    called: str = "DULSCP",
    calling: str = "DULSCU",
    **user_information: object,
) -> AssociateRequest:
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=contexts or (context(1, VERIFICATION, IMPLICIT),),
        user_information=UserInformation(**user_information),  # type: ignore[arg-type]
    )


def over_the_wire(
    request: AssociateRequest,
    answer: AssociateAccept | AssociateReject | AcceptorPolicy,
    *,
    strict: bool = True,
) -> list[dul.Event]:
    """Send ``request`` from a requestor Connection and ``answer`` from the acceptor (a policy
    answers the request as received); what the requestor receives. ``strict=False`` sends a
    request that strict encoding refuses (blank AE titles), as a real device may."""
    pair = ConnectionPair()
    if strict:
        pair.send(pair.requestor, request)
    else:
        pair.requestor.send(attrs.evolve(request, calling_ae_title="X", called_ae_title="Y"))
        pair.wire[dul.Role.REQUESTOR] += dul.encode(request, strict=False)
    (received,) = pair.deliver(pair.requestor)
    assert isinstance(received, AssociateRequest)
    if isinstance(answer, AcceptorPolicy):
        answer = answer.evaluate(received)
    pair.send(pair.acceptor, answer)
    return pair.deliver(pair.acceptor)


# -- presentation contexts (PS3.8 Table 9-18) ------------------------------------------------------


def test_context_results() -> None:
    """0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not supported."""
    policy = AcceptorPolicy(
        contexts={VERIFICATION: (), CT_IMAGE_STORAGE: (EXPLICIT,), MR_IMAGE_STORAGE: ()}
    )
    request = associate_request(
        context(1, VERIFICATION, IMPLICIT),
        context(3, CT_IMAGE_STORAGE, JPEG_BASELINE, IMPLICIT),  # not EXPLICIT: 4
        context(5, CT_IMAGE_STORAGE, IMPLICIT, EXPLICIT),
        context(7, "1.2.840.10008.5.1.4.1.1.7", EXPLICIT),  # not supported: 3
        context(9, MR_IMAGE_STORAGE, DEFLATED),  # neither default: 4
    )
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    results = {c.context_id: (c.result, c.transfer_syntax) for c in accept.presentation_contexts}
    assert {k: r for k, (r, _) in results.items()} == {1: 0, 3: 4, 5: 0, 7: 3, 9: 4}
    assert results[1][1] == IMPLICIT
    assert results[5][1] == EXPLICIT

    (received,) = over_the_wire(request, accept)
    assert isinstance(received, AssociateAccept)
    assert [(c.context_id, c.result) for c in received.presentation_contexts] == [
        (1, 0), (3, 4), (5, 0), (7, 3), (9, 4)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("supported", "proposed", "chosen"),
    [
        ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),  # ours first, not theirs
        ((IMPLICIT, EXPLICIT), (EXPLICIT, IMPLICIT), IMPLICIT),
        ((JPEG_BASELINE, EXPLICIT), (IMPLICIT, EXPLICIT, JPEG_BASELINE), JPEG_BASELINE),
        ((JPEG_BASELINE, EXPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),
        ((), (IMPLICIT, EXPLICIT), EXPLICIT),  # the defaults: explicit, then implicit
        ((), (DEFLATED, IMPLICIT), IMPLICIT),
    ],
)
def test_transfer_syntax_preference(
    supported: tuple[str, ...], proposed: tuple[str, ...], chosen: str
) -> None:
    """The policy's order of preference decides, among what was proposed."""
    assert DEFAULT_TRANSFER_SYNTAXES == (EXPLICIT, IMPLICIT)
    policy = AcceptorPolicy(contexts={CT_IMAGE_STORAGE: supported})
    accept = policy.evaluate(associate_request(context(1, CT_IMAGE_STORAGE, *proposed)))
    assert isinstance(accept, AssociateAccept)
    (answer,) = accept.presentation_contexts
    assert (answer.result, answer.transfer_syntax) == (0, chosen)


@st.composite
def proposals(draw: st.DrawFn) -> tuple[AcceptorPolicy, AssociateRequest]:
    supported = draw(
        st.dictionaries(
            st.sampled_from(SOP_CLASSES),
            st.lists(st.sampled_from(TRANSFER_SYNTAXES), unique=True).map(tuple),
        )
    )
    ids = draw(st.lists(st.integers(0, 127), min_size=1, max_size=8, unique=True))
    contexts = [
        context(
            2 * n + 1,
            draw(st.sampled_from(SOP_CLASSES)),
            *draw(st.lists(st.sampled_from(TRANSFER_SYNTAXES), min_size=1, unique=True)),
        )
        for n in ids
    ]
    return AcceptorPolicy(contexts=supported), associate_request(*contexts)


@given(proposals())
def test_every_context_answered_by_the_rules(
    drawn: tuple[AcceptorPolicy, AssociateRequest],
) -> None:
    policy, request = drawn
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    assert [c.context_id for c in accept.presentation_contexts] == [
        c.context_id for c in request.presentation_contexts
    ]
    for proposed, answer in zip(
        request.presentation_contexts, accept.presentation_contexts, strict=True
    ):
        supported = policy.contexts.get(proposed.abstract_syntax)
        if supported is None:
            assert answer.result == 3
            continue
        preferred = [
            ts for ts in supported or DEFAULT_TRANSFER_SYNTAXES if ts in proposed.transfer_syntaxes
        ]
        if preferred:
            assert (answer.result, answer.transfer_syntax) == (0, preferred[0])
        else:
            assert answer.result == 4
    (received,) = over_the_wire(request, accept)  # a Connection sends it, its peer takes it
    assert isinstance(received, AssociateAccept)


# -- rejections (PS3.8 Table 9-21) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "policy_options", "reason"),
    [
        ({"called_ae_title": "SOMEONE"}, {"ae_title": "DULSCP"}, 7),
        ({"called_ae_title": ""}, {}, 7),
        ({"calling_ae_title": ""}, {}, 3),
        ({"application_context_name": "1.2.3.4.5"}, {}, 2),
        # the application context is checked first, then the called, then the calling AE
        ({"application_context_name": "1.2.3", "called_ae_title": "X"}, {"ae_title": "Y"}, 2),
        ({"called_ae_title": "X", "calling_ae_title": ""}, {"ae_title": "Y"}, 7),
    ],
    ids=["called-mismatch", "called-blank", "calling-blank", "app-context", "order-1", "order-2"],
)
def test_rejections(change: dict[str, str], policy_options: dict[str, str], reason: int) -> None:
    """Permanent rejections by the service user: 7 called AE title not recognized, 3 calling AE
    title not recognized, 2 application context name not supported."""
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, **policy_options)  # type: ignore[arg-type]
    request = attrs.evolve(associate_request(), **change)
    answer = policy.evaluate(request)
    assert answer == AssociateReject(result=1, source=1, reason=reason)
    strict = "" not in change.values()
    assert over_the_wire(request, policy if not strict else answer, strict=strict) == [
        answer,
        dul.ConnectionClosed(cause=dul.CloseCause.REJECTED),
    ]


def test_blank_calling_ae_may_be_allowed() -> None:
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, refuse_blank_calling_ae=False)
    request = attrs.evolve(associate_request(), calling_ae_title="")
    answer = policy.evaluate(request)
    assert isinstance(answer, AssociateAccept)
    (received,) = over_the_wire(request, policy, strict=False)
    assert isinstance(received, AssociateAccept)


def test_matching_called_ae_and_padding() -> None:
    """The AE title compares without its padding; the answer echoes the request's AE titles."""
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, ae_title="DULSCP")
    answer = policy.evaluate(associate_request(called="DULSCP", calling="ME"))
    assert isinstance(answer, AssociateAccept)
    assert (answer.called_ae_title, answer.calling_ae_title) == ("DULSCP", "ME")
    assert answer.user_information.maximum_length == policy.maximum_length


# -- role selection (PS3.7 D.3.3.4) ----------------------------------------------------------------


def role(sop_class: str, scu: bool, scp: bool) -> RoleSelection:
    return RoleSelection(sop_class_uid=sop_class, scu_role=scu, scp_role=scp)


@given(
    st.lists(
        st.one_of(
            role_selections(),
            st.builds(role, st.sampled_from(SOP_CLASSES), st.booleans(), st.booleans()),
        ),
        max_size=4,
        unique_by=lambda r: r.sop_class_uid,
    ).map(tuple),
    st.sets(st.sampled_from(SOP_CLASSES)),
    st.sets(st.sampled_from(SOP_CLASSES)),
)
def test_roles_never_beyond_the_proposal(
    proposed: tuple[RoleSelection, ...], supported: set[str], scp_roles: set[str]
) -> None:
    """The acceptor answers only proposals for SOP classes it supports, once each, never
    granting a role that was not proposed; with no proposal, no item at all."""
    policy = AcceptorPolicy(contexts={s: () for s in supported}, scp_roles=scp_roles)
    accept = policy.evaluate(associate_request(role_selections=proposed))
    assert isinstance(accept, AssociateAccept)
    answers = accept.user_information.role_selections
    asked = {r.sop_class_uid: r for r in proposed}
    assert [a.sop_class_uid for a in answers] == [
        r.sop_class_uid for r in proposed if r.sop_class_uid in supported
    ]
    for answer in answers:
        proposal = asked[answer.sop_class_uid]
        assert answer.scu_role <= proposal.scu_role
        assert answer.scp_role <= proposal.scp_role
        assert answer.scp_role == (proposal.scp_role and answer.sop_class_uid in scp_roles)
    if not proposed:
        assert answers == ()


def test_role_selection_end_to_end() -> None:
    """A C-GET SCU proposes SCU and SCP roles for CT; the acceptor grants SCP for CT (its
    scp_roles), and for MR only what it must: the requestor stays SCU."""
    request = associate_request(
        context(1, CT_IMAGE_STORAGE, EXPLICIT),
        context(3, MR_IMAGE_STORAGE, EXPLICIT),
        role_selections=(role(CT_IMAGE_STORAGE, True, True), role(MR_IMAGE_STORAGE, False, True)),
    )
    policy = AcceptorPolicy(
        contexts={CT_IMAGE_STORAGE: (), MR_IMAGE_STORAGE: ()}, scp_roles={CT_IMAGE_STORAGE}
    )
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    assert accept.user_information.role_selections == (
        role(CT_IMAGE_STORAGE, True, True),
        role(MR_IMAGE_STORAGE, False, False),
    )
    (received,) = over_the_wire(request, accept)
    assert isinstance(received, AssociateAccept)
    contexts = negotiated_contexts(request, received)
    assert (contexts[1].requestor_is_scu, contexts[1].requestor_is_scp) == (True, True)
    assert (contexts[1].acceptor_is_scu, contexts[1].acceptor_is_scp) == (True, True)
    assert (contexts[3].requestor_is_scu, contexts[3].requestor_is_scp) == (False, False)


#: PS3.7 Table D.3-11: (requestor SCU, SCP proposed), (acceptor SCU, SCP answered) → the
#: requestor's (SCU, SCP) roles. Acceptor answers that grant more than proposed are not valid
#: and count as no more than proposed. "Not allowed" leaves the requestor no role.
TABLE_D3_11: dict[tuple[tuple[bool, bool], tuple[bool, bool]], tuple[bool, bool]] = {
    ((False, True), (False, False)): (False, False),  # not allowed
    ((False, True), (False, True)): (False, True),  # requestor SCP, acceptor SCU
    ((False, True), (True, False)): (False, False),  # (not valid)
    ((False, True), (True, True)): (False, True),  # (not valid)
    ((True, False), (False, False)): (False, False),  # not allowed
    ((True, False), (True, False)): (True, False),  # requestor SCU, acceptor SCP
    ((True, False), (False, True)): (False, False),  # (not valid)
    ((True, False), (True, True)): (True, False),  # (not valid)
    ((True, True), (False, False)): (False, False),  # not allowed
    ((True, True), (False, True)): (False, True),  # requestor SCP, acceptor SCU
    ((True, True), (True, False)): (True, False),  # requestor SCU, acceptor SCP
    ((True, True), (True, True)): (True, True),  # both may be SCU and SCP
}


def _negotiated(
    proposed: tuple[bool, bool] | None, answered: tuple[bool, bool] | None, result: int = 0
) -> dict[int, NegotiatedContext]:
    request = associate_request(
        context(1, CT_IMAGE_STORAGE, EXPLICIT),
        context(3, VERIFICATION, IMPLICIT),
        role_selections=() if proposed is None else (role(CT_IMAGE_STORAGE, *proposed),),
    )
    accept = request.accept(
        (
            dul.PresentationContextAC(context_id=1, result=result, transfer_syntax=EXPLICIT),
            dul.PresentationContextAC(context_id=3, transfer_syntax=IMPLICIT),
        ),
        UserInformation(
            role_selections=() if answered is None else (role(CT_IMAGE_STORAGE, *answered),)
        ),
    )
    return negotiated_contexts(request, accept)


@pytest.mark.parametrize(("case", "roles"), TABLE_D3_11.items(), ids=str)
def test_negotiated_roles_table_d3_11(
    case: tuple[tuple[bool, bool], tuple[bool, bool]], roles: tuple[bool, bool]
) -> None:
    contexts = _negotiated(*case)
    ct = contexts[1]
    assert (ct.requestor_is_scu, ct.requestor_is_scp) == roles
    assert (ct.acceptor_is_scp, ct.acceptor_is_scu) == roles
    verification = contexts[3]  # no role selection for it: the defaults
    assert (verification.requestor_is_scu, verification.requestor_is_scp) == (True, False)


@pytest.mark.parametrize(
    ("proposed", "answered"),
    [(None, None), (None, (True, True)), ((True, True), None), ((False, True), None)],
    ids=["neither", "answer-without-proposal", "proposal-unanswered", "scp-only-unanswered"],
)
def test_default_roles(
    proposed: tuple[bool, bool] | None, answered: tuple[bool, bool] | None
) -> None:
    """Without both a proposal and an answer, the requestor is SCU and the acceptor SCP."""
    ct = _negotiated(proposed, answered)[1]
    assert (ct.requestor_is_scu, ct.requestor_is_scp) == (True, False)
    assert (ct.acceptor_is_scu, ct.acceptor_is_scp) == (False, True)


def test_negotiated_contexts_only_accepted_ones() -> None:
    for result in (1, 2, 3, 4):
        contexts = _negotiated(None, None, result=result)
        assert sorted(contexts) == [3]
    assert _negotiated(None, None)[1] == NegotiatedContext(
        context_id=1, abstract_syntax=CT_IMAGE_STORAGE, transfer_syntax=EXPLICIT
    )


# -- asynchronous operations window (PS3.7 D.3.3.3) ------------------------------------------------


def window(invoked: int, performed: int) -> AsyncOpsWindow:
    return AsyncOpsWindow(invoked=invoked, performed=performed)


@pytest.mark.parametrize(
    ("asked", "offered", "answer"),
    [
        (None, window(5, 5), None),  # never answered unless asked
        (window(5, 5), None, None),  # a policy without a window does not answer
        (None, None, None),
        (window(3, 2), window(5, 5), window(3, 2)),
        (window(8, 8), window(5, 1), window(5, 1)),
        (window(0, 0), window(5, 4), window(5, 4)),  # 0: unlimited
        (window(4, 3), window(0, 0), window(4, 3)),
        (window(0, 7), window(6, 0), window(6, 7)),
        (window(0, 0), window(0, 0), window(0, 0)),
    ],
)
def test_window_answer(
    asked: AsyncOpsWindow | None, offered: AsyncOpsWindow | None, answer: AsyncOpsWindow | None
) -> None:
    """The answer is the smaller of asked and offered, field by field, 0 being unlimited; the
    item is sent only when the requestor sent one (some devices drop 0/0 offers)."""
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, async_ops_window=offered)
    request = associate_request(async_ops_window=asked)
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    assert accept.user_information.async_ops_window == answer
    (received,) = over_the_wire(request, accept)
    assert isinstance(received, AssociateAccept)
    assert received.user_information.async_ops_window == answer
    assert operations_window(request, received) == (answer or window(1, 1))


@given(async_ops_windows(), async_ops_windows())
def test_window_answer_never_exceeds_either(asked: AsyncOpsWindow, offered: AsyncOpsWindow) -> None:
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, async_ops_window=offered)
    accept = policy.evaluate(associate_request(async_ops_window=asked))
    assert isinstance(accept, AssociateAccept)
    answer = accept.user_information.async_ops_window
    assert answer is not None

    def within(value: int, limit: int) -> bool:
        return limit == 0 or 0 < value <= limit

    for field in ("invoked", "performed"):
        value = getattr(answer, field)
        assert within(value, getattr(asked, field)) and within(value, getattr(offered, field))
        assert (value == 0) is (getattr(asked, field) == 0 == getattr(offered, field))


def test_operations_window_needs_both_items() -> None:
    """1/1 unless the request asked and the accept answered (PS3.7 D.3.3.3.1)."""
    with_item = associate_request(async_ops_window=window(4, 4))
    without = associate_request()
    answered = with_item.accept((), UserInformation(async_ops_window=window(2, 3)))
    unanswered = with_item.accept((), UserInformation())
    assert operations_window(with_item, answered) == window(2, 3)
    assert operations_window(with_item, unanswered) == window(1, 1)
    assert operations_window(without, answered) == window(1, 1)


# -- user identity (PS3.7 D.3.3.7) -----------------------------------------------------------------


@pytest.mark.parametrize("positive_response", [True, False])
def test_user_identity_accepted(positive_response: bool) -> None:
    """The callback sees the identity; its answer goes back only when a response was asked."""
    seen: list[UserIdentity] = []

    def verify(identity: UserIdentity) -> bytes | None:
        seen.append(identity)
        return b"ticket-for-" + identity.primary

    identity = UserIdentity(
        identity_type=2,
        primary=b"alice",
        secondary=b"s3cret",
        positive_response_requested=positive_response,
    )
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, user_identity=verify)
    request = associate_request(user_identity=identity)
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    assert seen == [identity]
    expected = UserIdentityAC(server_response=b"ticket-for-alice") if positive_response else None
    assert accept.user_information.user_identity == expected
    (received,) = over_the_wire(request, accept)
    assert isinstance(received, AssociateAccept)
    assert received.user_information.user_identity == expected


def test_user_identity_rejected() -> None:
    """The callback refuses: A-ASSOCIATE-RJ, permanent, service user, no reason given."""
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, user_identity=lambda identity: None)
    request = associate_request(user_identity=UserIdentity(identity_type=1, primary=b"mallory"))
    answer = policy.evaluate(request)
    assert answer == AssociateReject(result=1, source=1, reason=1)
    assert over_the_wire(request, answer)[0] == answer


def test_user_identity_without_callback_or_item() -> None:
    calls: list[UserIdentity] = []
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, user_identity=lambda i: calls.append(i))  # type: ignore[func-returns-value]
    accept = policy.evaluate(associate_request())
    assert isinstance(accept, AssociateAccept) and calls == []
    assert accept.user_information.user_identity is None
    no_callback = AcceptorPolicy(contexts={VERIFICATION: ()})
    identity = UserIdentity(identity_type=1, primary=b"bob", positive_response_requested=True)
    accept = no_callback.evaluate(associate_request(user_identity=identity))
    assert isinstance(accept, AssociateAccept)
    assert accept.user_information.user_identity is None


# -- extended negotiation (PS3.7 D.3.3.5) ----------------------------------------------------------


def test_extended_negotiation_pass_through() -> None:
    """Each item goes to the callback; what it answers goes back for that SOP class, in order;
    ``None`` leaves the item unanswered; without a callback nothing is answered."""
    items = (
        SOPClassExtendedNegotiation(
            sop_class_uid=CT_IMAGE_STORAGE, application_information=b"\1\1"
        ),
        SOPClassExtendedNegotiation(sop_class_uid=MR_IMAGE_STORAGE, application_information=b"\2"),
        SOPClassExtendedNegotiation(sop_class_uid=VERIFICATION, application_information=b"\3\3\3"),
    )
    seen: list[SOPClassExtendedNegotiation] = []

    def answer(item: SOPClassExtendedNegotiation) -> bytes | None:
        seen.append(item)
        return None if item.sop_class_uid == MR_IMAGE_STORAGE else item.application_information[:1]

    request = associate_request(extended_negotiations=items)
    policy = AcceptorPolicy(contexts={VERIFICATION: ()}, extended_negotiation=answer)
    accept = policy.evaluate(request)
    assert isinstance(accept, AssociateAccept)
    assert seen == list(items)
    expected = (
        SOPClassExtendedNegotiation(sop_class_uid=CT_IMAGE_STORAGE, application_information=b"\1"),
        SOPClassExtendedNegotiation(sop_class_uid=VERIFICATION, application_information=b"\3"),
    )
    assert accept.user_information.extended_negotiations == expected
    (received,) = over_the_wire(request, accept)
    assert isinstance(received, AssociateAccept)
    assert received.user_information.extended_negotiations == expected

    silent = AcceptorPolicy(contexts={VERIFICATION: ()}).evaluate(request)
    assert isinstance(silent, AssociateAccept)
    assert silent.user_information.extended_negotiations == ()


def test_policy_answer_carries_through_a_session_pair() -> None:
    """End to end with Sessions: both sides agree on contexts, roles and window."""
    request = associate_request(
        context(1, VERIFICATION, IMPLICIT),
        context(3, CT_IMAGE_STORAGE, EXPLICIT, IMPLICIT),
        async_ops_window=window(3, 2),
        role_selections=(role(CT_IMAGE_STORAGE, True, True),),
    )
    policy = AcceptorPolicy(
        contexts={VERIFICATION: (), CT_IMAGE_STORAGE: (IMPLICIT,)},
        scp_roles={CT_IMAGE_STORAGE},
        async_ops_window=window(2, 2),
    )
    pair = SessionPair()
    pair.associate(request, policy)
    assert pair.requestor.contexts == pair.acceptor.contexts
    ct = pair.acceptor.contexts[3]
    assert (ct.transfer_syntax, ct.acceptor_is_scu, ct.requestor_is_scp) == (IMPLICIT, True, True)
    for message_id in (1, 2):  # asked 3, offered 2: two outstanding, not three
        pair.send_message(pair.requestor, CEchoRequest(message_id=message_id), context_id=1)
    assert not pair.requestor.can_invoke
