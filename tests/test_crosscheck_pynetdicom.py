"""Cross-check the codec against pynetdicom's PDU classes, both ways, on drawn values.

* What dul encodes, ``pynetdicom.pdu.<PDU>().decode(bytes)`` reads back as the same values.
* What pynetdicom encodes (its PDU objects built here from the same drawn values), dul decodes
  to the same event; and the two encodings are the same bytes.

Values are translated by hand between dul's events and pynetdicom's attributes (``to_pynetdicom``,
``from_pynetdicom``), so neither codec is checked against itself.

The sub-strategy draws what both libraries can represent. It leaves out:

* unknown items and sub-items (``dul.UnknownItem``): pynetdicom looks every item type up in
  ``PDU_ITEM_TYPES`` and fails (KeyError) on one it does not know, where PS3.8 §9.3.1 says to
  skip it;
* UIDs and names pydicom would warn about: the drawn UIDs already follow PS3.5 §9.1 (no leading
  zero in a component), which pydicom checks, and the AE titles and version names are the
  printable ASCII pynetdicom's ``validate_ae`` accepts.

Everything else dul draws is in: every sub-item of PS3.7 Annex D.3.3, any protocol version with
bit 0 set, maximum lengths up to 2**32 - 1, user abort reasons 0-255, PDVs of any flags.

One difference is bridged rather than left out: a rejected presentation context whose transfer
syntax is not significant (``transfer_syntax=""``, PS3.8 §9.3.3.2). dul writes an empty 40H
sub-item; pynetdicom reads that as ``None`` and cannot write it (its encoder fails on ``None``),
so pynetdicom's PDU is built without the sub-item, which dul reads as ``""`` too; the bytes then
differ by that empty sub-item, and only the values are compared.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dul import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    Event,
    PData,
    PDataReceived,
    PresentationContext,
    PresentationContextAC,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
    decode,
    encode,
)
from dul import testing as dst

pytestmark = pytest.mark.interop

# pynetdicom.pdu and pynetdicom.pdu_items, imported by the fixture below: the ``pynetdicom``
# fixture skips these tests when it is missing (and fails them under CI, which must run them).
pdu_module: Any = None
items_module: Any = None


@pytest.fixture(autouse=True, scope="module")
def _pynetdicom_modules(pynetdicom: ModuleType) -> None:
    global pdu_module, items_module
    import pynetdicom.pdu
    import pynetdicom.pdu_items

    pdu_module, items_module = pynetdicom.pdu, pynetdicom.pdu_items


# -- the sub-strategy: what both libraries represent -----------------------------------------


def _shared_user_information(for_request: bool) -> st.SearchStrategy[UserInformation]:
    return dst.user_information(for_request).map(lambda u: attrs.evolve(u, unknown_items=()))


def shared_associate_requests() -> st.SearchStrategy[AssociateRequest]:
    return st.builds(
        attrs.evolve,
        dst.associate_requests(),
        unknown_items=st.just(()),
        user_information=_shared_user_information(True),
    )


def shared_associate_accepts() -> st.SearchStrategy[AssociateAccept]:
    return st.builds(
        attrs.evolve,
        dst.associate_accepts(),
        unknown_items=st.just(()),
        user_information=_shared_user_information(False),
    )


def shared_pdus() -> st.SearchStrategy[Any]:
    return st.one_of(
        shared_associate_requests(),
        shared_associate_accepts(),
        dst.associate_rejects(),
        dst.pdata(),
        dst.release_requests(),
        dst.release_responses(),
        dst.aborts(),
    )


# -- dul event -> pynetdicom PDU ---------------------------------------------------------------


def _pn_user_information(info: UserInformation) -> Any:
    pi = items_module
    data: list[Any] = []
    if info.maximum_length is not None:
        sub = pi.MaximumLengthSubItem()
        sub.maximum_length_received = info.maximum_length
        data.append(sub)
    if info.implementation_class_uid is not None:
        sub = pi.ImplementationClassUIDSubItem()
        sub.implementation_class_uid = info.implementation_class_uid
        data.append(sub)
    if info.async_ops_window is not None:
        sub = pi.AsynchronousOperationsWindowSubItem()
        sub.maximum_number_operations_invoked = info.async_ops_window.invoked
        sub.maximum_number_operations_performed = info.async_ops_window.performed
        data.append(sub)
    for role in info.role_selections:
        sub = pi.SCP_SCU_RoleSelectionSubItem()
        sub.sop_class_uid = role.sop_class_uid
        sub.scu_role = int(role.scu_role)
        sub.scp_role = int(role.scp_role)
        data.append(sub)
    if info.implementation_version_name is not None:
        sub = pi.ImplementationVersionNameSubItem()
        sub.implementation_version_name = info.implementation_version_name
        data.append(sub)
    for ext in info.extended_negotiations:
        sub = pi.SOPClassExtendedNegotiationSubItem()
        sub.sop_class_uid = ext.sop_class_uid
        sub.service_class_application_information = ext.application_information
        data.append(sub)
    for common in info.common_extended_negotiations:
        sub = pi.SOPClassCommonExtendedNegotiationSubItem()
        sub.sop_class_uid = common.sop_class_uid
        sub.service_class_uid = common.service_class_uid
        sub.related_general_sop_class_identification = list(common.related_general_sop_classes)
        data.append(sub)
    identity = info.user_identity
    if isinstance(identity, UserIdentity):
        sub = pi.UserIdentitySubItemRQ()
        sub.user_identity_type = identity.identity_type
        sub.positive_response_requested = int(identity.positive_response_requested)
        sub.primary_field = identity.primary
        sub.secondary_field = identity.secondary
        data.append(sub)
    elif isinstance(identity, UserIdentityAC):
        sub = pi.UserIdentitySubItemAC()
        sub.server_response = identity.server_response
        data.append(sub)
    item = pi.UserInformationItem()
    item.user_data = data
    return item


def to_pynetdicom(event: Event) -> Any:
    """Build pynetdicom's PDU object holding the values of ``event``."""
    pn, pi = pdu_module, items_module
    if isinstance(event, AssociateRequest | AssociateAccept):
        app = pi.ApplicationContextItem()
        app.application_context_name = event.application_context_name
        variable: list[Any] = [app]
        if isinstance(event, AssociateRequest):
            out = pn.A_ASSOCIATE_RQ()
            out.called_ae_title = event.called_ae_title
            out.calling_ae_title = event.calling_ae_title
            for context in event.presentation_contexts:
                item = pi.PresentationContextItemRQ()
                item.presentation_context_id = context.context_id
                abstract = pi.AbstractSyntaxSubItem()
                abstract.abstract_syntax_name = context.abstract_syntax
                item.abstract_transfer_syntax_sub_items = [abstract]
                for syntax in context.transfer_syntaxes:
                    transfer = pi.TransferSyntaxSubItem()
                    transfer.transfer_syntax_name = syntax
                    item.abstract_transfer_syntax_sub_items.append(transfer)
                variable.append(item)
        else:
            out = pn.A_ASSOCIATE_AC()
            out.reserved_aet = event.called_ae_title
            out.reserved_aec = event.calling_ae_title
            for answer in event.presentation_contexts:
                item = pi.PresentationContextItemAC()
                item.presentation_context_id = answer.context_id
                item.result_reason = answer.result
                item.transfer_syntax_sub_item = []
                if answer.transfer_syntax:
                    transfer = pi.TransferSyntaxSubItem()
                    transfer.transfer_syntax_name = answer.transfer_syntax
                    item.transfer_syntax_sub_item = [transfer]
                variable.append(item)
        variable.append(_pn_user_information(event.user_information))
        out.protocol_version = event.protocol_version
        out.variable_items = variable
        return out
    if isinstance(event, AssociateReject):
        out = pn.A_ASSOCIATE_RJ()
        out.result, out.source, out.reason_diagnostic = event.result, event.source, event.reason
        return out
    if isinstance(event, PData):
        out = pn.P_DATA_TF()
        for value in event.values:
            item = pi.PresentationDataValueItem()
            item.presentation_context_id = value.context_id
            control = (1 if value.is_command else 0) | (2 if value.is_last else 0)
            item.presentation_data_value = bytes((control,)) + bytes(value.data)
            out.presentation_data_value_items.append(item)
        return out
    if isinstance(event, ReleaseRequest):
        return pn.A_RELEASE_RQ()
    if isinstance(event, ReleaseResponse):
        return pn.A_RELEASE_RP()
    if isinstance(event, Abort):
        out = pn.A_ABORT_RQ()
        out.source, out.reason_diagnostic = event.source, event.reason
        return out
    raise TypeError(type(event))


