"""The PDU codec: bytes ⇄ events for the seven PDUs of PS3.8 §9.3 and all their items.

Decoding is strict where PS3.8 says "shall" and tolerant where it says a field is "not tested"
(reserved bytes, the protocol version beyond bit 0, the AE titles of an A-ASSOCIATE-AC, PDV
message-control bits 2-7). Every fault raises :class:`RemoteProtocolError` carrying the A-ABORT
reason of PS3.8 Table 9-26 that applies and the offset in the PDU where it was found.

Encoding validates what the local user composed (``strict=True``) and raises
:class:`LocalProtocolError`; ``strict=False`` builds what a Connection would refuse, for fuzzers and
for proxies that forward what they received (received strings are then re-encoded byte-exact).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, TypeVar

from ._codes import AbortReason, AbortSource, ContextResult, ItemType, PDUType
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    MAX_UNKNOWN_ITEMS,
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
    UnknownItem,
    UserIdentity,
    UserIdentityAC,
    UserInformation,
    WireStr,
)

__all__ = ["check_pdata", "decode", "decode_pdu", "encode", "is_valid_uid", "pdata_header"]

PDU_HEADER = struct.Struct(">BxL")
_ITEM = struct.Struct(">BxH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">L")
_PDV = struct.Struct(">LBB")
_PDATA_HEADER = struct.Struct(">BxLLBB")
_ASSOCIATE_FIXED = 68  # protocol version, reserved, two AE titles, 32 reserved bytes

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER
_KNOWN_ITEMS = frozenset(ItemType)


def _fail(message: str, offset: int, reason: int = _INVALID) -> NoReturn:
    raise RemoteProtocolError(message, reason=reason, offset=offset)


# -- decoding --------------------------------------------------------------------------------
# Offsets given to errors count from the first byte of the PDU header (the body starts at 6).


def _items(body: bytes, start: int, end: int, where: str) -> Iterator[tuple[int, int, int]]:
    """Split ``body[start:end]`` into (type, value start, value end) for each item, lazily: a
    list of them would cost 30 times the bytes of a PDU of empty items."""
    pos = start
    while pos < end:
        if end - pos < 4:
            _fail(f"{where}: {end - pos} bytes left over, too few for an item header", pos + 6)
        item_type, length = _ITEM.unpack_from(body, pos)
        value_end = pos + 4 + length
        if value_end > end:
            _fail(
                f"{where}: item {item_type:02X}H declares {length} bytes, only "
                f"{end - pos - 4} remain",
                pos + 6,
            )
        yield item_type, pos + 4, value_end
        pos = value_end


def _ae_title(raw: bytes) -> str:
    value = raw.decode("latin-1").strip(" \x00")
    # A title that strict encoding would refuse (all spaces, non-ASCII, a control character) is
    # kept as a WireStr too: the A-ASSOCIATE-AC must echo it byte-exact.
    canonical = value.encode("latin-1").ljust(16, b" ")
    if raw != canonical or not value or not value.isascii() or _AE_FORBIDDEN.search(value):
        return WireStr(value, raw)
    return value


_TEXTS: dict[bytes, str] = {}  # a small memo: associations repeat the same few dozen UIDs


def _text(raw: bytes) -> str:
    """A UID or other short text: trailing NUL and space padding are removed (raw kept)."""
    value = _TEXTS.get(raw)
    if value is None:
        value = raw.decode("latin-1").rstrip("\x00 ")
        if len(value) != len(raw):
            return WireStr(value, raw)
        if len(_TEXTS) >= 4096:
            _TEXTS.clear()
        _TEXTS[raw] = value
    return value


def _u16_field(body: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """Read a 2-byte length then that many bytes; return them and the next position."""
    if end - pos < 2:
        _fail(f"{what}: its length field is truncated", pos + 6)
    (length,) = _U16.unpack_from(body, pos)
    pos += 2
    if pos + length > end:
        _fail(f"{what}: declares {length} bytes, only {end - pos} remain", pos + 4)
    return body[pos : pos + length], pos + length


def _decode_context_rq(body: bytes, start: int, end: int) -> PresentationContext:
    if end - start < 4:
        _fail("presentation context item shorter than 4 bytes", start + 2)
    context_id = body[start]
    if not context_id & 1:
        _fail(f"presentation context ID {context_id} is not odd", start + 6)
    abstract: str | None = None
    transfers = []
    pos = start + 4
    while pos < end:  # the sub-items, inline: this loop is the hot path of decoding a request
        if end - pos < 4:
            _fail(f"presentation context: {end - pos} bytes left over", pos + 6)
        item_type, length = _ITEM.unpack_from(body, pos)
        s = pos + 4
        pos = e = s + length
        if e > end:
            _fail(f"presentation context: item {item_type:02X}H overruns its parent", s + 2)
        if item_type == 0x40:  # ItemType.TRANSFER_SYNTAX
            transfers.append(_text(body[s:e]))
        elif item_type == ItemType.ABSTRACT_SYNTAX:
            if abstract is not None:
                _fail("presentation context has two abstract syntaxes", s + 2, _UNEXPECTED)
            abstract = _text(body[s:e])
        elif item_type in _KNOWN_ITEMS:
            _fail(f"item {item_type:02X}H inside a presentation context", s + 2, _UNEXPECTED)
    if abstract is None:
        _fail(f"presentation context {context_id} has no abstract syntax", start + 6)
    if not transfers:
        _fail(f"presentation context {context_id} has no transfer syntax", start + 6)
    return PresentationContext(
        context_id=context_id, abstract_syntax=abstract, transfer_syntaxes=tuple(transfers)
    )


def _decode_context_ac(body: bytes, start: int, end: int) -> PresentationContextAC:
    if end - start < 4:
        _fail("presentation context item shorter than 4 bytes", start + 2)
    context_id = body[start]
    if not context_id & 1:
        _fail(f"presentation context ID {context_id} is not odd", start + 6)
    result = body[start + 2]
    transfer: str | None = None
    for item_type, s, e in _items(body, start + 4, end, "presentation context"):
        if item_type == ItemType.TRANSFER_SYNTAX:
            if transfer is not None:
                _fail("accepted context has two transfer syntaxes", s + 2, _UNEXPECTED)
            transfer = _text(body[s:e])
        elif item_type in _KNOWN_ITEMS:
            _fail(f"item {item_type:02X}H inside a presentation context", s + 2, _UNEXPECTED)
    if transfer is None:
        if result == ContextResult.ACCEPTANCE:
            _fail(f"accepted presentation context {context_id} has no transfer syntax", start + 6)
        transfer = ""  # not significant when rejected (PS3.8 §9.3.3.2): tolerate its absence
    return PresentationContextAC(context_id=context_id, result=result, transfer_syntax=transfer)


def _decode_role(body: bytes, s: int, e: int) -> RoleSelection:
    uid, pos = _u16_field(body, s, e, "role selection")
    if e - pos != 2:
        _fail("role selection sub-item length does not match its contents", s + 2)
    return RoleSelection(
        sop_class_uid=_text(uid), scu_role=body[pos] != 0, scp_role=body[pos + 1] != 0
    )


def _decode_extended(body: bytes, s: int, e: int) -> SOPClassExtendedNegotiation:
    uid, pos = _u16_field(body, s, e, "SOP class extended negotiation")
    return SOPClassExtendedNegotiation(
        sop_class_uid=_text(uid), application_information=body[pos:e]
    )


def _decode_common_extended(body: bytes, s: int, e: int) -> SOPClassCommonExtendedNegotiation:
    what = "SOP class common extended negotiation"
    sop, pos = _u16_field(body, s, e, what)
    service, pos = _u16_field(body, pos, e, what)
    related_block, pos = _u16_field(body, pos, e, what)
    related, rpos = [], pos - len(related_block)  # parse in place: offsets count in the PDU
    while rpos < pos:
        uid, rpos = _u16_field(body, rpos, pos, what)
        related.append(_text(uid))
    # Bytes after the related SOP class list are reserved (PS3.7 Table D.3-12): not tested.
    return SOPClassCommonExtendedNegotiation(
        sop_class_uid=_text(sop),
        service_class_uid=_text(service),
        related_general_sop_classes=tuple(related),
    )


def _decode_identity_rq(body: bytes, s: int, e: int) -> UserIdentity:
    if e - s < 2:
        _fail("user identity sub-item is truncated", s + 2)
    primary, pos = _u16_field(body, s + 2, e, "user identity primary field")
    secondary, pos = _u16_field(body, pos, e, "user identity secondary field")
    if pos != e:
        _fail("user identity sub-item length does not match its contents", s + 2)
    return UserIdentity(
        identity_type=body[s],
        positive_response_requested=body[s + 1] == 1,
        primary=primary,
        secondary=secondary,
    )


def _decode_identity_ac(body: bytes, s: int, e: int) -> UserIdentityAC:
    response, pos = _u16_field(body, s, e, "user identity server response")
    if pos != e:
        _fail("user identity sub-item length does not match its contents", s + 2)
    return UserIdentityAC(server_response=response)


def _decode_user_information(body: bytes, start: int, end: int) -> UserInformation:
    single: dict[int, object] = {}
    roles, extended, common = [], [], []
    unknown: list[UnknownItem] = []
    skipped = 0
    for item_type, s, e in _items(body, start, end, "user information"):
        if item_type == ItemType.ROLE_SELECTION:
            roles.append(_decode_role(body, s, e))
        elif item_type == ItemType.SOP_CLASS_EXTENDED_NEGOTIATION:
            extended.append(_decode_extended(body, s, e))
        elif item_type == ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
            common.append(_decode_common_extended(body, s, e))
        elif item_type in _SINGLE_SUB_ITEMS:
            if item_type in single:
                _fail(f"user information has two {item_type:02X}H sub-items", s + 2, _UNEXPECTED)
            single[item_type] = _SINGLE_SUB_ITEMS[item_type](body, s, e)
        elif item_type in _KNOWN_ITEMS:
            _fail(f"item {item_type:02X}H inside user information", s + 2, _UNEXPECTED)
        elif len(unknown) < MAX_UNKNOWN_ITEMS:
            unknown.append(UnknownItem(item_type=item_type, data=body[s:e]))
        else:
            skipped += 1
    identity = single.get(ItemType.USER_IDENTITY_RQ, single.get(ItemType.USER_IDENTITY_AC))
    return UserInformation(
        maximum_length=single.get(ItemType.MAXIMUM_LENGTH),  # type: ignore[arg-type]
        implementation_class_uid=single.get(ItemType.IMPLEMENTATION_CLASS_UID),  # type: ignore[arg-type]
        implementation_version_name=single.get(ItemType.IMPLEMENTATION_VERSION_NAME),  # type: ignore[arg-type]
        async_ops_window=single.get(ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW),  # type: ignore[arg-type]
        role_selections=tuple(roles),
        extended_negotiations=tuple(extended),
        common_extended_negotiations=tuple(common),
        user_identity=identity,  # type: ignore[arg-type]
        unknown_items=tuple(unknown),
        unknown_items_skipped=skipped,
    )


def _decode_maximum_length(body: bytes, s: int, e: int) -> int:
    if e - s != 4:
        _fail(f"maximum length sub-item has length {e - s}, not 4", s + 2)
    return int(_U32.unpack_from(body, s)[0])


def _decode_async_window(body: bytes, s: int, e: int) -> AsyncOpsWindow:
    if e - s != 4:
        _fail(f"asynchronous operations window sub-item has length {e - s}, not 4", s + 2)
    invoked, performed = struct.unpack_from(">HH", body, s)
    return AsyncOpsWindow(invoked=invoked, performed=performed)


_SINGLE_SUB_ITEMS: dict[int, Callable[[bytes, int, int], object]] = {
    ItemType.MAXIMUM_LENGTH: _decode_maximum_length,
    ItemType.IMPLEMENTATION_CLASS_UID: lambda b, s, e: _text(b[s:e]),
    ItemType.IMPLEMENTATION_VERSION_NAME: lambda b, s, e: _text(b[s:e]),
    ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW: _decode_async_window,
    ItemType.USER_IDENTITY_RQ: _decode_identity_rq,
    ItemType.USER_IDENTITY_AC: _decode_identity_ac,
}


_T = TypeVar("_T")
_DECODED: dict[bytes, Any] = {}  # items decoded lately, by their bytes (header included)
_ENCODED: dict[Any, bytes] = {}  # items encoded strictly lately, by their value
_MEMO_ITEM_SIZE = 512  # larger items are not memoized: the memos stay small
_MEMO_ENTRIES = 1024


def _memoized(decoder: Callable[[bytes, int, int], _T], body: bytes, s: int, e: int) -> _T:
    """Decode the item ``body[s:e]``, or reuse what the same bytes decoded to.

    Peers send the same presentation contexts and user information association after
    association; the decoded values are immutable, so they can be shared.
    """
    if e - s > _MEMO_ITEM_SIZE:
        return decoder(body, s, e)
    key = body[s - 4 : e]
    value: _T | None = _DECODED.get(key)
    if value is None:
        value = decoder(body, s, e)
        if len(_DECODED) >= _MEMO_ENTRIES:
            _DECODED.clear()
        _DECODED[key] = value
    return value


def _memoized_encode(encoder: Callable[[Any, bool], bytes], value: Any, strict: bool) -> bytes:
    """Encode an item strictly, or reuse the bytes the same value encoded to."""
    if not strict:
        return encoder(value, strict)
    try:
        encoded = _ENCODED.get(value)
    except TypeError:  # an unhashable field (a list for a tuple): no memo
        return encoder(value, strict)
    if encoded is None:
        encoded = encoder(value, strict)
        if len(encoded) <= _MEMO_ITEM_SIZE:
            if len(_ENCODED) >= _MEMO_ENTRIES:
                _ENCODED.clear()
            _ENCODED[value] = encoded
    return encoded


def _decode_associate(pdu_type: int, body: bytes) -> AssociateRequest | AssociateAccept:
    name = "A-ASSOCIATE-RQ" if pdu_type == PDUType.ASSOCIATE_RQ else "A-ASSOCIATE-AC"
    if len(body) < _ASSOCIATE_FIXED:
        _fail(f"{name} of length {len(body)} is shorter than its 68-byte fixed part", 2)
    is_rq = pdu_type == PDUType.ASSOCIATE_RQ
    context_type = ItemType.PRESENTATION_CONTEXT_RQ if is_rq else ItemType.PRESENTATION_CONTEXT_AC
    application_context: str | None = None
    contexts: list[Any] = []
    user_information: UserInformation | None = None
    unknown: list[UnknownItem] = []
    skipped = 0
    seen: set[int] = set()  # context IDs: checked as they come, so at most 128 are decoded
    for item_type, s, e in _items(body, _ASSOCIATE_FIXED, len(body), name):
        if item_type == context_type:
            context: PresentationContext | PresentationContextAC = (
                _memoized(_decode_context_rq, body, s, e)
                if is_rq
                else _memoized(_decode_context_ac, body, s, e)
            )
            if context.context_id in seen:
                verb = "proposes" if is_rq else "answers"
                _fail(f"{name} {verb} presentation context ID {context.context_id} twice", s + 2)
            seen.add(context.context_id)
            contexts.append(context)
        elif item_type == ItemType.APPLICATION_CONTEXT:
            if application_context is not None:
                _fail(f"{name} has two application context items", s + 2, _UNEXPECTED)
            application_context = _text(body[s:e])
        elif item_type == ItemType.USER_INFORMATION:
            if user_information is not None:
                _fail(f"{name} has two user information items", s + 2, _UNEXPECTED)
            user_information = _memoized(_decode_user_information, body, s, e)
        elif item_type in _KNOWN_ITEMS:
            _fail(f"item {item_type:02X}H does not belong in an {name}", s + 2, _UNEXPECTED)
        elif len(unknown) < MAX_UNKNOWN_ITEMS:
            unknown.append(UnknownItem(item_type=item_type, data=body[s:e]))
        else:
            skipped += 1
    if application_context is None:
        _fail(f"{name} has no application context item", 6)
    if not contexts:
        _fail(f"{name} has no presentation context item", 6)
    if user_information is None:
        _fail(f"{name} has no user information item", 6)
    cls: type[AssociateRequest | AssociateAccept] = AssociateRequest if is_rq else AssociateAccept
    return cls(
        protocol_version=_U16.unpack_from(body, 0)[0],
        called_ae_title=_ae_title(body[4:20]),
        calling_ae_title=_ae_title(body[20:36]),
        application_context_name=application_context,
        presentation_contexts=tuple(contexts),
        user_information=user_information,
        unknown_items=tuple(unknown),
        unknown_items_skipped=skipped,
    )


def _pdv_follows(command: bool, last: bool, is_command: bool) -> str | None:
    """Why a PDV (``is_command``) may not follow one (``command``, ``last``) in a P-DATA-TF.

    PS3.8 Annex E.1: the PDVs of one P-DATA-TF belong to one message, on one presentation
    context: command fragments up to the command's last one, then the data set's. ``None``
    when it may follow.
    """
    if is_command:
        if not command:
            return "a command fragment follows a data set fragment"
        return "a command fragment follows the command's last fragment" if last else None
    if command:
        return None if last else "a data set fragment comes before the command's last fragment"
    return "a data set fragment follows the data set's last fragment" if last else None


def _decode_pdata(body: bytes | memoryview, keep: bool = True) -> PDataReceived:
    """Decode a P-DATA-TF into at most two PDVs, whatever number of PDVs it holds.

    Its PDVs carry one message (PS3.8 Annex E.1), so consecutive PDVs of one stream are
    fragments of one command or data set, and where they are cut means nothing: they are
    delivered as one PDV, a view of the PDU when at most one of them holds data, else a copy
    joining them. A PDU of a million empty or tiny PDVs builds no million objects.
    """
    view = memoryview(body)
    end = len(body)
    if not end:
        _fail("P-DATA-TF holds no PDV", 2)
    values = []
    context = command = last = -1  # the run of PDVs being read: context ID, stream, last bit
    start = stop = 0  # the run's data while it lies in one PDV
    joined: bytearray | None = None  # the run's data once a second PDV of it holds some
    pos = 0
    while pos < end:
        if end - pos < 6:
            _fail(f"P-DATA-TF: {end - pos} bytes left over, too few for a PDV", pos + 6)
        length, context_id, control = _PDV.unpack_from(body, pos)
        if length < 2:
            _fail(f"PDV item length {length} is less than 2", pos + 6)
        data_end = pos + 4 + length
        if data_end > end:
            _fail(f"PDV declares {length} bytes, only {end - pos - 4} remain", pos + 6)
        if not context_id & 1:
            _fail(f"PDV presentation context ID {context_id} is not odd", pos + 10)
        is_command = control & 1
        if context < 0:  # the first PDV
            context, command = context_id, is_command
        elif context_id != context:
            _fail(
                f"PDV on presentation context {context_id} after one on {context}: a "
                "P-DATA-TF carries one message (PS3.8 Annex E.1)",
                pos + 10,
                _UNEXPECTED,
            )
        else:
            problem = _pdv_follows(command == 1, last > 0, is_command == 1)
            if problem is not None:
                _fail(f"P-DATA-TF: {problem} (PS3.8 Annex E.1)", pos + 11, _UNEXPECTED)
            if is_command != command:  # the data set's run begins
                if keep:
                    values.append(_run(context, command, last, view[start:stop], joined))
                command, start, stop, joined = is_command, pos + 6, pos + 6, None
        last = control & 2
        if keep and data_end > pos + 6:
            if stop == start and joined is None:
                start, stop = pos + 6, data_end
            elif joined is None:
                joined = bytearray(view[start:stop])
                joined += view[pos + 6 : data_end]
            else:
                joined += view[pos + 6 : data_end]
        pos = data_end
    if keep:
        values.append(_run(context, command, last, view[start:stop], joined))
    return PDataReceived(values=tuple(values))


def _run(
    context_id: int, command: int, last: int, data: memoryview, joined: bytearray | None
) -> PresentationDataValue:
    """The PDV delivered for a run of PDVs of one stream: its data joined if need be."""
    return PresentationDataValue(
        context_id=context_id,
        is_command=command == 1,
        is_last=last > 0,
        data=data if joined is None else memoryview(joined).toreadonly(),
    )


def check_pdata(body: bytes | memoryview) -> PDataReceived:
    """Validate a P-DATA-TF that will not be delivered, without building its PDVs (none kept)."""
    return _decode_pdata(body, keep=False)


def _fixed_four(name: str, body: bytes) -> None:
    if len(body) != 4:
        _fail(f"{name} has length {len(body)}, not 4", 2)


def _decode_reject(body: bytes) -> AssociateReject:
    _fixed_four("A-ASSOCIATE-RJ", body)
    return AssociateReject(result=body[1], source=body[2], reason=body[3])


def _decode_release_rq(body: bytes) -> ReleaseRequest:
    _fixed_four("A-RELEASE-RQ", body)
    return ReleaseRequest()


def _decode_release_rp(body: bytes) -> ReleaseResponse:
    _fixed_four("A-RELEASE-RP", body)
    return ReleaseResponse()


def _decode_abort(body: bytes) -> Abort:
    _fixed_four("A-ABORT", body)
    return Abort(source=body[2], reason=body[3])


_DECODERS: dict[int, Callable[[bytes], Event]] = {
    PDUType.ASSOCIATE_RQ: lambda body: _decode_associate(PDUType.ASSOCIATE_RQ, body),
    PDUType.ASSOCIATE_AC: lambda body: _decode_associate(PDUType.ASSOCIATE_AC, body),
    PDUType.ASSOCIATE_RJ: _decode_reject,
    PDUType.P_DATA_TF: _decode_pdata,
    PDUType.RELEASE_RQ: _decode_release_rq,
    PDUType.RELEASE_RP: _decode_release_rp,
    PDUType.ABORT: _decode_abort,
}


def decode_pdu(pdu_type: int, body: bytes | memoryview) -> Event:
    """Decode one PDU from its type and its body (the bytes after the 6-byte header).

    A P-DATA-TF's PDVs are slices of ``body``; other PDUs copy what they keep.
    """
    decoder = _DECODERS.get(pdu_type)
    if decoder is None:
        _fail(f"unknown PDU type {pdu_type:02X}H", 0, AbortReason.UNRECOGNIZED_PDU)
    if pdu_type != PDUType.P_DATA_TF and type(body) is not bytes:
        body = bytes(body)
    return decoder(body)  # type: ignore[arg-type]


def decode(data: bytes) -> list[Event]:
    """Decode a byte string holding whole PDUs, back to back; a partial PDU is an error.

    PDV data are views of ``data`` (of a copy of it, if it is not ``bytes``).
    """
    view = memoryview(data if type(data) is bytes else bytes(data))
    events = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 6:
            raise RemoteProtocolError("truncated PDU header", offset=pos)
        pdu_type, length = PDU_HEADER.unpack_from(data, pos)
        if pos + 6 + length > len(data):
            raise RemoteProtocolError(
                f"PDU declares {length} bytes, only {len(data) - pos - 6} remain", offset=pos
            )
        try:
            events.append(decode_pdu(pdu_type, view[pos + 6 : pos + 6 + length]))
        except RemoteProtocolError as exc:
            if exc.offset is not None:
                exc.offset += pos
            raise
        pos += 6 + length
    return events


# -- encoding --------------------------------------------------------------------------------

_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")  # PS3.5 §9.1: no leading 0s
_AE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_VALID_UIDS: set[str] = set()  # a small memo: negotiation repeats the same few dozen UIDs


def is_valid_uid(text: str) -> bool:
    """True when ``text`` is a UID as PS3.5 §9.1 defines it: what ``encode`` sends.

    Numbers without leading zeros separated by single dots, at most 64 characters. Use it to
    screen peer-chosen values before echoing them in something you send.
    """
    return isinstance(text, str) and len(text) <= 64 and _UID.fullmatch(text) is not None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise LocalProtocolError(message)


def _uid_bytes(value: str, what: str, strict: bool) -> bytes:
    if not strict:
        return value.raw if isinstance(value, WireStr) else value.encode("latin-1", "replace")
    if value not in _VALID_UIDS:
        _check(isinstance(value, str), f"{what} must be a str, not {type(value).__name__}")
        _check(
            is_valid_uid(value),
            f"{what} {value!r} is not a UID (PS3.5 §9.1: numbers without leading zeros, "
            "separated by dots, at most 64 characters)",
        )
        if len(_VALID_UIDS) > 4096:
            _VALID_UIDS.clear()
        _VALID_UIDS.add(str(value))
    return value.encode("ascii")


def _ae_bytes(value: str, what: str, strict: bool) -> bytes:
    if not strict:
        if isinstance(value, WireStr):
            return value.raw
        return value.encode("latin-1", "replace")[:16].ljust(16, b" ")
    _check(isinstance(value, str), f"{what} must be a str, not {type(value).__name__}")
    _check(
        value.isascii() and 0 < len(value) <= 16 and value.strip() == value,
        f"{what} {value!r} must be 1 to 16 ASCII characters without leading or trailing spaces",
    )
    _check(not _AE_FORBIDDEN.search(value), f"{what} {value!r} holds a control character")
    return value.encode("ascii").ljust(16, b" ")


def _echoed_ae_bytes(value: str, what: str, strict: bool) -> bytes:
    """AE titles of an A-ASSOCIATE-AC echo the request's bytes (not tested on receive)."""
    if isinstance(value, WireStr):
        return value.raw
    return _ae_bytes(value, what, strict)


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"item {item_type:02X}H of {len(value)} bytes exceeds 65535")
    return _ITEM.pack(item_type, len(value)) + value


