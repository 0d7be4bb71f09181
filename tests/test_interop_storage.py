"""Interoperability cells: dul's tools against DCMTK and pynetdicom, both ways, over loopback.

Each test is one cell (see ``interop_report.py``, which turns the recorded results into
``docs/interop.md``): dul's echoscu/storescu against DCMTK's storescp (``+B``, bit-preserving)
and a pynetdicom SCP, and DCMTK's and pynetdicom's SCUs against dul's echoscp/storescp; C-STORE
in four transfer syntaxes and several maximum PDU lengths; rejection for a wrong called AE
title and aborts, both ways; TLS with DCMTK; storescu converting big endian and deflated files
for a storescp accepting implicit VR only (``+xi``), and failing a compressed file. A cell
passes on the peer's own evidence: the file it stored holds the bytes sent, its status or exit
code, its log. DCMTK runs in child processes, started and stopped by PID (always through the
``dcmtk`` fixture: pynetdicom's console scripts shadow DCMTK's names on PATH), with
TCP_NODELAY=1; pynetdicom runs in threads, dul's tools in this process. Under CI=true a missing
peer fails (the fixtures see to it).

Every cell runs on each of dul's drivers (``driver``: sockets, trio, asyncio) except the
C-STORE matrix: its 4 transfer syntaxes x 3 or 4 PDU lengths run on the sockets driver, and a
corner of it on trio and asyncio (:data:`ASYNC_SYNTAXES` x the smallest and the largest PDU
length). The tools and the core are the same on every driver; what differs, how a driver waits,
writes and ends, the corner exercises in each direction and with each peer.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from examples.tools import main as tools
from examples.tools.cli import ExitCode
from examples.tools.sample_files import TRANSFER_SYNTAX_NAMES, dataset_bytes, write_sample

import interop_report
from peers import HOST, Dcmtk, find_dcmtk, free_port, wait_listening
from test_tools import DRIVERS, make_certificate, wait_for

pytestmark = pytest.mark.interop

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
SYNTAXES = list(TRANSFER_SYNTAX_NAMES)  # implicit, explicit, big (endian), deflate
SYNTAX_LABELS = {
    "implicit": "Implicit VR LE",
    "explicit": "Explicit VR LE",
    "big": "Explicit VR BE",
    "deflate": "Deflated Explicit VR LE",
}
#: DCMTK takes 4096..131072; pynetdicom also 0, no limit.
DCMTK_PDUS = [4096, 16384, 131072]
PYNETDICOM_PDUS = [*DCMTK_PDUS, 0]
#: The C-STORE corner the async drivers run: a data set streamed from disk in PDUs (implicit VR,
#: 1.5 MB) and one sent whole with its command (deflated, 18 KB); the extreme PDU lengths.
ASYNC_SYNTAXES = ["implicit", "deflate"]
ASYNC_DCMTK_PDUS = [4096, 131072]
ASYNC_PYNETDICOM_PDUS = [4096, 0]
#: DCMTK storescu's option proposing each transfer syntax (with -xi, only implicit VR).
DCMTK_PROPOSE = {"implicit": "-xi", "explicit": "-xe", "big": "-xb", "deflate": "-xd"}
#: Bound on every child process: a broken peer fails a cell, never hangs it.
TIMEOUT = 60.0


# -- recording the cells ----------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _interop_recorder(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record each cell's outcome for ``interop_report.py`` (a plugin object, not a conftest).

    Session-scoped and autouse, it is set up before any other fixture, so that even a cell
    whose peer is missing is recorded (skipped, or failed under CI).
    """
    manager = request.config.pluginmanager
    name = "dul-interop-recorder"
    if manager.get_plugin(name) is None:
        dcmtk = find_dcmtk()
        recorder = interop_report.CellRecorder(
            interop_report.report_path(request.config),
            Path(__file__).relative_to(request.config.rootpath).as_posix(),
            interop_report.environment(str(dcmtk / "storescp") if dcmtk else None),
        )
        manager.register(recorder, name)
    yield


