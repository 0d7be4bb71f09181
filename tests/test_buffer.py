"""ReceiveBuffer: framing a byte stream into PDUs by their 6-byte header (PS3.8 §9.3.1).

What is checked: a declared length above the cap is refused as soon as the header is complete,
before any of the body arrives (so a peer cannot make us buffer what we will refuse); the
A-ASSOCIATE cap is separate from the maximum length; any chunking frames the same PDUs, in
order, nothing lost; and one-byte feeding of a 1 MB PDU costs the same per byte at the end as at
the start (counted in calls and bytes allocated, not timed).
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dul import AbortReason, RemoteProtocolError, encode
from dul import testing as dst
from dul._buffer import ReceiveBuffer
from peers import split_pdus
from test_codec import pdu, pdv, split_at

MAX_LENGTH = 16384
ASSOCIATE_CAP = 262_144

Framed = tuple[int, bytes]


def frame(
    buffer: ReceiveBuffer, max_length: int = MAX_LENGTH, cap: int = ASSOCIATE_CAP
) -> list[Framed]:
    """Every whole PDU the buffer holds now, as (type, body bytes)."""
    out = []
    while (framed := buffer.next_pdu(max_length, cap)) is not None:
        pdu_type, body = framed
        out.append((pdu_type, bytes(body)))
    return out


def header(pdu_type: int, length: int) -> bytes:
    return bytes((pdu_type, 0)) + length.to_bytes(4, "big")


# -- the caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pdu_type", [3, 4, 5, 6, 7])
def test_over_maximum_length_refused_at_header(pdu_type: int) -> None:
    """A PDU declaring more than the maximum length is refused at its 6th byte, body unseen."""
    buffer = ReceiveBuffer()
    wire = header(pdu_type, MAX_LENGTH + 1)
    for byte in wire[:5]:
        buffer.feed(bytes((byte,)))
        assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(wire[5:])
    with pytest.raises(RemoteProtocolError) as caught:
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    assert caught.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert caught.value.offset == 2  # the PDU length field


@pytest.mark.parametrize("pdu_type", [3, 4, 5, 6, 7])
def test_at_maximum_length_waits(pdu_type: int) -> None:
    """Exactly the maximum length is allowed: the buffer waits for the body, then frames it."""
    buffer = ReceiveBuffer()
    buffer.feed(header(pdu_type, MAX_LENGTH))
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(bytes(MAX_LENGTH - 1))
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(b"\x01")
    assert frame(buffer) == [(pdu_type, bytes(MAX_LENGTH - 1) + b"\x01")]


@pytest.mark.parametrize("length", [0, MAX_LENGTH, MAX_LENGTH + 1, 0xFFFF_FFFF])
@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x09, 0x48, 0xFF])
def test_unknown_type_refused_at_header(pdu_type: int, length: int) -> None:
    """An unknown PDU type is refused at its 6th byte, whatever length it declares (above the
    cap too): unrecognized PDU, reason 1 (PS3.8 Table 9-26), not 6; nothing is consumed."""
    buffer = ReceiveBuffer()
    buffer.feed(header(4, 2) + b"\x00\x00")  # a first PDU, well framed
    assert frame(buffer) == [(4, b"\x00\x00")]
    wire = header(pdu_type, length)
    for byte in wire[:5]:
        buffer.feed(bytes((byte,)))
        assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(wire[5:])
    with pytest.raises(RemoteProtocolError) as caught:
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    assert (caught.value.reason, caught.value.offset) == (AbortReason.UNRECOGNIZED_PDU, 0)
    assert f"unknown PDU type {pdu_type:02X}H (declaring {length} bytes)" in str(caught.value)
    assert len(buffer) == 6


@pytest.mark.parametrize(
    ("first", "hint"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", ""),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ""),
        (bytes.fromhex("160301020001") + bytes(range(200)), " (a TLS handshake?)"),
    ],
    ids=["http-response", "http-request", "tls"],
)
def test_first_bytes_that_are_no_pdu(first: bytes, hint: str) -> None:
    """A stream whose first byte is no PDU type: the peer speaks something else. Issue 16:
    HTTP/1.1 gave "PDU of type 48H declares 1414541105 bytes, above the maximum length"."""
    buffer = ReceiveBuffer()
    buffer.feed(first[:3])  # in two chunks: the text shown joins them
    buffer.feed(first[3:])
    with pytest.raises(RemoteProtocolError) as caught:
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    assert caught.value.reason == AbortReason.UNRECOGNIZED_PDU
    message = str(caught.value)
    assert message.startswith(f"the peer does not seem to speak DICOM{hint} ")
    assert f"({first[0]:02X}H is no PDU type); it sent: {repr(first[:64])[1:]}" in message


@pytest.mark.parametrize("pdu_type", [1, 2])
def test_associate_cap_is_separate(pdu_type: int) -> None:
    """A-ASSOCIATE-RQ/AC are bounded by their own cap, not by the maximum length (§D.1 bounds
    P-DATA-TF): a 128-context request is ~10 KB, above many a maximum length.
    """
    buffer = ReceiveBuffer()
    buffer.feed(header(pdu_type, MAX_LENGTH * 4))  # above the maximum length, below the cap
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(bytes(MAX_LENGTH * 4))
    assert frame(buffer) == [(pdu_type, bytes(MAX_LENGTH * 4))]

    buffer = ReceiveBuffer()
    buffer.feed(header(pdu_type, ASSOCIATE_CAP))
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None

    buffer = ReceiveBuffer()
    buffer.feed(header(pdu_type, ASSOCIATE_CAP + 1))
    with pytest.raises(RemoteProtocolError) as caught:
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    assert caught.value.offset == 2


def test_associate_cap_does_not_widen_pdata() -> None:
    """A P-DATA-TF above the maximum length is refused even when below the associate cap."""
    buffer = ReceiveBuffer()
    buffer.feed(header(4, MAX_LENGTH + 1))
    with pytest.raises(RemoteProtocolError):
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)


def test_largest_declared_length_refused() -> None:
    """0xFFFFFFFF is refused at once: nothing is reserved or waited for."""
    buffer = ReceiveBuffer()
    buffer.feed(header(4, 0xFFFF_FFFF))
    with pytest.raises(RemoteProtocolError):
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    buffer = ReceiveBuffer()
    buffer.feed(header(1, 0xFFFF_FFFF))
    with pytest.raises(RemoteProtocolError):
        buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)


# -- framing -------------------------------------------------------------------------------------


def test_empty_body_and_empty_chunks() -> None:
    """A PDU with a zero length is framed (decoding judges it); empty chunks change nothing."""
    buffer = ReceiveBuffer()
    buffer.feed(b"")
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.feed(header(5, 0))
    buffer.feed(b"")
    assert frame(buffer) == [(5, b"")]
    assert len(buffer) == 0


def test_mutable_chunks_are_not_kept() -> None:
    """A driver reuses its receive buffer (recv_into): what was fed must not change after."""
    wire = pdu(4, pdv(1, 3, b"payload!")) + pdu(5, bytes(4))
    reused = bytearray(wire)
    buffer = ReceiveBuffer()
    buffer.feed(reused[:10])
    buffer.feed(memoryview(reused)[10:])
    reused[:] = bytes(len(reused))  # the driver overwrites its buffer with the next recv
    assert frame(buffer) == split_pdus(wire)


def test_pdu_within_one_chunk_is_not_copied() -> None:
    """A PDU that lies in one chunk of ``bytes`` comes out as a view of that chunk."""
    wire = pdu(4, pdv(1, 3, b"x" * 1000))
    buffer = ReceiveBuffer()
    buffer.feed(wire)
    framed = buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)
    assert framed is not None
    _pdu_type, body = framed
    assert isinstance(body, memoryview)
    assert body.obj is wire
    assert bytes(body) == wire[6:]


def test_clear_discards_pending_pdu() -> None:
    """After clear(), a half-received PDU is forgotten and framing starts afresh."""
    buffer = ReceiveBuffer()
    buffer.feed(header(4, 100) + bytes(10))
    assert buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP) is None
    buffer.clear()
    assert len(buffer) == 0
    buffer.feed(pdu(6, bytes(4)))
    assert frame(buffer) == [(6, bytes(4))]


def _stream() -> st.SearchStrategy[bytes]:
    """PDUs of every kind back to back, some P-DATA-TF large enough to span many chunks."""
    big = st.binary(min_size=1, max_size=5000).map(lambda d: pdu(4, pdv(1, 2, d)))
    return st.lists(st.one_of(dst.pdus().map(encode), big), min_size=1, max_size=4).map(b"".join)


@given(wire=_stream(), data=st.data())
def test_random_chunking_loses_nothing(wire: bytes, data: st.DataObject) -> None:
    """Any chunking (bytes, bytearray or memoryview chunks) frames the same PDUs, in order."""
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=30), label="cuts")
    kinds = data.draw(
        st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=len(cuts) + 1),
        label="chunk types",
    )
    buffer = ReceiveBuffer()
    framed: list[Framed] = []
    for chunk, kind in zip(split_at(wire, cuts), kinds, strict=False):
        buffer.feed(kind(chunk))
        framed += frame(buffer, max_length=1 << 20)
    assert framed == split_pdus(wire)
    assert len(buffer) == 0


@given(st.binary(min_size=0, max_size=64))
def test_len_counts_what_is_not_framed(tail: bytes) -> None:
    """``len()`` never exceeds what was fed and is 0 at a PDU boundary."""
    buffer = ReceiveBuffer()
    buffer.feed(pdu(5, bytes(4)) + tail[:5])
    frame(buffer)
    assert len(buffer) <= len(tail[:5])
    if not tail:
        assert len(buffer) == 0


# -- one byte at a time is linear ------------------------------------------------------------------


class _CallCounter:
    """A profiler hook counting function calls (Python and C) while installed."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1