def _u16_prefixed(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"a field of {len(value)} bytes exceeds 65535")
    return _U16.pack(len(value)) + value


def _check_context_id(context_id: int, strict: bool) -> None:
    if strict:
        _check(
            isinstance(context_id, int) and 1 <= context_id <= 255 and context_id % 2 == 1,
            f"presentation context ID {context_id!r} must be odd, 1 to 255",
        )


def _byte(value: int, what: str) -> int:
    _check(isinstance(value, int) and 0 <= value <= 255, f"{what} {value!r} is not a byte value")
    return value


_UID_ITEMS: dict[tuple[int, str], bytes] = {}  # validated, encoded UID items, by (type, UID)


def _uid_item(item_type: int, value: str, what: str, strict: bool) -> bytes:
    """An item holding one UID; strict encodings are memoized (requests repeat their UIDs)."""
    if not strict or type(value) is not str:
        return _item(item_type, _uid_bytes(value, what, strict))
    key = (item_type, value)
    encoded = _UID_ITEMS.get(key)
    if encoded is None:
        encoded = _item(item_type, _uid_bytes(value, what, strict))
        if len(_UID_ITEMS) >= 4096:
            _UID_ITEMS.clear()
        _UID_ITEMS[key] = encoded
    return encoded


def _encode_context_rq(context: PresentationContext, strict: bool) -> bytes:
    _check_context_id(context.context_id, strict)
    if strict:
        _check(
            len(context.transfer_syntaxes) > 0,
            f"presentation context {context.context_id} proposes no transfer syntax",
        )
    parts = [
        bytes((_byte(context.context_id, "context ID"), 0, 0, 0)),
        _uid_item(ItemType.ABSTRACT_SYNTAX, context.abstract_syntax, "abstract syntax", strict),
    ]
    parts.extend(
        [
            _uid_item(ItemType.TRANSFER_SYNTAX, ts, "transfer syntax", strict)
            for ts in context.transfer_syntaxes
        ]
    )
    return _item(ItemType.PRESENTATION_CONTEXT_RQ, b"".join(parts))


