"""The PDU codec on malformed input: every fault is a RemoteProtocolError with a reason and offset.

The reason is the A-ABORT reason of PS3.8 Table 9-26 (``dul.AbortReason``): 1 for an unknown PDU
type, 5 for a known item in a place it does not belong (or twice where once is allowed), 6 for
every other invalid value (a length that does not fit, a missing mandatory item, an even context
ID...). The offset counts from the first byte of the PDU and points at the faulty field.

The properties at the end check the rule DESIGN.md states: whatever bytes arrive, in whatever
chunks, framing and decoding give events or raise RemoteProtocolError, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dul import AbortReason, Event, ItemType, RemoteProtocolError, decode, encode
from dul import testing as dst
from dul._buffer import ReceiveBuffer
from dul._pdu import decode_pdu
from test_codec import (
    AC_ITEMS,
    BYTE_CASES,
    CLASS_UID,
    IMPLICIT_LE,
    NO_LIMIT,
    RQ_ITEMS,
    VERIFICATION,
    associate,
    chunkings,
    context_ac,
    context_rq,
    feed,
    item,
    pdu,
    pdv,
    split_at,
)

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER
UNRECOGNIZED = AbortReason.UNRECOGNIZED_PDU

APP, CTX, USER = RQ_ITEMS
AC_CTX = AC_ITEMS[1]
MAX_LENGTH = item(0x51, (16384).to_bytes(4, "big"))


def overrun(item_bytes: bytes, by: int = 1) -> bytes:
    """``item_bytes`` with its 2-byte length field increased by ``by``."""
    length = int.from_bytes(item_bytes[2:4], "big") + by
    return item_bytes[:2] + length.to_bytes(2, "big") + item_bytes[4:]


def rq(*items: bytes) -> bytes:
    return associate(1, items)


def ac(*items: bytes) -> bytes:
    return associate(2, items)


def user(*sub_items: bytes) -> bytes:
    """A user information item holding exactly ``sub_items``."""
    return item(0x50, b"".join(sub_items))


def ctx_body(*sub_items: bytes, context_id: int = 1) -> bytes:
    return item(0x20, bytes((context_id, 0, 0, 0)) + b"".join(sub_items))


ABSTRACT = item(0x30, VERIFICATION)
TRANSFER = item(0x40, IMPLICIT_LE)
ROLE = item(0x54, len(VERIFICATION).to_bytes(2, "big") + VERIFICATION + b"\x01\x01")
EXTENDED = item(0x56, len(VERIFICATION).to_bytes(2, "big") + VERIFICATION + b"info")
IDENTITY_RQ = item(0x58, b"\x01\x00" + b"\x00\x04user" + b"\x00\x00")
IDENTITY_AC = item(0x59, b"\x00\x02ok")


def common_extended(related: bytes) -> bytes:
    """A 57H sub-item for the verification SOP class with the given related-classes block."""
    return item(
        0x57,
        len(VERIFICATION).to_bytes(2, "big")
        + VERIFICATION
        + (5).to_bytes(2, "big")
        + b"1.2.3"
        + len(related).to_bytes(2, "big")
        + related,
    )


# name: (bytes of one PDU, expected reason, where the fault is: an offset, the faulty bytes (found
# after the fixed part), or (bytes, n): n bytes into them)
Case = tuple[bytes, int, bytes | int | tuple[bytes, int]]

CASES: dict[str, Case] = {
    # -- PDU level
    "unknown-pdu-type-00": (pdu(0x00, bytes(4)), UNRECOGNIZED, 0),
    "unknown-pdu-type-08": (pdu(0x08, bytes(4)), UNRECOGNIZED, 0),
    "unknown-pdu-type-ff": (pdu(0xFF, b""), UNRECOGNIZED, 0),
    "rq-shorter-than-fixed-part": (pdu(1, bytes(67)), INVALID, 2),
    "ac-shorter-than-fixed-part": (pdu(2, bytes(10)), INVALID, 2),
    "pdata-without-pdv": (pdu(4, b""), INVALID, 2),
    # -- a length that overruns its parent, or bytes left over
    "item-overruns-pdu": (rq(CTX, USER, overrun(APP)), INVALID, overrun(APP)),
    "item-overruns-pdu-by-much": (rq(CTX, USER, overrun(APP, 5000)), INVALID, overrun(APP, 5000)),
    "bytes-left-after-items": (rq(APP, CTX, USER, b"\x77\x00\x00"), INVALID, b"\x77\x00\x00"),
    "context-shorter-than-4": (
        rq(APP, item(0x20, b"\x01\x00"), USER),
        INVALID,
        b"\x20\x00\x00\x02",
    ),
    "sub-item-overruns-context": (
        rq(APP, ctx_body(ABSTRACT, overrun(TRANSFER)), USER),
        INVALID,
        overrun(TRANSFER),
    ),
    "bytes-left-in-context": (
        rq(APP, ctx_body(ABSTRACT, TRANSFER, b"\x40\x00"), USER),
        INVALID,
        (TRANSFER + b"\x40\x00", len(TRANSFER)),
    ),
    "sub-item-overruns-user-info": (
        rq(APP, CTX, user(MAX_LENGTH, overrun(item(0x52, CLASS_UID)))),
        INVALID,
        overrun(item(0x52, CLASS_UID)),
    ),
    "bytes-left-in-user-info": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x52, CLASS_UID), b"\x55")),
        INVALID,
        (CLASS_UID + b"\x55", len(CLASS_UID)),
    ),
    "maximum-length-of-5-bytes": (
        rq(APP, CTX, user(item(0x51, bytes(5)))),
        INVALID,
        item(0x51, bytes(5)),
    ),
    "maximum-length-of-3-bytes": (
        rq(APP, CTX, user(item(0x51, bytes(3)))),
        INVALID,
        item(0x51, bytes(3)),
    ),
    "async-window-of-3-bytes": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x53, bytes(3)))),
        INVALID,
        item(0x53, bytes(3)),
    ),
    "role-selection-extra-byte": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x54, ROLE[4:] + b"\x00"))),
        INVALID,
        item(0x54, ROLE[4:] + b"\x00"),
    ),
    "role-selection-short": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x54, ROLE[4:-1]))),
        INVALID,
        item(0x54, ROLE[4:-1]),
    ),
    "role-selection-uid-overruns": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x54, b"\x00\x40" + ROLE[6:]))),
        INVALID,
        b"\x00\x40" + ROLE[6:],
    ),
    "role-selection-no-uid-length": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x54, b"\x00"))),
        INVALID,
        (b"\x54\x00\x00\x01\x00", 4),  # the UID length field
    ),
    "extended-negotiation-uid-overruns": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x56, b"\x00\x63" + EXTENDED[6:]))),
        INVALID,
        b"\x00\x63" + EXTENDED[6:],
    ),
    "common-extended-related-overruns": (
        rq(APP, CTX, user(MAX_LENGTH, common_extended(b"\x00\x09" + b"1.2"))),
        INVALID,
        b"\x00\x09" + b"1.2",
    ),
    "common-extended-service-overruns": (
        rq(
            APP,
            CTX,
            user(
                MAX_LENGTH,
                item(0x57, len(VERIFICATION).to_bytes(2, "big") + VERIFICATION + b"\x00\x09"),
            ),
        ),
        INVALID,
        b"\x00\x09",
    ),
    "identity-rq-extra-bytes": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x58, IDENTITY_RQ[4:] + b"\x00"))),
        INVALID,
        item(0x58, IDENTITY_RQ[4:] + b"\x00"),
    ),
    "identity-rq-truncated": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x58, b"\x01"))),
        INVALID,
        item(0x58, b"\x01"),
    ),
    "identity-rq-primary-overruns": (
        rq(APP, CTX, user(MAX_LENGTH, item(0x58, b"\x01\x00\x00\x09user"))),
        INVALID,
        b"\x00\x09user",
    ),
    "identity-ac-extra-bytes": (
        ac(*AC_ITEMS[:2], user(MAX_LENGTH, item(0x59, IDENTITY_AC[4:] + b"\x00"))),
        INVALID,
        item(0x59, IDENTITY_AC[4:] + b"\x00"),
    ),
    "pdv-overruns-pdu": (
        pdu(4, (9).to_bytes(4, "big") + b"\x01\x03abcdef"),
        INVALID,
        6,
    ),
    "bytes-left-after-pdv": (pdu(4, pdv(1, 3, b"ab") + bytes(5)), INVALID, 6 + 8),
    "pdv-length-0": (pdu(4, bytes(4) + b"\x01\x03"), INVALID, 6),
    "pdv-length-1": (pdu(4, b"\x00\x00\x00\x01\x01\x03"), INVALID, 6),
    "second-pdv-length-1": (pdu(4, pdv(1, 3, b"ab") + b"\x00\x00\x00\x01\x01\x03"), INVALID, 14),
    # -- a missing mandatory item
    "no-application-context": (rq(CTX, USER), INVALID, 6),
    "no-presentation-context": (rq(APP, USER), INVALID, 6),
    "no-user-information": (rq(APP, CTX), INVALID, 6),
    "ac-no-application-context": (ac(AC_CTX, USER), INVALID, 6),
    "ac-no-presentation-context": (ac(APP, USER), INVALID, 6),
    "ac-no-user-information": (ac(APP, AC_CTX), INVALID, 6),
    "no-abstract-syntax": (rq(APP, ctx_body(TRANSFER), USER), INVALID, b"\x01\x00\x00\x00\x40"),
    "no-transfer-syntax": (rq(APP, ctx_body(ABSTRACT), USER), INVALID, b"\x01\x00\x00\x00\x30"),
    "accepted-without-transfer-syntax": (
        ac(APP, context_ac(1, 0, None), USER),
        INVALID,
        (b"\x21\x00\x00\x04\x01", 4),  # the context ID
    ),
    # -- values that are invalid
    "even-context-id": (
        rq(APP, context_rq(2, VERIFICATION, IMPLICIT_LE), USER),
        INVALID,
        b"\x02\x00\x00\x00\x30",
    ),
    "context-id-0": (
        rq(APP, context_rq(0, VERIFICATION, IMPLICIT_LE), USER),
        INVALID,
        b"\x00\x00\x00\x00\x30",
    ),
    "ac-even-context-id": (
        ac(APP, context_ac(4, 0, IMPLICIT_LE), USER),
        INVALID,
        b"\x04\x00\x00\x00\x40",
    ),
    "pdv-even-context-id": (pdu(4, pdv(2, 3, b"ab")), INVALID, 10),
    "second-pdv-even-context-id": (pdu(4, pdv(1, 3, b"ab") + pdv(0, 3, b"cd")), INVALID, 18),
    "duplicate-context-ids": (
        rq(APP, CTX, context_rq(3, VERIFICATION, IMPLICIT_LE), CTX, USER),
        INVALID,
        len(rq(APP, CTX, context_rq(3, VERIFICATION, IMPLICIT_LE))),  # the second one
    ),
    # -- a known item where it does not belong, or twice where once is allowed (reason 5)
    "abstract-syntax-at-pdu-level": (rq(APP, ABSTRACT, CTX, USER), UNEXPECTED, ABSTRACT + CTX),
    "transfer-syntax-at-pdu-level": (rq(APP, CTX, TRANSFER, USER), UNEXPECTED, TRANSFER + USER),
    "sub-item-at-pdu-level": (rq(APP, CTX, USER, MAX_LENGTH), UNEXPECTED, len(rq(APP, CTX, USER))),
    "ac-context-in-rq": (rq(APP, CTX, AC_CTX, USER), UNEXPECTED, AC_CTX + USER),
    "rq-context-in-ac": (ac(APP, AC_CTX, CTX, USER), UNEXPECTED, CTX + USER),
    "context-in-context": (
        rq(APP, ctx_body(ABSTRACT, TRANSFER, CTX), USER),
        UNEXPECTED,
        CTX + USER,
    ),
    "user-info-in-context": (
        rq(APP, ctx_body(ABSTRACT, USER, TRANSFER), USER),
        UNEXPECTED,
        USER + TRANSFER,
    ),
    "sub-item-in-context": (
        rq(APP, ctx_body(ABSTRACT, TRANSFER, MAX_LENGTH), USER),
        UNEXPECTED,
        MAX_LENGTH + USER,
    ),
    "abstract-syntax-in-ac-context": (
        ac(APP, item(0x21, b"\x01\x00\x00\x00" + TRANSFER + ABSTRACT), USER),
        UNEXPECTED,
        ABSTRACT + USER,
    ),
    "application-context-in-user-info": (
        rq(APP, CTX, user(MAX_LENGTH, APP)),
        UNEXPECTED,
        len(rq(APP, CTX)) + 4 + len(MAX_LENGTH),
    ),
    "user-info-in-user-info": (
        rq(APP, CTX, user(MAX_LENGTH, user(MAX_LENGTH))),
        UNEXPECTED,
        len(rq(APP, CTX)) + 4 + len(MAX_LENGTH),
    ),
    "two-application-contexts": (rq(APP, CTX, USER, APP), UNEXPECTED, len(rq(APP, CTX, USER))),
    "two-user-informations": (rq(APP, CTX, USER, USER), UNEXPECTED, len(rq(APP, CTX, USER))),
    "two-abstract-syntaxes": (
        rq(APP, ctx_body(ABSTRACT, TRANSFER, ABSTRACT), USER),
        UNEXPECTED,
        ABSTRACT + USER,
    ),
    "two-transfer-syntaxes-in-ac": (
        ac(APP, item(0x21, b"\x01\x00\x00\x00" + TRANSFER + TRANSFER), USER),
        UNEXPECTED,
        TRANSFER + USER,
    ),
    "two-maximum-lengths": (
        rq(APP, CTX, user(MAX_LENGTH, MAX_LENGTH)),
        UNEXPECTED,
        len(rq(APP, CTX)) + 4 + len(MAX_LENGTH),
    ),
    "two-implementation-class-uids": (
        rq(APP, CTX, user(item(0x52, CLASS_UID), MAX_LENGTH, item(0x52, CLASS_UID))),
        UNEXPECTED,
        len(rq(APP, CTX)) + 4 + len(item(0x52, CLASS_UID)) + len(MAX_LENGTH),
    ),
    "two-user-identities": (
        rq(APP, CTX, user(MAX_LENGTH, IDENTITY_RQ, IDENTITY_RQ)),
        UNEXPECTED,
        len(rq(APP, CTX)) + 4 + len(MAX_LENGTH) + len(IDENTITY_RQ),
    ),
}

# The fixed-length PDUs: A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT have a length of 4 (§9.3).
for _pdu_type in (3, 5, 6, 7):
    for _length in (0, 3, 5, 8):
        CASES[f"type-{_pdu_type}-length-{_length}"] = (pdu(_pdu_type, bytes(_length)), INVALID, 2)


def expected_offset(wire: bytes, fault: bytes | int | tuple[bytes, int]) -> int:
    """The fault's offset: given, or where its bytes occur after the 68-byte fixed part."""
    if isinstance(fault, int):
        return fault
    fault, skip = fault if isinstance(fault, tuple) else (fault, 0)
    offset = wire.find(fault, 74)
    assert offset >= 0, "the fault's bytes are not in the PDU"
    assert wire.find(fault, offset + 1) < 0, "the fault's bytes occur twice: ambiguous"
    return offset + skip


