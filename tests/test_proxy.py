"""The logging proxy (examples/proxy.py): byte-exact forwarding and a readable trace.

* Real captures (examples/captures) replayed through the proxy in-process: each side receives
  exactly the bytes the other sent, phase by phase.
* DCMTK storescu → proxy → storescp: the file arrives unchanged; the trace names every PDU and
  the C-STORE request and response.
* DCMTK dcmprscu → proxy → dcmprscp: the trace shows the DIMSE messages of a print job in the
  order dcmprscu's own dump lists them, and dcmprscp stores the print.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pydicom
import pytest
import trio
from examples.make_test_file import make_dataset
from examples.proxy import Proxy, message_name

import dul
from peers import HOST, Dcmtk, free_port
from test_print import dcmprscp as run_dcmprscp
from test_print import write_config

ROOT = Path(__file__).resolve().parent.parent
STORED_PRINT = "1.2.840.10008.5.1.1.27"
#: Bound on each wait: a broken proxy fails a test, never hangs it.
TIMEOUT = 10.0


# -- byte-exact forwarding, with real captures -----------------------------------------------------


def raw_pdus(data: bytes) -> list[bytes]:
    """Split a stream of whole PDUs into their bytes, headers included."""
    pdus = []
    while data:
        end = 6 + int.from_bytes(data[2:6], "big")
        pdus.append(data[:end])
        data = data[end:]
    return pdus


def phases(data: bytes) -> list[bytes]:
    """A side's bytes in three phases: association, data transfer (P-DATA), release."""
    groups = [bytearray(), bytearray(), bytearray()]
    for pdu in raw_pdus(data):
        groups[{1: 0, 2: 0, 4: 1, 5: 2, 6: 2}[pdu[0]]] += pdu
    return [bytes(group) for group in groups]


def equal_but_reserved(copy: bytes, original: bytes) -> bool:
    """The same bytes, but where the original has a non-zero byte the copy has 00H."""
    return len(copy) == len(original) and all(
        a == b or a == 0 for a, b in zip(copy, original, strict=True)
    )


async def receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    received = bytearray()
    with trio.fail_after(TIMEOUT):
        while len(received) < size:
            chunk = await stream.receive_some(size - len(received))
            if not chunk:
                break
            received += chunk
    return bytes(received)


@pytest.mark.parametrize(
    "capture", ["echoscu-storescp", "storescu-storescp-pdu4096", "pynetdicom-echo"]
)
def test_proxy_forwards_real_associations_byte_exact(capture_dir: Path, capture: str) -> None:
    requestor = phases((capture_dir / f"{capture}.rq.bin").read_bytes())
    acceptor = phases((capture_dir / f"{capture}.ac.bin").read_bytes())
    seen_by_scp: list[bytes] = []
    seen_by_scu: list[bytes] = []
    trace = io.StringIO()

    async def scp(stream: trio.abc.Stream) -> None:
        """The acceptor of the capture: expects each phase, answers with the captured one."""
        for expected, answer in zip(requestor, acceptor, strict=True):
            seen_by_scp.append(await receive_exactly(stream, len(expected)))
            await stream.send_all(answer)
        seen_by_scp.append(await receive_exactly(stream, 1))  # b"": the proxy closed (AR-3)
        await stream.aclose()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host=HOST), scp, 0)
            proxy = Proxy(HOST, listener.socket.getsockname()[1], out=trace)
            [proxy_listener] = await nursery.start(proxy.serve, 0, HOST)
            scu = await trio.open_tcp_stream(HOST, proxy_listener.socket.getsockname()[1])
            async with scu:  # the requestor closes after A-RELEASE-RP (PS3.8 AR-3)
                for sent, expected in zip(requestor, acceptor, strict=True):
                    await scu.send_all(sent)
                    seen_by_scu.append(await receive_exactly(scu, len(expected)))
            with trio.fail_after(TIMEOUT):
                while "done after" not in trace.getvalue():
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen_by_scp[-1] == b""
    pairs = [
        *zip(seen_by_scp[:-1], requestor, strict=True),
        *zip(seen_by_scu, acceptor, strict=True),
    ]
    for seen, original in pairs:
        assert dul.decode(seen) == dul.decode(original)  # every value, in every PDU
        assert equal_but_reserved(seen, original)
    # Only DCMTK's A-ASSOCIATE-RQ differs: it sets the reserved byte of each presentation
    # context item (PS3.8 9.3.2.2, "not tested") to FFH; dul sends 00H, as the standard says.
    assert seen_by_scu == acceptor
    assert seen_by_scp[1:-1] == requestor[1:]
    assert (seen_by_scp[0] == requestor[0]) == (capture == "pynetdicom-echo")
    text = trace.getvalue()
    assert text.count("connection closed: released") == 2, text