def _encode_context_ac(context: PresentationContextAC, strict: bool) -> bytes:
    _check_context_id(context.context_id, strict)
    if strict:
        _check(
            context.result in ContextResult.__members__.values(),
            f"presentation context result {context.result!r} is not 0 to 4",
        )
    if context.transfer_syntax == "" and (not strict or context.result != 0):
        transfer = b""
    else:
        # Not significant unless accepted (PS3.8 §9.3.3.2): a rejected context's transfer syntax,
        # often echoed from the request, goes out as it came, even if it is not a valid UID.
        accepted = context.result == ContextResult.ACCEPTANCE
        transfer = _uid_bytes(context.transfer_syntax, "transfer syntax", strict and accepted)
    head = bytes((_byte(context.context_id, "context ID"), 0, _byte(context.result, "result"), 0))
    return _item(ItemType.PRESENTATION_CONTEXT_AC, head + _item(ItemType.TRANSFER_SYNTAX, transfer))


def _encode_user_information(info: UserInformation, strict: bool) -> bytes:
    parts = []
    if info.maximum_length is not None:
        _check(
            isinstance(info.maximum_length, int) and 0 <= info.maximum_length <= 0xFFFFFFFF,
            f"maximum length {info.maximum_length!r} is not a 32-bit unsigned integer",
        )
        parts.append(_item(ItemType.MAXIMUM_LENGTH, _U32.pack(info.maximum_length)))
    elif strict:
        raise LocalProtocolError("the maximum length sub-item is mandatory (PS3.8 Annex D.1)")
    if info.implementation_class_uid is not None:
        uid = _uid_bytes(info.implementation_class_uid, "implementation class UID", strict)
        parts.append(_item(ItemType.IMPLEMENTATION_CLASS_UID, uid))
    elif strict:
        raise LocalProtocolError("the implementation class UID is mandatory (PS3.7 D.3.3.2)")
    if info.async_ops_window is not None:
        window = info.async_ops_window
        _check(
            0 <= window.invoked <= 0xFFFF and 0 <= window.performed <= 0xFFFF,
            f"{window!r} values must be 0 to 65535",
        )
        parts.append(
            _item(
                ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW,
                struct.pack(">HH", window.invoked, window.performed),
            )
        )
    for role in info.role_selections:
        uid = _uid_bytes(role.sop_class_uid, "role selection SOP class UID", strict)
        body = _u16_prefixed(uid) + bytes((bool(role.scu_role), bool(role.scp_role)))
        parts.append(_item(ItemType.ROLE_SELECTION, body))
    if info.implementation_version_name is not None:
        name = info.implementation_version_name
        if strict:
            _check(
                name.isascii()
                and 1 <= len(name) <= 16
                and name.strip() == name
                and not _AE_FORBIDDEN.search(name),
                f"implementation version name {name!r} must be 1 to 16 ASCII characters, "
                "without leading or trailing spaces",
            )
        raw = name.raw if isinstance(name, WireStr) and not strict else name.encode("latin-1")
        parts.append(_item(ItemType.IMPLEMENTATION_VERSION_NAME, raw))
    for ext in info.extended_negotiations:
        uid = _uid_bytes(ext.sop_class_uid, "extended negotiation SOP class UID", strict)
        parts.append(
            _item(
                ItemType.SOP_CLASS_EXTENDED_NEGOTIATION,
                _u16_prefixed(uid) + bytes(ext.application_information),
            )
        )
    for common in info.common_extended_negotiations:
        related = b"".join(
            _u16_prefixed(_uid_bytes(uid, "related general SOP class UID", strict))
            for uid in common.related_general_sop_classes
        )
        sop = _uid_bytes(common.sop_class_uid, "common extended negotiation SOP class", strict)
        service = _uid_bytes(common.service_class_uid, "service class UID", strict)
        parts.append(
            _item(
                ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION,
                _u16_prefixed(sop) + _u16_prefixed(service) + _u16_prefixed(related),
            )
        )
    identity = info.user_identity
    if isinstance(identity, UserIdentity):
        if strict:
            _check(
                1 <= identity.identity_type <= 255 and len(identity.primary) > 0,
                "user identity needs a type and a non-empty primary field",
            )
        body = bytes(
            (
                _byte(identity.identity_type, "user identity type"),
                1 if identity.positive_response_requested else 0,
            )
        )
        body += _u16_prefixed(bytes(identity.primary)) + _u16_prefixed(bytes(identity.secondary))
        parts.append(_item(ItemType.USER_IDENTITY_RQ, body))
    elif isinstance(identity, UserIdentityAC):
        parts.append(
            _item(ItemType.USER_IDENTITY_AC, _u16_prefixed(bytes(identity.server_response)))
        )
    parts.extend(_unknown_items(info.unknown_items))
    return _item(ItemType.USER_INFORMATION, b"".join(parts))


