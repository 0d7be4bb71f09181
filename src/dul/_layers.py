"""Mutations aimed at one layer of a stream, each keeping the layers below it well framed.

:func:`dul.testing.mutate` works on the PDU layer (bits, lengths, whole PDUs). The functions
here go one layer up and leave everything beneath intact, so that a peer gets past its framing
and into the code that reads the layer:

* items: an item or sub-item inside an A-ASSOCIATE-RQ/-AC (PS3.8 §9.3.2-3, Annex D; PS3.7
  D.3.3) is retyped, resized, dropped, duplicated, moved or rewritten; the PDU length (and those
  of the items around it) are recomputed, so the PDU still frames;
* command sets: an element of a DIMSE command set (PS3.7 §6.3.1, group 0000) gets another value,
  length or tag, is dropped, duplicated or reordered; the PDVs and PDUs around it are rebuilt;
* data sets: the bytes of a data set fragment are edited (a bit, a byte, a range, an element
  length); the PDV and PDU lengths are recomputed.

Each takes its choices from a ``pick(lo, hi)`` function, as :func:`~dul.testing.mutate` does, and
returns the stream unchanged only when it holds nothing of its layer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from attrs import define

from ._errors import RemoteProtocolError
from ._mutate import _U16_VALUES, _U32_VALUES, Pick, _new_length, mutate, pdu_spans
from .dimse import ELEMENTS, MESSAGE_CLASSES, Message, decode_message

__all__ = [
    "Layer",
    "mutate_command_set",
    "mutate_commands",
    "mutate_datasets",
    "mutate_items",
    "mutate_layer",
]


class Layer(enum.Enum):
    """Where :func:`mutate_layer` aims."""

    #: Bits, bytes and length fields anywhere; whole PDUs dropped, duplicated, swapped, spliced.
    PDU = "pdu"
    #: Items and sub-items of an A-ASSOCIATE-RQ/-AC; the PDU still frames.
    ITEM = "item"
    #: Elements of a DIMSE command set; the P-DATA-TF still frames.
    COMMAND = "command"
    #: Bytes of a data set fragment; the P-DATA-TF still frames.
    DATASET = "dataset"


def _flip_one_bit(data: bytes, pick: Pick) -> bytes:
    out = bytearray(data)
    bit = pick(0, 8 * len(out) - 1)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _random_bytes(pick: Pick, lo: int, hi: int) -> bytes:
    return bytes(pick(0, 255) for _ in range(pick(lo, hi)))


# -- the item layer ---------------------------------------------------------------------------

#: Container items: the fixed bytes before their sub-items (PS3.8 §9.3.2.2, §9.3.3.2, Annex D).
_CONTAINERS = {0x20: 4, 0x21: 4, 0x50: 0}
_ITEM_TYPES = (
    0x10,
    0x20,
    0x21,
    0x30,
    0x40,
    0x50,
    0x51,
    0x52,
    0x53,
    0x54,
    0x55,
    0x56,
    0x57,
    0x58,
    0x59,
)
_FIXED = 68  # protocol version, reserved, called and calling AE titles, reserved (§9.3.2)


@define
class _Item:
    item_type: int
    reserved: int
    fixed: bytes  # a leaf's whole value, or a container's bytes before its sub-items
    children: list[_Item] | None = None
    length: int | None = None  # a length to write instead of the true one

    def encode(self) -> bytes:
        value = self.fixed + b"".join(c.encode() for c in self.children or ())
        length = len(value) if self.length is None else self.length
        return bytes((self.item_type, self.reserved)) + (length & 0xFFFF).to_bytes(2, "big") + value


def _parse_items(data: bytes, nested: bool) -> tuple[list[_Item], bytes]:
    """Items of ``data`` (sub-items of containers too, one level deep), and a tail that does
    not parse, kept as it is."""
    items, pos = [], 0
    while len(data) - pos >= 4:
        end = pos + 4 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > len(data):
            break
        item = _Item(data[pos], data[pos + 1], data[pos + 4 : end])
        skip = _CONTAINERS.get(item.item_type)
        if skip is not None and not nested and len(item.fixed) >= skip:
            children, tail = _parse_items(item.fixed[skip:], nested=True)
            if not tail:
                item.fixed, item.children = item.fixed[:skip], children
        items.append(item)
        pos = end
    return items, data[pos:]


def _mutate_item(items: list[_Item], pick: Pick) -> None:
    """One mutation of one item or sub-item of ``items`` (modified in place)."""
    places = [(items, i) for i in range(len(items))]
    for item in items:
        if item.children is not None:
            places += [(item.children, i) for i in range(len(item.children))]
    if not places:
        items.append(_Item(pick(0, 255), 0, _random_bytes(pick, 0, 8)))
        return
    siblings, index = places[pick(0, len(places) - 1)]
    item = siblings[index]
    kind = pick(0, 8)
    if kind == 0:  # another type, mostly a known one
        new = _ITEM_TYPES[pick(0, len(_ITEM_TYPES) - 1)] if pick(0, 3) else pick(0, 255)
        item.item_type = new if new != item.item_type else new ^ 0x01
    elif kind == 1:  # a length that is not the item's
        true = len(item.encode()) - 4
        new = _new_length(pick, true, 2)
        item.length = new if new != true else (true + 1) & 0xFFFF
    elif kind == 2:  # dropped
        del siblings[index]
    elif kind == 3:  # duplicated
        siblings.insert(index, _Item(item.item_type, item.reserved, item.fixed, item.children))
    elif kind == 4 and len(siblings) > 1:  # out of order
        other = pick(0, len(siblings) - 2)
        other += other >= index
        siblings[index], siblings[other] = siblings[other], siblings[index]
    elif kind == 5:  # moved to another level: a sub-item at the top, an item inside another
        del siblings[index]
        hosts = [items, *(c.children for c in items if c.children is not None)]
        target = [h for h in hosts if h is not siblings] or [items]
        host = target[pick(0, len(target) - 1)]
        host.insert(pick(0, len(host)), item)
    elif kind == 6 and item.fixed:  # its value edited: a bit, or cut short
        if pick(0, 1):
            item.fixed = _flip_one_bit(item.fixed, pick)
        else:
            item.fixed = item.fixed[: pick(0, len(item.fixed) - 1)]
    elif kind == 7:  # an unknown item beside it (PS3.8 §9.3.1: to be skipped)
        siblings.insert(
            pick(0, len(siblings)), _Item(pick(0x5A, 0xFF), 0, _random_bytes(pick, 0, 8))
        )
    else:  # its reserved byte set ("not tested" on receive), or duplicated when it is set
        if item.reserved == 0:
            item.reserved = pick(1, 255)
        else:
            siblings.insert(index, _Item(item.item_type, 0, item.fixed, item.children))


def _mutate_associate(pdu: bytes, pick: Pick) -> bytes:
    """One A-ASSOCIATE-RQ/-AC PDU (whole, header included) with one item-layer mutation."""
    fixed, body = bytearray(pdu[6 : 6 + _FIXED]), pdu[6 + _FIXED :]
    items, tail = _parse_items(body, nested=False)
    if pick(0, 7) == 0:  # a fixed field: protocol version, or a byte of an AE title
        if pick(0, 1):
            fixed[0:2] = _U16_VALUES[pick(0, len(_U16_VALUES) - 1)].to_bytes(2, "big")
        else:
            fixed[pick(4, 35)] = pick(0, 255)
    else:
        _mutate_item(items, pick)
    value = bytes(fixed) + b"".join(i.encode() for i in items) + tail
    out = pdu[:2] + len(value).to_bytes(4, "big") + value
    if out == pdu:  # a mutation that changed nothing (a fixed field set to what it was)
        out = out[:6] + _flip_one_bit(out[6:8], pick) + out[8:]
    return out


def _splice(stream: bytes, span: tuple[int, int], new: bytes) -> bytes:
    return stream[: span[0]] + new + stream[span[1] :]


def mutate_items(stream: bytes, pick: Pick) -> bytes:
    """``stream`` with one item-layer mutation in one of its A-ASSOCIATE-RQ/-AC PDUs.

    An item or sub-item (application context, presentation context, abstract or transfer
    syntax, user information and its sub-items) gets another type, a wrong length, a flipped
    bit or a shorter value; it is dropped, duplicated, reordered, moved to another level, or
    joined by an unknown item; now and then a fixed field (protocol version, AE title) changes.
    The PDU's own length is recomputed: the stream still frames, PDU by PDU. A stream without
    an A-ASSOCIATE PDU is returned as it is.
    """
    spans = [(s, e) for s, e in pdu_spans(stream) if e - s >= 6 + _FIXED and stream[s] in (1, 2)]
    if not spans:
        return stream
    span = spans[pick(0, len(spans) - 1)]
    return _splice(stream, span, _mutate_associate(stream[span[0] : span[1]], pick))


# -- P-DATA-TF, taken apart and put back -------------------------------------------------------


@define
class _Pdv:
    context_id: int
    control: int
    data: bytes


def _parse_pdvs(body: bytes) -> list[_Pdv] | None:
    """The PDVs of a P-DATA-TF variable field, or None when it does not parse whole."""
    pdvs, pos = [], 0
    while pos < len(body):
        if len(body) - pos < 6:
            return None
        end = pos + 4 + int.from_bytes(body[pos : pos + 4], "big")
        if end > len(body) or end - pos < 6:
            return None
        pdvs.append(_Pdv(body[pos + 4], body[pos + 5], body[pos + 6 : end]))
        pos = end
    return pdvs


def _encode_pdata(pdvs: list[_Pdv], reserved: int = 0) -> bytes:
    body = b"".join(
        (len(p.data) + 2).to_bytes(4, "big") + bytes((p.context_id, p.control)) + p.data
        for p in pdvs
    )
    return bytes((4, reserved)) + len(body).to_bytes(4, "big") + body


def _pdata_pdus(stream: bytes) -> list[tuple[tuple[int, int], list[_Pdv]]]:
    """Each well-framed P-DATA-TF of ``stream``: its span and its PDVs."""
    out = []
    for start, end in pdu_spans(stream):
        if stream[start] == 4 and end - start >= 6:
            pdvs = _parse_pdvs(stream[start + 6 : end])
            if pdvs:
                out.append(((start, end), pdvs))
    return out


# -- the command-set layer ---------------------------------------------------------------------

_COMMAND_FIELDS = tuple(MESSAGE_CLASSES)
_KNOWN_ELEMENTS = tuple(ELEMENTS)


@define
class _Element:
    element: int
    value: bytes
    group: int = 0x0000
    length: int | None = None  # a length to write instead of the value's

    def encode(self) -> bytes:
        length = len(self.value) if self.length is None else self.length
        return (
            self.group.to_bytes(2, "little")
            + self.element.to_bytes(2, "little")
            + (length & 0xFFFF_FFFF).to_bytes(4, "little")
            + self.value
        )


def _parse_command(data: bytes) -> tuple[list[_Element], bytes]:
    elements, pos = [], 0
    while len(data) - pos >= 8:
        end = pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
        if end > len(data):
            break
        group = int.from_bytes(data[pos : pos + 2], "little")
        element = int.from_bytes(data[pos + 2 : pos + 4], "little")
        elements.append(_Element(element, data[pos + 8 : end], group))
        pos = end
    return elements, data[pos:]


def _new_value(pick: Pick, old: bytes) -> bytes:
    """Another value for an element: a boundary number of its width, other bytes of its
    length, or a value grown or cut short."""
    how = pick(0, 3)
    if how == 0 and len(old) in (2, 4):
        values = _U16_VALUES if len(old) == 2 else _U32_VALUES
        return values[pick(0, len(values) - 1)].to_bytes(len(old), "little")
    if how == 1 and old:
        return _flip_one_bit(old, pick)
    if how == 2 and old:
        return old[: pick(0, len(old) - 1)]
    return old + _random_bytes(pick, 1, 9)


def _decoded(command: bytes) -> tuple[Message, bool] | None:
    try:
        return decode_message(command)
    except RemoteProtocolError:
        return None


def mutate_command_set(command: bytes, pick: Pick) -> bytes:
    """A DIMSE command set (implicit VR little endian, group 0000, PS3.7 §6.3.1) with one
    mutation: an element's value (boundary numbers, flipped bits, grown or shortened with its
    length), its length field alone, its tag (another element, or another group), an element
    dropped, duplicated or out of order, another CommandField (0000,0100), the opposite
    CommandDataSetType (0000,0800), or a wrong CommandGroupLength (0000,0000).

    CommandGroupLength is recomputed after every mutation but the last kind, so that a receiver
    that trusts it reads what was mutated. The result is never an encoding of the same message:
    :func:`dul.dimse.decode_message` refuses it or decodes another message, or its
    CommandGroupLength does not count the bytes that follow.
    """
    original = _decoded(command)
    for _ in range(8):  # a mutation may land in padding (a UID's NUL): then try another
        out, lies = _mutate_command_once(command, pick)
        if out != command and (lies or _decoded(out) != original or original is None):
            return out
    return command[:-1] if len(command) > 1 else _random_bytes(pick, 1, 16)


def _mutate_command_once(command: bytes, pick: Pick) -> tuple[bytes, bool]:
    """One mutation, and whether it was the group length's."""
    elements, tail = _parse_command(command)
    if not elements:
        return (_flip_one_bit(command, pick) if command else _random_bytes(pick, 1, 16)), False
    index = pick(0, len(elements) - 1)
    chosen = elements[index]
    keep_group_length = False
    kind = pick(0, 9)
    if kind == 0:
        chosen.value = _new_value(pick, chosen.value)
    elif kind == 1:  # a length field that is not the value's
        true = len(chosen.value)
        new = _new_length(pick, true, 4)
        chosen.length = new if new != true else true + 1
    elif kind == 2:  # another tag: a known element, any element, or another group
        how = pick(0, 2)
        if how == 0:
            chosen.element = _KNOWN_ELEMENTS[pick(0, len(_KNOWN_ELEMENTS) - 1)]
        elif how == 1:
            chosen.element = pick(0, 0xFFFF)
        else:
            chosen.group = pick(1, 0xFFFF)
    elif kind == 3:
        del elements[index]
    elif kind == 4:
        elements.insert(index, _Element(chosen.element, chosen.value, chosen.group))
    elif kind == 5 and len(elements) > 1:
        other = pick(0, len(elements) - 2)
        other += other >= index
        elements[index], elements[other] = elements[other], elements[index]
    elif kind in (6, 7):  # what the message is: CommandField, or whether a data set follows
        target = 0x0100 if kind == 6 else 0x0800
        found = next((e for e in elements if e.element == target and e.group == 0), None)
        if kind == 6:
            new = (
                _COMMAND_FIELDS[pick(0, len(_COMMAND_FIELDS) - 1)]
                if pick(0, 3)
                else pick(0, 0xFFFF)
            )
        elif found is not None and found.value != b"\x01\x01":  # a data set follows: none
            new = 0x0101
        else:  # none follows: one does (any value but 0101H, PS3.7 Table E.1-1)
            new = (0x0000, 0x0001, 0xFEFE, pick(0, 0x0100))[pick(0, 3)]
        if found is None:
            elements.append(_Element(target, new.to_bytes(2, "little")))
        else:
            found.value = new.to_bytes(2, "little")
    else:  # a CommandGroupLength that does not count what follows
        keep_group_length = True
        first = elements[0]
        if first.element == 0x0000 and first.group == 0 and len(first.value) == 4:
            old = int.from_bytes(first.value, "little")
            first.value = _new_length(pick, old, 4).to_bytes(4, "little")
    if not keep_group_length and elements and elements[0].element == 0 and elements[0].group == 0:
        rest = sum(len(e.encode()) for e in elements[1:]) + len(tail)
        if len(elements[0].value) == 4 and elements[0].length is None:
            elements[0].value = rest.to_bytes(4, "little")
    return b"".join(e.encode() for e in elements) + tail, keep_group_length