@pytest.mark.parametrize("name", list(CASES))
def test_malformed(name: str) -> None:
    """decode() raises with the right reason and offset; any chunking through the buffer too."""
    wire, reason, fault = CASES[name]
    offset = expected_offset(wire, fault)
    with pytest.raises(RemoteProtocolError) as caught:
        decode(wire)
    assert caught.value.reason == reason, caught.value
    assert caught.value.offset == offset, caught.value
    assert caught.value.reply is None
    assert str(caught.value).endswith(f"(at byte {offset})")

    for mode, chunks, _ in chunkings(wire):
        with pytest.raises(RemoteProtocolError) as fed:
            feed(chunks)
        assert (fed.value.reason, fed.value.offset) == (reason, offset), mode


def test_malformed_after_valid_pdus() -> None:
    """decode() counts the offset from the start of its input, across earlier PDUs."""
    before = pdu(5, bytes(4)) + BYTE_CASES["associate-rq"][0]
    with pytest.raises(RemoteProtocolError) as caught:
        decode(before + CASES["pdv-even-context-id"][0])
    assert caught.value.offset == len(before) + 10


def test_pdv_of_length_2_is_accepted() -> None:
    """A PDV with the control header alone is not sent (Annex E.1) but tolerated on receive."""
    [event] = decode(pdu(4, b"\x00\x00\x00\x02\x01\x03"))
    assert [bytes(v.data) for v in event.values] == [b""]  # type: ignore[union-attr]


