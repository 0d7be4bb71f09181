"""The codec on real associations: the captures in examples/captures, and one recorded live.

The captures are DCMTK 3.6.7 echoscu/storescu against storescp, and pynetdicom 3.0.4's echo
against storescp (examples/captures/README.md). Each value asserted here was read from the bytes
by hand, not from dul's output. Re-encoding the decoded events gives bytes that decode to the same
events; it gives the very same bytes except where DCMTK puts 0xFF in a reserved byte (the one after
the context ID of each proposed presentation context), which dul re-encodes as 0.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from dul import (
    AssociateAccept,
    AssociateRequest,
    Event,
    PDataReceived,
    PresentationContext,
    PresentationContextAC,
    ReleaseRequest,
    ReleaseResponse,
    UserInformation,
    decode,
    encode,
)
from peers import HOST, Dcmtk
from test_captures import load_example
from test_codec import chunkings, feed

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

DCMTK_USER = UserInformation(
    maximum_length=16384,
    implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
    implementation_version_name="OFFIS_DCMTK_367",
)
PYNETDICOM_USER = UserInformation(
    maximum_length=16382,
    implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
    implementation_version_name="PYNETDICOM_304",
)

CAPTURES = ["echoscu-storescp", "storescu-storescp", "storescu-storescp-pdu4096", "pynetdicom-echo"]


def load(capture_dir: Path, name: str) -> tuple[bytes, bytes]:
    """The requestor's and the acceptor's bytes of capture ``name``."""
    return (
        (capture_dir / f"{name}.rq.bin").read_bytes(),
        (capture_dir / f"{name}.ac.bin").read_bytes(),
    )


def command_elements(data: bytes) -> dict[int, bytes]:
    """A command set (group 0000, implicit VR little endian, PS3.7 §6.3) as {tag: value}."""
    elements = {}
    pos = 0
    while pos < len(data):
        group, element, length = struct.unpack_from("<HHL", data, pos)
        elements[group << 16 | element] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    assert pos == len(data)
    return elements


def u16(value: bytes) -> int:
    return int(struct.unpack("<H", value)[0])


# -- the values ----------------------------------------------------------------------------------


def test_echoscu_storescp(capture_dir: Path) -> None:
    rq_bytes, ac_bytes = load(capture_dir, "echoscu-storescp")
    rq, echo_rq, release_rq = decode(rq_bytes)
    ac, echo_rsp, release_rp = decode(ac_bytes)

    assert rq == AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="ECHOSCU",
        presentation_contexts=(
            PresentationContext(
                context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_LE,)
            ),
        ),
        user_information=DCMTK_USER,
        application_context_name=APP_CONTEXT,
        protocol_version=1,
    )
    assert ac == AssociateAccept(
        called_ae_title="STORESCP",
        calling_ae_title="ECHOSCU",
        presentation_contexts=(
            PresentationContextAC(context_id=1, result=0, transfer_syntax=IMPLICIT_LE),
        ),
        user_information=DCMTK_USER,
    )
    assert release_rq == ReleaseRequest()
    assert release_rp == ReleaseResponse()

    # The P-DATA-TF headers, byte for byte: PDU (type 4, length 74), PDV (length 70, context 1,
    # control 03H: command, last fragment), then the 68-byte C-ECHO-RQ command set.
    pdata_at = len(encode(rq))
    assert rq_bytes[pdata_at : pdata_at + 12] == bytes.fromhex("04 00 0000004a 00000046 01 03")
    assert isinstance(echo_rq, PDataReceived)
    [value] = echo_rq.values
    assert (value.context_id, value.is_command, value.is_last, len(value.data)) == (
        1,
        True,
        True,
        68,
    )
    command = command_elements(bytes(value.data))
    assert struct.unpack("<L", command[0x0000_0000])[0] == 68 - 12  # command group length
    assert command[0x0000_0002] == VERIFICATION.encode() + b"\x00"  # affected SOP class, padded
    assert u16(command[0x0000_0100]) == 0x0030  # C-ECHO-RQ
    assert u16(command[0x0000_0800]) == 0x0101  # no data set

    assert isinstance(echo_rsp, PDataReceived)
    [value] = echo_rsp.values
    assert (value.context_id, value.is_command, value.is_last, len(value.data)) == (
        1,
        True,
        True,
        78,
    )
    command = command_elements(bytes(value.data))
    assert u16(command[0x0000_0100]) == 0x8030  # C-ECHO-RSP
    assert u16(command[0x0000_0900]) == 0x0000  # status: success


def test_pynetdicom_echo(capture_dir: Path) -> None:
    rq_bytes, ac_bytes = load(capture_dir, "pynetdicom-echo")
    rq, echo_rq, _ = decode(rq_bytes)
    ac, _, _ = decode(ac_bytes)
    assert rq == AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="PYNETDICOM",
        presentation_contexts=(
            PresentationContext(
                context_id=1,
                abstract_syntax=VERIFICATION,
                transfer_syntaxes=(IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE),
            ),
        ),
        user_information=PYNETDICOM_USER,
    )
    assert ac == AssociateAccept(
        called_ae_title="STORESCP",
        calling_ae_title="PYNETDICOM",
        presentation_contexts=(
            PresentationContextAC(context_id=1, result=0, transfer_syntax=EXPLICIT_LE),
        ),
        user_information=DCMTK_USER,
    )
    assert isinstance(echo_rq, PDataReceived)
    [value] = echo_rq.values
    assert (value.context_id, value.is_command, value.is_last, len(value.data)) == (
        1,
        True,
        True,
        68,
    )
    assert u16(command_elements(bytes(value.data))[0x0000_0100]) == 0x0030


@pytest.mark.parametrize("name", ["storescu-storescp", "storescu-storescp-pdu4096"])
def test_storescu_storescp(capture_dir: Path, name: str) -> None:
    rq_bytes, ac_bytes = load(capture_dir, name)
    rq, *pdata, release_rq = decode(rq_bytes)
    ac, store_rsp, release_rp = decode(ac_bytes)

    assert isinstance(rq, AssociateRequest)
    assert (rq.called_ae_title, rq.calling_ae_title) == ("STORESCP", "STORESCU")
    assert rq.user_information == DCMTK_USER
    contexts = rq.presentation_contexts
    assert [c.context_id for c in contexts] == list(range(1, 256, 2))  # 128 contexts, 1 to 255
    # Each SOP class twice: Explicit VR LE alone, then Explicit VR BE and Implicit VR LE.
    for first, second in zip(contexts[::2], contexts[1::2], strict=True):
        assert first.abstract_syntax == second.abstract_syntax
        assert first.transfer_syntaxes == (EXPLICIT_LE,)
        assert second.transfer_syntaxes == (EXPLICIT_BE, IMPLICIT_LE)
    assert len({c.abstract_syntax for c in contexts}) == 64
    ct = [c for c in contexts if c.abstract_syntax == CT_IMAGE]
    assert [c.context_id for c in ct] == [41, 43]
    assert int.from_bytes(rq_bytes[2:6], "big") == 9609  # a 9,615-byte A-ASSOCIATE-RQ

    assert isinstance(ac, AssociateAccept)
    assert [c.context_id for c in ac.presentation_contexts] == list(range(1, 256, 2))
    assert all(c.result == 0 for c in ac.presentation_contexts)
    assert ac.presentation_contexts[20] == PresentationContextAC(
        context_id=41, result=0, transfer_syntax=EXPLICIT_LE
    )
    expected_max = 4096 if name.endswith("pdu4096") else 16384
    assert ac.user_information.maximum_length == expected_max

    # The C-STORE-RQ command, then the data set in one PDV, or in three of 4084, 4084, 822 bytes.
    assert all(isinstance(p, PDataReceived) for p in pdata)
    command, *fragments = (p.values for p in pdata if isinstance(p, PDataReceived))
    [value] = command
    assert (value.context_id, value.is_command, value.is_last, len(value.data)) == (
        41,
        True,
        True,
        138,
    )
    assert u16(command_elements(bytes(value.data))[0x0000_0100]) == 0x0001  # C-STORE-RQ
    values = [v for f in fragments for v in f]
    expected_sizes = [4084, 4084, 822] if name.endswith("pdu4096") else [8990]
    assert [len(v.data) for v in values] == expected_sizes
    assert all(v.context_id == 41 and not v.is_command for v in values)
    assert [v.is_last for v in values] == [False] * (len(values) - 1) + [True]
    assert values[0].data[:4] == b"\x08\x00\x05\x00"  # (0008,0005) Specific Character Set
    # DCMTK fills a 4096 maximum to 4090 bytes of variable field: one PDV of 4084 data bytes.
    sizes = [len(encode(p)) - 6 for p in pdata[1:]]
    assert sizes == ([4090, 4090, 828] if name.endswith("pdu4096") else [8996])

    assert isinstance(store_rsp, PDataReceived)
    [value] = store_rsp.values
    status = command_elements(bytes(value.data))
    assert u16(status[0x0000_0100]) == 0x8001  # C-STORE-RSP
    assert u16(status[0x0000_0900]) == 0x0000
    assert (release_rq, release_rp) == (ReleaseRequest(), ReleaseResponse())


def test_same_data_set_either_way(capture_dir: Path) -> None:
    """The three fragments of the pdu4096 capture join to the one PDV of the other capture."""

    def data_set(name: str) -> bytes:
        events = decode(load(capture_dir, name)[0])
        return b"".join(
            bytes(v.data)
            for e in events
            if isinstance(e, PDataReceived)
            for v in e.values
            if not v.is_command
        )

    assert data_set("storescu-storescp-pdu4096") == data_set("storescu-storescp")


# -- re-encoding -------------------------------------------------------------------------------


def _dcmtk_reserved_positions(wire: bytes, event: AssociateRequest) -> list[int]:
    """Where the reserved byte after each proposed context's ID lies in an A-ASSOCIATE-RQ."""
    positions = []
    pos = 74
    while pos < len(wire) and wire[pos] != 0x50:
        if wire[pos] == 0x20:
            positions.append(pos + 6)
        pos += 4 + int.from_bytes(wire[pos + 2 : pos + 4], "big")
    assert len(positions) == len(event.presentation_contexts)
    return positions


