"""Framing: split a byte stream into PDUs by their 6-byte header (PS3.8 §9.3.1)."""

from __future__ import annotations

from ._codes import AbortReason, PDUType
from ._errors import RemoteProtocolError
from ._pdu import PDU_HEADER

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received and not yet framed.

    Appending is amortized O(1) and framing inspects only the header until a PDU is complete, so
    feeding a stream one byte at a time costs O(n) overall. A declared length is checked against
    the caps as soon as the header is complete, before any more of the PDU is waited for.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def clear(self) -> None:
        self._data.clear()

    def next_pdu(self, max_length: int, max_associate_length: int) -> tuple[int, bytes] | None:
        """Take one whole PDU as (type, body) off the front, or ``None`` if it is incomplete.

        ``max_length`` bounds every PDU but the A-ASSOCIATE ones, which ``max_associate_length``
        bounds; both count the bytes after the 6-byte header.
        """
        data = self._data
        if len(data) < 6:
            return None
        pdu_type, length = PDU_HEADER.unpack_from(data)
        if pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC):
            if length > max_associate_length:
                raise RemoteProtocolError(
                    f"A-ASSOCIATE PDU declares {length} bytes, above the cap of "
                    f"{max_associate_length}",
                    reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
                    offset=2,
                )
        elif length > max_length:
            raise RemoteProtocolError(
                f"PDU of type {pdu_type:02X}H declares {length} bytes, above the maximum "
                f"length of {max_length}",
                reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
                offset=2,
            )
        end = 6 + length
        if len(data) < end:
            return None
        with memoryview(data) as view, view[6:end] as body_view:
            body = bytes(body_view)
        del data[:end]
        return pdu_type, body