# -- truncation at every position ---------------------------------------------------------------


def top_level_boundaries(wire: bytes) -> set[int]:
    """Offsets (in the body) where a top-level item or PDV of this PDU ends."""
    pdu_type, body = wire[0], wire[6:]
    if pdu_type in (1, 2):
        pos, header, length_size = 68, 2, 2
    elif pdu_type == 4:
        pos, header, length_size = 0, 0, 4
    else:
        return set()
    ends = set()
    while pos < len(body):
        length = int.from_bytes(body[pos + header : pos + header + length_size], "big")
        pos += header + length_size + length
        ends.add(pos)
    return ends


def check_truncations(wire: bytes) -> None:
    """Cut ``wire`` at every position: a partial PDU, and a PDU whose length admits the cut."""
    for n in range(1, len(wire)):
        with pytest.raises(RemoteProtocolError) as caught:
            decode(wire[:n])
        assert caught.value.offset == 0
        assert feed([wire[:n]]) == ([], n)  # the buffer just waits for more
    pdu_type, body = wire[0], wire[6:]
    ends = top_level_boundaries(wire)
    for n in range(len(body)):
        try:
            decode_pdu(pdu_type, body[:n])
        except RemoteProtocolError as exc:
            assert exc.reason == INVALID
            assert exc.offset is not None
            assert 0 <= exc.offset <= 6 + n
        else:
            # Only whole top-level items or PDVs can be dropped and leave a valid PDU.
            assert n in ends, f"truncated to {n} bytes of body, the PDU still decodes"