def _count_calls(step: Callable[[], None], times: int) -> int:
    """Run ``step`` ``times`` times; return the function calls (Python and C) it made."""
    counter = _CallCounter()
    sys.setprofile(counter)
    try:
        for _ in range(times):
            step()
    finally:
        sys.setprofile(None)
    return counter.calls


def _count_big_allocations(step: Callable[[], None], times: int) -> int:
    """Run ``step`` ``times`` times; return how many of the runs allocated more than 1 KB.

    A run's allocation is its peak of traced memory above what was in use before it: a copy of
    what the buffer holds shows up there, on every run that makes one. (Measured without the
    profiler hook, whose own frames would count.)
    """
    big = 0
    tracemalloc.start()
    try:
        for _ in range(times):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step()
            if tracemalloc.get_traced_memory()[1] - before > 1024:
                big += 1
    finally:
        tracemalloc.stop()
    return big


def test_one_byte_at_a_time_is_linear() -> None:
    """Feeding a 1 MB PDU one byte at a time: the last bytes cost what the first did.

    A buffer that re-copied or re-scanned what it holds on each ``feed`` or ``next_pdu`` would
    make the whole O(n²). Over 2 x 1024 single-byte steps with 0, 8 KB, 128 KB and ~1 MB held, the
    calls made must not grow with what is held, and a step may allocate more than 1 KB only
    rarely (an amortized reallocation), never step after step (a copy each time).
    """
    size = 1 << 20
    wire = pdu(4, pdv(1, 2, bytes(range(256)) * (size // 256)))
    buffer = ReceiveBuffer()
    position = 12  # past the headers: every step below feeds one byte of the body

    def step() -> None:
        nonlocal position
        buffer.feed(wire[position : position + 1])
        position += 1
        assert buffer.next_pdu(2 * size, ASSOCIATE_CAP) is None

    buffer.feed(wire[:position])
    assert buffer.next_pdu(2 * size, ASSOCIATE_CAP) is None
    window = 1024
    calls_first = None
    for held in (0, 8 * 1024, 128 * 1024, size - 2 * window - 64):
        while position < 12 + held:
            step()
        calls = _count_calls(step, window)
        big_steps = _count_big_allocations(step, window)
        if calls_first is None:
            calls_first = calls
            assert calls <= 16 * window, "more than 16 calls per byte fed"
        assert calls <= calls_first * 5 // 4, f"calls per byte grew with {held} bytes held"
        assert big_steps <= 2, f"{big_steps} steps allocated > 1 KB with {held} bytes held"

    buffer.feed(wire[position:])
    [(pdu_type, body)] = frame(buffer, max_length=2 * size)
    assert pdu_type == 4
    assert body == wire[6:]
    assert len(buffer) == 0


def test_many_pdus_one_byte_at_a_time() -> None:
    """A 1 MB stream of small PDUs fed byte by byte: every PDU framed once, in order."""
    pdus = [pdu(4, pdv(1 + 2 * (i % 8), 2, i.to_bytes(4, "big") * 250)) for i in range(1040)]
    wire = b"".join(pdus)
    assert len(wire) > 1_000_000
    buffer = ReceiveBuffer()
    framed: list[Framed] = []
    for i in range(len(wire)):
        buffer.feed(wire[i : i + 1])
        if (got := buffer.next_pdu(MAX_LENGTH, ASSOCIATE_CAP)) is not None:
            framed.append((got[0], bytes(got[1])))
    assert framed == [(4, p[6:]) for p in pdus]
