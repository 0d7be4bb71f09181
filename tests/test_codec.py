"""The PDU codec on valid input: round trips, exact bytes, and the tolerances PS3.8 asks for.

Every byte-level case is fed four ways through the receive buffer (as a Connection does): whole,
one byte at a time, in random chunks, and followed by the start of another PDU (h11's rule: any
chunking gives the same events). The byte builders here spell PS3.8 §9.3 out by hand, so that the
encoder is checked against the standard and not against itself; test_codec_malformed.py uses them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
from dul import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    AsyncOpsWindow,
    Event,
    LocalProtocolError,
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
    UnknownItem,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
    WireStr,
    decode,
    encode,
)
from dul import testing as dst
from dul._buffer import ReceiveBuffer
from dul._pdu import decode_pdu

# -- byte builders (PS3.8 §9.3, written out independently of the encoder) ----------------------

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
CT_IMAGE = b"1.2.840.10008.5.1.4.1.1.2"
CLASS_UID = b"1.2.3.4"
NO_LIMIT = 1 << 32  # a framing cap no test PDU reaches


def item(item_type: int, value: bytes, reserved: int = 0) -> bytes:
    """An item or sub-item: type, reserved byte, 2-byte length, value (PS3.8 §9.3.2)."""
    return bytes((item_type, reserved)) + len(value).to_bytes(2, "big") + value


def pdu(pdu_type: int, body: bytes, reserved: int = 0) -> bytes:
    """A PDU: type, reserved byte, 4-byte length, variable field (PS3.8 §9.3.1)."""
    return bytes((pdu_type, reserved)) + len(body).to_bytes(4, "big") + body


def context_rq(context_id: int, abstract: bytes, *transfers: bytes, reserved: int = 0) -> bytes:
    """A presentation context item as proposed (20H); ``reserved`` goes to its byte 6."""
    body = bytes((context_id, 0, reserved, 0)) + item(0x30, abstract)
    return item(0x20, body + b"".join(item(0x40, ts) for ts in transfers))


def context_ac(context_id: int, result: int, transfer: bytes | None) -> bytes:
    """A presentation context item as answered (21H); ``transfer=None`` leaves the sub-item out."""
    body = bytes((context_id, 0, result, 0))
    return item(0x21, body if transfer is None else body + item(0x40, transfer))


def user_info(*sub_items: bytes, max_length: int = 16384) -> bytes:
    """A user information item (50H): maximum length, implementation class UID, then more."""
    return item(
        0x50,
        item(0x51, max_length.to_bytes(4, "big")) + item(0x52, CLASS_UID) + b"".join(sub_items),
    )


def associate(
    pdu_type: int,
    items: Sequence[bytes],
    called: bytes = b"ANY-SCP",
    calling: bytes = b"ECHOSCU",
    version: int = 1,
    reserved: bytes = bytes(34),
) -> bytes:
    """An A-ASSOCIATE-RQ (1) or -AC (2): 68-byte fixed part, then the items as given."""
    fixed = (
        version.to_bytes(2, "big")
        + reserved[:2]
        + called.ljust(16, b" ")
        + calling.ljust(16, b" ")
        + reserved[2:]
    )
    return pdu(pdu_type, fixed + b"".join(items))


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """A PDV item: 4-byte length, context ID, message control header, data (PS3.8 §9.3.5)."""
    return (len(data) + 2).to_bytes(4, "big") + bytes((context_id, control)) + data


RQ_ITEMS = [
    item(0x10, APP_CONTEXT),
    context_rq(1, VERIFICATION, IMPLICIT_LE),
    user_info(item(0x55, b"DUL_TEST")),
]
AC_ITEMS = [
    item(0x10, APP_CONTEXT),
    context_ac(1, 0, IMPLICIT_LE),
    user_info(item(0x55, b"DUL_TEST")),
]
RQ_BYTES = associate(1, RQ_ITEMS)
AC_BYTES = associate(2, AC_ITEMS)

RQ_EVENT = AssociateRequest(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContext(
            context_id=1,
            abstract_syntax=VERIFICATION.decode(),
            transfer_syntaxes=(IMPLICIT_LE.decode(),),
        ),
    ),
    user_information=UserInformation(
        maximum_length=16384,
        implementation_class_uid=CLASS_UID.decode(),
        implementation_version_name="DUL_TEST",
    ),
)
AC_EVENT = AssociateAccept(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextAC(context_id=1, result=0, transfer_syntax=IMPLICIT_LE.decode()),
    ),
    user_information=RQ_EVENT.user_information,
)

# -- feeding through the receive buffer --------------------------------------------------------


def feed(
    chunks: Iterable[bytes],
    max_length: int = NO_LIMIT,
    max_associate_length: int = NO_LIMIT,
) -> tuple[list[Event], int]:
    """Frame ``chunks`` with a ReceiveBuffer and decode each PDU as it completes.

    Returns the events and the number of bytes fed but not framed (an incomplete PDU).
    """
    buffer = ReceiveBuffer()
    events = []
    fed = framed_bytes = 0
    for chunk in chunks:
        buffer.feed(chunk)
        fed += len(chunk)
        while (framed := buffer.next_pdu(max_length, max_associate_length)) is not None:
            pdu_type, body = framed
            framed_bytes += 6 + len(body)
            events.append(decode_pdu(pdu_type, body))
    return events, fed - framed_bytes


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed: empty chunks)."""
    points = [0, *sorted(min(max(c, 0), len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


#: The start of another PDU: a complete P-DATA-TF header and 3 bytes of its body.
NEXT_PDU_START = encode(
    PData(
        values=(
            PresentationDataValue(
                context_id=1, is_command=True, is_last=True, data=b"\x01\x02\x03\x04"
            ),
        )
    )
)[:9]


def chunkings(data: bytes, seed: int = 0) -> Iterator[tuple[str, list[bytes], int]]:
    """The four ways of feeding ``data``: (name, chunks, bytes expected to remain buffered)."""
    rng = random.Random(seed)
    yield "whole", [data], 0
    yield "bytewise", [data[i : i + 1] for i in range(len(data))], 0
    cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 8))]
    yield "random", split_at(data, cuts), 0
    yield "then-next", [data + NEXT_PDU_START], len(NEXT_PDU_START)