def test_proxy_rejects_when_the_scp_is_unreachable(capture_dir: Path) -> None:
    request = raw_pdus((capture_dir / "echoscu-storescp.rq.bin").read_bytes())[0]
    trace = io.StringIO()
    answers: list[dul.Event] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            proxy = Proxy(HOST, free_port(), out=trace, artim=0.2)  # nothing listens there
            [listener] = await nursery.start(proxy.serve, 0, HOST)
            async with await trio.open_tcp_stream(HOST, listener.socket.getsockname()[1]) as scu:
                await scu.send_all(request)
                answers.extend(dul.decode(await receive_exactly(scu, 10)))
                # We do not close: ARTIM expires (Sta13, AA-2) and the proxy closes.
                assert await receive_exactly(scu, 1) == b""
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert answers == [dul.AssociateReject(result=2, source=3, reason=1)]
    assert "cannot connect to the SCP" in trace.getvalue()


def test_proxy_aborts_both_sides_on_a_protocol_error(capture_dir: Path) -> None:
    requestor = phases((capture_dir / "echoscu-storescp.rq.bin").read_bytes())
    acceptor = phases((capture_dir / "echoscu-storescp.ac.bin").read_bytes())
    unknown_pdu = bytes([0x09, 0, 0, 0, 0, 2, 0, 0])  # PDU type 09H: Evt19 (PS3.8 9.3.1)
    to_scu: list[dul.Event] = []
    to_scp: list[dul.Event] = []
    trace = io.StringIO()

    async def scp(stream: trio.abc.Stream) -> None:
        await receive_exactly(stream, len(requestor[0]))
        await stream.send_all(acceptor[0])
        to_scp.extend(dul.decode(await receive_exactly(stream, 10)))
        await stream.aclose()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host=HOST), scp, 0)
            proxy = Proxy(HOST, listener.socket.getsockname()[1], out=trace, artim=1.0)
            [proxy_listener] = await nursery.start(proxy.serve, 0, HOST)
            scu = await trio.open_tcp_stream(HOST, proxy_listener.socket.getsockname()[1])
            async with scu:
                await scu.send_all(requestor[0])
                await receive_exactly(scu, len(acceptor[0]))
                await scu.send_all(unknown_pdu)
                to_scu.extend(dul.decode(await receive_exactly(scu, 10)))
            with trio.fail_after(TIMEOUT):
                while "done after" not in trace.getvalue():
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    # dul answers the SCU (a provider abort, unrecognized PDU); the proxy aborts the SCP as a user.
    assert to_scu == [dul.Abort(source=2, reason=1)]
    assert to_scp == [dul.Abort(source=0, reason=0)]
    assert "protocol error by the SCU" in trace.getvalue()


def test_message_names_follow_ps37() -> None:
    from dul import dimse

    assert message_name(dimse.NEventReportRequest(
        message_id=1, affected_sop_class_uid="1.2", affected_sop_instance_uid="1.3", event_type_id=1
    )) == "N-EVENT-REPORT-RQ"  # fmt: skip
    assert message_name(dimse.CStoreResponse(message_id_being_responded_to=1)) == "C-STORE-RSP"


def test_traces_show_foreign_elements() -> None:
    """Issue 16 item 1: elements outside group 0000 a peer put in its command set (Orthanc's
    C-GET-RSP) are shown by the proxy's and the tools' traces, each on its own line."""
    from examples.proxy import describe_message as proxy_describe
    from examples.tools.cli import describe_message as tool_describe

    from dul import dimse
    from test_dimse_messages import orthanc_get_response

    message, _ = dimse.decode_message(orthanc_get_response())
    line = "foreign element (0008,0058), 30 bytes: '1.2.826.0.1.3680043.2.1125.99'"
    for describe in (tool_describe, proxy_describe):
        text = describe(message)
        assert f"\n  {line} (not group 0000: kept aside)" in text
        assert "foreign element (0008,0000), 4 bytes: 26000000" in text
        assert "foreign_elements" not in text


# -- against DCMTK -------------------------------------------------------------------------------


@contextmanager
def proxy_process(upstream_port: int, trace: Path) -> Iterator[int]:
    """Run the proxy on a free port in front of ``upstream_port``; yield its port; stop it."""
    with trace.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.proxy", "0", HOST, str(upstream_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while (match := re.search(r"listening on [\d.]+:(\d+)", trace.read_text())) is None:
                assert proc.poll() is None, trace.read_text()
                assert time.monotonic() < deadline, "the proxy did not start"
                time.sleep(0.05)
            yield int(match.group(1))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(path: Path, text: str, count: int = 1) -> str:
    """The content of ``path`` once ``text`` appears ``count`` times in it."""
    deadline = time.monotonic() + TIMEOUT
    while (content := path.read_text()).count(text) < count:
        assert time.monotonic() < deadline, content
        time.sleep(0.05)
    return content


