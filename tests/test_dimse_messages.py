"""The DIMSE-C and DIMSE-N messages (PS3.7 §9.3, §10.3): round trips, pydicom, rules, statuses.

The expected values come from tables typed here from PS3.7 (command fields, data set presence,
mandatory fields, Annex C status classes), never from dul's own tables.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.datadict import dictionary_has_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.filewriter import write_dataset

import dul
from dul import LocalProtocolError, RemoteProtocolError
from dul.dimse import (
    CCancelRequest,
    CEchoRequest,
    CEchoResponse,
    CFindRequest,
    CFindResponse,
    CGetRequest,
    CGetResponse,
    CMoveRequest,
    CMoveResponse,
    CStoreRequest,
    CStoreResponse,
    Message,
    NActionRequest,
    NActionResponse,
    NCreateRequest,
    NCreateResponse,
    NDeleteRequest,
    NDeleteResponse,
    NEventReportRequest,
    NEventReportResponse,
    NGetRequest,
    NGetResponse,
    NSetRequest,
    NSetResponse,
    Priority,
    Response,
    StatusCategory,
    decode_command,
    decode_message,
    encode_command,
    encode_message,
    status_category,
)
from dul.testing import DIMSE_MESSAGE_CLASSES, dimse_messages, dimse_statuses

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

# -- PS3.7, typed independently --------------------------------------------------------------------

#: Command Field (0000,0100) of each message (PS3.7 Annex E, Table E.1-1).
COMMAND_FIELD: dict[type[Message], int] = {
    CStoreRequest: 0x0001,
    CStoreResponse: 0x8001,
    CGetRequest: 0x0010,
    CGetResponse: 0x8010,
    CFindRequest: 0x0020,
    CFindResponse: 0x8020,
    CMoveRequest: 0x0021,
    CMoveResponse: 0x8021,
    CEchoRequest: 0x0030,
    CEchoResponse: 0x8030,
    NEventReportRequest: 0x0100,
    NEventReportResponse: 0x8100,
    NGetRequest: 0x0110,
    NGetResponse: 0x8110,
    NSetRequest: 0x0120,
    NSetResponse: 0x8120,
    NActionRequest: 0x0130,
    NActionResponse: 0x8130,
    NCreateRequest: 0x0140,
    NCreateResponse: 0x8140,
    NDeleteRequest: 0x0150,
    NDeleteResponse: 0x8150,
    CCancelRequest: 0x0FFF,
}

#: Whether a data set goes with each message: "required", "optional" or "absent"
#: (PS3.7 §9.3 and §10.3: identifiers, attribute lists, event and action information).
DATASET: dict[type[Message], str] = {
    CStoreRequest: "required",
    CStoreResponse: "absent",
    CFindRequest: "required",
    CFindResponse: "optional",  # a Pending response carries a match
    CGetRequest: "required",
    CGetResponse: "optional",  # failed SOP instance UID list
    CMoveRequest: "required",
    CMoveResponse: "optional",
    CEchoRequest: "absent",
    CEchoResponse: "absent",
    CCancelRequest: "absent",
    NEventReportRequest: "optional",
    NEventReportResponse: "optional",
    NGetRequest: "absent",
    NGetResponse: "optional",
    NSetRequest: "required",
    NSetResponse: "optional",
    NActionRequest: "optional",
    NActionResponse: "optional",
    NCreateRequest: "optional",
    NCreateResponse: "optional",
    NDeleteRequest: "absent",
    NDeleteResponse: "absent",
}

_RESPONSE = ("MessageIDBeingRespondedTo", "Status")
#: The fields a receiver must find in each command set (M in PS3.7's message tables), besides
#: CommandGroupLength, CommandField and CommandDataSetType.
MANDATORY: dict[type[Message], tuple[str, ...]] = {
    CStoreRequest: ("AffectedSOPClassUID", "MessageID", "Priority", "AffectedSOPInstanceUID"),
    CFindRequest: ("AffectedSOPClassUID", "MessageID", "Priority"),
    CGetRequest: ("AffectedSOPClassUID", "MessageID", "Priority"),
    CMoveRequest: ("AffectedSOPClassUID", "MessageID", "Priority", "MoveDestination"),
    CEchoRequest: ("AffectedSOPClassUID", "MessageID"),
    CCancelRequest: ("MessageIDBeingRespondedTo",),
    NEventReportRequest: (
        "AffectedSOPClassUID",
        "MessageID",
        "AffectedSOPInstanceUID",
        "EventTypeID",
    ),
    NGetRequest: ("RequestedSOPClassUID", "MessageID", "RequestedSOPInstanceUID"),
    NSetRequest: ("RequestedSOPClassUID", "MessageID", "RequestedSOPInstanceUID"),
    NActionRequest: (
        "RequestedSOPClassUID",
        "MessageID",
        "RequestedSOPInstanceUID",
        "ActionTypeID",
    ),
    NCreateRequest: ("AffectedSOPClassUID", "MessageID"),
    NDeleteRequest: ("RequestedSOPClassUID", "MessageID", "RequestedSOPInstanceUID"),
    **{
        cls: _RESPONSE
        for cls in (
            CStoreResponse,
            CFindResponse,
            CGetResponse,
            CMoveResponse,
            CEchoResponse,
            NEventReportResponse,
            NGetResponse,
            NSetResponse,
            NActionResponse,
            NCreateResponse,
            NDeleteResponse,
        )
    },
}

#: Attribute name → the command element's keyword (PS3.7 Annex E).
KEYWORD = {
    "affected_sop_class_uid": "AffectedSOPClassUID",
    "requested_sop_class_uid": "RequestedSOPClassUID",
    "message_id": "MessageID",
    "message_id_being_responded_to": "MessageIDBeingRespondedTo",
    "move_destination": "MoveDestination",
    "priority": "Priority",
    "status": "Status",
    "offending_element": "OffendingElement",
    "error_comment": "ErrorComment",
    "error_id": "ErrorID",
    "affected_sop_instance_uid": "AffectedSOPInstanceUID",
    "requested_sop_instance_uid": "RequestedSOPInstanceUID",
    "event_type_id": "EventTypeID",
    "attribute_identifier_list": "AttributeIdentifierList",
    "action_type_id": "ActionTypeID",
    "remaining_suboperations": "NumberOfRemainingSuboperations",
    "completed_suboperations": "NumberOfCompletedSuboperations",
    "failed_suboperations": "NumberOfFailedSuboperations",
    "warning_suboperations": "NumberOfWarningSuboperations",
    "move_originator_aet": "MoveOriginatorApplicationEntityTitle",
    "move_originator_message_id": "MoveOriginatorMessageID",
}
_AT = {"offending_element", "attribute_identifier_list"}


def fields(message: Message) -> dict[str, object]:
    """The message's command fields that are present (not None), by attribute name."""
    return {
        a.name: getattr(message, a.name)
        for a in attrs.fields(type(message))
        if a.name not in ("unknown_elements", "foreign_elements")
        and getattr(message, a.name) is not None
    }