def received(event: Event) -> Event:
    """What decoding the encoding of ``event`` gives: a PData comes back as PDataReceived."""
    if isinstance(event, PData):
        return PDataReceived(values=event.values)
    return event


def assert_fed(data: bytes, expected: list[Event]) -> None:
    """``data`` decodes to ``expected`` with ``decode`` and in every chunking of the buffer."""
    assert decode(data) == expected
    for name, chunks, left in chunkings(data):
        assert feed(chunks) == (expected, left), name


# -- round trips of everything the strategies draw ---------------------------------------------

STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "associate_requests": dst.associate_requests,
    "associate_accepts": dst.associate_accepts,
    "associate_rejects": dst.associate_rejects,
    "pdata": dst.pdata,
    "release_requests": dst.release_requests,
    "release_responses": dst.release_responses,
    "aborts": dst.aborts,
}


@pytest.mark.parametrize("name", list(STRATEGIES))
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    """decode(encode(x)) == [x]; the bytes re-encode identically; any chunking, bytewise too."""
    event = data.draw(STRATEGIES[name](), label="event")
    wire = encode(event)
    assert decode(wire) == [received(event)]
    assert encode(decode(wire)[0]) == wire
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6), label="cuts")
    tail = data.draw(st.integers(0, len(NEXT_PDU_START)), label="tail")
    assert feed(split_at(wire + NEXT_PDU_START[:tail], cuts)) == ([received(event)], tail)
    assert feed(wire[i : i + 1] for i in range(len(wire))) == ([received(event)], 0)


