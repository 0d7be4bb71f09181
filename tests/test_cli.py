"""``python -m dul decode``, its pretty-printer (``dul.describe``), and the documented examples."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import dul
from dul import describe, dump_stream
from peers import split_pdus

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ["echoscu-storescp", "storescu-storescp", "storescu-storescp-pdu4096", "pynetdicom-echo"]


def run_decode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dul decode ARGS`` in a child process, with src/ on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "dul", "decode", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def dump(data: bytes) -> tuple[int, str]:
    out = io.StringIO()
    status = dump_stream(data, out)
    return status, out.getvalue()


def pdu_headers(data: bytes) -> list[str]:
    """The header line dump_stream should print for each PDU, computed without dul."""
    lines, pos = [], 0
    for number, (pdu_type, body) in enumerate(split_pdus(data), 1):
        lines.append(f"PDU {number} at byte {pos}: type {pdu_type:02X}H, length {len(body)} (+6)")
        pos += 6 + len(body)
    return lines


def first_context_id_offset(rq: bytes) -> int:
    """Where the first presentation context's ID sits in an A-ASSOCIATE-RQ (PS3.8 §9.3.2).

    The variable items start after the 6-byte header and 68 fixed bytes; DCMTK and pynetdicom put
    the application context item (4-byte header + value) first, then the presentation contexts.
    """
    assert rq[74] == 0x10
    (app_length,) = struct.unpack_from(">H", rq, 76)
    context_item = 74 + 4 + app_length
    assert rq[context_item] == 0x20
    return context_item + 4


# -- the captures, through the command line ---------------------------------------------------


@pytest.mark.parametrize("name", CAPTURES)
def test_decode_captures(capture_dir: Path, name: str) -> None:
    data = (capture_dir / f"{name}.bin").read_bytes()
    result = run_decode(str(capture_dir / f"{name}.bin"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    headers = [line for line in result.stdout.splitlines() if line.startswith("PDU ")]
    assert headers == pdu_headers(data)
    assert result.stdout.endswith(f"{len(headers)} PDUs, {len(data)} bytes: no error\n")
    assert "    called AE title: 'STORESCP'\n" in result.stdout
    assert "application context: 1.2.840.10008.3.1.1.1 (DICOM Application Context Name)" in (
        result.stdout
    )


def test_decode_echoscu_fields(capture_dir: Path) -> None:
    """Every field of the DCMTK C-ECHO association, as its README describes it."""
    data = (capture_dir / "echoscu-storescp.bin").read_bytes()
    out = run_decode(str(capture_dir / "echoscu-storescp.bin")).stdout

    for expected in [
        "  A-ASSOCIATE-RQ\n    protocol version: 0x0001\n",
        "    calling AE title: 'ECHOSCU'\n",
        "    presentation context 1:\n"
        "      abstract syntax: 1.2.840.10008.1.1 (Verification SOP Class)\n"
        "      transfer syntax: 1.2.840.10008.1.2 (Implicit VR Little Endian)\n",
        "      maximum length: 16384\n"
        "      implementation class UID: 1.2.276.0.7230010.3.0.3.6.7\n"
        "      implementation version name: 'OFFIS_DCMTK_367'\n",
        "    PDV at byte 217: context 1, command, last, 68 bytes\n",
        "  A-RELEASE-RQ\n",
        "  A-ASSOCIATE-AC\n",
        "    presentation context 1:\n      result: 0 (acceptance)\n",
        "    PDV at byte 497: context 1, command, last, 78 bytes\n",
        "  A-RELEASE-RP\n",
    ]:
        assert expected in out
    # The PDV offsets printed point at the PDV item length field (data length + 2).
    assert struct.unpack_from(">L", data, 217)[0] == 68 + 2
    assert struct.unpack_from(">L", data, 497)[0] == 78 + 2


def test_decode_stdin_matches_file(capture_dir: Path) -> None:
    path = capture_dir / "pynetdicom-echo.bin"
    from_file = run_decode(str(path))
    from_stdin = run_decode("-", stdin=path.read_bytes())

    assert from_stdin.returncode == 0
    assert from_stdin.stdout == from_file.stdout
    assert "transfer syntax: 1.2.840.10008.1.2.1.99 (Deflated Explicit VR Little Endian)" in (
        from_stdin.stdout
    )


def test_decode_corrupted_capture(capture_dir: Path, tmp_path: Path) -> None:
    """An even presentation context ID: reason 6 and the byte's absolute offset are printed."""
    data = bytearray((capture_dir / "echoscu-storescp.bin").read_bytes())
    offset = first_context_id_offset(bytes(data))
    data[offset] = 2
    path = tmp_path / "corrupt.bin"
    path.write_bytes(data)

    result = run_decode(str(path))

    assert result.returncode == 1
    assert f"error at byte {offset}: presentation context ID 2 is not odd\n" in result.stdout
    assert "  A-ABORT reason: 6 (invalid-pdu-parameter-value)\n" in result.stdout
    assert "no error" not in result.stdout