def _messages(
    pdus: list[tuple[tuple[int, int], list[_Pdv]]], command: bool
) -> list[list[tuple[int, int]]]:
    """The fragments of each whole command set (or data set) in ``pdus``, as (PDU index, PDV
    index) pairs, in order."""
    bit = 1 if command else 0
    pending: dict[int, list[tuple[int, int]]] = {}
    out = []
    for p, (_, pdvs) in enumerate(pdus):
        for v, pdv in enumerate(pdvs):
            if pdv.control & 1 != bit:
                continue
            pending.setdefault(pdv.context_id, []).append((p, v))
            if pdv.control & 2:
                out.append(pending.pop(pdv.context_id))
    return out


def _rebuild(
    stream: bytes, pdus: list[tuple[tuple[int, int], list[_Pdv]]], changed: set[int]
) -> bytes:
    """``stream`` with each P-DATA-TF of ``changed`` re-encoded (dropped if it lost every PDV)."""
    parts, pos = [], 0
    for p in sorted(changed):
        (start, end), pdvs = pdus[p]
        parts.append(stream[pos:start])
        if pdvs:
            parts.append(_encode_pdata(pdvs, stream[start + 1]))
        pos = end
    parts.append(stream[pos:])
    return b"".join(parts)


def mutate_commands(stream: bytes, pick: Pick) -> bytes:
    """``stream`` with one DIMSE command set mutated by :func:`mutate_command_set`.

    The command set's fragments are joined into its last PDV (the PDVs before it dropped, and a
    P-DATA-TF left with none): every P-DATA-TF still frames, with a command PDV whose last bit
    is set, and its content is the mutated command set. A stream without a whole command set
    is returned as it is.
    """
    pdus = _pdata_pdus(stream)
    commands = _messages(pdus, command=True)
    if not commands:
        return stream
    fragments = commands[pick(0, len(commands) - 1)]
    data = b"".join(pdus[p][1][v].data for p, v in fragments)
    mutated = mutate_command_set(data, pick)
    if not mutated:
        mutated = b"\0\0"
    *first, (last_p, last_v) = fragments
    pdus[last_p][1][last_v].data = mutated
    for p, v in reversed(first):
        del pdus[p][1][v]
    return _rebuild(stream, pdus, {p for p, _ in fragments})