@given(events=st.lists(dst.pdus(), min_size=1, max_size=3), data=st.data())
def test_stream_of_pdus(events: list[Event], data: st.DataObject) -> None:
    """Back-to-back PDUs in random chunks come out in order, none lost, none merged."""
    wire = b"".join(encode(e) for e in events)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20), label="cuts")
    assert feed(split_at(wire, cuts)) == ([received(e) for e in events], 0)
    assert decode(wire) == [received(e) for e in events]


@given(dst.uids())
def test_uid_strategy_is_valid(uid: str) -> None:
    """The UIDs drawn are what PS3.5 §9.1 allows and what strict encoding accepts."""
    assert 1 <= len(uid) <= 64
    for component in uid.split("."):
        assert component.isdigit()
        assert component == "0" or not component.startswith("0")


@given(dst.ae_titles())
def test_ae_title_strategy_is_valid(title: str) -> None:
    assert 1 <= len(title) <= 16
    assert title.isascii()
    assert title.isprintable()
    assert "\\" not in title
    assert title.strip(" ") == title


# -- byte-level cases, each fed four ways -------------------------------------------------------

BYTE_CASES: dict[str, tuple[bytes, Event]] = {
    "associate-rq": (RQ_BYTES, RQ_EVENT),
    "associate-ac": (AC_BYTES, AC_EVENT),
    "associate-rj": (pdu(3, bytes((0, 1, 1, 3))), AssociateReject(result=1, source=1, reason=3)),
    "p-data-two-pdvs": (
        pdu(4, pdv(1, 0x03, b"\x08\x00command") + pdv(1, 0x00, b"data")),
        PDataReceived(
            values=(
                PresentationDataValue(
                    context_id=1, is_command=True, is_last=True, data=b"\x08\x00command"
                ),
                PresentationDataValue(context_id=1, is_command=False, is_last=False, data=b"data"),
            )
        ),
    ),
    "release-rq": (pdu(5, bytes(4)), ReleaseRequest()),
    "release-rp": (pdu(6, bytes(4)), ReleaseResponse()),
    "abort-user": (pdu(7, bytes((0, 0, 0, 0))), Abort(source=0, reason=0)),
    "abort-provider": (pdu(7, bytes((0, 0, 2, 6))), Abort(source=2, reason=6)),
    "every-sub-item": (
        associate(
            1,
            [
                item(0x10, APP_CONTEXT),
                context_rq(1, CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE),
                context_rq(255, VERIFICATION, IMPLICIT_LE),
                user_info(
                    item(0x53, bytes((0, 5, 0, 0))),
                    item(0x54, (17).to_bytes(2, "big") + IMPLICIT_LE + b"\x01\x00"),
                    item(0x55, b"X"),
                    item(0x56, len(CT_IMAGE).to_bytes(2, "big") + CT_IMAGE + b"\x01\x02"),
                    item(
                        0x57,
                        len(CT_IMAGE).to_bytes(2, "big")
                        + CT_IMAGE
                        + (5).to_bytes(2, "big")
                        + b"1.2.3"
                        + (9).to_bytes(2, "big")
                        + (3).to_bytes(2, "big")
                        + b"1.5"
                        + (2).to_bytes(2, "big")
                        + b"17",
                    ),
                    item(0x58, b"\x02\x01" + b"\x00\x04user" + b"\x00\x04pass"),
                    item(0xE1, b"unknown sub-item"),
                    max_length=0,
                ),
                item(0x77, b"unknown item"),
            ],
            called=b"A",
            calling=b"0123456789ABCDEF",
        ),
        AssociateRequest(
            called_ae_title="A",
            calling_ae_title="0123456789ABCDEF",
            presentation_contexts=(
                PresentationContext(
                    context_id=1,
                    abstract_syntax=CT_IMAGE.decode(),
                    transfer_syntaxes=(EXPLICIT_LE.decode(), IMPLICIT_LE.decode()),
                ),
                PresentationContext(
                    context_id=255,
                    abstract_syntax=VERIFICATION.decode(),
                    transfer_syntaxes=(IMPLICIT_LE.decode(),),
                ),
            ),
            user_information=UserInformation(
                maximum_length=0,
                implementation_class_uid=CLASS_UID.decode(),
                implementation_version_name="X",
                async_ops_window=AsyncOpsWindow(invoked=5, performed=0),
                role_selections=(
                    RoleSelection(
                        sop_class_uid=IMPLICIT_LE.decode(), scu_role=True, scp_role=False
                    ),
                ),
                extended_negotiations=(
                    SOPClassExtendedNegotiation(
                        sop_class_uid=CT_IMAGE.decode(), application_information=b"\x01\x02"
                    ),
                ),
                common_extended_negotiations=(
                    SOPClassCommonExtendedNegotiation(
                        sop_class_uid=CT_IMAGE.decode(),
                        service_class_uid="1.2.3",
                        related_general_sop_classes=("1.5", "17"),
                    ),
                ),
                user_identity=UserIdentity(
                    identity_type=2,
                    primary=b"user",
                    secondary=b"pass",
                    positive_response_requested=True,
                ),
                unknown_items=(UnknownItem(item_type=0xE1, data=b"unknown sub-item"),),
            ),
            unknown_items=(UnknownItem(item_type=0x77, data=b"unknown item"),),
        ),
    ),
    "ac-sub-items": (
        associate(
            2,
            [
                item(0x10, APP_CONTEXT),
                context_ac(1, 0, EXPLICIT_LE),
                context_ac(3, 3, IMPLICIT_LE),
                context_ac(5, 4, b""),
                user_info(
                    item(0x53, bytes((0, 1, 0, 1))),
                    item(0x54, (17).to_bytes(2, "big") + IMPLICIT_LE + b"\x00\x01"),
                    item(0x59, b"\x00\x05token"),
                    max_length=0xFFFFFFFF,
                ),
            ],
        ),
        AssociateAccept(
            called_ae_title="ANY-SCP",
            calling_ae_title="ECHOSCU",
            presentation_contexts=(
                PresentationContextAC(context_id=1, result=0, transfer_syntax=EXPLICIT_LE.decode()),
                PresentationContextAC(context_id=3, result=3, transfer_syntax=IMPLICIT_LE.decode()),
                PresentationContextAC(context_id=5, result=4, transfer_syntax=""),
            ),
            user_information=UserInformation(
                maximum_length=0xFFFFFFFF,
                implementation_class_uid=CLASS_UID.decode(),
                implementation_version_name=None,
                async_ops_window=AsyncOpsWindow(invoked=1, performed=1),
                role_selections=(
                    RoleSelection(
                        sop_class_uid=IMPLICIT_LE.decode(), scu_role=False, scp_role=True
                    ),
                ),
                user_identity=UserIdentityAC(server_response=b"token"),
            ),
        ),
    ),
}