def test_decode_corrupted_later_pdu(capture_dir: Path, tmp_path: Path) -> None:
    """A fault in the second PDU: the first is printed, the offset counts from the file start."""
    data = bytearray((capture_dir / "echoscu-storescp.bin").read_bytes())
    second = split_pdus(bytes(data))[0][1]
    at = 6 + len(second)
    data[at] = 0x09  # no such PDU type
    path = tmp_path / "corrupt.bin"
    path.write_bytes(data)

    result = run_decode(str(path))

    assert result.returncode == 1
    assert "  A-ASSOCIATE-RQ\n" in result.stdout
    assert f"error at byte {at}: unknown PDU type 09H\n" in result.stdout
    assert "  A-ABORT reason: 1 (unrecognized-pdu)\n" in result.stdout


def test_help_and_usage_errors(tmp_path: Path) -> None:
    helped = run_decode("--help")
    assert helped.returncode == 0
    assert "Exit status" in helped.stdout
    assert "A-ABORT reason" in helped.stdout

    missing = run_decode(str(tmp_path / "no-such-file.bin"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    assert missing.stdout == ""


# -- faults, in process -----------------------------------------------------------------------


def test_known_item_in_wrong_place(capture_dir: Path) -> None:
    """A maximum length sub-item (51H) at the top level of the A-ASSOCIATE-RQ: reason 5."""
    data = bytearray((capture_dir / "echoscu-storescp.rq.bin").read_bytes())
    user_info = data.rindex(b"\x50\x00")
    data[user_info] = 0x51
    status, out = dump(bytes(data))

    assert status == 1
    assert f"error at byte {user_info}: item 51H does not belong in an A-ASSOCIATE-RQ\n" in out
    assert "  A-ABORT reason: 5 (unexpected-pdu-parameter)\n" in out


def test_unknown_type_and_wrong_fixed_length() -> None:
    abort = bytes([7, 0, 0, 0, 0, 5, 0, 0, 2, 6, 0])  # an A-ABORT with length 5
    status, out = dump(bytes(10))
    assert status == 1
    assert "error at byte 0: unknown PDU type 00H\n" in out
    assert "A-ABORT reason: 1 (unrecognized-pdu)" in out

    status, out = dump(dul.encode(dul.ReleaseRequest()) + abort)
    assert status == 1
    assert "  A-RELEASE-RQ\n" in out
    assert "error at byte 12: A-ABORT has length 5, not 4\n" in out
    assert "A-ABORT reason: 6 (invalid-pdu-parameter-value)" in out
    # The bytes around the fault, the first byte of the length field in brackets.
    assert "  bytes 4-19: 00 04 00 00 00 00 07 00 [00] 00 00 05 00 00 02 06\n" in out


def test_truncated_stream(capture_dir: Path) -> None:
    data = (capture_dir / "echoscu-storescp.rq.bin").read_bytes()
    status, out = dump(data[:250])
    assert status == 1
    assert "error at byte 250: the stream ends inside the PDU at byte 211" in out
    assert "A-ABORT reason: none" in out

    status, out = dump(data[:214])
    assert status == 1
    assert "3 bytes left, too few for a PDU header" in out


def test_empty_stream() -> None:
    assert dump(b"") == (0, "0 PDUs, 0 bytes: no error\n")


# -- describe(): every field ------------------------------------------------------------------


def test_describe_every_user_information_sub_item() -> None:
    info = dul.UserInformation(
        maximum_length=0,
        async_ops_window=dul.AsyncOpsWindow(invoked=3, performed=0),
        role_selections=(
            dul.RoleSelection(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2", scu_role=False, scp_role=True
            ),
        ),
        extended_negotiations=(
            dul.SOPClassExtendedNegotiation(
                sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1", application_information=b"\x01\x00"
            ),
        ),
        common_extended_negotiations=(
            dul.SOPClassCommonExtendedNegotiation(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2.1",
                service_class_uid="1.2.840.10008.4.2",
                related_general_sop_classes=("1.2.840.10008.5.1.4.1.1.2",),
            ),
        ),
        user_identity=dul.UserIdentity(
            identity_type=2,
            primary=b"alice",
            secondary=b"s3cret!",
            positive_response_requested=True,
        ),
        unknown_items=(dul.UnknownItem(item_type=0x7F, data=b"\xde\xad"),),
    )
    request = dul.AssociateRequest(
        called_ae_title="ANY-SCP",
        calling_ae_title="ME",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=3,
                abstract_syntax="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntaxes=("1.2.840.10008.1.2.4.90", "1.2.3.4"),
            ),
        ),
        user_information=info,
    )
    status, out = dump(dul.encode(request))
    assert status == 0
    for expected in [
        "    called AE title: 'ANY-SCP'\n",
        "    presentation context 3:\n      abstract syntax: 1.2.840.10008.5.1.4.1.1.2 (CT Image"
        " Storage)\n      transfer syntax: 1.2.840.10008.1.2.4.90 (JPEG 2000 Image Compression"
        " (Lossless Only))\n      transfer syntax: 1.2.3.4\n",
        "      maximum length: 0 (no limit)\n",
        f"      implementation class UID: {dul.IMPLEMENTATION_CLASS_UID}\n",
        "      asynchronous operations window: invoked 3, performed 0 (0 = unlimited)\n",
        "      role selection: 1.2.840.10008.5.1.4.1.1.2 (CT Image Storage): SCU 0, SCP 1\n",
        "      SOP class extended negotiation: 1.2.840.10008.5.1.4.1.2.2.1 (Study Root"
        " Query/Retrieve Information Model - FIND)\n        application information: 01 00\n",
        "      SOP class common extended negotiation: 1.2.840.10008.5.1.4.1.1.2.1 (Enhanced CT"
        " Image Storage)\n        service class: 1.2.840.10008.4.2 (Storage Service Class)\n"
        "        related general SOP class: 1.2.840.10008.5.1.4.1.1.2 (CT Image Storage)\n",
        "      user identity (RQ): type 2 (username-and-passcode)\n"
        "        positive response requested: True\n"
        "        primary field: b'alice'\n"
        "        secondary field: 7 bytes (not shown)\n",
        "      unknown item 7FH, 2 bytes: de ad\n",
    ]:
        assert expected in out
    assert "s3cret" not in out