def _unknown_items(items: Iterable[UnknownItem]) -> list[bytes]:
    return [_item(_byte(item.item_type, "item type"), bytes(item.data)) for item in items]


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return PDU_HEADER.pack(pdu_type, len(body)) + body


def _encode_associate(event: AssociateRequest | AssociateAccept, strict: bool) -> bytes:
    is_rq = isinstance(event, AssociateRequest)
    if is_rq:
        called = _ae_bytes(event.called_ae_title, "called AE title", strict)
        calling = _ae_bytes(event.calling_ae_title, "calling AE title", strict)
        contexts = [
            _memoized_encode(_encode_context_rq, c, strict) for c in event.presentation_contexts
        ]
    else:
        called = _echoed_ae_bytes(event.called_ae_title, "called AE title", strict)
        calling = _echoed_ae_bytes(event.calling_ae_title, "calling AE title", strict)
        contexts = [
            _memoized_encode(_encode_context_ac, c, strict) for c in event.presentation_contexts
        ]
    if strict:
        _check(len(contexts) > 0, "an A-ASSOCIATE PDU needs at least one presentation context")
        _check(event.protocol_version & 1 == 1, "protocol version must have bit 0 set")
        ids = [c.context_id for c in event.presentation_contexts]
        _check(len(set(ids)) == len(ids), "presentation context IDs must be unique")
    _check(0 <= event.protocol_version <= 0xFFFF, "protocol version must fit in 16 bits")
    body = b"".join(
        [
            _U16.pack(event.protocol_version),
            b"\0\0",
            called,
            calling,
            bytes(32),
            _item(
                ItemType.APPLICATION_CONTEXT,
                _uid_bytes(event.application_context_name, "application context name", strict),
            ),
            *contexts,
            _memoized_encode(_encode_user_information, event.user_information, strict),
            *_unknown_items(event.unknown_items),
        ]
    )
    return _pdu(PDUType.ASSOCIATE_RQ if is_rq else PDUType.ASSOCIATE_AC, body)