def store_cells(pdus: list[int], async_pdus: list[int]) -> list[Any]:
    """(driver, syntax, pdu) of the C-STORE cells: all on sockets, a corner on trio and asyncio."""
    cells = [("sockets", syntax, pdu) for syntax in SYNTAXES for pdu in pdus]
    cells += [
        (driver, syntax, pdu)
        for driver in DRIVERS
        if driver != "sockets"
        for syntax in ASYNC_SYNTAXES
        for pdu in async_pdus
    ]
    return [pytest.param(*c, id="-".join(map(str, c))) for c in cells]


#: Every cell that is not in the C-STORE matrix runs on each driver.
each_driver = pytest.mark.parametrize("driver", DRIVERS)


cell = interop_report.cell


@pytest.fixture(autouse=True)
def _describe_cell(request: pytest.FixtureRequest) -> None:
    described = dict(getattr(request.function, "interop_cell", {}))
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    described["driver"] = params.get("driver", "")
    variant = []
    if "syntax" in params:
        variant.append(SYNTAX_LABELS[params["syntax"]])
    if "pdu" in params:
        variant.append(f"max PDU {params['pdu'] or '0 (no limit)'}")
    described["variant"] = ", ".join(variant)
    request.node.user_properties.append((interop_report.PROPERTY, described))


# -- sample files and peers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CT image of about 1.5 MB of data set in each transfer syntax (deflate compresses it).

    Larger than storescu's chunk (about 1 MiB), so that its data set is streamed from disk.
    """
    directory = tmp_path_factory.mktemp("samples")
    return {
        name: write_sample(directory / f"{name}.dcm", syntax, size=1_500_000, index=i + 1)
        for i, (name, syntax) in enumerate(TRANSFER_SYNTAX_NAMES.items())
    }


def instance_uid(path: Path) -> str:
    from examples.apps.storage import read_dicom_file

    return read_dicom_file(path).sop_instance_uid


def stored_meta(path: Path) -> tuple[str, str, str]:
    """(SOP class, SOP instance, transfer syntax) of a stored file's meta group."""
    from examples.apps.storage import read_dicom_file

    dicom = read_dicom_file(path)
    return dicom.sop_class_uid, dicom.sop_instance_uid, dicom.transfer_syntax


def run_dul(driver: str, tool: str, *argv: str) -> tuple[int, str]:
    """dul's echoscu or storescu on ``driver``, in this process: (exit status, its log)."""
    stream = io.StringIO()
    return tools.main(tool, ["--driver", driver, *argv], stream=stream), stream.getvalue()


@contextlib.contextmanager
def dul_scp(driver: str, kind: str, *argv: str) -> Iterator[tuple[int, io.StringIO]]:
    """dul's echoscp or storescp on ``driver``, in a thread, with -v: (port, its log)."""
    stream = io.StringIO()
    with tools.server_in_thread(kind, ["--driver", driver, "-v", *argv, "0"], stream) as server:
        yield server.port, stream