@pytest.mark.parametrize("case", list(BYTE_CASES))
def test_byte_case_is_canonical(case: str) -> None:
    """These bytes are canonical: decoding then encoding gives them back exactly."""
    wire, expected = BYTE_CASES[case]
    assert decode(wire) == [expected]
    assert encode(expected) == wire
    assert encode(decode(wire)[0]) == wire


@pytest.mark.parametrize("mode", ["whole", "bytewise", "random", "then-next"])
@pytest.mark.parametrize("case", list(BYTE_CASES))
def test_byte_case_fed(case: str, mode: str) -> None:
    wire, expected = BYTE_CASES[case]
    [(chunks, left)] = [(c, n) for name, c, n in chunkings(wire, seed=len(case)) if name == mode]
    assert feed(chunks) == ([expected], left)


def test_all_byte_cases_in_one_stream() -> None:
    """All the cases back to back, in every chunking."""
    wire = b"".join(w for w, _ in BYTE_CASES.values())
    assert_fed(wire, [e for _, e in BYTE_CASES.values()])


def test_rejected_context_without_transfer_syntax() -> None:
    """A rejected context may leave its transfer syntax out: not significant (§9.3.3.2)."""
    wire = associate(2, [item(0x10, APP_CONTEXT), context_ac(1, 3, None), user_info()])
    [event] = decode(wire)
    assert isinstance(event, AssociateAccept)
    assert event.presentation_contexts == (
        PresentationContextAC(context_id=1, result=3, transfer_syntax=""),
    )