@pytest.mark.parametrize("name", CAPTURES)
def test_reencode(capture_dir: Path, name: str) -> None:
    """Decoded events re-encode to bytes that decode the same; byte-exact but for DCMTK's 0xFF."""
    for side, wire in zip(("rq", "ac"), load(capture_dir, name), strict=True):
        events = decode(wire)
        again = b"".join(encode(e) for e in events)
        assert decode(again) == events
        assert len(again) == len(wire)
        differing = [i for i, (a, b) in enumerate(zip(wire, again, strict=True)) if a != b]
        first = events[0]
        if side == "rq" and isinstance(first, AssociateRequest) and name != "pynetdicom-echo":
            # DCMTK's requests: 0xFF in each proposed context's reserved byte, nothing else.
            reserved = _dcmtk_reserved_positions(wire, first)
            assert differing == reserved
            assert {wire[i] for i in reserved} == {0xFF}
            assert {again[i] for i in reserved} == {0x00}
        else:
            assert differing == []


@pytest.mark.parametrize("name", CAPTURES)
def test_captures_in_any_chunking(capture_dir: Path, name: str) -> None:
    """Through the receive buffer, whole, byte by byte, in random chunks, with trailing data."""
    for wire in load(capture_dir, name):
        events = decode(wire)
        for mode, chunks, left in chunkings(wire, seed=len(wire)):
            assert feed(chunks) == (events, left), mode


