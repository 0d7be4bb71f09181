"""Negotiation by rule (sets and predicates), and peer-chosen values that are not UIDs.

A request may propose anything: a transfer or abstract syntax that is not a UID must never make
the answer fail to encode (a remote fault surfacing as a local one). PS3.8 §9.3.3.2: the
transfer syntax of a context not accepted is not significant; dul still sends a valid UID there.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
import dul.uids
from dul import (
    AssociateAccept,
    AssociateRequest,
    PresentationContext,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserInformation,
    is_valid_uid,
)
from dul.dimse import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    AcceptorPolicy,
    ContextRule,
    any_uid,
)
from helpers import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, VERIFICATION

IMPLICIT, EXPLICIT = IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
NOT_A_UID = "1.2.840.10008.!.2"
STORAGE = frozenset({CT_IMAGE_STORAGE, MR_IMAGE_STORAGE})


def context(context_id: int, abstract: str, *transfer: str) -> PresentationContext:
    return PresentationContext(
        context_id=context_id, abstract_syntax=abstract, transfer_syntaxes=transfer
    )


def request(*contexts: PresentationContext, **user_information: object) -> AssociateRequest:
    return AssociateRequest(
        called_ae_title="DULSCP",
        calling_ae_title="DULSCU",
        presentation_contexts=contexts,
        user_information=UserInformation(**user_information),  # type: ignore[arg-type]
    )


def answered(policy: AcceptorPolicy, rq: AssociateRequest) -> AssociateAccept:
    """``rq`` as an acceptor Connection receives it (encoded without validation, as a device
    may send it), answered by ``policy`` and sent: the A-ASSOCIATE-AC as its peer decodes it."""
    acceptor = dul.Connection(dul.Role.ACCEPTOR)
    acceptor.receive_data(dul.encode(rq, strict=False))
    received = acceptor.next_event()
    assert isinstance(received, AssociateRequest)
    answer = policy.evaluate(received)
    assert isinstance(answer, AssociateAccept)
    (decoded,) = dul.decode(acceptor.send(answer))  # a LocalProtocolError here is the bug
    assert isinstance(decoded, AssociateAccept)
    for answer_context in decoded.presentation_contexts:
        assert is_valid_uid(answer_context.transfer_syntax)
    return decoded


def results(accept: AssociateAccept) -> dict[int, tuple[int, str]]:
    return {c.context_id: (c.result, c.transfer_syntax) for c in accept.presentation_contexts}


# -- dul.is_valid_uid (PS3.5 §9.1) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("1.2.840.10008.1.2", True),
        ("0", True),
        ("2.25.0", True),
        ("1." + "2" * 62, True),  # 64 characters
        ("1." + "2" * 63, False),  # 65
        ("", False),
        (NOT_A_UID, False),
        ("1.02", False),  # a leading zero
        ("1..2", False),
        (".1", False),
        ("1.2.", False),
        ("1.2\0", False),  # received ones are normalized first; the text itself is not a UID
        ("1.2 ", False),
        ("\uff11.\uff12", False),  # fullwidth digits are not the digits of PS3.5
    ],
)
def test_is_valid_uid(text: str, valid: bool) -> None:
    assert is_valid_uid(text) is valid


@given(st.one_of(st.text(alphabet="0123456789.", max_size=70), st.text(max_size=10)))
def test_is_valid_uid_is_the_encoders_rule(text: str) -> None:
    """What is_valid_uid accepts is exactly what the encoder sends as an abstract syntax."""
    try:
        dul.encode(request(context(1, text, IMPLICIT)))
    except dul.LocalProtocolError:
        encodes = False
    else:
        encodes = True
    assert is_valid_uid(text) is encodes


def test_is_valid_uid_refuses_what_is_not_text() -> None:
    assert not is_valid_uid(b"1.2")  # type: ignore[arg-type]
    assert not is_valid_uid(None)  # type: ignore[arg-type]


# -- values that are not UIDs: unsupported, never a local error ------------------------------------

ANYTHING = AcceptorPolicy(
    rules=(ContextRule(abstract_syntaxes=any_uid, transfer_syntaxes=any_uid),)
)
EXACT = AcceptorPolicy(contexts={CT_IMAGE_STORAGE: (EXPLICIT, IMPLICIT), NOT_A_UID: ()})


@pytest.mark.parametrize("policy", [ANYTHING, EXACT], ids=["rules", "exact"])
def test_syntaxes_that_are_not_uids_are_unsupported(policy: AcceptorPolicy) -> None:
    accept = answered(
        policy,
        request(
            context(1, CT_IMAGE_STORAGE, NOT_A_UID),  # nothing else proposed: 4
            context(3, CT_IMAGE_STORAGE, NOT_A_UID, IMPLICIT),  # the valid one is chosen
            context(5, NOT_A_UID, IMPLICIT),  # 3, whatever the policy names
            context(7, NOT_A_UID, NOT_A_UID),
        ),
    )
    assert results(accept) == {
        1: (4, IMPLICIT),  # the placeholder: a valid UID, not the peer's value
        3: (0, IMPLICIT),
        5: (3, IMPLICIT),
        7: (3, IMPLICIT),
    }


def test_role_selection_and_extended_negotiation_of_non_uids_go_unanswered() -> None:
    policy = AcceptorPolicy(
        rules=(ContextRule(abstract_syntaxes=any_uid),),
        scp_roles=any_uid,
        extended_negotiation=lambda item: b"\x01",
    )
    accept = answered(
        policy,
        request(
            context(1, CT_IMAGE_STORAGE, IMPLICIT),
            role_selections=(
                RoleSelection(sop_class_uid=NOT_A_UID, scu_role=True, scp_role=True),
                RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=True),
            ),
            extended_negotiations=(
                SOPClassExtendedNegotiation(sop_class_uid=NOT_A_UID, application_information=b""),
                SOPClassExtendedNegotiation(
                    sop_class_uid=CT_IMAGE_STORAGE, application_information=b""
                ),
            ),
        ),
    )
    info = accept.user_information
    assert info.role_selections == (
        RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=True),
    )
    assert info.extended_negotiations == (
        SOPClassExtendedNegotiation(sop_class_uid=CT_IMAGE_STORAGE, application_information=b"\1"),
    )


UIDISH = st.one_of(
    st.sampled_from([CT_IMAGE_STORAGE, VERIFICATION, IMPLICIT, EXPLICIT, JPEG_BASELINE]),
    st.text(alphabet="0123456789.!", min_size=1, max_size=70),
    st.text(min_size=1, max_size=8).filter(lambda t: t.strip("\0 ") == t),
)


@given(
    proposals=st.lists(
        st.tuples(UIDISH, st.lists(UIDISH, min_size=1, max_size=4)), min_size=1, max_size=6
    ),
    policy=st.sampled_from([ANYTHING, EXACT, AcceptorPolicy(contexts={VERIFICATION: ()})]),
)
def test_whatever_is_proposed_the_answer_encodes(
    proposals: list[tuple[str, list[str]]], policy: AcceptorPolicy
) -> None:
    """Any proposal, valid UIDs or not: the answer is sent without a LocalProtocolError, and
    accepts only valid UIDs that were proposed."""
    rq = request(
        *(context(2 * i + 1, a, *ts) for i, (a, ts) in enumerate(proposals)),
        role_selections=tuple(
            RoleSelection(sop_class_uid=a, scu_role=True, scp_role=True) for a, _ in proposals
        ),
    )
    accept = answered(policy, rq)
    for proposed, answer in zip(
        rq.presentation_contexts, accept.presentation_contexts, strict=True
    ):
        if answer.result == 0:
            assert is_valid_uid(proposed.abstract_syntax)
            assert answer.transfer_syntax in proposed.transfer_syntaxes


# -- rules -----------------------------------------------------------------------------------------


def test_rules_accept_by_set_and_predicate() -> None:
    """Exact contexts first, then the first rule that matches; a sequence of transfer syntaxes
    is our preference, a set or a predicate follows the requestor's order."""
    policy = AcceptorPolicy(
        contexts={VERIFICATION: (IMPLICIT,)},
        rules=(
            ContextRule(abstract_syntaxes=STORAGE, transfer_syntaxes=any_uid),
            ContextRule(
                abstract_syntaxes=lambda uid: uid.startswith("1.2.840.10008.5.1.4.1.2."),
                transfer_syntaxes=(EXPLICIT, IMPLICIT),
            ),
            ContextRule(abstract_syntaxes=any_uid, transfer_syntaxes={EXPLICIT}),
        ),
    )
    find = "1.2.840.10008.5.1.4.1.2.2.1"
    accept = answered(
        policy,
        request(
            context(1, VERIFICATION, EXPLICIT, IMPLICIT),  # exact: implicit only
            context(3, CT_IMAGE_STORAGE, JPEG_BASELINE, EXPLICIT),  # any: theirs first
            context(5, find, IMPLICIT, EXPLICIT),  # ours first
            context(7, "1.2.3.4", IMPLICIT, EXPLICIT),  # the catch-all, a set
            context(9, "1.2.3.4", IMPLICIT),  # the catch-all, nothing it takes
            context(11, VERIFICATION, EXPLICIT),  # exact wins over the catch-all: 4
        ),
    )
    assert results(accept) == {
        1: (0, IMPLICIT),
        3: (0, JPEG_BASELINE),
        5: (0, EXPLICIT),
        7: (0, EXPLICIT),
        9: (4, IMPLICIT),
        11: (4, EXPLICIT),
    }