def _encode_reject(event: AssociateReject, strict: bool) -> bytes:
    if strict:
        _check(event.result in (1, 2), f"reject result {event.result!r} is not 1 or 2")
        _check(event.source in (1, 2, 3), f"reject source {event.source!r} is not 1, 2 or 3")
    body = bytes(
        (
            0,
            _byte(event.result, "result"),
            _byte(event.source, "source"),
            _byte(event.reason, "reason"),
        )
    )
    return _pdu(PDUType.ASSOCIATE_RJ, body)


def _encode_abort(event: Abort, strict: bool) -> bytes:
    if strict:
        _check(event.source in (0, 2), f"abort source {event.source!r} is not 0 or 2")
        if event.source == AbortSource.SERVICE_PROVIDER:
            _check(
                event.reason in (0, 1, 2, 4, 5, 6),
                f"provider abort reason {event.reason!r} is not 0, 1, 2, 4, 5 or 6",
            )
    body = bytes((0, 0, _byte(event.source, "source"), _byte(event.reason, "reason")))
    return _pdu(PDUType.ABORT, body)


def pdata_header(pdu_length: int, pdv_length: int, context_id: int, control: int) -> bytes:
    """The 12 bytes before the data of a P-DATA-TF holding one PDV (PDU and PDV headers)."""
    return _PDATA_HEADER.pack(PDUType.P_DATA_TF, pdu_length, pdv_length, context_id, control)


