"""Framing: split a byte stream into PDUs by their 6-byte header (PS3.8 §9.3.1).

Received bytes are kept as the chunks they arrived in (copied once, unless they already are
immutable ``bytes``). A PDU that lies within one chunk is handed over as a ``memoryview`` slice of
it, with no further copy. A large PDU that spans reads is copied, as it arrives, into one buffer
of its size; only small PDUs that straddle chunks are joined.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Container

from ._codes import AbortReason, PDUType
from ._errors import RemoteProtocolError
from ._pdu import PDU_HEADER

#: A P-DATA-TF header followed by its first PDV's header (PS3.8 Table 9-22, 9-23).
_SINGLE_PDV = struct.Struct(">BxLLBB")

__all__ = ["ReceiveBuffer"]

#: A PDU body at least this large that is not yet complete is assembled in place as it arrives.
_ASSEMBLE_IN_PLACE = 64 * 1024
#: Up to this size, its buffer is allocated on the header; a larger one once an eighth of it has
#: arrived, so that 6 bytes cannot make us allocate up to the cap (16 MiB by default).
_PREALLOCATE = 2 * 1024 * 1024
#: How many of the first bytes a diagnostic shows when the peer does not speak DICOM.
_SHOWN = 64


def _printable(data: bytes) -> str:
    """Bytes as text, quoted, with anything but printable ASCII escaped."""
    return repr(data)[1:]  # the repr of bytes, without its b


class ReceiveBuffer:
    """Bytes received and not yet framed.

    Feeding is O(1) per chunk (plus the copy), and framing looks at a header once and then only
    at a byte count until its PDU is complete, so a stream fed one byte at a time costs O(n)
    overall. A declared length is checked against the caps as soon as the header is complete,
    before any more of the PDU is waited for.
    """

    __slots__ = ("_body", "_chunks", "_filled", "_first", "_header", "_offset", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already consumed
        self._size = 0  # bytes held in chunks and not consumed
        self._header: tuple[int, int] | None = None  # (type, length) of the PDU being framed
        self._body: bytearray | None = None  # a large body being assembled in place
        self._filled = 0  # bytes of _body filled so far
        self._first = True  # no PDU header framed yet

    def __len__(self) -> int:
        return self._size + self._filled

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        body = self._body
        if body is not None:  # fill the large body first, straight from the caller's buffer
            take = min(len(body) - self._filled, len(data))
            body[self._filled : self._filled + take] = data[:take]
            self._filled += take
            if take == len(data):
                return
            data = data[take:]
        chunk = data if type(data) is bytes else bytes(data)
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = self._size = self._filled = 0
        self._header = self._body = None

    def _take(self, n: int) -> bytes | memoryview:
        """Consume ``n`` bytes: a view when they lie in the first chunk, else a joined copy."""
        chunks = self._chunks
        first = chunks[0]
        start = self._offset
        self._size -= n
        if len(first) - start >= n:
            end = start + n
            if end == len(first):
                chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
            return memoryview(first)[start:end]
        out = bytearray(n)
        self._drain_into(out, n, 0)
        return memoryview(bytes(out)) if n <= 4096 else memoryview(out).toreadonly()

    def _drain_into(self, out: bytearray, n: int, filled: int) -> None:
        """Move ``n - filled`` bytes from the chunks into ``out[filled:n]``."""
        chunks = self._chunks
        start = self._offset
        while filled < n:
            first = chunks[0]
            piece = min(len(first) - start, n - filled)
            out[filled : filled + piece] = memoryview(first)[start : start + piece]
            filled += piece
            if start + piece == len(first):
                chunks.popleft()
                start = 0
            else:
                start += piece
        self._offset = start

    def _unknown_type(self, pdu_type: int, length: int) -> RemoteProtocolError:
        """An unknown PDU type, refused from its header (PS3.8 §9.3.1, Table 9-26: reason 1).

        As the first bytes of a stream it means the peer speaks something else (HTTP, TLS...):
        the diagnostic says so and shows what arrived. Nothing is consumed.
        """
        if not self._first:
            message = f"unknown PDU type {pdu_type:02X}H (declaring {length} bytes)"
        else:
            seen = self._peek(_SHOWN)
            hint = " (a TLS handshake?)" if pdu_type == 0x16 else ""
            message = (
                f"the peer does not seem to speak DICOM{hint} ({pdu_type:02X}H is no PDU "
                f"type); it sent: {_printable(seen)}"
            )
        return RemoteProtocolError(message, reason=AbortReason.UNRECOGNIZED_PDU, offset=0)

    def _peek(self, n: int) -> bytes:
        """Up to ``n`` of the bytes held, without consuming them."""
        out = bytearray()
        start = self._offset
        for chunk in self._chunks:
            out += chunk[start : start + n - len(out)]
            start = 0
            if len(out) >= n:
                break
        return bytes(out)

    def next_single_pdv(
        self, max_length: int, contexts: Container[int]
    ) -> tuple[int, int, memoryview] | None:
        """The hot path of Sta6: a whole P-DATA-TF of one PDV, on one of ``contexts``, at hand.

        Returns (context ID, message control header, data) and consumes the PDU, or ``None``
        (nothing consumed) for anything else, which :meth:`next_pdu` then frames and checks.
        """
        chunks = self._chunks
        if self._header is not None or self._body is not None or not chunks:
            return None
        first = chunks[0]
        start = self._offset
        rest = len(first) - start
        if rest < 12:
            return None
        pdu_type, length, item_length, context_id, control = _SINGLE_PDV.unpack_from(first, start)
        if (
            pdu_type != 0x04
            or item_length + 4 != length
            or item_length < 2
            or length > max_length
            or context_id not in contexts
        ):
            return None
        if rest >= 6 + length:  # the whole PDU in the first chunk
            end = start + 6 + length
            data = memoryview(first)[start + 12 : end]
        elif rest == 12 and len(chunks) > 1 and len(chunks[1]) >= length - 6:
            # The headers alone, then the data: fed as send_data() returned the buffers.
            chunks.popleft()
            first, start, end = chunks[0], 0, length - 6
            data = memoryview(first)[:end]
        else:
            return None
        self._size -= 6 + length
        if end == len(first):
            chunks.popleft()
            self._offset = 0
        else:
            self._offset = end
        return context_id, control, data

    def next_pdu(
        self, max_length: int, max_associate_length: int
    ) -> tuple[int, bytes | memoryview] | None:
        """Take one whole PDU as (type, body) off the front, or ``None`` if it is incomplete.

        ``max_length`` bounds every PDU but the A-ASSOCIATE ones, which ``max_associate_length``
        bounds; both count the bytes after the 6-byte header.
        """
        header = self._header
        if header is None:
            if self._size < 6:
                return None
            first = self._chunks[0]
            whole = len(first) - self._offset >= 6
            if whole:
                pdu_type, length = PDU_HEADER.unpack_from(first, self._offset)
            else:
                pdu_type, length = PDU_HEADER.unpack(self._peek(6))
            if not PDUType.ASSOCIATE_RQ <= pdu_type <= PDUType.ABORT:
                raise self._unknown_type(pdu_type, length)
            self._first = False
            if whole:
                self._size -= 6
                self._offset += 6
                if self._offset == len(first):
                    self._chunks.popleft()
                    self._offset = 0
            else:
                self._take(6)
            if pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC):
                cap, what = max_associate_length, "the A-ASSOCIATE cap of"
            else:
                cap, what = max_length, "the maximum length of"
            if length > cap:
                raise RemoteProtocolError(
                    f"PDU of type {pdu_type:02X}H declares {length} bytes, above {what} {cap}",
                    reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
                    offset=2,
                )
            header = self._header = (pdu_type, length)
        pdu_type, length = header
        body = self._body
        if (
            body is None
            and length >= _ASSEMBLE_IN_PLACE
            and length > self._size
            and (length <= _PREALLOCATE or self._size >= length >> 3)
        ):
            body = self._body = bytearray(length)
            self._filled = self._size
            self._size = 0
            self._drain_into(body, self._filled, 0)
        if body is not None:
            if self._filled < length:
                return None
            self._header = self._body = None
            self._filled = 0
            return pdu_type, memoryview(body).toreadonly()
        if self._size < length:
            return None
        self._header = None
        return pdu_type, self._take(length) if length else b""
