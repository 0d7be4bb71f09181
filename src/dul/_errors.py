"""The exceptions dul raises: one base, one for our caller's mistakes, one for the peer's."""

from __future__ import annotations

from typing import Any

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every protocol violation dul reports."""


class LocalProtocolError(ProtocolError):
    """The local caller broke the rules: nothing was sent and no state changed."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the rules.

    ``reason`` is the A-ABORT reason of PS3.8 Table 9-26 that applies to the fault (an
    :class:`~dul.AbortReason` value); ``offset`` is where in the PDU the fault was found, when it is
    known. ``reply`` is the PDU dul queued in response (an ``Abort`` or ``AssociateReject`` waiting
    in ``data_to_send()``), or ``None`` when nothing is to be sent (module-level decoding, or a
    state where the table says to stay silent).
    """

    def __init__(
        self, message: str, *, reason: int = 6, offset: int | None = None, reply: Any = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.offset = offset
        self.reply = reply

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.offset is None else f"{text} (at byte {self.offset})"
