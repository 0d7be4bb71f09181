"""Query/Retrieve interoperability cells: dul's findscu, getscu, movescu and qrscp against DCMTK
(dcmqrscp, findscu, getscu, movescu) and pynetdicom, both ways, on each of dul's drivers.

- dul's SCUs against DCMTK's dcmqrscp (its default fork mode; a dcmqrscp.cfg in a temporary
  folder: one AE for the archive, a move destination on loopback; loaded with DCMTK's
  storescu) and against a pynetdicom Q/R SCP (an AE in a thread, C-FIND/C-GET/C-MOVE handlers
  over the same files, read with pydicom);
- DCMTK's and pynetdicom's SCUs against dul's qrscp.

The archive is 2 patients x 2 studies x 2 series x 2 images (``qr.write_sample_archive``). A cell
passes on the evidence: the matches (extracted to files and read back), the files retrieved
(their data sets byte for byte the archive's), the final status and counters each side reports.
DCMTK runs in child processes started and stopped by PID (always through the ``dcmtk`` fixture,
with TCP_NODELAY=1), pynetdicom in threads, dul in this process. The cells go into the same
report as ``test_interop_storage.py``'s (``interop_report.py``), merged into its file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
import pytest
from examples.apps import qr, storage
from examples.tools.cli import ExitCode

import interop_report
from peers import HOST, Dcmtk, find_dcmtk, free_port, wait_listening
from test_qr import DRIVERS, ROOT_UID, final_line, qrscp, received, run, sources, wait_for

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
#: Bound on every child process: a broken peer fails a cell, never hangs it.
TIMEOUT = 60.0
#: When this module was collected: report files older than that are from an earlier run.
_COLLECTED = time.time()


# -- recording the cells, into the storage cells' report ---------------------------------------


class _Recorder(interop_report.CellRecorder):
    """``CellRecorder``, but the file keeps the other modules' cells of this run.

    The storage cells' recorder writes its own cells only; so this one merges what it finds in
    the file (written during this run) with its cells, and writes once more when the session
    ends, so that the file holds both whatever order the modules ran in.
    """

    def write(self) -> None:
        others: dict[str, Any] = {}
        try:
            if self.path.stat().st_mtime >= _COLLECTED:
                cells = json.loads(self.path.read_text())["cells"]
                others = {k: v for k, v in cells.items() if not k.startswith(self.prefix)}
        except (OSError, ValueError, KeyError):
            pass
        document = {**self.document, "cells": {**others, **self.document["cells"]}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".qr.part")
        partial.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(partial, self.path)

    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> None:
        self.write()


@pytest.fixture(scope="session", autouse=True)
def _interop_recorder(request: pytest.FixtureRequest) -> Iterator[None]:
    manager = request.config.pluginmanager
    name = "dul-interop-recorder-qr"
    if manager.get_plugin(name) is None:
        dcmtk = find_dcmtk()
        recorder = _Recorder(
            interop_report.report_path(request.config),
            Path(__file__).relative_to(request.config.rootpath).as_posix(),
            interop_report.environment(str(dcmtk / "storescp") if dcmtk else None),
        )
        manager.register(recorder, name)
    yield


cell = interop_report.cell


@pytest.fixture(autouse=True)
def _describe_cell(request: pytest.FixtureRequest) -> None:
    described = dict(getattr(request.function, "interop_cell", {}))
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    described["driver"] = params.get("driver", "")
    request.node.user_properties.append((interop_report.PROPERTY, described))


each_driver = pytest.mark.parametrize("driver", list(DRIVERS))


# -- the archive and the peers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("qr-archive")
    qr.write_sample_archive(directory)
    return directory


@pytest.fixture(scope="module")
def move_port() -> int:
    """The port dul's movescu listens on (+P) when DCMTK or pynetdicom moves to MOVESCU."""
    return free_port()