# -- pynetdicom PDU -> dul event ---------------------------------------------------------------


def _text(value: Any) -> str:
    """pynetdicom keeps some fields as bytes after decoding, others as str or UID."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    return str(value)


def _from_user_information(item: Any) -> UserInformation:
    pi = items_module
    fields: dict[str, Any] = {
        "maximum_length": None,
        "implementation_class_uid": None,
        "implementation_version_name": None,
    }
    roles, extended, common = [], [], []
    for sub in item.user_data:
        if isinstance(sub, pi.MaximumLengthSubItem):
            fields["maximum_length"] = sub.maximum_length_received
        elif isinstance(sub, pi.ImplementationClassUIDSubItem):
            fields["implementation_class_uid"] = _text(sub.implementation_class_uid)
        elif isinstance(sub, pi.ImplementationVersionNameSubItem):
            fields["implementation_version_name"] = _text(sub.implementation_version_name)
        elif isinstance(sub, pi.AsynchronousOperationsWindowSubItem):
            fields["async_ops_window"] = AsyncOpsWindow(
                invoked=sub.maximum_number_operations_invoked,
                performed=sub.maximum_number_operations_performed,
            )
        elif isinstance(sub, pi.SCP_SCU_RoleSelectionSubItem):
            roles.append(
                RoleSelection(
                    sop_class_uid=_text(sub.sop_class_uid),
                    scu_role=bool(sub.scu_role),
                    scp_role=bool(sub.scp_role),
                )
            )
        elif isinstance(sub, pi.SOPClassExtendedNegotiationSubItem):
            extended.append(
                SOPClassExtendedNegotiation(
                    sop_class_uid=_text(sub.sop_class_uid),
                    application_information=bytes(sub.service_class_application_information or b""),
                )
            )
        elif isinstance(sub, pi.SOPClassCommonExtendedNegotiationSubItem):
            common.append(
                SOPClassCommonExtendedNegotiation(
                    sop_class_uid=_text(sub.sop_class_uid),
                    service_class_uid=_text(sub.service_class_uid),
                    related_general_sop_classes=tuple(
                        _text(uid) for uid in sub.related_general_sop_class_identification
                    ),
                )
            )
        elif isinstance(sub, pi.UserIdentitySubItemRQ):
            fields["user_identity"] = UserIdentity(
                identity_type=sub.user_identity_type,
                positive_response_requested=sub.positive_response_requested == 1,
                primary=bytes(sub.primary_field),
                secondary=bytes(sub.secondary_field or b""),
            )
        elif isinstance(sub, pi.UserIdentitySubItemAC):
            fields["user_identity"] = UserIdentityAC(
                server_response=bytes(sub.server_response or b"")
            )
        else:
            raise AssertionError(f"unexpected sub-item {sub!r}")
    return UserInformation(
        role_selections=tuple(roles),
        extended_negotiations=tuple(extended),
        common_extended_negotiations=tuple(common),
        **fields,
    )


def from_pynetdicom(obj: Any) -> Event:
    """Read the values of pynetdicom's PDU object into the dul event they stand for."""
    pn, pi = pdu_module, items_module
    if isinstance(obj, pn.A_ASSOCIATE_RQ | pn.A_ASSOCIATE_AC):
        is_rq = isinstance(obj, pn.A_ASSOCIATE_RQ)
        contexts: list[Any] = []
        user: UserInformation | None = None
        for item in obj.variable_items:
            if isinstance(item, pi.PresentationContextItemRQ):
                contexts.append(
                    PresentationContext(
                        context_id=item.context_id,
                        abstract_syntax=_text(item.abstract_syntax),
                        transfer_syntaxes=tuple(_text(ts) for ts in item.transfer_syntax),
                    )
                )
            elif isinstance(item, pi.PresentationContextItemAC):
                contexts.append(
                    PresentationContextAC(
                        context_id=item.context_id,
                        result=item.result,
                        transfer_syntax=_text(item.transfer_syntax or ""),
                    )
                )
            elif isinstance(item, pi.UserInformationItem):
                user = _from_user_information(item)
        assert user is not None
        cls = AssociateRequest if is_rq else AssociateAccept
        return cls(
            called_ae_title=_text(obj.called_ae_title),
            calling_ae_title=_text(obj.calling_ae_title),
            presentation_contexts=tuple(contexts),
            user_information=user,
            application_context_name=_text(obj.application_context_name),
            protocol_version=obj.protocol_version,
        )
    if isinstance(obj, pn.A_ASSOCIATE_RJ):
        return AssociateReject(result=obj.result, source=obj.source, reason=obj.reason_diagnostic)
    if isinstance(obj, pn.P_DATA_TF):
        return PDataReceived(
            values=tuple(
                PresentationDataValue(
                    context_id=item.presentation_context_id,
                    is_command=bool(item.presentation_data_value[0] & 1),
                    is_last=bool(item.presentation_data_value[0] & 2),
                    data=item.presentation_data_value[1:],
                )
                for item in obj.presentation_data_value_items
            )
        )
    if isinstance(obj, pn.A_RELEASE_RQ):
        return ReleaseRequest()
    if isinstance(obj, pn.A_RELEASE_RP):
        return ReleaseResponse()
    if isinstance(obj, pn.A_ABORT_RQ):
        return Abort(source=obj.source, reason=obj.reason_diagnostic)
    raise TypeError(type(obj))