# -- pydicom on the other side ---------------------------------------------------------------------


def pydicom_read(data: bytes) -> Dataset:
    return read_dataset(DicomBytesIO(data), is_implicit_VR=True, is_little_endian=True)


def pydicom_write(ds: Dataset) -> bytes:
    """``ds`` in implicit VR little endian, with CommandGroupLength computed."""

    def write() -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = True
        write_dataset(fp, ds)
        return fp.getvalue()

    ds.CommandGroupLength = 0
    ds.CommandGroupLength = len(write()) - 12
    return write()


def pydicom_command(message: Message, dataset_type: int) -> Dataset:
    """The command set of ``message`` built with pydicom from its fields."""
    ds = Dataset()
    ds.CommandGroupLength = 0
    ds.CommandField = COMMAND_FIELD[type(message)]
    ds.CommandDataSetType = dataset_type
    for name, value in fields(message).items():
        if name in _AT:
            assert isinstance(value, tuple)
            value = [(group << 16) | element for group, element in value]
        setattr(ds, KEYWORD[name], value)
    for element, raw in message.unknown_elements:
        ds[element] = DataElement(element, "UN", raw)
    return ds


def known_to_pydicom_removed(message: Message) -> Message:
    """``message`` without unknown elements that pydicom's dictionary knows (retired ones):
    pydicom would write those by their dictionary VR, not as the raw bytes we keep."""
    unknown = tuple((e, raw) for e, raw in message.unknown_elements if not dictionary_has_tag(e))
    return attrs.evolve(message, unknown_elements=unknown)


def _tags(value: object) -> tuple[tuple[int, int], ...]:
    tags = [] if value is None else [value] if isinstance(value, int) else list(value)  # type: ignore[call-overload]
    return tuple((int(t) >> 16, int(t) & 0xFFFF) for t in tags)