@contextlib.contextmanager
def dcmtk_server(dcmtk: Dcmtk, workdir: Path, tool: str, *argv: str) -> Iterator[tuple[int, Path]]:
    """A DCMTK server in a child process on a free port; stopped by its PID: (port, its log)."""
    port = free_port()
    log = workdir / f"{tool}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [dcmtk.tool(tool), *argv, str(port)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dcmtk.env,
        )
        try:
            wait_listening(port)
            yield port, log
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def dcmtk_run(dcmtk: Dcmtk, tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return dcmtk.run(tool, *argv, timeout=TIMEOUT)


class PynetdicomPeer:
    """What a pynetdicom SCP saw: the data sets it received, raw, and the events."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str, bytes]] = []  # (transfer syntax, instance, data set)
        self.aborted = threading.Event()
        self.echoed = threading.Event()


@contextlib.contextmanager
def pynetdicom_scp(
    pynetdicom: ModuleType,
    *,
    max_pdu: int = 16384,
    require_called_aet: bool = False,
    abort_on_store: bool = False,
) -> Iterator[tuple[int, PynetdicomPeer]]:
    """A pynetdicom storage and verification SCP, AE title PYNETDICOM, in a thread."""
    from pynetdicom import AE, evt

    peer = PynetdicomPeer()

    def on_store(event: Any) -> int:
        peer.stored.append(
            (
                str(event.context.transfer_syntax),
                str(event.request.AffectedSOPInstanceUID),
                event.request.DataSet.getvalue(),
            )
        )
        if abort_on_store:
            event.assoc.abort()
        return 0x0000

    def on_echo(event: Any) -> int:
        peer.echoed.set()
        return 0x0000

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = max_pdu
    ae.require_called_aet = require_called_aet
    ae.add_supported_context(CT_IMAGE_STORAGE, list(TRANSFER_SYNTAX_NAMES.values()))
    ae.add_supported_context(VERIFICATION)
    handlers = [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_C_ECHO, on_echo),
        (evt.EVT_ABORTED, lambda event: peer.aborted.set()),
    ]
    server = ae.start_server((HOST, 0), block=False, evt_handlers=handlers)
    try:
        yield server.server_address[1], peer
    finally:
        server.shutdown()


@contextlib.contextmanager
def pynetdicom_scu(
    pynetdicom: ModuleType,
    port: int,
    syntax: str | None = None,
    *,
    max_pdu: int = 16384,
    called: str = "STORESCP",
) -> Iterator[Any]:
    """A pynetdicom association (CT storage in ``syntax``, and verification); chunked sends."""
    from pynetdicom import AE, _config

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    if syntax is not None:
        ae.add_requested_context(CT_IMAGE_STORAGE, [syntax])
    ae.add_requested_context(VERIFICATION)
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's data set as it is, no re-encoding
    try:
        assoc = ae.associate(HOST, port, ae_title=called)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        ae.shutdown()


# -- dul's SCUs against DCMTK -----------------------------------------------------------------


@cell("dul echoscu", "DCMTK storescp", "C-ECHO")
@each_driver
def test_echo_dul_to_dcmtk(driver: str, dcmtk: Dcmtk, tmp_path: Path) -> None:
    with dcmtk_server(dcmtk, tmp_path, "storescp", "-v", "-aet", "STORESCP") as (port, log):
        code, out = run_dul(driver, "echoscu", "-aec", "STORESCP", HOST, str(port))
    assert code == ExitCode.OK, out
    assert "Received Echo Request" in log.read_text()


@cell("dul storescu", "DCMTK storescp +B", "C-STORE")
@pytest.mark.parametrize(("driver", "syntax", "pdu"), store_cells(DCMTK_PDUS, ASYNC_DCMTK_PDUS))
def test_store_dul_to_dcmtk(
    dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path, driver: str, syntax: str, pdu: int
) -> None:
    """DCMTK's bit-preserving storescp writes exactly the data set bytes dul sent."""
    source = samples[syntax]
    options = ["-v", "-aet", "STORESCP", "+B", "+xa", "-pdu", str(pdu), "-od", str(tmp_path)]
    with dcmtk_server(dcmtk, tmp_path, "storescp", *options) as (port, log):
        code, out = run_dul(
            driver,
            "storescu",
            "-v",
            "-pdu",
            str(pdu),
            "-aec",
            "STORESCP",
            HOST,
            str(port),
            str(source),
        )
    assert code == ExitCode.OK, out
    assert f"maximum length: {pdu}" in out.split("SCU <== A-ASSOCIATE-AC", 1)[1]
    stored = tmp_path / f"CT.{instance_uid(source)}"
    assert stored_meta(stored) == (
        CT_IMAGE_STORAGE,
        instance_uid(source),
        TRANSFER_SYNTAX_NAMES[syntax],
    )
    assert dataset_bytes(stored) == dataset_bytes(source)
    assert "Received Store Request" in log.read_text()


# -- storescu converting for a peer that accepts implicit VR only ----------------------------

#: The VRs whose binary words swap with the byte order (PS3.5 §7.3).
WORD_VRS = {"OW", "OF", "OL", "OD", "OV"}


def assert_same_elements(original: Path, stored: Path) -> None:
    """Every element of the two data sets is equal, binary words compared in one byte order."""
    import array

    import pydicom

    first, second = pydicom.dcmread(original), pydicom.dcmread(stored)
    swap = first.original_encoding[1] != second.original_encoding[1]
    assert sorted(first.keys()) == sorted(second.keys())
    for a, b in zip(first.iterall(), second.iterall(), strict=True):
        assert a.tag == b.tag
        if swap and str(a.VR) in WORD_VRS and a.VR == b.VR:
            words = array.array("H" if a.VR == "OW" else "I" if a.VR in ("OF", "OL") else "Q")
            words.frombytes(a.value)
            words.byteswap()
            assert words.tobytes() == b.value, a.tag
        else:
            assert a.value == b.value, a.tag


def write_compressed(path: Path) -> Path:
    """A CT image whose encapsulated pixel data claims JPEG Baseline (PS3.5 A.4)."""
    from examples.make_test_file import make_dataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = make_dataset()
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 62 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{ds.SOPInstanceUID}.9")
    ds.file_meta.TransferSyntaxUID = UID(JPEG_BASELINE)
    ds.save_as(path, enforce_file_format=True)
    return path


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
#: DCMTK storescp accepting implicit VR little endian only (+xi).
IMPLICIT_ONLY_SCP = ("-v", "-aet", "STORESCP", "+xi")


@cell("dul storescu (converting)", "DCMTK storescp +xi", "C-STORE")
@each_driver
def test_store_converted_to_dcmtk(
    driver: str, dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path
) -> None:
    """Big endian (1.5 MB, sent in chunks) and deflated files are converted to the fallback the
    peer accepted, implicit VR, and stored with every element as in the original."""
    sources = [samples["big"], samples["deflate"]]
    options = [*IMPLICIT_ONLY_SCP, "-od", str(tmp_path)]
    with dcmtk_server(dcmtk, tmp_path, "storescp", *options) as (port, log):
        code, out = run_dul(
            driver, "storescu", "-v", "-R", "-aec", "STORESCP", HOST, str(port), *map(str, sources)
        )
    assert code == ExitCode.OK, out
    assert "to Implicit VR Little Endian" in out
    for source in sources:
        stored = tmp_path / f"CT.{instance_uid(source)}"
        assert stored_meta(stored)[2] == TRANSFER_SYNTAX_NAMES["implicit"]
        assert_same_elements(source, stored)
    assert log.read_text().count("Received Store Request") == 2


@cell("dul storescu -xs", "DCMTK storescp +xi", "C-STORE (refused syntax)")
@each_driver
def test_store_file_syntax_only_refused_by_dcmtk(
    driver: str, dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path
) -> None:
    """-xs proposes the file's syntax only: refused, the file fails, saying which syntax."""
    with dcmtk_server(dcmtk, tmp_path, "storescp", *IMPLICIT_ONLY_SCP) as (port, log):
        code, out = run_dul(
            driver, "storescu", "-xs", "-aec", "STORESCP", HOST, str(port), str(samples["big"])
        )
    assert code == ExitCode.REQUEST_FAILED, out
    assert "the peer refused CT Image Storage in Explicit VR Big Endian" in out
    assert "1 of 1 files not stored" in out
    assert "Received Store Request" not in log.read_text()


@cell("dul storescu (compressed)", "DCMTK storescp +xi", "C-STORE (refused syntax)")
@each_driver
def test_store_compressed_refused_by_dcmtk(
    driver: str, dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path
) -> None:
    """Compressed pixel data is never re-encoded: that file fails; the other one is converted."""
    compressed = write_compressed(tmp_path / "jpeg.dcm")
    options = [*IMPLICIT_ONLY_SCP, "-od", str(tmp_path)]
    with dcmtk_server(dcmtk, tmp_path, "storescp", *options) as (port, _):
        code, out = run_dul(
            driver,
            "storescu",
            "-nh",
            "-aec",
            "STORESCP",
            HOST,
            str(port),
            str(compressed),
            str(samples["explicit"]),
        )
    assert code == ExitCode.REQUEST_FAILED, out
    assert (
        "the peer refused CT Image Storage in JPEG Baseline (Process 1), the file's transfer "
        "syntax; compressed pixel data is not re-encoded" in out
    )
    assert "1 of 2 files not stored" in out
    assert not (tmp_path / f"CT.{instance_uid(compressed)}").exists()
    assert_same_elements(samples["explicit"], tmp_path / f"CT.{instance_uid(samples['explicit'])}")


# -- dul's SCUs against pynetdicom ------------------------------------------------------------


@cell("dul echoscu", "pynetdicom", "C-ECHO")
@each_driver
def test_echo_dul_to_pynetdicom(driver: str, pynetdicom: ModuleType) -> None:
    with pynetdicom_scp(pynetdicom) as (port, peer):
        code, out = run_dul(driver, "echoscu", "-aec", "PYNETDICOM", HOST, str(port))
    assert code == ExitCode.OK, out
    assert peer.echoed.is_set()


@cell("dul storescu", "pynetdicom", "C-STORE")
@pytest.mark.parametrize(
    ("driver", "syntax", "pdu"), store_cells(PYNETDICOM_PDUS, ASYNC_PYNETDICOM_PDUS)
)
def test_store_dul_to_pynetdicom(
    pynetdicom: ModuleType, samples: dict[str, Path], driver: str, syntax: str, pdu: int
) -> None:
    """pynetdicom's handler receives exactly the data set bytes dul sent, in the right syntax."""
    source = samples[syntax]
    with pynetdicom_scp(pynetdicom, max_pdu=pdu) as (port, peer):
        code, out = run_dul(
            driver,
            "storescu",
            "-v",
            "-pdu",
            str(pdu),
            "-aec",
            "PYNETDICOM",
            HOST,
            str(port),
            str(source),
        )
    assert code == ExitCode.OK, out
    assert f"maximum length: {pdu}" in out.split("SCU <== A-ASSOCIATE-AC", 1)[1]
    assert peer.stored == [
        (TRANSFER_SYNTAX_NAMES[syntax], instance_uid(source), dataset_bytes(source))
    ]


# -- DCMTK's SCUs against dul -----------------------------------------------------------------


@cell("DCMTK echoscu", "dul echoscp", "C-ECHO")
@each_driver
def test_echo_dcmtk_to_dul(driver: str, dcmtk: Dcmtk) -> None:
    with dul_scp(driver, "echoscp") as (port, log):
        result = dcmtk_run(dcmtk, "echoscu", "-v", "-aec", "ECHOSCP", HOST, str(port))
        wait_for(lambda: "ended: released" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr
    assert "SCP#1 ==> C-ECHO-RSP" in log.getvalue()


def assert_dcmdump_reads(dcmtk: Dcmtk, path: Path) -> None:
    """DCMTK's dcmdump reads the whole file (-E: errors make it fail), meta group included."""
    dump = dcmtk_run(dcmtk, "dcmdump", "-E", "-M", "+L", str(path))
    assert dump.returncode == 0, dump.stderr
    assert "E:" not in dump.stderr and "W:" not in dump.stderr, dump.stderr
    assert "(0002,0010) UI =" in dump.stdout and "(7fe0,0010)" in dump.stdout


@cell("DCMTK storescu", "dul storescp", "C-STORE")
@pytest.mark.parametrize(("driver", "syntax", "pdu"), store_cells(DCMTK_PDUS, ASYNC_DCMTK_PDUS))
def test_store_dcmtk_to_dul(
    dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path, driver: str, syntax: str, pdu: int
) -> None:
    """The file dul stores holds DCMTK's data set as sent; dcmdump reads the file."""
    source = samples[syntax]
    with dul_scp(driver, "storescp", "-pdu", str(pdu), "-od", str(tmp_path)) as (port, log):
        result = dcmtk_run(
            dcmtk,
            "storescu",
            "-v",
            DCMTK_PROPOSE[syntax],
            "-pdu",
            str(pdu),
            "-aec",
            "STORESCP",
            HOST,
            str(port),
            str(source),
        )
        wait_for(lambda: "ended: released" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Store Response (Success)" in result.stdout + result.stderr
    assert f"maximum length: {pdu}" in log.getvalue().split("SCP#1 ==> A-ASSOCIATE-AC", 1)[1]
    stored = tmp_path / f"CT.{instance_uid(source)}"
    assert stored_meta(stored) == (
        CT_IMAGE_STORAGE,
        instance_uid(source),
        TRANSFER_SYNTAX_NAMES[syntax],
    )
    assert dataset_bytes(stored) == dataset_bytes(source)
    assert_dcmdump_reads(dcmtk, stored)


# -- pynetdicom's SCUs against dul ------------------------------------------------------------


@cell("pynetdicom", "dul echoscp", "C-ECHO")
@each_driver
def test_echo_pynetdicom_to_dul(driver: str, pynetdicom: ModuleType) -> None:
    with dul_scp(driver, "echoscp") as (port, log):
        with pynetdicom_scu(pynetdicom, port, called="ECHOSCP") as assoc:
            assert assoc.is_established
            status = assoc.send_c_echo()
        wait_for(lambda: "ended: released" in log.getvalue())
    assert status.Status == 0x0000
    assert "calling AE title: 'PYNETDICOM'" in log.getvalue()


@cell("pynetdicom", "dul storescp", "C-STORE")
@pytest.mark.parametrize(
    ("driver", "syntax", "pdu"), store_cells(PYNETDICOM_PDUS, ASYNC_PYNETDICOM_PDUS)
)
def test_store_pynetdicom_to_dul(
    pynetdicom: ModuleType,
    dcmtk: Dcmtk,
    samples: dict[str, Path],
    tmp_path: Path,
    driver: str,
    syntax: str,
    pdu: int,
) -> None:
    source = samples[syntax]
    with dul_scp(driver, "storescp", "-pdu", str(pdu), "-od", str(tmp_path)) as (port, log):
        with pynetdicom_scu(pynetdicom, port, TRANSFER_SYNTAX_NAMES[syntax], max_pdu=pdu) as assoc:
            assert assoc.is_established
            status = assoc.send_c_store(source)
        wait_for(lambda: "ended: released" in log.getvalue())
    assert status.Status == 0x0000
    stored = tmp_path / f"CT.{instance_uid(source)}"
    assert dataset_bytes(stored) == dataset_bytes(source)
    assert stored_meta(stored)[2] == TRANSFER_SYNTAX_NAMES[syntax]
    assert_dcmdump_reads(dcmtk, stored)


# -- rejection: a wrong called AE title -------------------------------------------------------


@cell("dul echoscu", "DCMTK dcmqrscp", "A-ASSOCIATE-RJ (called AE title)")
@each_driver
def test_reject_dul_by_dcmtk(driver: str, dcmtk: Dcmtk, tmp_path: Path) -> None:
    """dcmqrscp (unlike storescp) checks the called AE title: RJ 1/1/7."""
    (tmp_path / "db").mkdir()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(
        "NetworkTCPPort = 104\nMaxPDUSize = 16384\nMaxAssociations = 4\n\n"
        "HostTable BEGIN\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
        "AETable BEGIN\nQRSCP db RW (9, 1024mb) ANY\nAETable END\n"
    )
    with dcmtk_server(dcmtk, tmp_path, "dcmqrscp", "-s", "-c", str(config)) as (port, _):
        code, out = run_dul(driver, "echoscu", "-aec", "WRONG", HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
        assert "association rejected: result 1, source 1, reason 7" in out
        code, out = run_dul(driver, "echoscu", "-aec", "QRSCP", HOST, str(port))
        assert code == ExitCode.OK, out


@cell("dul echoscu", "pynetdicom", "A-ASSOCIATE-RJ (called AE title)")
@each_driver
def test_reject_dul_by_pynetdicom(driver: str, pynetdicom: ModuleType) -> None:
    with pynetdicom_scp(pynetdicom, require_called_aet=True) as (port, peer):
        code, out = run_dul(driver, "echoscu", "-aec", "WRONG", HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
        assert "association rejected: result 1, source 1, reason 7" in out
        code, out = run_dul(driver, "echoscu", "-aec", "PYNETDICOM", HOST, str(port))
        assert code == ExitCode.OK, out
    assert peer.echoed.is_set()


@cell("DCMTK echoscu", "dul echoscp", "A-ASSOCIATE-RJ (called AE title)")
@each_driver
def test_reject_dcmtk_by_dul(driver: str, dcmtk: Dcmtk) -> None:
    with dul_scp(driver, "echoscp", "-aet", "ECHOSCP", "--require-called-aet") as (port, log):
        result = dcmtk_run(dcmtk, "echoscu", "-aec", "WRONG", HOST, str(port))
        wait_for(lambda: "ended: rejected" in log.getvalue())
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr
    assert "reason: 7" in log.getvalue().split("SCP#1 ==> A-ASSOCIATE-RJ", 1)[1]


@cell("pynetdicom", "dul storescp", "A-ASSOCIATE-RJ (called AE title)")
@each_driver
def test_reject_pynetdicom_by_dul(driver: str, pynetdicom: ModuleType, tmp_path: Path) -> None:
    argv = ["-aet", "STORESCP", "--require-called-aet", "-od", str(tmp_path)]
    with dul_scp(driver, "storescp", *argv) as (port, log):
        with pynetdicom_scu(pynetdicom, port, called="WRONG") as assoc:
            rejected = assoc.is_rejected
        if not rejected:  # pynetdicom's own threads, under load, now and then report an abort:
            with pynetdicom_scu(pynetdicom, port, called="WRONG") as assoc:  # ask once more
                rejected = assoc.is_rejected
        assert rejected
        wait_for(lambda: "ended: rejected" in log.getvalue())
    reject = log.getvalue().split("SCP#1 ==> A-ASSOCIATE-RJ", 1)[1]
    assert "source: 1" in reject and "reason: 7" in reject


# -- aborts, both ways ------------------------------------------------------------------------


@cell("dul storescu", "DCMTK storescp --abort-after", "A-ABORT by the SCP")
@each_driver
def test_abort_dul_by_dcmtk(
    driver: str, dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path
) -> None:
    options = ["-v", "--abort-after", "-od", str(tmp_path)]
    with dcmtk_server(dcmtk, tmp_path, "storescp", *options) as (port, log):
        code, out = run_dul(driver, "storescu", "-v", HOST, str(port), str(samples["explicit"]))
    assert code == ExitCode.ASSOCIATION_ABORTED, out
    assert "SCU <== A-ABORT" in out
    assert "ABORT initiated" in log.read_text()


@cell("dul echoscu --abort", "DCMTK storescp", "A-ABORT by the SCU")
@each_driver
def test_abort_dcmtk_by_dul(driver: str, dcmtk: Dcmtk, tmp_path: Path) -> None:
    with dcmtk_server(dcmtk, tmp_path, "storescp", "-v") as (port, log):
        code, out = run_dul(driver, "echoscu", "--abort", HOST, str(port))
        assert code == ExitCode.OK, out
        wait_for(lambda: "Association Aborted" in log.read_text())


@cell("DCMTK storescu", "dul storescp --abort-after", "A-ABORT by the SCP")
@each_driver
def test_abort_dcmtk_by_dul_scp(
    driver: str, dcmtk: Dcmtk, samples: dict[str, Path], tmp_path: Path
) -> None:
    with dul_scp(driver, "storescp", "--abort-after", "-od", str(tmp_path)) as (port, log):
        result = dcmtk_run(dcmtk, "storescu", "-v", HOST, str(port), str(samples["explicit"]))
        wait_for(lambda: "ended: aborted locally" in log.getvalue())
    assert result.returncode != 0
    assert "Peer Aborted Association" in result.stdout + result.stderr
    assert "SCP#1 ==> A-ABORT" in log.getvalue()


@cell("DCMTK echoscu --abort", "dul echoscp", "A-ABORT by the SCU")
@each_driver
def test_abort_dul_scp_by_dcmtk(driver: str, dcmtk: Dcmtk) -> None:
    with dul_scp(driver, "echoscp") as (port, log):
        result = dcmtk_run(dcmtk, "echoscu", "--abort", HOST, str(port))
        wait_for(lambda: "ended: aborted by peer" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SCP#1 <== A-ABORT" in log.getvalue()


@cell("dul storescu", "pynetdicom (aborts in its handler)", "A-ABORT by the SCP")
@each_driver
def test_abort_dul_by_pynetdicom(
    driver: str, pynetdicom: ModuleType, samples: dict[str, Path]
) -> None:
    with pynetdicom_scp(pynetdicom, abort_on_store=True) as (port, peer):
        code, out = run_dul(driver, "storescu", "-v", HOST, str(port), str(samples["explicit"]))
    assert code == ExitCode.ASSOCIATION_ABORTED, out
    assert "SCU <== A-ABORT" in out
    assert len(peer.stored) == 1


@cell("dul echoscu --abort", "pynetdicom", "A-ABORT by the SCU")
@each_driver
def test_abort_pynetdicom_by_dul(driver: str, pynetdicom: ModuleType) -> None:
    with pynetdicom_scp(pynetdicom) as (port, peer):
        code, out = run_dul(driver, "echoscu", "--abort", HOST, str(port))
        assert code == ExitCode.OK, out
        assert peer.aborted.wait(10)


@cell("pynetdicom", "dul storescp --abort-after", "A-ABORT by the SCP")
@each_driver
def test_abort_pynetdicom_by_dul_scp(
    driver: str, pynetdicom: ModuleType, samples: dict[str, Path], tmp_path: Path
) -> None:
    with dul_scp(driver, "storescp", "--abort-after", "-od", str(tmp_path)) as (port, log):
        with pynetdicom_scu(pynetdicom, port, TRANSFER_SYNTAX_NAMES["explicit"]) as assoc:
            status = assoc.send_c_store(samples["explicit"])
            wait_for(lambda: assoc.is_aborted)  # set by pynetdicom's thread, maybe a bit later
        wait_for(lambda: "ended: aborted locally" in log.getvalue())
    assert "Status" not in status  # pynetdicom's empty answer: no response came
    assert not list(tmp_path.glob("CT.*"))


@cell("pynetdicom (aborts)", "dul echoscp", "A-ABORT by the SCU")
@each_driver
def test_abort_dul_scp_by_pynetdicom(driver: str, pynetdicom: ModuleType) -> None:
    with dul_scp(driver, "echoscp") as (port, log):
        with pynetdicom_scu(pynetdicom, port, called="ECHOSCP") as assoc:
            assert assoc.is_established
            assoc.abort()
        wait_for(lambda: "ended: aborted by peer" in log.getvalue())
    assert "SCP#1 <== A-ABORT" in log.getvalue()


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certificate, key) as PEM: self-signed for 127.0.0.1; each side trusts it as its CA."""
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


@pytest.fixture
def dcmtk_tls(dcmtk: Dcmtk) -> Dcmtk:
    """DCMTK, when built with OpenSSL; skipped (even under CI) only when the build lacks TLS."""
    help_text = dcmtk_run(dcmtk, "storescp", "--help").stdout
    if "--enable-tls" not in help_text:
        pytest.skip("this DCMTK was built without OpenSSL: no TLS options")
    return dcmtk


@cell("dul storescu (TLS)", "DCMTK storescp +tls", "C-STORE over TLS")
@each_driver
def test_tls_dul_to_dcmtk(
    driver: str,
    dcmtk_tls: Dcmtk,
    tls_files: tuple[str, str],
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Mutual authentication: DCMTK requires our certificate (-rc), we verify DCMTK's."""
    cert, key = tls_files
    options = ["-v", "+B", "+tls", key, cert, "-pw", "+cf", cert, "-rc", "-od", str(tmp_path)]
    with dcmtk_server(dcmtk_tls, tmp_path, "storescp", *options) as (port, log):
        code, out = run_dul(
            driver,
            "storescu",
            "--tls-ca",
            cert,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            HOST,
            str(port),
            str(samples["explicit"]),
        )
    assert code == ExitCode.OK, out + log.read_text()
    stored = tmp_path / f"CT.{instance_uid(samples['explicit'])}"
    assert dataset_bytes(stored) == dataset_bytes(samples["explicit"])


@cell("DCMTK storescu +tls", "dul storescp (TLS)", "C-STORE over TLS")
@each_driver
def test_tls_dcmtk_to_dul(
    driver: str,
    dcmtk_tls: Dcmtk,
    tls_files: tuple[str, str],
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Mutual authentication: we require DCMTK's certificate (--tls-ca), DCMTK verifies ours."""
    cert, key = tls_files
    tls = ["--tls-cert", cert, "--tls-key", key, "--tls-ca", cert]
    with dul_scp(driver, "storescp", *tls, "-od", str(tmp_path)) as (port, log):
        result = dcmtk_run(
            dcmtk_tls,
            "storescu",
            "-v",
            "+tls",
            key,
            cert,
            "-pw",
            "+cf",
            cert,
            "-rc",
            HOST,
            str(port),
            str(samples["explicit"]),
        )
        wait_for(lambda: "ended: released" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    stored = tmp_path / f"CT.{instance_uid(samples['explicit'])}"
    assert dataset_bytes(stored) == dataset_bytes(samples["explicit"])
