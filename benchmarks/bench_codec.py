"""PDU codec: dul against pynetdicom on the same bytes, in the same run.

* A-ASSOCIATE-RQ with 10 presentation contexts of 3 transfer syntaxes each (PDUs/s).
* P-DATA-TF of 16 KiB and 1 MiB (MB/s of PDU bytes), beside a memcpy of the same bytes.

Every input is checked first: pynetdicom must decode dul's bytes and re-encode them byte-exact,
so both sides do the same work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dul
from dul._pdu import decode_pdu

from ._harness import MIN_TIME, Case, Row, measure_together

__all__ = [
    "associate_request",
    "bench_associate",
    "bench_pdata",
    "pdata_bytes",
    "run",
]

MB = 1e6
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
)


def _pynetdicom_pdu() -> Any:
    """pynetdicom's PDU module, or ``None`` when it is not installed (no peer column then)."""
    try:
        from pynetdicom import pdu
    except ImportError:
        return None
    return pdu


def associate_request(contexts: int = 10, transfer_syntaxes: int = 3) -> dul.AssociateRequest:
    """A request proposing ``contexts`` storage SOP classes, each with the same syntaxes."""
    syntaxes = TRANSFER_SYNTAXES[:transfer_syntaxes]
    return dul.AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        presentation_contexts=tuple(
            dul.PresentationContext(
                context_id=2 * i + 1,
                abstract_syntax=f"1.2.840.10008.5.1.4.1.1.{i + 1}",
                transfer_syntaxes=syntaxes,
            )
            for i in range(contexts)
        ),
        user_information=dul.UserInformation(maximum_length=16384),
    )


def pdata_bytes(max_length: int) -> tuple[dul.PData, bytes]:
    """A P-DATA-TF whose variable field is ``max_length`` bytes: one PDV, a last fragment."""
    size = max_length - 6
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    event = dul.PData(
        values=(dul.PresentationDataValue(context_id=1, is_command=False, is_last=True, data=data),)
    )
    return event, dul.encode(event)


def _same_bytes(what: str, ours: bytes, theirs: bytes) -> None:
    if ours != theirs:
        raise AssertionError(f"{what}: dul and pynetdicom disagree on the bytes; not comparable")


def _row(
    measure_name: str,
    unit: str,
    work: float,
    ours: Callable[[], object],
    theirs: Callable[[], object] | None,
    limit: Callable[[], object] | None,
    min_time: float,
) -> Row:
    """Time dul, the peer and the limit side by side (interleaved repeats)."""
    cases = [Case(fn, work) for fn in (ours, theirs, limit) if fn is not None]
    stats = iter(measure_together(cases, min_time=min_time))
    return Row(
        group="codec",
        measure=measure_name,
        unit=unit,
        dul=next(stats),
        peer=next(stats) if theirs else None,
        limit=next(stats) if limit else None,
        limit_name="memcpy" if limit else "",
    )


def bench_associate(
    contexts: int = 10, transfer_syntaxes: int = 3, *, min_time: float = 0.2
) -> list[Row]:
    """Decode and encode rows for an A-ASSOCIATE-RQ, in PDUs/s."""
    request = associate_request(contexts, transfer_syntaxes)
    data = dul.encode(request)
    if dul.decode(data) != [request]:
        raise AssertionError("dul does not decode its own A-ASSOCIATE-RQ back")
    pdu = _pynetdicom_pdu()
    peer_decode: Callable[[], object] | None = None
    peer_encode: Callable[[], object] | None = None
    if pdu is not None:
        theirs = pdu.A_ASSOCIATE_RQ()
        theirs.decode(data)
        _same_bytes("A-ASSOCIATE-RQ", data, theirs.encode())

        def peer_decode() -> object:
            return pdu.A_ASSOCIATE_RQ().decode(data)

        peer_encode = theirs.encode

    def cold_decode() -> object:
        _forget_memos()
        return dul.decode(data)

    def cold_encode() -> object:
        _forget_memos()
        return dul.encode(request)

    what = f"A-ASSOCIATE-RQ {contexts}x{transfer_syntaxes} ({len(data)} B)"
    return [
        _row(f"{what} decode", "PDU/s", 1, lambda: dul.decode(data), peer_decode, None, min_time),
        _row(f"{what} decode, cold", "PDU/s", 1, cold_decode, peer_decode, None, min_time),
        _row(
            f"{what} encode", "PDU/s", 1, lambda: dul.encode(request), peer_encode, None, min_time
        ),
        _row(f"{what} encode, cold", "PDU/s", 1, cold_encode, peer_encode, None, min_time),
    ]


def _forget_memos() -> None:
    """Empty the codec's memos, as for the first request ever seen from a peer.

    dul memoizes decoded presentation contexts and user information by their bytes, encoded ones
    by their value, and UIDs: real peers repeat them association after association. The "cold"
    rows measure a request whose every item is new.
    """
    from dul import _pdu

    for memo in (_pdu._DECODED, _pdu._ENCODED, _pdu._TEXTS, _pdu._UID_ITEMS, _pdu._VALID_UIDS):
        memo.clear()


def bench_pdata(max_length: int, *, min_time: float = 0.2) -> list[Row]:
    """Decode and encode rows for one P-DATA-TF, in MB/s of PDU bytes, beside a memcpy."""
    event, data = pdata_bytes(max_length)
    body = data[6:]
    decoded = decode_pdu(dul.PDUType.P_DATA_TF, body)
    assert isinstance(decoded, dul.PDataReceived)
    if decoded.values != event.values or dul.decode(data) != [decoded]:
        raise AssertionError("dul does not decode its own P-DATA-TF back")
    pdu = _pynetdicom_pdu()
    peer_decode: Callable[[], object] | None = None
    peer_encode: Callable[[], object] | None = None
    if pdu is not None:
        theirs = pdu.P_DATA_TF()
        theirs.decode(data)
        _same_bytes("P-DATA-TF", data, theirs.encode())

        def peer_decode() -> object:
            return pdu.P_DATA_TF().decode(data)

        peer_encode = theirs.encode

    work = len(data) / MB
    scratch = bytearray(data)

    def memcpy() -> object:
        return bytes(scratch)

    what = f"P-DATA-TF {_size(max_length)}"
    return [
        _row(
            f"{what} decode", "MB/s", work, lambda: dul.decode(data), peer_decode, memcpy, min_time
        ),
        _row(
            f"{what} decode_pdu (body, no copy)",
            "MB/s",
            work,
            lambda: decode_pdu(dul.PDUType.P_DATA_TF, body),
            peer_decode,
            memcpy,
            min_time,
        ),
        _row(
            f"{what} encode", "MB/s", work, lambda: dul.encode(event), peer_encode, memcpy, min_time
        ),
    ]


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} B"


def run(mode: str) -> list[Row]:
    """All codec rows; ``mode`` is one of ``_harness.MODES``."""
    min_time = MIN_TIME[mode]
    if mode == "smoke":
        return bench_associate(2, 1, min_time=min_time) + bench_pdata(64, min_time=min_time)
    return (
        bench_associate(10, 3, min_time=min_time)
        + bench_pdata(16 << 10, min_time=min_time)
        + bench_pdata(1 << 20, min_time=min_time)
    )