def test_rule_defaults_and_roles_by_rule() -> None:
    """A rule without transfer syntaxes takes the defaults; roles are answered for SOP classes
    a rule supports, and the SCP role granted by a set or a predicate."""
    policy = AcceptorPolicy(
        rules=[ContextRule(abstract_syntaxes=list(STORAGE))],  # any collection, any sequence
        scp_roles=lambda uid: uid == CT_IMAGE_STORAGE,
    )
    assert policy.rules == (ContextRule(abstract_syntaxes=list(STORAGE)),)
    accept = answered(
        policy,
        request(
            context(1, CT_IMAGE_STORAGE, JPEG_BASELINE, IMPLICIT),
            context(3, MR_IMAGE_STORAGE, JPEG_BASELINE),
            context(5, VERIFICATION, IMPLICIT),
            role_selections=tuple(
                RoleSelection(sop_class_uid=uid, scu_role=False, scp_role=True)
                for uid in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, VERIFICATION)
            ),
        ),
    )
    assert results(accept) == {1: (0, IMPLICIT), 3: (4, JPEG_BASELINE), 5: (3, IMPLICIT)}
    assert accept.user_information.role_selections == (
        RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=False, scp_role=True),
        RoleSelection(sop_class_uid=MR_IMAGE_STORAGE, scu_role=False, scp_role=False),
    )
    assert AcceptorPolicy(scp_roles=[CT_IMAGE_STORAGE]).scp_roles == frozenset({CT_IMAGE_STORAGE})


def test_every_storage_sop_class_by_rule() -> None:
    """The docstring's example: dul.uids' storage SOP classes, any transfer syntax."""
    storage = dul.uids.STORAGE_SOP_CLASSES
    policy = AcceptorPolicy(
        contexts={VERIFICATION: ()},
        rules=(ContextRule(abstract_syntaxes=storage, transfer_syntaxes=any_uid),),
        scp_roles=storage,
    )
    proposed = sorted(storage)[:126]
    accept = answered(
        policy,
        request(
            *(context(2 * i + 1, uid, JPEG_BASELINE) for i, uid in enumerate(proposed)),
            context(253, "1.2.840.10008.5.1.4.1.2.2.1", IMPLICIT),  # a C-FIND SOP class: 3
            context(255, VERIFICATION, IMPLICIT),
        ),
    )
    got = results(accept)
    assert [got[2 * i + 1] for i in range(len(proposed))] == [(0, JPEG_BASELINE)] * len(proposed)
    assert (got[253][0], got[255]) == (3, (0, IMPLICIT))