@pytest.mark.parametrize("case", list(BYTE_CASES))
def test_truncated_everywhere(case: str) -> None:
    check_truncations(BYTE_CASES[case][0])


@given(dst.pdus())
def test_truncated_everywhere_drawn(event: Event) -> None:
    wire = encode(event)
    assume(len(wire) < 1500)  # keep each example fast: truncation is quadratic in the size
    check_truncations(wire)


# -- properties: any bytes, any chunking --------------------------------------------------------

CAPS = (16384, 65536)  # a maximum length and an associate cap, as a Connection would pass


def frame_and_decode(
    chunks: Iterable[bytes], caps: tuple[int, int] = CAPS
) -> tuple[list[Event], int] | tuple[str, int, int | None, int]:
    """Feed ``chunks``, decode each framed PDU; stop at the first error.

    Returns (events, bytes left) or ("error", events decoded before it, reason, offset).
    Anything but RemoteProtocolError propagates and fails the test.
    """
    buffer = ReceiveBuffer()
    events: list[Event] = []
    left = 0
    for chunk in chunks:
        buffer.feed(chunk)
        left += len(chunk)
        while True:
            try:
                framed = buffer.next_pdu(*caps)
            except RemoteProtocolError as exc:
                assert exc.offset in (0, 2)  # the PDU type (unknown), or the length field
                assert exc.reason in set(AbortReason)
                return "error", len(events), exc.reason, exc.offset
            if framed is None:
                break
            pdu_type, body = framed
            left -= 6 + len(body)
            try:
                events.append(decode_pdu(pdu_type, body))
            except RemoteProtocolError as exc:
                assert exc.reason in set(AbortReason)
                assert exc.offset is not None
                assert 0 <= exc.offset <= 6 + len(body), exc
                return "error", len(events), exc.reason, exc.offset
    return events, left