# -- round trips -----------------------------------------------------------------------------------


@given(dimse_messages())
def test_round_trip(drawn: tuple[Message, bool]) -> None:
    message, has_dataset = drawn
    assert decode_message(encode_message(message, has_dataset)) == (message, has_dataset)


def check_pydicom_reads(message: Message, has_dataset: bool) -> None:
    """pydicom reads each field of our encoding, the right Command Field, CommandDataSetType
    0101H exactly when no data set follows, a CommandGroupLength that counts the rest, and the
    unknown elements raw."""
    encoded = encode_message(message, has_dataset)
    ds = pydicom_read(encoded)

    assert ds.CommandGroupLength == len(encoded) - 12
    assert ds.CommandField == COMMAND_FIELD[type(message)]
    assert (ds.CommandDataSetType != 0x0101) is has_dataset
    present = fields(message)
    known_tags = {0x0000, 0x0100, 0x0800} | {tag_for_keyword(KEYWORD[name]) for name in present}
    for name, keyword in KEYWORD.items():
        if name not in present:
            assert keyword not in ds
            continue
        value = ds[keyword].value
        assert (_tags(value) if name in _AT else value) == present[name], keyword
    raw_elements = {
        int(raw.tag): raw.value or b""
        for raw in data_element_generator(DicomBytesIO(encoded), True, True)
    }
    assert message.unknown_elements == tuple(
        (tag, value) for tag, value in raw_elements.items() if tag not in known_tags
    )


def check_pydicom_writes(message: Message, has_dataset: bool) -> None:
    """pydicom's encoding of ``message`` is ours byte for byte, and decodes to ``message``."""
    message = known_to_pydicom_removed(message)
    theirs = pydicom_write(pydicom_command(message, 0x0001 if has_dataset else 0x0101))
    assert theirs == encode_message(message, has_dataset)
    assert decode_message(theirs) == (message, has_dataset)


@given(dimse_messages())
def test_pydicom_reads_what_we_encode(drawn: tuple[Message, bool]) -> None:
    check_pydicom_reads(*drawn)


@given(dimse_messages())
def test_we_decode_what_pydicom_encodes(drawn: tuple[Message, bool]) -> None:
    check_pydicom_writes(*drawn)