# -- the data-set layer ------------------------------------------------------------------------


def _element_lengths(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the length field of each element at the top of a data set fragment,
    read as explicit VR little endian when the first VR looks like one, else implicit."""
    explicit = len(data) >= 6 and data[4:6].isalpha() and data[4:6].isupper()
    out, pos = [], 0
    while len(data) - pos >= 8:
        if explicit:
            vr = data[pos + 4 : pos + 6]
            if vr in (
                b"OB",
                b"OD",
                b"OF",
                b"OL",
                b"OV",
                b"OW",
                b"SQ",
                b"SV",
                b"UC",
                b"UN",
                b"UR",
                b"UT",
                b"UV",
            ):
                if len(data) - pos < 12:
                    break
                at, width = pos + 8, 4
            else:
                at, width = pos + 6, 2
        else:
            at, width = pos + 4, 4
        out.append((at, width))
        length = int.from_bytes(data[at : at + width], "little")
        if length == 0xFFFF_FFFF:
            break
        pos = at + width + length
    return out


def _mutate_fragment(data: bytes, pick: Pick) -> bytes:
    out = bytearray(data)
    kind = pick(0, 5)
    if kind == 0:
        out = bytearray(_flip_one_bit(data, pick))
    elif kind == 1:
        out[pick(0, len(out) - 1)] = pick(0, 255)
    elif kind == 2:  # an element length: a boundary value (0xFFFFFFFF: undefined length) or near
        fields = _element_lengths(data)
        if fields:
            at, width = fields[pick(0, len(fields) - 1)]
            old = int.from_bytes(out[at : at + width], "little")
            out[at : at + width] = _new_length(pick, old, width).to_bytes(width, "little")
    elif kind == 3:
        at = pick(0, len(out))
        out[at:at] = _random_bytes(pick, 1, 16)
    elif kind == 4 and len(out) > 1:
        start = pick(0, len(out) - 2)
        del out[start : start + pick(1, len(out) - 1 - start)]
    else:  # cut short, never empty (a PDV holds one byte at least, PS3.8 Annex E.1)
        del out[pick(1, len(out)) :]
    if bytes(out) == data:
        out = bytearray(_flip_one_bit(data, pick))
    return bytes(out)


def mutate_datasets(stream: bytes, pick: Pick) -> bytes:
    """``stream`` with the bytes of one data set fragment edited: a bit flipped, a byte set, an
    element's length field changed (``FFFFFFFFH`` included: undefined length), bytes inserted
    or deleted, the fragment cut short.

    The PDV and P-DATA-TF lengths are recomputed, so the stream still frames; command sets are
    left byte-exact. A stream without a data set PDV is returned as it is.
    """
    pdus = _pdata_pdus(stream)
    fragments = [
        (p, v) for p, (_, pdvs) in enumerate(pdus) for v, d in enumerate(pdvs) if not d.control & 1
    ]
    if not fragments:
        return stream
    p, v = fragments[pick(0, len(fragments) - 1)]
    pdv = pdus[p][1][v]
    pdv.data = _mutate_fragment(pdv.data, pick)
    return _rebuild(stream, pdus, {p})


_BY_LAYER: dict[Layer, Callable[[bytes, Pick], bytes]] = {
    Layer.ITEM: mutate_items,
    Layer.COMMAND: mutate_commands,
    Layer.DATASET: mutate_datasets,
}


def mutate_layer(stream: bytes, layer: Layer, pick: Pick, other: bytes = b"") -> bytes:
    """``stream`` with one mutation at ``layer``; ``other`` is for PDU-layer splices."""
    if layer is Layer.PDU:
        return mutate(stream, pick, other)
    return _BY_LAYER[layer](stream, pick)