def test_describe_accept_reject_abort() -> None:
    accept = dul.AssociateAccept(
        called_ae_title="A",
        calling_ae_title="B",
        presentation_contexts=(
            dul.PresentationContextAC(context_id=1, transfer_syntax="1.2.840.10008.1.2.1"),
            dul.PresentationContextAC(context_id=3, result=3),
            dul.PresentationContextAC(context_id=5, result=9),
        ),
        user_information=dul.UserInformation(
            user_identity=dul.UserIdentityAC(server_response=b"x")
        ),
    )
    text = describe(accept)
    assert text.startswith("A-ASSOCIATE-AC\n")
    assert "  presentation context 1:\n    result: 0 (acceptance)\n" in text
    assert "    result: 3 (abstract-syntax-not-supported)\n    transfer syntax: (none)\n" in text
    assert "    result: 9 (reserved)\n" in text
    assert text.endswith("\n    user identity (AC): server response 1 bytes")

    assert describe(dul.AssociateReject(result=2, source=3, reason=1)) == (
        "A-ASSOCIATE-RJ\n  result: 2 (transient)\n  source: 3 (service-provider-presentation)\n"
        "  reason: 1 (temporary-congestion)"
    )
    assert "reason: 1 (no-reason-given)" in describe(dul.AssociateReject(source=1, reason=1))
    assert describe(dul.Abort(source=2, reason=4)) == (
        "A-ABORT\n  source: 2 (service-provider)\n  reason: 4 (unrecognized-pdu-parameter)"
    )
    assert describe(dul.Abort(source=0, reason=0)) == (
        "A-ABORT\n  source: 0 (service-user)\n  reason: 0 (not significant)"
    )
    assert describe(dul.ReleaseRequest()) == "A-RELEASE-RQ"
    closed = dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    assert describe(closed) == "connection closed: released"


