"""A pretty-printer for events and PDU streams: what ``python -m dul decode`` prints.

:func:`describe` turns one event into readable lines (a trace or a logging proxy reuses it);
:func:`dump_stream` decodes a byte string of whole PDUs and describes each, with its offset, and
on a fault says the A-ABORT reason (PS3.8 Table 9-26) a Connection would send and where.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import TextIO

from ._codes import (
    AbortReason,
    AbortSource,
    ContextResult,
    PDUType,
    RejectResult,
    RejectSource,
    UserIdentityType,
    reject_reason_name,
)
from ._connection import DEFAULT_ASSOCIATE_LENGTH_LIMIT, DEFAULT_PDU_LENGTH_LIMIT
from ._errors import RemoteProtocolError
from ._events import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    ConnectionClosed,
    Event,
    PData,
    PDataReceived,
    PresentationContext,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
    UnknownItem,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
    WireStr,
)
from ._pdu import PDU_HEADER, decode_pdu
from .uids import UID_NAMES

__all__ = ["describe", "dump_stream"]

_PDU_NAMES: dict[type, str] = {
    AssociateRequest: "A-ASSOCIATE-RQ",
    AssociateAccept: "A-ASSOCIATE-AC",
    AssociateReject: "A-ASSOCIATE-RJ",
    PData: "P-DATA-TF",
    PDataReceived: "P-DATA-TF",
    ReleaseRequest: "A-RELEASE-RQ",
    ReleaseResponse: "A-RELEASE-RP",
    Abort: "A-ABORT",
}
_PREVIEW = 16  # bytes of opaque data shown in hex


def _name(enum: type[IntEnum], value: int) -> str:
    """``value (name)``, with the name in the lower-case, hyphenated style of reject reasons."""
    try:
        name = enum(value).name.lower().replace("_", "-")
    except ValueError:
        name = "reserved"
    return f"{value} ({name})"


def _hex(data: bytes | memoryview, limit: int = _PREVIEW) -> str:
    shown = bytes(data[:limit]).hex(" ")
    return shown + (" …" if len(data) > limit else "") if shown else "(empty)"


def _raw_note(value: str) -> str:
    """The wire bytes of a received string that was not canonical (padding, NUL, non-ASCII)."""
    return f" (raw {value.raw!r})" if isinstance(value, WireStr) else ""


def _ae(value: str) -> str:
    if value == "" and getattr(value, "raw", b" ").strip(b" ") == b"":
        return "'' (all spaces)"
    return repr(str(value)) + _raw_note(value)


def _uid(value: str) -> str:
    name = UID_NAMES.get(str(value))
    return str(value) + (f" ({name})" if name else "") + _raw_note(value)


def _unknown(items: Iterable[UnknownItem], indent: str) -> list[str]:
    return [
        f"{indent}unknown item {item.item_type:02X}H, {len(item.data)} bytes: {_hex(item.data)}"
        for item in items
    ]


def _identity(identity: UserIdentity | UserIdentityAC) -> list[str]:
    """User identity (PS3.7 D.3.3.7). Secrets are not printed: a trace must not leak them."""
    if isinstance(identity, UserIdentityAC):
        return [f"    user identity (AC): server response {len(identity.server_response)} bytes"]
    is_username = identity.identity_type in (
        UserIdentityType.USERNAME,
        UserIdentityType.USERNAME_AND_PASSCODE,
    )
    primary = repr(bytes(identity.primary)) if is_username else f"{len(identity.primary)} bytes"
    lines = [
        f"    user identity (RQ): type {_name(UserIdentityType, identity.identity_type)}",
        f"      positive response requested: {identity.positive_response_requested}",
        f"      primary field: {primary}",
    ]
    if identity.secondary:
        lines.append(f"      secondary field: {len(identity.secondary)} bytes (not shown)")
    return lines


def _user_information(info: UserInformation) -> list[str]:
    lines = ["  user information:"]
    if info.maximum_length is not None:
        unlimited = " (no limit)" if info.maximum_length == 0 else ""
        lines.append(f"    maximum length: {info.maximum_length}{unlimited}")
    if info.implementation_class_uid is not None:
        lines.append(f"    implementation class UID: {_uid(info.implementation_class_uid)}")
    if info.implementation_version_name is not None:
        name = info.implementation_version_name
        lines.append(f"    implementation version name: {_ae(name)}")
    if info.async_ops_window is not None:
        window = info.async_ops_window
        lines.append(
            f"    asynchronous operations window: invoked {window.invoked}, "
            f"performed {window.performed} (0 = unlimited)"
        )
    lines.extend(
        f"    role selection: {_uid(role.sop_class_uid)}: SCU {int(role.scu_role)}, "
        f"SCP {int(role.scp_role)}"
        for role in info.role_selections
    )
    for ext in info.extended_negotiations:
        lines.append(f"    SOP class extended negotiation: {_uid(ext.sop_class_uid)}")
        lines.append(f"      application information: {_hex(ext.application_information)}")
    for common in info.common_extended_negotiations:
        lines.append(f"    SOP class common extended negotiation: {_uid(common.sop_class_uid)}")
        lines.append(f"      service class: {_uid(common.service_class_uid)}")
        lines.extend(
            f"      related general SOP class: {_uid(uid)}"
            for uid in common.related_general_sop_classes
        )
    if info.user_identity is not None:
        lines.extend(_identity(info.user_identity))
    lines.extend(_unknown(info.unknown_items, "    "))
    return lines


def _associate(event: AssociateRequest | AssociateAccept) -> list[str]:
    lines = [
        f"  protocol version: {event.protocol_version:#06x}",
        f"  called AE title: {_ae(event.called_ae_title)}",
        f"  calling AE title: {_ae(event.calling_ae_title)}",
        f"  application context: {_uid(event.application_context_name)}",
    ]
    for context in event.presentation_contexts:
        lines.append(f"  presentation context {context.context_id}:")
        if isinstance(context, PresentationContext):
            lines.append(f"    abstract syntax: {_uid(context.abstract_syntax)}")
            lines.extend(f"    transfer syntax: {_uid(ts)}" for ts in context.transfer_syntaxes)
        else:
            transfer = context.transfer_syntax
            lines.append(f"    result: {_name(ContextResult, context.result)}")
            lines.append(f"    transfer syntax: {_uid(transfer) if transfer else '(none)'}")
    lines.extend(_user_information(event.user_information))
    lines.extend(_unknown(event.unknown_items, "  "))
    return lines


def _pdvs(values: Iterable[PresentationDataValue], offset: int | None) -> list[str]:
    lines = []
    for value in values:
        where = f" at byte {offset}" if offset is not None else ""
        kind = "command" if value.is_command else "dataset"
        last = "last" if value.is_last else "not last"
        lines.append(
            f"  PDV{where}: context {value.context_id}, {kind}, {last}, {len(value.data)} bytes"
        )
        lines.append(f"    data: {_hex(value.data)}")
        if offset is not None:
            offset += 6 + len(value.data)  # item length (4), context ID, control header
    return lines


def describe(event: Event, *, offset: int | None = None) -> str:
    """Every field of ``event``, one per line, the first line naming the PDU.

    ``offset``, the position of the PDU's first byte in its stream, adds each PDV's position.
    """
    if isinstance(event, ConnectionClosed):
        return f"connection closed: {event.cause.value}"
    name = _PDU_NAMES.get(type(event), type(event).__name__)
    lines = [name]
    if isinstance(event, (AssociateRequest, AssociateAccept)):
        lines.extend(_associate(event))
    elif isinstance(event, AssociateReject):
        lines.append(f"  result: {_name(RejectResult, event.result)}")
        lines.append(f"  source: {_name(RejectSource, event.source)}")
        lines.append(f"  reason: {event.reason} ({reject_reason_name(event.source, event.reason)})")
    elif isinstance(event, (PData, PDataReceived)):
        lines.extend(_pdvs(event.values, None if offset is None else offset + 6))
    elif isinstance(event, Abort):
        lines.append(f"  source: {_name(AbortSource, event.source)}")
        if event.source == AbortSource.SERVICE_PROVIDER:
            lines.append(f"  reason: {_name(AbortReason, event.reason)}")
        else:
            lines.append(f"  reason: {event.reason} (not significant)")
    return "\n".join(lines)


def _context(data: bytes, offset: int) -> str:
    """The bytes around ``offset`` in hex, the faulty one in brackets."""
    start = max(0, offset - 8)
    cells = [
        f"[{byte:02x}]" if start + i == offset else f"{byte:02x}"
        for i, byte in enumerate(data[start : offset + 8])
    ]
    if offset >= len(data):
        cells.append("[end]")
    return f"bytes {start}-{start + len(cells) - 1}: " + " ".join(cells)


def dump_stream(data: bytes, out: TextIO) -> int:
    """Describe each PDU of ``data`` (whole PDUs, back to back) to ``out``.

    Returns 0 when every PDU decoded, 1 at the first fault: then ``out`` says what was wrong, the
    A-ABORT reason a Connection would send (PS3.8 Table 9-26) and the byte offset in ``data``.
    Nothing after a fault is decoded: framing may be lost (a Connection discards it too).
    """
    pos = 0
    count = 0
    while pos < len(data):
        if len(data) - pos < 6:
            return _truncated(
                data, out, pos, f"{len(data) - pos} bytes left, too few for a PDU header"
            )
        pdu_type, length = PDU_HEADER.unpack_from(data, pos)
        out.write(f"PDU {count + 1} at byte {pos}: type {pdu_type:02X}H, length {length} (+6)\n")
        is_associate = pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC)
        cap = DEFAULT_ASSOCIATE_LENGTH_LIMIT if is_associate else DEFAULT_PDU_LENGTH_LIMIT
        if length > cap:
            out.write(
                f"  note: above a Connection's default cap of {cap} bytes: with the default "
                "limits it would abort here (reason 6)\n"
            )
        end = pos + 6 + length
        if end > len(data):
            return _truncated(
                data,
                out,
                pos,
                f"the PDU declares {length} bytes, only {len(data) - pos - 6} remain",
            )
        try:
            event = decode_pdu(pdu_type, data[pos + 6 : end])
        except RemoteProtocolError as exc:
            where = pos + (exc.offset or 0)
            message = str(exc.args[0]) if exc.args else str(exc)
            out.write(
                f"error at byte {where}: {message}\n"
                f"  A-ABORT reason: {_name(AbortReason, exc.reason)}\n"
                f"  {_context(data, where)}\n"
            )
            return 1
        text = describe(event, offset=pos)
        out.write("  " + text.replace("\n", "\n  ") + "\n")
        count += 1
        pos = end
    out.write(f"{count} PDU{'s' if count != 1 else ''}, {len(data)} bytes: no error\n")
    return 0


def _truncated(data: bytes, out: TextIO, pos: int, message: str) -> int:
    """The stream ends inside a PDU. No A-ABORT answers that: a Connection waits for more bytes,
    and if the transport closes first, that is an A-P-ABORT (AA-4, Evt17)."""
    out.write(
        f"error at byte {len(data)}: the stream ends inside the PDU at byte {pos}: {message}\n"
        "  A-ABORT reason: none (a Connection would wait for more bytes; the transport closing "
        "now is an A-P-ABORT, AA-4)\n"
        f"  {_context(data, len(data))}\n"
    )
    return 1