@pytest.mark.parametrize("cls", DIMSE_MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_pydicom_agrees_on_every_message(cls: type[Message]) -> None:
    """Both ways, for each message class with all its fields set (hypothesis above may miss a
    class now and then; this never does)."""
    message = _sample(cls)
    for has_dataset in {"required": [True], "absent": [False]}.get(DATASET[cls], [False, True]):
        check_pydicom_reads(message, has_dataset)
        check_pydicom_writes(message, has_dataset)


@pytest.mark.parametrize("dataset_type", [0x0000, 0x0001, 0x0102, 0xFEFE, 0x0101])
def test_any_dataset_type_but_0101_means_a_data_set(dataset_type: int) -> None:
    """PS3.7 Annex E: 0101H is "no data set"; any other value says one follows (DCMTK and
    pynetdicom send 0001H)."""
    message = CFindResponse(message_id_being_responded_to=1, status=0xFF00)
    data = pydicom_write(pydicom_command(message, dataset_type))
    assert decode_message(data) == (message, dataset_type != 0x0101)


@pytest.mark.parametrize(
    "name",
    ["echoscu-storescp", "pynetdicom-echo", "storescu-storescp", "storescu-storescp-pdu4096"],
)
def test_captured_command_sets(capture_dir: Path, name: str) -> None:
    """The command sets DCMTK and pynetdicom sent decode, and re-encode byte for byte."""
    for direction in ("rq", "ac"):
        events = dul.decode((capture_dir / f"{name}.{direction}.bin").read_bytes())
        commands = [
            bytes(v.data)
            for e in events
            if isinstance(e, dul.PDataReceived)
            for v in e.values
            if v.is_command
        ]
        assert len(commands) == 1  # each fits one PDV
        message, has_dataset = decode_message(commands[0])
        assert has_dataset is (name.startswith("storescu") and direction == "rq")
        assert encode_message(message, has_dataset) == commands[0]


# -- unknown elements ------------------------------------------------------------------------------


def test_unknown_and_foreign_elements_are_kept() -> None:
    """Elements the message does not define (a retired one, a known one of another message, one
    with text we would not send) survive decoding, and re-encoding gives the same bytes."""
    elements = {
        0x0002: "1.2.840.10008.1.1",
        0x0100: 0x0030,
        0x0110: 5,
        0x0700: 2,  # Priority: not a C-ECHO-RQ field
        0x0600: b"\xe9T\xe9 ",  # MoveDestination, latin-1 (an AE title is ASCII)
        0x0902: b"x" * 70,  # ErrorComment: longer than LO allows
        0x4000: b"retired!",
        0x0800: 0x0101,
    }
    data = encode_command(elements)  # type: ignore[arg-type]
    message, has_dataset = decode_message(data)
    assert message == CEchoRequest(
        message_id=5,
        unknown_elements=(
            (0x0600, b"\xe9T\xe9 "),
            (0x0700, b"\x02\x00"),
            (0x0902, b"x" * 70),
            (0x4000, b"retired!"),
        ),
    )
    assert not has_dataset
    reencoded = encode_message(message, False)
    assert decode_command(reencoded) == decode_command(data)


@pytest.mark.parametrize("element", [0x0000, 0x0100, 0x0800, 0x0110])
def test_unknown_elements_cannot_replace_fields(element: int) -> None:
    message = CEchoRequest(message_id=1, unknown_elements=((element, b"\0\0"),))
    with pytest.raises(LocalProtocolError, match=f"(0000,{element:04X})"):
        encode_message(message, False)


# -- tolerated on receive: what real peers send ------------------------------------------------

GET_SCP = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve - GET


def orthanc_get_response() -> bytes:
    """A C-GET-RSP shaped as Orthanc 1.10 (DCMTK) sends it after a failed sub-operation: the
    Failed SOP Instance UID List (0008,0058) in the command set, with its own group length
    (0008,0000), after group 0000, whose CommandGroupLength counts group 0000 only."""
    group_0000 = encode_command(
        {
            0x0002: GET_SCP,
            0x0100: 0x8010,
            0x0120: 3,
            0x0800: 0x0101,
            0x0900: 0xB000,
            0x1020: 0,
            0x1021: 1,
            0x1022: 1,
            0x1023: 0,
        }
    )
    failed = b"1.2.826.0.1.3680043.2.1125.99\0"
    uid_list = struct.pack("<HHL", 0x0008, 0x0058, len(failed)) + failed
    return group_0000 + struct.pack("<HHLL", 0x0008, 0x0000, 4, len(uid_list)) + uid_list


def test_orthanc_get_response_with_foreign_elements() -> None:
    """Item 1 of issue 16: the counters are read, (0008,0000) and (0008,0058) kept aside on
    ``foreign_elements``, and such a message is never sent (strict on send)."""
    data = orthanc_get_response()
    message, has_dataset = decode_message(data)
    assert not has_dataset
    assert message == CGetResponse(
        message_id_being_responded_to=3,
        affected_sop_class_uid=GET_SCP,
        status=0xB000,
        remaining_suboperations=0,
        completed_suboperations=1,
        failed_suboperations=1,
        warning_suboperations=0,
        foreign_elements=(
            (0x0008_0000, struct.pack("<L", 38)),
            (0x0008_0058, b"1.2.826.0.1.3680043.2.1125.99\0"),
        ),
    )
    assert message.category is StatusCategory.WARNING
    with pytest.raises(LocalProtocolError, match=r"foreign elements \(0008,0000\), \(0008,0058\)"):
        encode_message(message, False)
    group_0000 = encode_message(attrs.evolve(message, foreign_elements=()), False)
    assert data[: len(group_0000)] == group_0000
    assert data[len(group_0000) :].startswith(struct.pack("<HHL", 0x0008, 0x0000, 4))
    # pydicom reads the same bytes the same way.
    ds = pydicom_read(data)
    assert (ds.NumberOfCompletedSuboperations, ds.NumberOfFailedSuboperations) == (1, 1)
    assert ds.FailedSOPInstanceUIDList == "1.2.826.0.1.3680043.2.1125.99"


def _pynetdicom_vector(name: str) -> bytes:
    """A command set from pynetdicom's own test vectors (a PDV: the control byte, then it)."""
    vectors = pytest.importorskip("pynetdicom.tests.encoded_dimse_msg")
    pdv: bytes = getattr(vectors, name)
    assert pdv[0] & 0x03 == 0x03  # a command, last fragment
    return pdv[1:]


def test_group_length_disagreeing_is_tolerated() -> None:
    """pynetdicom's ``c_move_rsp_cmd_with_dup`` declares CommandGroupLength 114 for 138 bytes.
    That alone is not fatal (pydicom and pynetdicom ignore it too); what stays fatal in it is a
    US counter with two values (4 bytes), since which one is meant is not said."""
    data = _pynetdicom_vector("c_move_rsp_cmd_with_dup")
    assert struct.unpack_from("<L", data, 8)[0] == 114 != len(data) - 12
    with pytest.raises(RemoteProtocolError, match="NumberOfRemainingSuboperations has length 4"):
        decode_message(data)
    # The same command set with the counters as one US each, the group length still 114.
    fixed = data
    for element in (0x1020, 0x1021, 0x1022, 0x1023):
        at = fixed.index(struct.pack("<HHL", 0, element, 4))
        value = fixed[at + 8 : at + 10]
        fixed = fixed[:at] + struct.pack("<HHL", 0, element, 2) + value + fixed[at + 12 :]
    assert struct.unpack_from("<L", fixed, 8)[0] == 114 != len(fixed) - 12
    message, has_dataset = decode_message(fixed)
    assert has_dataset
    assert message == CMoveResponse(
        message_id_being_responded_to=5,
        affected_sop_class_uid=CT,
        status=0xFF00,
        offending_element=((0x0000, 0x0001), (0x0000, 0x0002)),
        remaining_suboperations=3,
        completed_suboperations=1,
        failed_suboperations=2,
        warning_suboperations=4,
    )


# -- malformed command sets on receive -------------------------------------------------------------


def _sample(cls: type[Message]) -> Message:
    """A message of ``cls`` with every field set."""
    values = {
        "affected_sop_class_uid": CT,
        "requested_sop_class_uid": CT,
        "affected_sop_instance_uid": "1.2.3.4",
        "requested_sop_instance_uid": "1.2.3.5",
        "message_id": 3,
        "message_id_being_responded_to": 3,
        "move_destination": "DEST",
        "priority": Priority.HIGH,
        "status": 0xFF00,
        "offending_element": ((0x0010, 0x0010),),
        "error_comment": "comment",
        "error_id": 9,
        "event_type_id": 1,
        "attribute_identifier_list": ((0x0008, 0x0018),),
        "action_type_id": 2,
        "remaining_suboperations": 4,
        "completed_suboperations": 5,
        "failed_suboperations": 6,
        "warning_suboperations": 7,
        "move_originator_aet": "ORIGIN",
        "move_originator_message_id": 8,
    }
    names = [
        a.name for a in attrs.fields(cls) if a.name not in ("unknown_elements", "foreign_elements")
    ]
    return cls(**{name: values[name] for name in names})


@pytest.mark.parametrize("cls", DIMSE_MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_mandatory_fields_are_checked_on_receive(cls: type[Message]) -> None:
    """Without a mandatory field the command set is refused, naming the field; without any
    other field it decodes, the field absent (None), never filled in with a default."""
    message = _sample(cls)
    has_dataset = DATASET[cls] == "required"
    assert set(MANDATORY[cls]) <= {KEYWORD[name] for name in fields(message)}
    for name in fields(message):
        keyword = KEYWORD[name]
        ds = pydicom_command(message, 0x0001 if has_dataset else 0x0101)
        del ds[keyword]
        data = pydicom_write(ds)
        if keyword in MANDATORY[cls]:
            element = tag_for_keyword(keyword) & 0xFFFF  # type: ignore[operator]
            with pytest.raises(RemoteProtocolError, match=rf"{keyword} \(0000,{element:04X}\)"):
                decode_message(data)
        else:
            decoded, _ = decode_message(data)
            assert getattr(decoded, name) is None
            assert decoded == attrs.evolve(message, **{name: None})


def test_a_response_without_status_is_refused() -> None:
    """Status is mandatory in every response: a missing one must not read as Success."""
    ds = pydicom_command(CStoreResponse(message_id_being_responded_to=1), 0x0101)
    del ds.Status
    with pytest.raises(RemoteProtocolError, match=r"CStoreResponse lacks Status \(0000,0900\)"):
        decode_message(pydicom_write(ds))


def test_c_store_rq_without_affected_sop_instance_uid() -> None:
    ds = pydicom_command(_sample(CStoreRequest), 0x0001)
    del ds.AffectedSOPInstanceUID
    with pytest.raises(RemoteProtocolError, match=r"AffectedSOPInstanceUID \(0000,1000\)"):
        decode_message(pydicom_write(ds))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"CommandField": None}, r"no CommandField \(0000,0100\)"),
        ({"CommandField": 0x0031}, r"unknown CommandField 0x0031"),
        ({"CommandField": 0x8FFF}, r"unknown CommandField 0x8fff"),
        ({"CommandDataSetType": None}, r"CEchoRequest has no CommandDataSetType \(0000,0800\)"),
    ],
)
def test_decode_refuses_unusable_commands(change: dict[str, int | None], problem: str) -> None:
    ds = pydicom_command(CEchoRequest(message_id=1), 0x0101)
    for keyword, value in change.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    with pytest.raises(RemoteProtocolError, match=problem) as info:
        decode_message(pydicom_write(ds))
    assert info.value.reason == 6