def _encode_pdata(event: PData | PDataReceived, strict: bool) -> bytes:
    if strict:
        _check(len(event.values) > 0, "a P-DATA-TF needs at least one PDV")
        _check_one_message(event.values)
    parts: list[bytes | memoryview] = [b""]  # the PDU header goes first: one join, one copy
    length = 0
    for value in event.values:
        _check_context_id(value.context_id, strict)
        if strict:
            _check(len(value.data) > 0, "a PDV needs at least one byte of data (PS3.8 Annex E.1)")
        control = (1 if value.is_command else 0) | (2 if value.is_last else 0)
        parts.append(_PDV.pack(len(value.data) + 2, _byte(value.context_id, "context ID"), control))
        parts.append(value.data)
        length += 6 + len(value.data)
    parts[0] = PDU_HEADER.pack(PDUType.P_DATA_TF, length)
    return b"".join(parts)


def _check_one_message(values: Iterable[PresentationDataValue]) -> None:
    """The PDVs of one P-DATA-TF carry one message, on one context (PS3.8 Annex E.1)."""
    previous: PresentationDataValue | None = None
    for value in values:
        if previous is not None:
            if value.context_id != previous.context_id:
                problem: str | None = "PDVs on two presentation contexts"
            else:
                problem = _pdv_follows(previous.is_command, previous.is_last, value.is_command)
            _check(
                problem is None,
                f"{problem}: the PDVs of a P-DATA-TF carry one message (PS3.8 Annex E.1)",
            )
        previous = value


_ENCODERS: dict[type, Callable[..., bytes]] = {
    AssociateRequest: _encode_associate,
    AssociateAccept: _encode_associate,
    AssociateReject: _encode_reject,
    PData: _encode_pdata,
    PDataReceived: _encode_pdata,
    ReleaseRequest: lambda event, strict: _pdu(PDUType.RELEASE_RQ, bytes(4)),
    ReleaseResponse: lambda event, strict: _pdu(PDUType.RELEASE_RP, bytes(4)),
    Abort: _encode_abort,
}


def encode(event: Event, strict: bool = True) -> bytes:
    """Encode one PDU event to bytes, without a Connection.

    With ``strict`` (the default), values that may not go on the wire raise
    :class:`LocalProtocolError`; ``strict=False`` encodes them anyway and re-encodes received
    strings byte-exact.
    """
    encoder = _ENCODERS.get(type(event))
    if encoder is None:
        raise LocalProtocolError(f"{type(event).__name__} is not a PDU that can be encoded")
    return encoder(event, strict)