def test_sub_items_in_any_order() -> None:
    """Items and sub-items may come in any order (PS3.8 §9.3.2; PS3.7 D.3.3)."""
    user = item(
        0x50,
        item(0x55, b"DUL_TEST") + item(0x52, CLASS_UID) + item(0x51, (16384).to_bytes(4, "big")),
    )
    shuffled = [user, RQ_ITEMS[1], RQ_ITEMS[0]]
    assert_fed(associate(1, shuffled), [RQ_EVENT])


# -- tolerance on receive: "not tested" fields and non-canonical strings ------------------------


def test_reserved_bytes_ignored() -> None:
    """Reserved bytes with any value decode as if they were 0 (PS3.8 §9.3: "not tested")."""
    items = [
        item(0x10, APP_CONTEXT, reserved=0xAA),
        context_rq(1, VERIFICATION, IMPLICIT_LE, reserved=0xFF),  # DCMTK sends 0xFF here
        item(
            0x50,
            item(0x51, (16384).to_bytes(4, "big"), reserved=0x01)
            + item(0x52, CLASS_UID, reserved=0x02)
            + item(0x55, b"DUL_TEST", reserved=0x03),
            reserved=0x55,
        ),
    ]
    wire = associate(1, items, reserved=bytes(range(1, 35)))
    wire = wire[:1] + b"\x99" + wire[2:]  # the PDU header's reserved byte
    assert_fed(wire, [RQ_EVENT])
    assert encode(RQ_EVENT) == RQ_BYTES  # re-encoded with zeros

    ac = associate(
        2,
        [
            item(0x10, APP_CONTEXT),
            item(0x21, b"\x01\xee\x00\xee" + item(0x40, IMPLICIT_LE)),
            AC_ITEMS[2],
        ],
    )
    assert_fed(ac, [AC_EVENT])
    assert_fed(
        pdu(3, b"\xff\x01\x01\x03", reserved=7), [AssociateReject(result=1, source=1, reason=3)]
    )
    assert_fed(pdu(5, b"\xff" * 4), [ReleaseRequest()])
    assert_fed(pdu(6, b"\x01\x02\x03\x04"), [ReleaseResponse()])
    assert_fed(pdu(7, b"\xff\xff\x02\x01"), [Abort(source=2, reason=1)])


def test_dcmtk_reserved_byte_after_context_id() -> None:
    """DCMTK puts 0xFF in the reserved byte after the context ID of a proposed context."""
    wire = associate(
        1, [RQ_ITEMS[0], context_rq(1, VERIFICATION, IMPLICIT_LE, reserved=0xFF), RQ_ITEMS[2]]
    )
    assert wire[74 + len(RQ_ITEMS[0]) + 6] == 0xFF
    assert_fed(wire, [RQ_EVENT])


@pytest.mark.parametrize(
    ("control", "is_command", "is_last"),
    [
        (0x00, False, False),
        (0x01, True, False),
        (0x02, False, True),
        (0x03, True, True),
        (0xFC, False, False),
        (0xFD, True, False),
        (0xFE, False, True),
        (0xFF, True, True),
    ],
)
def test_message_control_bits_2_to_7_ignored(control: int, is_command: bool, is_last: bool) -> None:
    """Only bits 0 and 1 of the message control header mean something (PS3.8 Annex E.2)."""
    wire = pdu(4, pdv(5, control, b"ab"))
    value = PresentationDataValue(context_id=5, is_command=is_command, is_last=is_last, data=b"ab")
    assert_fed(wire, [PDataReceived(values=(value,))])
    assert encode(PData(values=(value,)))[11] == control & 0x03