@given(dimse_messages(), st.data())
def test_decoding_damaged_commands_raises_only_remote_errors(
    drawn: tuple[Message, bool], data: st.DataObject
) -> None:
    """A valid command set with bytes overwritten, dropped or added: a message (tolerated) or
    a RemoteProtocolError, never another exception."""
    encoded = bytearray(encode_message(*drawn))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(encoded)))
        what = data.draw(st.sampled_from(["overwrite", "delete", "insert"]))
        if what == "overwrite" and at < len(encoded):
            encoded[at] = data.draw(st.integers(0, 255))
        elif what == "delete":
            del encoded[at : at + data.draw(st.integers(1, 8))]
        else:
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(RemoteProtocolError):
        decode_message(bytes(encoded))


# -- rules checked on send -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", DIMSE_MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_dataset_presence_on_send(cls: type[Message]) -> None:
    """A data set goes exactly with the messages that may carry one (PS3.7 §9.3, §10.3)."""
    message = _sample(cls)
    if cls in (CGetResponse, CMoveResponse, CFindResponse):
        message = attrs.evolve(message, status=0x0000)
    for has_dataset in (False, True):
        allowed = DATASET[cls] == "optional" or (DATASET[cls] == "required") is has_dataset
        if allowed:
            assert decode_message(encode_message(message, has_dataset)) == (message, has_dataset)
        else:
            with pytest.raises(LocalProtocolError, match="data set"):
                encode_message(message, has_dataset)