_PN_CLASS = {1: "A_ASSOCIATE_RQ", 2: "A_ASSOCIATE_AC", 3: "A_ASSOCIATE_RJ", 4: "P_DATA_TF"}
_PN_CLASS |= {5: "A_RELEASE_RQ", 6: "A_RELEASE_RP", 7: "A_ABORT_RQ"}


def pynetdicom_decode(wire: bytes) -> Any:
    """Decode one whole PDU with pynetdicom."""
    obj = getattr(pdu_module, _PN_CLASS[wire[0]])()
    obj.decode(wire)
    return obj


def _received(event: Event) -> Event:
    return PDataReceived(values=event.values) if isinstance(event, PData) else event


# -- the properties ----------------------------------------------------------------------------


@given(shared_pdus())
def test_dul_encodes_pynetdicom_decodes(event: Event) -> None:
    """pynetdicom reads what dul writes as the values dul wrote."""
    assert from_pynetdicom(pynetdicom_decode(encode(event))) == _received(event)


@given(shared_pdus())
def test_pynetdicom_encodes_dul_decodes(event: Event) -> None:
    """dul reads what pynetdicom writes as the values pynetdicom was given."""
    wire = to_pynetdicom(event).encode()
    assert decode(wire) == [_received(event)]
    # Both write the same bytes (sub-items in ascending type order here, as dul does), but for
    # the empty transfer syntax sub-item of a rejected context, which pynetdicom cannot write.
    if not isinstance(event, AssociateAccept) or all(
        c.transfer_syntax for c in event.presentation_contexts
    ):
        assert wire == encode(event)


@given(shared_associate_requests())
def test_sub_items_in_pynetdicom_order(event: AssociateRequest) -> None:
    """pynetdicom may write user-information sub-items in another order: dul reads any order."""
    obj = to_pynetdicom(event)
    user = obj.variable_items[-1]
    # Descending type order; a stable sort keeps the order of sub-items of one type.
    user.user_data = sorted(user.user_data, key=lambda sub: -sub.item_type)
    obj.variable_items = [obj.variable_items[-1], *obj.variable_items[:-1]]
    assert decode(obj.encode()) == [event]


def test_minimal_request_round_trip() -> None:
    """A fixed example, so that a failure of the properties above has a simple neighbour."""
    event = AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="PYNETDICOM",
        presentation_contexts=(
            PresentationContext(
                context_id=1,
                abstract_syntax="1.2.840.10008.1.1",
                transfer_syntaxes=("1.2.840.10008.1.2",),
            ),
        ),
    )
    obj = pynetdicom_decode(encode(event))
    assert obj.called_ae_title == "STORESCP"
    assert obj.calling_ae_title == "PYNETDICOM"
    assert obj.presentation_context[0].abstract_syntax == "1.2.840.10008.1.1"
    assert decode(to_pynetdicom(event).encode()) == [event]