@pytest.mark.parametrize("version", [0x0000, 0x0002, 0x0003, 0x8001, 0xFFFF])
def test_protocol_version_kept(version: int) -> None:
    """The codec keeps the protocol version whole; only the Connection tests bit 0 (§9.3.2)."""
    wire = associate(1, RQ_ITEMS, version=version)
    expected = attrs.evolve(RQ_EVENT, protocol_version=version)
    assert_fed(wire, [expected])
    if version & 1:
        assert encode(expected) == wire
    else:
        with pytest.raises(LocalProtocolError):
            encode(expected)
        assert encode(expected, strict=False) == wire


def test_all_space_ae_title() -> None:
    """An all-space AE title decodes to "" (visible to the application), raw bytes kept."""
    wire = associate(1, RQ_ITEMS, called=b" " * 16)
    [event] = decode(wire)
    assert isinstance(event, AssociateRequest)
    assert event.called_ae_title == ""
    assert isinstance(event.called_ae_title, WireStr)
    assert event.called_ae_title.raw == b" " * 16
    assert event == attrs.evolve(RQ_EVENT, called_ae_title="")
    assert encode(event, strict=False) == wire
    with pytest.raises(LocalProtocolError):
        encode(event)
    assert_fed(wire, [event])


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"  ECHOSCU       ", "ECHOSCU"),  # leading spaces
        (b"ECHOSCU\x00\x00\x00\x00\x00\x00\x00\x00\x00", "ECHOSCU"),  # NUL padding
        (b"ECHO SCU\x00       ", "ECHO SCU"),
    ],
)
def test_padded_ae_title_normalised(raw: bytes, value: str) -> None:
    """Non-canonical padding is removed from the value and kept in ``raw``."""
    wire = associate(1, RQ_ITEMS, calling=raw)
    [event] = decode(wire)
    assert isinstance(event, AssociateRequest)
    assert event.calling_ae_title == value
    assert isinstance(event.calling_ae_title, WireStr)
    assert event.calling_ae_title.raw == raw
    assert encode(event, strict=False) == wire
    assert encode(event) == associate(1, RQ_ITEMS, calling=value.encode())


def test_non_ascii_ae_title() -> None:
    """Real devices send Latin-1 AE titles: accepted on receive, refused on strict send."""
    wire = associate(1, RQ_ITEMS, calling=b"\xc9CHO\xdf")
    [event] = decode(wire)
    assert isinstance(event, AssociateRequest)
    assert event.calling_ae_title == "ÉCHOß"
    assert encode(event, strict=False) == wire
    with pytest.raises(LocalProtocolError):
        encode(event)


def test_ac_ae_titles_echo_raw_bytes() -> None:
    """An A-ASSOCIATE-AC echoes the request's AE titles byte-exact, even when strict."""
    rq = decode(associate(1, RQ_ITEMS, called=b" " * 16, calling=b"  X\x00"))[0]
    assert isinstance(rq, AssociateRequest)
    ac = rq.accept(AC_EVENT.presentation_contexts, AC_EVENT.user_information)
    wire = encode(ac)
    assert wire[10:42] == b" " * 16 + b"  X\x00".ljust(16, b" ")
    [back] = decode(wire)
    assert isinstance(back, AssociateAccept)
    assert (back.called_ae_title, back.calling_ae_title) == ("", "X")