@pytest.mark.parametrize("cls", [CStoreRequest, CFindRequest, CGetRequest, CMoveRequest])
@pytest.mark.parametrize("priority", [3, 0xFFFF])
def test_priority_is_checked_on_send(cls: type[Message], priority: int) -> None:
    message = attrs.evolve(_sample(cls), priority=priority)
    with pytest.raises(LocalProtocolError, match="priority"):
        encode_message(message, True)


@pytest.mark.parametrize("cls", [CGetResponse, CMoveResponse])
@pytest.mark.parametrize("status", [0xFF00, 0xFF01])
def test_pending_get_and_move_need_remaining_suboperations(
    cls: type[Response], status: int
) -> None:
    """PS3.7 9.3.3.2 and 9.3.4.2: a Pending C-GET/C-MOVE-RSP counts the remaining ones."""
    message = attrs.evolve(_sample(cls), status=status, remaining_suboperations=None)
    with pytest.raises(LocalProtocolError, match="remaining sub-operations"):
        encode_message(message, False)
    done = attrs.evolve(message, status=0x0000)  # the final response may omit it
    assert decode_message(encode_message(done, False)) == (done, False)


@pytest.mark.parametrize(
    ("aet", "message_id"), [("ORIGIN", None), (None, 8)], ids=["aet-only", "id-only"]
)
def test_move_originator_is_a_pair(aet: str | None, message_id: int | None) -> None:
    """PS3.7 9.3.1.1: a C-STORE-RQ of a C-MOVE sub-operation names the originator AE title and
    its Message ID together."""
    message = attrs.evolve(
        _sample(CStoreRequest), move_originator_aet=aet, move_originator_message_id=message_id
    )
    with pytest.raises(LocalProtocolError, match="Move Originator"):
        encode_message(message, True)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"affected_sop_class_uid": "1.2.é"}, "ASCII"),
        ({"affected_sop_instance_uid": "1." * 40}, "exceeds 64"),
        ({"message_id": 0x10000}, "from 0 to 65535"),
        ({"move_originator_aet": "A" * 17, "move_originator_message_id": 1}, "exceeds 16"),
    ],
)
def test_field_values_are_checked_on_send(change: dict[str, object], problem: str) -> None:
    message = attrs.evolve(_sample(CStoreRequest), **change)
    with pytest.raises(LocalProtocolError, match=problem):
        encode_message(message, True)