def check_any_chunking(wire: bytes, cuts: list[int]) -> None:
    """Events or RemoteProtocolError, and the same outcome whole as in chunks."""
    whole = frame_and_decode([wire])
    assert frame_and_decode(split_at(wire, cuts)) == whole
    try:
        events = decode(wire)
    except RemoteProtocolError as exc:
        assert exc.reason in set(AbortReason)
        assert exc.offset is not None
        assert 0 <= exc.offset <= len(wire)
    else:
        if isinstance(whole[0], list):
            assert whole == (events, 0)


@st.composite
def item_soup(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Items of known and unknown types with random or nested contents."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        item_type = draw(st.one_of(st.sampled_from(list(ItemType)), st.integers(0, 255)))
        if depth < 2 and draw(st.booleans()):
            head = draw(st.binary(min_size=0, max_size=4))
            value = head + draw(item_soup(depth + 1))
        else:
            value = draw(st.binary(max_size=24))
        parts.append(item(item_type, value))
    return b"".join(parts)


@st.composite
def random_pdus(draw: st.DrawFn) -> bytes:
    """A well-framed PDU of any type, its body random: items in A-ASSOCIATE, PDVs in P-DATA."""
    pdu_type = draw(st.one_of(st.integers(1, 7), st.integers(0, 255)))
    if pdu_type in (1, 2):
        body = draw(st.binary(min_size=68, max_size=68)) + draw(item_soup())
    elif pdu_type == 4:
        pdvs = draw(
            st.lists(
                st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=16)),
                max_size=4,
            )
        )
        body = b"".join(pdv(c, m, d) for c, m, d in pdvs) + draw(st.binary(max_size=3))
    else:
        body = draw(st.binary(max_size=8))
    return pdu(pdu_type, body)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid PDUs back to back, then a few mutations: bytes changed, cut, inserted, lengths."""
    wire = bytearray(
        b"".join(encode(e) for e in draw(st.lists(dst.pdus(), min_size=1, max_size=2)))
    )
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "delete", "insert", "length", "truncate"]))
        pos = draw(st.integers(0, max(len(wire) - 1, 0)))
        if kind == "set" and wire:
            wire[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del wire[pos : pos + draw(st.integers(1, 8))]
        elif kind == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "length" and len(wire) >= pos + 2:
            value = int.from_bytes(wire[pos : pos + 2], "big") + draw(st.integers(-3, 3))
            wire[pos : pos + 2] = (value % 0x10000).to_bytes(2, "big")
        elif kind == "truncate":
            del wire[pos:]
    return bytes(wire)


@given(wire=st.binary(max_size=300), data=st.data())
def test_any_bytes(wire: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    check_any_chunking(wire, cuts)


@given(wire=st.lists(random_pdus(), min_size=1, max_size=3).map(b"".join), data=st.data())
def test_random_pdu_bodies(wire: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    check_any_chunking(wire, cuts)


@given(wire=mutated_streams(), data=st.data())
def test_mutated_valid_pdus(wire: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    check_any_chunking(wire, cuts)


def test_nothing_else_escapes_bytewise() -> None:
    """Every malformed case, one byte at a time after a valid PDU: the same error as whole."""
    for name, (wire, reason, _) in CASES.items():
        stream = BYTE_CASES["release-rq"][0] + wire
        result = frame_and_decode(
            [stream[i : i + 1] for i in range(len(stream))], (NO_LIMIT, NO_LIMIT)
        )
        assert result[:3] == ("error", 1, reason), name