def test_describe_pdata_to_send() -> None:
    pdata = dul.PData(
        values=(
            dul.PresentationDataValue(
                context_id=1, is_command=False, is_last=False, data=bytes(20)
            ),
        )
    )
    assert describe(pdata) == (
        "P-DATA-TF\n  PDV: context 1, dataset, not last, 20 bytes\n"
        "    data: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 …"
    )


def test_raw_bytes_of_non_canonical_strings(capture_dir: Path) -> None:
    """Received AE titles and UIDs that were not canonical show their wire bytes."""
    data = bytearray((capture_dir / "echoscu-storescp.rq.bin").read_bytes())
    data[26:42] = b"ECHO\xc4SCU\x00\x00\x00\x00\x00\x00\x00\x00"  # calling AE: NULs, non-ASCII
    data[10:26] = b" " * 16  # called AE: all spaces
    status, out = dump(bytes(data))
    assert status == 0
    assert "    calling AE title: 'ECHOÄSCU' (raw b'ECHO\\xc4SCU\\x00" in out
    assert "    called AE title: '' (all spaces)\n" in out

    request = dul.AssociateRequest(
        called_ae_title="SCP",
        calling_ae_title="SCU",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=1,
                abstract_syntax=dul.WireStr("1.2.840.10008.1.1", b"1.2.840.10008.1.1\x00"),
                transfer_syntaxes=("1.2.840.10008.1.2",),
            ),
        ),
    )
    status, out = dump(dul.encode(request, strict=False))
    assert status == 0
    assert (
        "abstract syntax: 1.2.840.10008.1.1 (Verification SOP Class) "
        "(raw b'1.2.840.10008.1.1\\x00')\n"
    ) in out


@pytest.mark.parametrize(
    "raw", [b" " * 16, b"ECH\xc4SCU".ljust(16), b"A\\B".ljust(16), b"ECHOSCU".ljust(16, b"\0")]
)
def test_received_ae_titles_are_shown_and_echoed(capture_dir: Path, raw: bytes) -> None:
    """Titles a strict encoder refuses are delivered, shown with their bytes, and echoed back.

    PS3.8 says the A-ASSOCIATE-AC's AE titles are not tested; dul echoes the request's bytes.
    """
    data = bytearray((capture_dir / "echoscu-storescp.rq.bin").read_bytes())
    data[26:42] = raw
    status, out = dump(bytes(data))
    assert status == 0
    title = raw.decode("latin-1").strip(" \0")
    shown = "'' (all spaces)" if raw == b" " * 16 else f"{title!r} (raw {raw!r})"
    assert f"    calling AE title: {shown}\n" in out

    conn = dul.Connection(dul.Role.ACCEPTOR)
    conn.receive_data(bytes(data))
    request = conn.next_event()
    assert isinstance(request, dul.AssociateRequest)
    accept = request.accept(
        (dul.PresentationContextAC(context_id=1, transfer_syntax="1.2.840.10008.1.2"),)
    )
    assert conn.send(accept)[26:42] == raw


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_documented_example_runs(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The sans-I/O example of the README and of the docs' front page runs as printed."""
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], page, "exec"), {"__name__": "__example__"})
    assert "ConnectionClosed(cause=<CloseCause." in capsys.readouterr().out


def test_length_above_default_cap_is_noted() -> None:
    """A PDU a Connection would refuse for its length alone still decodes here, with a note."""
    big = dul.PData(
        values=(
            dul.PresentationDataValue(
                context_id=1, is_command=False, is_last=True, data=bytes(16 << 20)
            ),
        )
    )
    status, out = dump(dul.encode(big))
    assert status == 0
    assert "note: above a Connection's default cap of 16777216 bytes" in out
    assert "PDV at byte 6: context 1, dataset, last, 16777216 bytes" in out