def test_only_messages_are_encoded() -> None:
    with pytest.raises(LocalProtocolError, match="not a DIMSE message"):
        encode_message(Message(), False)


def test_default_fields() -> None:
    """C-ECHO's SOP class defaults to Verification; responses default to Success; requests
    with a priority default to medium."""
    assert CEchoRequest(message_id=1).affected_sop_class_uid == "1.2.840.10008.1.1"
    assert CEchoResponse(message_id_being_responded_to=1).status == 0x0000
    assert _sample(CFindRequest).priority == Priority.HIGH
    assert CFindRequest(message_id=1, affected_sop_class_uid=STUDY_ROOT_FIND).priority == 0


# -- status categories (PS3.7 Annex C) -------------------------------------------------------------

SUCCESS, WARNING, FAILURE, CANCEL, PENDING = (
    StatusCategory.SUCCESS,
    StatusCategory.WARNING,
    StatusCategory.FAILURE,
    StatusCategory.CANCEL,
    StatusCategory.PENDING,
)

#: Status codes of PS3.7 Annex C (general) and of the PS3.4 services, with their class.
STATUSES: dict[int, StatusCategory] = {
    0x0000: SUCCESS,
    # Warning: C.4.1-C.4.3 and the services' Bxxx codes
    0x0001: WARNING,  # requested optional attributes are not supported
    0x0107: WARNING,  # attribute list error
    0x0116: WARNING,  # attribute value out of range
    0xB000: WARNING,  # coercion of data elements; sub-operations complete, one or more failures
    0xB006: WARNING,  # elements discarded
    0xB007: WARNING,  # data set does not match SOP class
    # Failure: C.5 and the services' Axxx, Cxxx codes
    0x0105: FAILURE,  # no such attribute
    0x0106: FAILURE,  # invalid attribute value
    0x0110: FAILURE,  # processing failure
    0x0111: FAILURE,  # duplicate SOP instance
    0x0112: FAILURE,  # no such SOP instance
    0x0113: FAILURE,  # no such event type
    0x0114: FAILURE,  # no such argument
    0x0115: FAILURE,  # invalid argument value
    0x0117: FAILURE,  # invalid object instance
    0x0118: FAILURE,  # no such SOP class
    0x0119: FAILURE,  # class-instance conflict
    0x0120: FAILURE,  # missing attribute
    0x0121: FAILURE,  # missing attribute value
    0x0122: FAILURE,  # SOP class not supported
    0x0123: FAILURE,  # no such action
    0x0124: FAILURE,  # not authorized
    0x0210: FAILURE,  # duplicate invocation
    0x0211: FAILURE,  # unrecognized operation
    0x0212: FAILURE,  # mistyped argument
    0x0213: FAILURE,  # resource limitation
    0xA700: FAILURE,  # out of resources
    0xA701: FAILURE,  # out of resources: unable to calculate number of matches
    0xA702: FAILURE,  # out of resources: unable to perform sub-operations
    0xA801: FAILURE,  # move destination unknown
    0xA900: FAILURE,  # identifier does not match SOP class
    0xC000: FAILURE,  # unable to process
    0xCFFF: FAILURE,
    0xFE00: CANCEL,
    0xFF00: PENDING,
    0xFF01: PENDING,  # optional keys not supported
}


@pytest.mark.parametrize(("status", "category"), STATUSES.items(), ids=lambda v: f"{v}")
def test_status_category(status: int, category: StatusCategory) -> None:
    assert status_category(status) is category
    response = CEchoResponse(message_id_being_responded_to=1, status=status)
    assert response.category is category
    assert response.is_pending is (category is PENDING)


@given(dimse_statuses())
def test_every_status_has_a_category(status: int) -> None:
    """Codes of no defined class count as failures: what matters is they are not success."""
    category = status_category(status)
    assert (category is SUCCESS) is (status == 0)
    assert (category is PENDING) is (status in (0xFF00, 0xFF01))
    if 0xB000 <= status <= 0xBFFF:
        assert category is WARNING
    if 0xA000 <= status <= 0xAFFF or 0xC000 <= status <= 0xCFFF:
        assert category is FAILURE