def test_uid_with_trailing_nul() -> None:
    """A UID padded with NUL (as in a data set) decodes without it and re-encodes with it."""
    items = [
        item(0x10, APP_CONTEXT + b"\x00"),
        context_rq(1, VERIFICATION + b"\x00", IMPLICIT_LE + b"\x00"),
        item(
            0x50,
            item(0x51, (16384).to_bytes(4, "big"))
            + item(0x52, b"1.2.3.45\x00")
            + item(0x55, b"DUL_TEST\x00"),
        ),
    ]
    wire = associate(1, items)
    [event] = decode(wire)
    assert isinstance(event, AssociateRequest)
    expected = attrs.evolve(
        RQ_EVENT,
        user_information=attrs.evolve(
            RQ_EVENT.user_information, implementation_class_uid="1.2.3.45"
        ),
    )
    assert event == expected
    syntax = event.presentation_contexts[0].transfer_syntaxes[0]
    assert isinstance(syntax, WireStr)
    assert syntax.raw == IMPLICIT_LE + b"\x00"
    assert event.application_context_name == APP_CONTEXT.decode()
    assert encode(event, strict=False) == wire
    assert encode(event) == encode(expected)  # strict: canonical, without the NULs
    assert_fed(wire, [expected])


# -- P-DATA-TF: no copy of the data --------------------------------------------------------------


def test_pdv_data_is_a_view_of_the_body() -> None:
    """Each PDV's data is a memoryview slice of the PDU body: the payload is not copied."""
    body = pdv(1, 0x03, b"command") + pdv(1, 0x02, b"dataset bytes")
    event = decode_pdu(4, body)
    assert isinstance(event, PDataReceived)
    first, second = event.values
    for value, data in ((first, b"command"), (second, b"dataset bytes")):
        assert isinstance(value.data, memoryview)
        assert value.data.obj is body
        assert value.data == data
    # each view covers its own PDV's data, past the 6-byte PDV header
    assert first.data.tobytes() == body[6:13]
    assert second.data.tobytes() == body[13 + 6 :]


def test_pdv_data_is_a_view_of_a_body_view() -> None:
    """A body handed over as a memoryview (as the receive buffer may): still no copy."""
    wire = pdu(4, pdv(5, 0x00, b"fragment"))
    body = memoryview(wire)[6:]
    event = decode_pdu(4, body)
    assert isinstance(event, PDataReceived)
    [value] = event.values
    assert isinstance(value.data, memoryview)
    assert value.data.obj is wire
    assert value.data == b"fragment"


# -- strict encoding refuses what may not be sent; strict=False sends it anyway -----------------


def _rq(**changes: Any) -> AssociateRequest:
    return attrs.evolve(RQ_EVENT, **changes)


def _ctx(context_id: int) -> AssociateRequest:
    return _rq(
        presentation_contexts=(
            attrs.evolve(RQ_EVENT.presentation_contexts[0], context_id=context_id),
        )
    )


def _pdv(**changes: Any) -> PData:
    value = PresentationDataValue(context_id=1, is_command=True, is_last=True, data=b"x")
    return PData(values=(attrs.evolve(value, **changes),))