# -- recorded live -------------------------------------------------------------------------------


def _check_live_echo(requestor: bytes, acceptor: bytes) -> None:
    """What echoscu and storescp said, decoded: whatever DCMTK version is installed."""
    rq_events: list[Event]
    rq_events, left = feed(requestor[i : i + 7] for i in range(0, len(requestor), 7))
    assert left == 0
    ac_events, left = feed([acceptor])
    assert left == 0
    assert [type(e) for e in rq_events] == [AssociateRequest, PDataReceived, ReleaseRequest]
    assert [type(e) for e in ac_events] == [AssociateAccept, PDataReceived, ReleaseResponse]
    rq, echo, _ = rq_events
    ac, response, _ = ac_events
    assert isinstance(rq, AssociateRequest)
    assert isinstance(ac, AssociateAccept)
    assert (rq.called_ae_title, rq.calling_ae_title) == ("LIVESCP", "LIVESCU")
    assert (ac.called_ae_title, ac.calling_ae_title) == ("LIVESCP", "LIVESCU")
    assert rq.presentation_contexts == (
        PresentationContext(
            context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_LE,)
        ),
    )
    assert ac.presentation_contexts == (
        PresentationContextAC(context_id=1, result=0, transfer_syntax=IMPLICIT_LE),
    )
    for info in (rq.user_information, ac.user_information):
        assert info.maximum_length == 16384
        assert (info.implementation_class_uid or "").startswith("1.2.276.0.7230010.3.")
        assert (info.implementation_version_name or "").startswith("OFFIS_DCMTK_")
    assert isinstance(echo, PDataReceived)
    assert isinstance(response, PDataReceived)
    assert u16(command_elements(bytes(echo.values[0].data))[0x0000_0100]) == 0x0030
    status = command_elements(bytes(response.values[0].data))
    assert u16(status[0x0000_0100]) == 0x8030
    assert u16(status[0x0000_0900]) == 0x0000
    for events in (rq_events, ac_events):
        assert decode(b"".join(encode(e) for e in events)) == events


@pytest.mark.interop
def test_live_echoscu_storescp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """Record echoscu -> storescp now, through examples/capture.py's relay, and decode it."""
    capture = load_example("capture")
    recorded = []
    with dcmtk.storescp(tmp_path, aet="LIVESCP") as scp_port, capture.listen(0) as listener:
        relay = threading.Thread(
            target=lambda: recorded.append(
                capture.relay_one(listener, (HOST, scp_port), timeout=30.0, accept_timeout=30.0)
            ),
            daemon=True,
        )
        relay.start()
        relay_port = str(listener.getsockname()[1])
        echo = dcmtk.run(
            "echoscu", "-aet", "LIVESCU", "-aec", "LIVESCP", HOST, relay_port, timeout=60.0
        )
        relay.join(60.0)
    assert echo.returncode == 0, echo.stderr
    assert not relay.is_alive()
    [result] = recorded
    _check_live_echo(bytes(result.requestor), bytes(result.acceptor))