@pytest.fixture(scope="module")
def dcmqrscp(
    dcmtk: Dcmtk, archive_dir: Path, move_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """DCMTK's dcmqrscp, fork mode, AE QRSCP, loaded with the archive by DCMTK's storescu; MOVESCU
    is 127.0.0.1:move_port. Stopped by its PID. Yields its port."""
    workdir = tmp_path_factory.mktemp("dcmqrscp")
    (workdir / "db").mkdir()
    config = workdir / "dcmqrscp.cfg"
    port = free_port()
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n"
        f"HostTable BEGIN\nmovescu = (MOVESCU, {HOST}, {move_port})\nHostTable END\n\n"
        "VendorTable BEGIN\nVendorTable END\n\n"
        f"AETable BEGIN\nQRSCP {workdir / 'db'} RW (200, 1024mb) ANY\nAETable END\n"
    )
    with (workdir / "dcmqrscp.log").open("ab") as log:
        proc = subprocess.Popen(
            [dcmtk.tool("dcmqrscp"), "-c", str(config), str(port)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dcmtk.env,
        )
        try:
            wait_listening(port)
            files = sorted(str(p) for p in archive_dir.glob("*.dcm"))
            loaded = dcmtk.run("storescu", "-aec", "QRSCP", HOST, str(port), *files)
            assert loaded.returncode == 0, loaded.stdout + loaded.stderr
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_LEVEL_KEYS = {
    "PATIENT": ("PatientID",),
    "STUDY": ("PatientID", "StudyInstanceUID"),
    "SERIES": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


class PynetdicomQR:
    """A pynetdicom Q/R SCP over the archive's files (its own matching: fnmatch on the values);
    what it saw."""

    def __init__(self, archive_dir: Path, move_port: int) -> None:
        self.files = [pydicom.dcmread(p) for p in sorted(archive_dir.glob("*.dcm"))]
        self.destinations = {"MOVESCU": (HOST, move_port)}
        self.delay = 0.0
        self.cancelled = threading.Event()

    def matches(self, identifier: Any) -> tuple[str, list[list[Any]]]:
        level = str(identifier.QueryRetrieveLevel)
        groups: dict[tuple[str, ...], list[Any]] = {}
        for ds in self.files:
            wanted = [e for e in identifier if e.keyword != "QueryRetrieveLevel" and e.value]
            if all(fnmatch.fnmatchcase(str(ds.get(e.keyword, "")), str(e.value)) for e in wanted):
                group = tuple(str(ds.get(k)) for k in _LEVEL_KEYS[level])
                groups.setdefault(group, []).append(ds)
        return level, list(groups.values())

    def on_find(self, event: Any) -> Iterator[Any]:
        level, groups = self.matches(event.identifier)
        for members in groups:
            time.sleep(self.delay)
            if event.is_cancelled:
                self.cancelled.set()
                yield 0xFE00, None
                return
            response = pydicom.Dataset()
            response.QueryRetrieveLevel = level
            for element in event.identifier:
                if element.keyword != "QueryRetrieveLevel":
                    setattr(response, element.keyword, members[0].get(element.keyword, ""))
            yield 0xFF00, response

    def _instances(self, event: Any) -> list[Any]:
        return [ds for members in self.matches(event.identifier)[1] for ds in members]

    def on_get(self, event: Any) -> Iterator[Any]:
        instances = self._instances(event)
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds

    def on_move(self, event: Any) -> Iterator[Any]:
        yield self.destinations.get(event.move_destination, (None, None))
        instances = self._instances(event)
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds


@pytest.fixture(scope="module")
def pynetdicom_qr(
    pynetdicom: ModuleType, archive_dir: Path, move_port: int
) -> Iterator[tuple[int, PynetdicomQR]]:
    """A pynetdicom AE, PYNETDICOM, serving Patient and Study Root find, get and move."""
    from pynetdicom import AE, evt, sop_class

    peer = PynetdicomQR(archive_dir, move_port)
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for model in ("PatientRoot", "StudyRoot"):
        for service in ("Find", "Get", "Move"):
            ae.add_supported_context(
                getattr(sop_class, f"{model}QueryRetrieveInformationModel{service}")
            )
    syntaxes = [qr.EXPLICIT_VR_LITTLE_ENDIAN, qr.IMPLICIT_VR_LITTLE_ENDIAN]
    ae.add_supported_context(CT, syntaxes, scu_role=False, scp_role=True)  # C-GET's C-STOREs
    ae.add_requested_context(CT, syntaxes)  # C-MOVE's sub-association
    handlers = [
        (evt.EVT_C_FIND, peer.on_find),
        (evt.EVT_C_GET, peer.on_get),
        (evt.EVT_C_MOVE, peer.on_move),
    ]
    server = ae.start_server((HOST, 0), block=False, evt_handlers=handlers)
    try:
        yield server.server_address[1], peer
    finally:
        server.shutdown()


@pytest.fixture(autouse=True)
def _no_delay(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "pynetdicom_qr" in request.fixturenames:
        peer = request.getfixturevalue("pynetdicom_qr")[1]
        peer.delay = 0.0
        peer.cancelled.clear()


def dcmtk_run(dcmtk: Dcmtk, tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return dcmtk.run(tool, *argv, timeout=TIMEOUT)


def extracted(directory: Path, keyword: str) -> list[str]:
    """A key of each match extracted (dul's -X, DCMTK's -X), read back with pydicom."""
    return [
        str(pydicom.dcmread(p, force=True).get(keyword, ""))
        for p in sorted(directory.glob("rsp*.dcm"))
    ]


def expected(archive_dir: Path, prefix: str) -> dict[str, bytes]:
    """The archive's data sets whose SOP instance UID starts with ``ROOT_UID.prefix``."""
    return {u: d for u, d in sources(archive_dir).items() if u.startswith(f"{ROOT_UID}.{prefix}")}


STUDY_KEYS = ["-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DOE*", "-k", "StudyInstanceUID"]
DOE_STUDIES = [f"{ROOT_UID}.1.1", f"{ROOT_UID}.1.2"]


def _find_cell(driver: str, port: int, called: str, tmp_path: Path) -> str:
    code, out, printed = run(
        driver, "findscu", "-v", "-S", "-X", "-od", str(tmp_path), *STUDY_KEYS,
        "-aec", called, HOST, str(port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    assert "status 0x0000 (success), 2 match(es)" in final_line(out, "C-FIND")
    assert printed.count("# Find response") == 2
    assert extracted(tmp_path, "StudyInstanceUID") == DOE_STUDIES
    assert extracted(tmp_path, "PatientName") == ["DOE^JOHN", "DOE^JOHN"]
    return out


def _get_cell(driver: str, port: int, called: str, archive_dir: Path, tmp_path: Path) -> str:
    code, out, _ = run(
        driver, "getscu", "-v", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=QR-PID2",
        "-od", str(tmp_path), "-aec", called, HOST, str(port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    assert received(tmp_path) == expected(archive_dir, "2.")
    assert "C-GET pending: remaining 7, completed 1, failed 0, warning 0" in out
    assert "status 0x0000 (success)" in final_line(out, "C-GET")
    assert "completed 8, failed 0, warning 0); 8 instance(s) received" in final_line(out, "C-GET")
    return out


SERIES_KEYS = [
    "-k", "QueryRetrieveLevel=SERIES",
    "-k", f"StudyInstanceUID={ROOT_UID}.1.2",
    "-k", f"SeriesInstanceUID={ROOT_UID}.1.2.1",
]  # fmt: skip


def _move_cell(
    driver: str, port: int, called: str, move_port: int, archive_dir: Path, tmp_path: Path
) -> str:
    code, out, _ = run(
        driver, "movescu", "-v", "-S", *SERIES_KEYS, "-aem", "MOVESCU", "+P", str(move_port),
        "-od", str(tmp_path), "-aec", called, HOST, str(port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    assert received(tmp_path) == expected(archive_dir, "1.2.1.")
    final = final_line(out, "C-MOVE")
    assert "status 0x0000 (success)" in final
    assert "completed 2, failed 0, warning 0); 2 instance(s) received" in final
    assert "C-MOVE pending: remaining 1, completed 1" in out
    return out


# -- dul's SCUs against DCMTK's dcmqrscp ----------------------------------------------------------


@cell("dul findscu", "DCMTK dcmqrscp", "C-FIND", "Study Root, STUDY level")
@each_driver
def test_find_dul_to_dcmtk(driver: str, dcmqrscp: int, tmp_path: Path) -> None:
    _find_cell(driver, dcmqrscp, "QRSCP", tmp_path)


@cell("dul getscu", "DCMTK dcmqrscp", "C-GET", "Patient Root, PATIENT level")
@each_driver
def test_get_dul_to_dcmtk(driver: str, dcmqrscp: int, archive_dir: Path, tmp_path: Path) -> None:
    out = _get_cell(driver, dcmqrscp, "QRSCP", archive_dir, tmp_path)
    assert "SCU <== C-STORE-RQ" in out  # on the association of the C-GET


@cell("dul movescu +P", "DCMTK dcmqrscp", "C-MOVE", "Study Root, SERIES level")
@each_driver
def test_move_dul_to_dcmtk(
    driver: str, dcmqrscp: int, move_port: int, archive_dir: Path, tmp_path: Path
) -> None:
    out = _move_cell(driver, dcmqrscp, "QRSCP", move_port, archive_dir, tmp_path)
    assert "STORE-SCP#1 <== A-ASSOCIATE-RQ" in out


@cell(
    "dul movescu --cancel 1", "DCMTK dcmqrscp", "C-MOVE + C-CANCEL", "Patient Root, PATIENT level"
)
@each_driver
def test_cancel_dul_to_dcmtk(driver: str, dcmqrscp: int, move_port: int, tmp_path: Path) -> None:
    """dcmqrscp looks for a C-CANCEL between sub-operations: it stops with the counters."""
    code, out, _ = run(
        driver, "movescu", "-v", "--cancel", "1", "-k", "QueryRetrieveLevel=PATIENT",
        "-k", "PatientID=QR-PID1", "+P", str(move_port), "-od", str(tmp_path),
        "-aec", "QRSCP", HOST, str(dcmqrscp),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    final = final_line(out, "C-MOVE")
    assert "status 0xFE00 (cancel)" in final
    counts = {name: int(n) for name, n in re.findall(r"(remaining|completed) (\d+)", final)}
    remaining, completed = counts["remaining"], counts["completed"]
    assert remaining >= 1 and remaining + completed == 8
    assert len(received(tmp_path)) == completed


# -- dul's SCUs against pynetdicom ------------------------------------------------------------


@cell("dul findscu", "pynetdicom", "C-FIND", "Study Root, STUDY level")
@each_driver
def test_find_dul_to_pynetdicom(
    driver: str, pynetdicom_qr: tuple[int, PynetdicomQR], tmp_path: Path
) -> None:
    _find_cell(driver, pynetdicom_qr[0], "PYNETDICOM", tmp_path)


@cell("dul getscu", "pynetdicom", "C-GET", "Patient Root, PATIENT level")
@each_driver
def test_get_dul_to_pynetdicom(
    driver: str, pynetdicom_qr: tuple[int, PynetdicomQR], archive_dir: Path, tmp_path: Path
) -> None:
    _get_cell(driver, pynetdicom_qr[0], "PYNETDICOM", archive_dir, tmp_path)


@cell("dul movescu +P", "pynetdicom", "C-MOVE", "Study Root, SERIES level")
@each_driver
def test_move_dul_to_pynetdicom(
    driver: str,
    pynetdicom_qr: tuple[int, PynetdicomQR],
    move_port: int,
    archive_dir: Path,
    tmp_path: Path,
) -> None:
    _move_cell(driver, pynetdicom_qr[0], "PYNETDICOM", move_port, archive_dir, tmp_path)


@cell("dul findscu --cancel 1", "pynetdicom", "C-FIND + C-CANCEL", "Patient Root, IMAGE level")
@each_driver
def test_cancel_dul_to_pynetdicom(driver: str, pynetdicom_qr: tuple[int, PynetdicomQR]) -> None:
    port, peer = pynetdicom_qr
    peer.delay = 0.1
    code, out, printed = run(
        driver, "findscu", "-v", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE",
        "-k", "PatientID=QR-PID1", "-k", "SOPInstanceUID", "-aec", "PYNETDICOM", HOST, str(port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    assert "status 0xFE00 (cancel), 1 match(es)" in final_line(out, "C-FIND")
    assert printed.count("# Find response") == 1
    assert peer.cancelled.is_set()


# -- DCMTK's SCUs against dul's qrscp ----------------------------------------------------------


@cell("DCMTK findscu", "dul qrscp", "C-FIND", "Study Root, STUDY level")
@each_driver
def test_find_dcmtk_to_dul(driver: str, dcmtk: Dcmtk, archive_dir: Path, tmp_path: Path) -> None:
    with qrscp(driver, archive_dir) as (port, log):
        result = dcmtk_run(
            dcmtk, "findscu", "-S", "-X", "-od", str(tmp_path), *STUDY_KEYS, "-k", "StudyDate",
            "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    assert extracted(tmp_path, "StudyInstanceUID") == DOE_STUDIES
    assert extracted(tmp_path, "StudyDate") == ["20200315", "20210315"]
    assert "C-FIND: 2 match(es)" in log.getvalue()


@cell("DCMTK getscu", "dul qrscp", "C-GET", "Patient Root, STUDY level")
@each_driver
def test_get_dcmtk_to_dul(driver: str, dcmtk: Dcmtk, archive_dir: Path, tmp_path: Path) -> None:
    with qrscp(driver, archive_dir) as (port, log):
        result = dcmtk_run(
            dcmtk, "getscu", "-v", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=QR-PID2",
            "-k", f"StudyInstanceUID={ROOT_UID}.2.1", "-od", str(tmp_path),
            "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert received(tmp_path) == expected(archive_dir, "2.1.")
    assert "Received C-GET Response (Success)" in output
    assert "Number of Completed Suboperations : 4" in output
    assert "C-GET-RSP final: status 0x0000 (success) (completed 4, failed 0, warning 0)" in (
        log.getvalue()
    )


@cell("DCMTK movescu +P", "dul qrscp", "C-MOVE", "Study Root, SERIES level")
@each_driver
def test_move_dcmtk_to_dul(driver: str, dcmtk: Dcmtk, archive_dir: Path, tmp_path: Path) -> None:
    port_in = free_port()
    with qrscp(driver, archive_dir, "--move", "MOVESCU", f"{HOST}:{port_in}") as (port, log):
        result = dcmtk_run(
            dcmtk, "movescu", "-v", "-S", *SERIES_KEYS, "-aem", "MOVESCU", "+P", str(port_in),
            "-od", str(tmp_path), "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert received(tmp_path) == expected(archive_dir, "1.2.1.")
    assert "Received Final Move Response (Success)" in output
    assert "C-MOVE-RSP final: status 0x0000 (success) (completed 2, failed 0, warning 0)" in (
        log.getvalue()
    )


@cell("DCMTK findscu --cancel 1", "dul qrscp", "C-FIND + C-CANCEL", "Patient Root, IMAGE level")
@each_driver
def test_cancel_find_dcmtk_to_dul(driver: str, dcmtk: Dcmtk, archive_dir: Path) -> None:
    with qrscp(driver, archive_dir, "--delay", "0.1") as (port, log):
        result = dcmtk_run(
            dcmtk, "findscu", "-v", "-P", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", "SOPInstanceUID", "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in output
    assert output.count("(Pending)") == 1
    assert "C-CANCEL received for message 1" in log.getvalue()


@cell("DCMTK movescu --cancel 1", "dul qrscp", "C-MOVE + C-CANCEL", "Patient Root, PATIENT level")
@each_driver
def test_cancel_move_dcmtk_to_dul(
    driver: str, dcmtk: Dcmtk, archive_dir: Path, tmp_path: Path
) -> None:
    port_in = free_port()
    moves = ["--move", "MOVESCU", f"{HOST}:{port_in}"]
    with qrscp(driver, archive_dir, "--delay", "0.1", *moves) as (port, log):
        result = dcmtk_run(
            dcmtk, "movescu", "-v", "--cancel", "1", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=QR-PID1", "-aem", "MOVESCU", "+P", str(port_in),
            "-od", str(tmp_path), "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received Final Move Response (Cancel: SubOperationsTerminatedDueToCancelIndic" in output
    assert "C-MOVE-RSP final: status 0xFE00 (cancel) (remaining 7, completed 1" in log.getvalue()
    assert len(received(tmp_path)) == 1


# -- pynetdicom's SCUs against dul's qrscp -----------------------------------------------------


@contextlib.contextmanager
def pynetdicom_scu(pynetdicom: ModuleType, port: int) -> Iterator[Any]:
    """A pynetdicom association with QRSCP: Patient Root find/get/move, CT storage with the SCP
    role (for C-GET); the C-STOREs it receives are kept raw in ``assoc.stored``."""
    from pynetdicom import AE, build_role, evt, sop_class

    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for service in ("Find", "Get", "Move"):
        ae.add_requested_context(
            getattr(sop_class, f"PatientRootQueryRetrieveInformationModel{service}")
        )
    ae.add_requested_context(CT, [qr.EXPLICIT_VR_LITTLE_ENDIAN])
    stored: dict[str, bytes] = {}

    def on_store(event: Any) -> int:
        stored[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return 0x0000

    assoc = ae.associate(
        HOST,
        port,
        ae_title="QRSCP",
        ext_neg=[build_role(CT, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assoc.stored = stored
    try:
        assert assoc.is_established
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _query(*pairs: tuple[str, str]) -> Any:
    ds = pydicom.Dataset()
    for keyword, value in pairs:
        setattr(ds, keyword, value)
    return ds


@cell("pynetdicom", "dul qrscp", "C-FIND", "Patient Root, SERIES level")
@each_driver
def test_find_pynetdicom_to_dul(driver: str, pynetdicom: ModuleType, archive_dir: Path) -> None:
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as FIND

    query = _query(
        ("QueryRetrieveLevel", "SERIES"),
        ("PatientID", "QR-PID2"),
        ("StudyInstanceUID", f"{ROOT_UID}.2.2"),
        ("SeriesInstanceUID", ""),
        ("NumberOfSeriesRelatedInstances", ""),
    )
    with qrscp(driver, archive_dir) as (port, log), pynetdicom_scu(pynetdicom, port) as assoc:
        responses = list(assoc.send_c_find(query, FIND))
    statuses = [status.Status for status, _ in responses]
    assert statuses == [0xFF00, 0xFF00, 0x0000]
    assert [str(ds.SeriesInstanceUID) for _, ds in responses[:2]] == [
        f"{ROOT_UID}.2.2.1",
        f"{ROOT_UID}.2.2.2",
    ]
    assert [str(ds.NumberOfSeriesRelatedInstances) for _, ds in responses[:2]] == ["2", "2"]
    assert "calling AE title: 'PYNETDICOM'" in log.getvalue()


@cell("pynetdicom", "dul qrscp", "C-GET", "Patient Root, SERIES level")
@each_driver
def test_get_pynetdicom_to_dul(driver: str, pynetdicom: ModuleType, archive_dir: Path) -> None:
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelGet as GET

    query = _query(
        ("QueryRetrieveLevel", "SERIES"),
        ("PatientID", "QR-PID1"),
        ("StudyInstanceUID", f"{ROOT_UID}.1.1"),
        ("SeriesInstanceUID", f"{ROOT_UID}.1.1.2"),
    )
    with qrscp(driver, archive_dir) as (port, _), pynetdicom_scu(pynetdicom, port) as assoc:
        responses = list(assoc.send_c_get(query, GET))
        stored = dict(assoc.stored)
    final = responses[-1][0]
    assert [status.Status for status, _ in responses] == [0xFF00, 0x0000]
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 0)
    assert responses[0][0].NumberOfRemainingSuboperations == 1
    assert stored == expected(archive_dir, "1.1.2.")


@cell("pynetdicom", "dul qrscp", "C-MOVE", "Patient Root, SERIES level")
@each_driver
def test_move_pynetdicom_to_dul(driver: str, pynetdicom: ModuleType, archive_dir: Path) -> None:
    """The move destination is a second pynetdicom AE, a storage SCP."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelMove as MOVE

    stored: dict[str, tuple[str, bytes]] = {}

    def on_store(event: Any) -> int:
        request = event.request
        stored[str(request.AffectedSOPInstanceUID)] = (
            str(request.MoveOriginatorApplicationEntityTitle).strip(),
            request.DataSet.getvalue(),
        )
        return 0x0000

    destination = AE(ae_title="PYDEST")
    destination.add_supported_context(CT, [qr.EXPLICIT_VR_LITTLE_ENDIAN])
    server = destination.start_server(
        (HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    query = _query(
        ("QueryRetrieveLevel", "SERIES"),
        ("PatientID", "QR-PID2"),
        ("StudyInstanceUID", f"{ROOT_UID}.2.1"),
        ("SeriesInstanceUID", f"{ROOT_UID}.2.1.2"),
    )
    try:
        moves = ["--move", "PYDEST", f"{HOST}:{server.server_address[1]}"]
        with (
            qrscp(driver, archive_dir, *moves) as (port, _),
            pynetdicom_scu(pynetdicom, port) as assoc,
        ):
            responses = list(assoc.send_c_move(query, "PYDEST", MOVE))
    finally:
        server.shutdown()
    assert [status.Status for status, _ in responses] == [0xFF00, 0x0000]
    assert responses[-1][0].NumberOfCompletedSuboperations == 2
    assert {uid: data for uid, (_, data) in stored.items()} == expected(archive_dir, "2.1.2.")
    assert {originator for originator, _ in stored.values()} == {"PYNETDICOM"}


@cell("pynetdicom (C-CANCEL)", "dul qrscp", "C-FIND + C-CANCEL", "Patient Root, IMAGE level")
@each_driver
def test_cancel_pynetdicom_to_dul(driver: str, pynetdicom: ModuleType, archive_dir: Path) -> None:
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as FIND

    query = _query(("QueryRetrieveLevel", "IMAGE"), ("SOPInstanceUID", ""))
    statuses = []
    with (
        qrscp(driver, archive_dir, "--delay", "0.1") as (port, log),
        pynetdicom_scu(pynetdicom, port) as assoc,
    ):
        for status, _ in assoc.send_c_find(query, FIND, msg_id=9):
            statuses.append(status.Status)
            if len(statuses) == 1:
                assoc.send_c_cancel(9, query_model=FIND)
    assert statuses == [0xFF00, 0xFE00]
    assert "C-CANCEL received for message 9" in log.getvalue()


@cell("DCMTK movescu", "dul qrscp → DCMTK storescp", "C-MOVE, each file in its own syntax")
@pytest.mark.parametrize(
    "syntax",
    [pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.DeflatedExplicitVRLittleEndian],
    ids=["implicit", "deflate"],
)
@each_driver
def test_move_keeps_the_stored_syntax(
    driver: str, syntax: str, dcmtk: Dcmtk, tmp_path: Path
) -> None:
    """Issue 16 item 4: qrscp proposes each file's own transfer syntax as a context of its own,
    so a destination that prefers explicit VR (DCMTK storescp does) still accepts the stored one
    and receives the files bit for bit (storescp +B writes them as they came)."""
    archive = tmp_path / "archive"
    qr.write_sample_archive(
        archive, patients=1, studies=1, series=1, images=2, transfer_syntax=syntax
    )
    with (
        dcmtk.storescp(tmp_path / "dest", "+B", "+xa") as dest_port,
        qrscp(driver, archive, "--move", "STORESCP", f"{HOST}:{dest_port}") as (port, log),
    ):
        result = dcmtk_run(
            dcmtk, "movescu", "-v", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={ROOT_UID}.1.1", "-aem", "STORESCP",
            "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        wait_for(lambda: "ended: released" in log.getvalue())
    assert result.returncode == 0, result.stdout + result.stderr
    stored = tmp_path / "dest" / "received"
    assert received(stored) == sources(archive)
    assert {storage.read_dicom_file(p).transfer_syntax for p in stored.iterdir()} == {syntax}