INVALID: dict[str, tuple[Event, bytes | None]] = {
    # name: (event, the bytes strict=False gives, or None when they cannot be represented)
    "ae-empty": (_rq(calling_ae_title=""), associate(1, RQ_ITEMS, calling=b"")),
    "ae-17-chars": (_rq(called_ae_title="A" * 17), associate(1, RQ_ITEMS, called=b"A" * 16)),
    "ae-non-ascii": (_rq(called_ae_title="ÉCHO"), associate(1, RQ_ITEMS, called=b"\xc9CHO")),
    "ae-control-char": (_rq(called_ae_title="EC\tHO"), associate(1, RQ_ITEMS, called=b"EC\tHO")),
    "ae-backslash": (_rq(called_ae_title="EC\\HO"), associate(1, RQ_ITEMS, called=b"EC\\HO")),
    "ae-leading-space": (_rq(called_ae_title=" ECHO"), associate(1, RQ_ITEMS, called=b" ECHO")),
    "uid-65-chars": (
        _rq(application_context_name="1." + "2" * 63),
        associate(1, [item(0x10, b"1." + b"2" * 63), *RQ_ITEMS[1:]]),
    ),
    "uid-letters": (
        _rq(application_context_name="1.2.abc"),
        associate(1, [item(0x10, b"1.2.abc"), *RQ_ITEMS[1:]]),
    ),
    "uid-empty": (
        _rq(application_context_name=""),
        associate(1, [item(0x10, b""), *RQ_ITEMS[1:]]),
    ),
    "context-id-even": (
        _ctx(2),
        associate(1, [RQ_ITEMS[0], context_rq(2, VERIFICATION, IMPLICIT_LE), RQ_ITEMS[2]]),
    ),
    "context-id-0": (
        _ctx(0),
        associate(1, [RQ_ITEMS[0], context_rq(0, VERIFICATION, IMPLICIT_LE), RQ_ITEMS[2]]),
    ),
    "context-id-256": (_ctx(256), None),
    "no-transfer-syntax": (
        _rq(
            presentation_contexts=(
                attrs.evolve(RQ_EVENT.presentation_contexts[0], transfer_syntaxes=()),
            )
        ),
        associate(1, [RQ_ITEMS[0], context_rq(1, VERIFICATION), RQ_ITEMS[2]]),
    ),
    "no-presentation-context": (
        _rq(presentation_contexts=()),
        associate(1, [RQ_ITEMS[0], RQ_ITEMS[2]]),
    ),
    "duplicate-context-ids": (
        _rq(presentation_contexts=RQ_EVENT.presentation_contexts * 2),
        associate(1, [RQ_ITEMS[0], RQ_ITEMS[1], RQ_ITEMS[1], RQ_ITEMS[2]]),
    ),
    "version-name-17-chars": (
        _rq(
            user_information=attrs.evolve(
                RQ_EVENT.user_information, implementation_version_name="V" * 17
            )
        ),
        associate(1, [*RQ_ITEMS[:2], user_info(item(0x55, b"V" * 17))]),
    ),
    "ac-result-5": (
        attrs.evolve(
            AC_EVENT,
            presentation_contexts=(attrs.evolve(AC_EVENT.presentation_contexts[0], result=5),),
        ),
        associate(2, [AC_ITEMS[0], context_ac(1, 5, IMPLICIT_LE), AC_ITEMS[2]]),
    ),
    "pdv-empty": (_pdv(data=b""), pdu(4, pdv(1, 3, b""))),
    "pdv-context-even": (_pdv(context_id=4), pdu(4, pdv(4, 3, b"x"))),
    "pdata-no-pdv": (PData(values=()), pdu(4, b"")),
    "abort-source-1": (Abort(source=1, reason=0), pdu(7, bytes((0, 0, 1, 0)))),
    "provider-abort-reason-3": (Abort(source=2, reason=3), pdu(7, bytes((0, 0, 2, 3)))),
    "reject-source-4": (
        AssociateReject(result=1, source=4, reason=1),
        pdu(3, bytes((0, 1, 4, 1))),
    ),
    "reject-result-3": (
        AssociateReject(result=3, source=1, reason=1),
        pdu(3, bytes((0, 3, 1, 1))),
    ),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_strict_encode_refuses(name: str) -> None:
    event, loose = INVALID[name]
    with pytest.raises(LocalProtocolError):
        encode(event)
    if loose is None:  # not representable on the wire at all
        with pytest.raises(LocalProtocolError):
            encode(event, strict=False)
    else:
        assert encode(event, strict=False) == loose


@pytest.mark.parametrize(
    "event",
    [
        Abort(source=0, reason=0xFF),  # a user abort's reason is not significant
        Abort(source=2, reason=6),
        AssociateReject(result=2, source=3, reason=0xFF),
        _ctx(255),
        _ctx(1),
        _rq(called_ae_title="A" * 16, calling_ae_title="a b ~!#"),
        _rq(application_context_name="1." + "2" * 62),
    ],
)
def test_strict_encode_accepts_edges(event: Event) -> None:
    """The limits themselves are valid."""
    assert decode(encode(event)) == [event]


def test_encode_refuses_non_pdus() -> None:
    with pytest.raises(LocalProtocolError):
        encode(dul.ConnectionClosed(cause=dul.CloseCause.RELEASED))