def pdu_names(trace: str) -> list[str]:
    return re.findall(r"ms  SCU (?:->|<-) SCP  (A-[A-Z-]+|P-DATA-TF)$", trace, re.MULTILINE)


def dimse_names(trace: str) -> list[str]:
    return re.findall(r"  DIMSE ([CN]-[A-Z-]+-(?:RQ|RSP))$", trace, re.MULTILINE)


@pytest.mark.interop
def test_storescu_through_proxy_to_storescp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    image = tmp_path / "ct.dcm"
    original = make_dataset()
    original.save_as(image, enforce_file_format=True)
    trace_path = tmp_path / "trace.log"
    with (
        dcmtk.storescp(tmp_path, aet="STORESCP") as scp_port,
        proxy_process(scp_port, trace_path) as port,
    ):
        sent = dcmtk.run(
            "storescu", "-aet", "STORESCU", "-aec", "STORESCP", HOST, str(port), str(image)
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        trace = wait_for(trace_path, "done after")

    [received] = (tmp_path / "received").iterdir()
    stored = pydicom.dcmread(received)
    assert stored == original
    assert stored.PixelData == original.PixelData
    assert pdu_names(trace) == [
        "A-ASSOCIATE-RQ",
        "A-ASSOCIATE-AC",
        "P-DATA-TF",  # C-STORE-RQ command
        "P-DATA-TF",  # its data set
        "P-DATA-TF",  # C-STORE-RSP
        "A-RELEASE-RQ",
        "A-RELEASE-RP",
    ], trace
    assert dimse_names(trace) == ["C-STORE-RQ", "C-STORE-RSP"]
    assert "calling AE title: 'STORESCU'" in trace
    assert "status: 0x0000 (success)" in trace
    assert re.search(r"answered in \d+\.\d{3} ms", trace)
    assert trace.count("connection closed: released") == 2


@pytest.mark.interop
def test_dcmprscu_through_proxy_to_dcmprscp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    image = tmp_path / "ct.dcm"
    make_dataset().save_as(image, enforce_file_format=True)
    scp_port = free_port()
    trace_path = tmp_path / "trace.log"
    with proxy_process(scp_port, trace_path) as port:
        config = write_config(tmp_path, dcmprscp=scp_port, proxy=port)
        with run_dcmprscp(dcmtk, config, scp_port, tmp_path / "dcmprscp.log"):
            created = dcmtk.run(
                "dcmpsprt", "-c", str(config), "-p", "VIA_PROXY", "--spool", "--layout", "1", "1",
                str(image),
            )  # fmt: skip
            assert created.returncode == 0, created.stdout + created.stderr
            jobs = sorted((tmp_path / "spool").glob("*_VIA_PROXY_*.job"))  # print, terminate
            assert jobs, created.stdout + created.stderr
            prefix = jobs[0].name.split("_VIA_PROXY_")[0]
            before = {p.name for p in (tmp_path / "database").glob("SP_*.dcm")}
            sent = dcmtk.run(
                "dcmprscu", "-c", str(config), "-p", "VIA_PROXY", "--spool", prefix, "--sleep",
                "1", "+d",
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            trace = wait_for(trace_path, "done after")

    # dcmprscu's own dump of the DIMSE messages, in order: the trace shows the same.
    dumped = [
        f"{kind}-{suffix}"
        for kind, suffix in re.findall(
            r"Message Type\s+: ([CN]-[A-Z-]+) (RQ|RSP)", sent.stdout + sent.stderr
        )
    ]
    assert dumped[:2] == ["N-GET-RQ", "N-GET-RSP"]
    assert "N-ACTION-RQ" in dumped and "N-DELETE-RQ" in dumped
    assert dimse_names(trace) == dumped, trace
    pdus = pdu_names(trace)
    assert pdus[:2] == ["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC"]
    assert pdus[-2:] == ["A-RELEASE-RQ", "A-RELEASE-RP"]
    assert pdus.count("P-DATA-TF") >= len(dumped)
    assert "affected_sop_class_uid: 1.2.840.10008.5.1.1.1 (Basic Film Session SOP Class)" in trace
    assert trace.count("connection closed: released") == 2
    # dcmprscp printed: a new Stored Print object in its database.
    after = {p.name for p in (tmp_path / "database").glob("SP_*.dcm")}
    new = after - before
    assert len(new) == 1
    assert pydicom.dcmread(tmp_path / "database" / new.pop()).SOPClassUID == STORED_PRINT
