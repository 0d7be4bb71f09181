"""Interoperability cells against Orthanc (Debian's ``orthanc``), both ways, on each driver.

- dul's echoscu, storescu, findscu, movescu and getscu against Orthanc's SCP;
- Orthanc's SCU, driven through its REST API (``/modalities/{id}/echo``, ``/store``,
  ``/query``, ``/queries/{id}/answers/{n}/retrieve``), against dul's echoscp, storescp, qrscp.

A cell passes on Orthanc's own evidence: what its REST API says it stored (``/instances/{id}/file``:
the data set bytes after the meta group equal what was sent), what it finds (``/tools/find``),
and the statuses and counters each side reports. Orthanc runs in child processes started once
for the module (``orthanc.py``: a config written here, its own folders and ports, stopped by
PID), one per maximum PDU length the C-STORE matrix needs, one holding the Q/R archive, one
that receives what qrscp sends. Cells go into the report of ``test_interop_storage.py``
(``interop_report.py``), merged with the others as ``test_interop_qr.py``'s are.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pydicom
import pytest
from examples.tools.cli import ExitCode
from examples.tools.sample_files import TRANSFER_SYNTAX_NAMES, dataset_bytes, write_sample

import interop_report
from orthanc import Orthanc, start_orthanc, stop_orthancs
from peers import HOST, find_dcmtk, free_port
from test_interop_qr import _Recorder, expected, extracted
from test_interop_storage import (
    ASYNC_DCMTK_PDUS,
    DCMTK_PDUS,
    SYNTAX_LABELS,
    dul_scp,
    instance_uid,
    run_dul,
    store_cells,
    stored_meta,
)
from test_qr import ROOT_UID, final_line, qrscp, received, run, wait_for
from test_tools import DRIVERS

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
#: A storage SOP class no tool proposes: Orthanc cannot send it back on a C-GET association.
UNPROPOSED_SOP_CLASS = "2.25.311340905722457102458412387745301893"
#: The patient and study of the C-GET whose sub-operation fails (outside the archive's).
FAILING_PATIENT = "QR-PID9"
FAILING_STUDY = f"{ROOT_UID}.9.1"


# -- recording the cells, into the storage cells' report ---------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _interop_recorder(request: pytest.FixtureRequest) -> Iterator[None]:
    manager = request.config.pluginmanager
    name = "dul-interop-recorder-orthanc"
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
    variant = [described.get("variant", "")] if described.get("variant") else []
    if "syntax" in params:
        variant.append(SYNTAX_LABELS[params["syntax"]])
    if "pdu" in params:
        variant.append(f"max PDU {params['pdu']}")
    if "model" in params:
        variant.append(params["model"])
    if "level" in params:
        variant.append(f"{params['level']} level")
    described["variant"] = ", ".join(variant)
    request.node.user_properties.append((interop_report.PROPERTY, described))


each_driver = pytest.mark.parametrize("driver", DRIVERS)


# -- Orthanc and what it holds ----------------------------------------------------------------


class Orthancs:
    """The module's Orthancs: one per PDU length for C-STORE, the Q/R archive, a receiver."""

    def __init__(self, by_pdu: dict[int, Orthanc], archive: Orthanc, receiver: Orthanc) -> None:
        self.by_pdu = by_pdu
        self.archive = archive
        self.receiver = receiver


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Q/R archive (``qr.write_sample_archive``), plus the study whose C-GET fails."""
    from examples.apps import qr

    directory = tmp_path_factory.mktemp("orthanc-archive")
    qr.write_sample_archive(directory)
    return directory


def failing_study(directory: Path) -> list[Path]:
    """A CT image and an instance of :data:`UNPROPOSED_SOP_CLASS`, in one study of their own."""
    paths = [
        write_sample(directory / "ct.dcm", index=901),
        write_sample(directory / "odd.dcm", index=902, sop_class_uid=UNPROPOSED_SOP_CLASS),
    ]
    for n, path in enumerate(paths, start=1):
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = FAILING_PATIENT, "FAIL^SUBOPERATION"
        ds.StudyInstanceUID = FAILING_STUDY
        ds.SeriesInstanceUID = f"{FAILING_STUDY}.{n}"
        ds.save_as(path)
    return paths


@pytest.fixture(scope="module")
def orthancs(
    orthanc_binary: str, archive_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orthancs]:
    """Every Orthanc of the module, started together, stopped together by PID."""
    workdir = tmp_path_factory.mktemp("orthanc")
    started: list[Orthanc] = []
    try:
        for name, pdu in [
            *((f"store-{pdu}", pdu) for pdu in DCMTK_PDUS),
            ("archive", 16384),
            ("receiver", 16384),
        ]:
            started.append(start_orthanc(workdir / name, max_pdu=pdu))
        *by_pdu, archive, receiver = started
        for path in [*sorted(archive_dir.glob("*.dcm")), *failing_study(workdir / "failing")]:
            archive.upload(path)
        yield Orthancs(dict(zip(DCMTK_PDUS, by_pdu, strict=True)), archive, receiver)
    finally:
        stop_orthancs(started)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CT image of about 1.5 MB of data set in each transfer syntax (streamed by storescu)."""
    directory = tmp_path_factory.mktemp("orthanc-samples")
    return {
        name: write_sample(directory / f"{name}.dcm", syntax, size=1_500_000, index=40 + i)
        for i, (name, syntax) in enumerate(TRANSFER_SYNTAX_NAMES.items())
    }


def orthanc_dataset(orthanc: Orthanc, sop_instance_uid: str, tmp_path: Path) -> tuple[Path, bytes]:
    """The file Orthanc stored for that instance (``/instances/{id}/file``) and its data set."""
    instance = orthanc.instance_id(sop_instance_uid)
    assert instance is not None, f"Orthanc holds no instance {sop_instance_uid}"
    path = tmp_path / f"orthanc-{sop_instance_uid}.dcm"
    path.write_bytes(orthanc.request("GET", f"/instances/{instance}/file"))
    return path, dataset_bytes(path)


def plain(syntax: str, data: bytes) -> bytes:
    """A data set's bytes, inflated when deflated: Orthanc writes the file through DCMTK, which
    deflates again (other compressed bytes); the explicit VR data set inside is compared."""
    return zlib.decompress(data, -zlib.MAX_WBITS) if syntax == "deflate" else data


def find_uids(orthanc: Orthanc, level: str, query: dict[str, str], key: str) -> list[str]:
    """What Orthanc's ``/tools/find`` matches at ``level``: the ``key`` of each, sorted."""
    answers = orthanc.post("/tools/find", {"Level": level, "Query": query, "Expand": True})
    return sorted(str(answer["MainDicomTags"][key]) for answer in answers)


# -- C-ECHO, both ways ------------------------------------------------------------------------


@cell("dul echoscu", "Orthanc", "C-ECHO")
@each_driver
def test_echo_dul_to_orthanc(driver: str, orthancs: Orthancs) -> None:
    orthanc = orthancs.archive
    code, out = run_dul(driver, "echoscu", "-v", "-aec", orthanc.aet, HOST, str(orthanc.dicom_port))
    assert code == ExitCode.OK, out
    assert "status: 0x0000 (success)" in out.split("SCU <== C-ECHO-RSP", 1)[1]


@cell("Orthanc (REST /modalities/{id}/echo)", "dul echoscp", "C-ECHO")
@each_driver
def test_echo_orthanc_to_dul(driver: str, orthancs: Orthancs) -> None:
    orthanc = orthancs.archive
    with dul_scp(driver, "echoscp") as (port, log):
        orthanc.add_modality("echoscp", "ECHOSCP", port)
        assert orthanc.post("/modalities/echoscp/echo", {}) == {}
        wait_for(lambda: "ended: released" in log.getvalue())
    assert "calling AE title: 'ORTHANC'" in log.getvalue()
    assert "SCP#1 ==> C-ECHO-RSP" in log.getvalue()


# -- C-STORE, both ways -----------------------------------------------------------------------


@cell("dul storescu", "Orthanc", "C-STORE")
@pytest.mark.parametrize(("driver", "syntax", "pdu"), store_cells(DCMTK_PDUS, ASYNC_DCMTK_PDUS))
def test_store_dul_to_orthanc(
    orthancs: Orthancs, samples: dict[str, Path], tmp_path: Path, driver: str, syntax: str, pdu: int
) -> None:
    """Orthanc's stored file holds the data set bytes dul sent, in the file's transfer syntax
    (deflated: the same bytes once inflated)."""
    orthanc = orthancs.by_pdu[pdu]
    source = samples[syntax]
    uid = instance_uid(source)
    previous = orthanc.instance_id(uid)
    if previous is not None:
        orthanc.delete(f"/instances/{previous}")
    code, out = run_dul(
        driver, "storescu", "-v", "-pdu", str(pdu), "-aec", orthanc.aet,
        HOST, str(orthanc.dicom_port), str(source),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    assert f"maximum length: {pdu}" in out.split("SCU <== A-ASSOCIATE-AC", 1)[1]
    stored, data = orthanc_dataset(orthanc, uid, tmp_path)
    assert stored_meta(stored) == (CT, uid, TRANSFER_SYNTAX_NAMES[syntax])
    assert plain(syntax, data) == plain(syntax, dataset_bytes(source))


@cell("Orthanc (REST /modalities/{id}/store)", "dul storescp", "C-STORE", "Explicit VR LE")
@each_driver
def test_store_orthanc_to_dul(
    driver: str, orthancs: Orthancs, samples: dict[str, Path], tmp_path: Path
) -> None:
    """Orthanc sends a file it holds; dul's file holds the data set of Orthanc's, bit for bit."""
    orthanc = orthancs.archive
    source = samples["explicit"]
    uid = instance_uid(source)
    instance = orthanc.instance_id(uid) or orthanc.upload(source)
    out_dir = tmp_path / "received"
    out_dir.mkdir()
    with dul_scp(driver, "storescp", "-od", str(out_dir)) as (port, log):
        orthanc.add_modality("storescp", "STORESCP", port)
        answer = orthanc.post(
            "/modalities/storescp/store", {"Resources": [instance], "Synchronous": True}
        )
        wait_for(lambda: "ended: released" in log.getvalue())
    assert answer["FailedInstancesCount"] == 0 and answer["InstancesCount"] == 1, answer
    _, data = orthanc_dataset(orthanc, uid, tmp_path)
    assert received(out_dir) == {uid: data}
    assert data == dataset_bytes(source)


# -- dul's Q/R SCUs against Orthanc -----------------------------------------------------------

#: findscu's keys at each level, and what Orthanc's /tools/find is asked for the same matches.
FIND_CELLS: dict[str, tuple[list[str], str, dict[str, str], str]] = {
    "PATIENT": (
        ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=QR-PID*", "-k", "PatientName"],
        "Patient",
        {"PatientID": "QR-PID*"},
        "PatientID",
    ),
    "STUDY": (
        ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DOE*",
         "-k", "StudyInstanceUID"],
        "Study",
        {"PatientName": "DOE*"},
        "StudyInstanceUID",
    ),
    "SERIES": (
        ["-S", "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={ROOT_UID}.1.2",
         "-k", "SeriesInstanceUID"],
        "Series",
        {"StudyInstanceUID": f"{ROOT_UID}.1.2"},
        "SeriesInstanceUID",
    ),
    "IMAGE": (
        ["-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ROOT_UID}.2.1",
         "-k", f"SeriesInstanceUID={ROOT_UID}.2.1.1", "-k", "SOPInstanceUID"],
        "Instance",
        {"SeriesInstanceUID": f"{ROOT_UID}.2.1.1"},
        "SOPInstanceUID",
    ),
}  # fmt: skip


@cell("dul findscu", "Orthanc", "C-FIND")
@pytest.mark.parametrize(
    ("model", "level"),
    [("Patient Root" if level == "PATIENT" else "Study Root", level) for level in FIND_CELLS],
)
@each_driver
def test_find_dul_to_orthanc(
    driver: str, model: str, level: str, orthancs: Orthancs, tmp_path: Path
) -> None:
    """findscu's matches are those of Orthanc's own /tools/find (Patient Root for PATIENT)."""
    orthanc = orthancs.archive
    keys, orthanc_level, query, keyword = FIND_CELLS[level]
    code, out, _ = run(
        driver, "findscu", "-v", "-X", "-od", str(tmp_path), *keys,
        "-aec", orthanc.aet, HOST, str(orthanc.dicom_port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    wanted = find_uids(orthanc, orthanc_level, query, keyword)
    assert len(wanted) >= 2
    assert sorted(extracted(tmp_path, keyword)) == wanted
    assert f"status 0x0000 (success), {len(wanted)} match(es)" in final_line(out, "C-FIND")


@cell("dul getscu", "Orthanc", "C-GET", "Study Root, STUDY level")
@each_driver
def test_get_dul_to_orthanc(
    driver: str, orthancs: Orthancs, archive_dir: Path, tmp_path: Path
) -> None:
    orthanc = orthancs.archive
    code, out, _ = run(
        driver, "getscu", "-v", "-S", "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={ROOT_UID}.2.1", "-od", str(tmp_path),
        "-aec", orthanc.aet, HOST, str(orthanc.dicom_port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    wanted = find_uids(
        orthanc, "Instance", {"StudyInstanceUID": f"{ROOT_UID}.2.1"}, "SOPInstanceUID"
    )
    assert sorted(received(tmp_path)) == wanted
    assert received(tmp_path) == expected(archive_dir, "2.1.")
    final = final_line(out, "C-GET")
    assert "status 0x0000 (success)" in final
    assert "completed 4, failed 0, warning 0); 4 instance(s) received" in final


@cell("dul getscu", "Orthanc", "C-GET, a sub-operation fails", "Study Root, STUDY level")
@each_driver
def test_get_dul_to_orthanc_failed_suboperation(
    driver: str, orthancs: Orthancs, tmp_path: Path
) -> None:
    """Issue 16 item 1: Orthanc cannot send an instance of a SOP class getscu did not propose;
    its C-GET-RSP then carries (0008,0058) Failed SOP Instance UID List in the command set.
    getscu keeps it aside (the trace shows it), reports the counters, and releases."""
    orthanc = orthancs.archive
    code, out, _ = run(
        driver, "getscu", "-v", "-S", "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={FAILING_STUDY}", "-od", str(tmp_path),
        "-aec", orthanc.aet, HOST, str(orthanc.dicom_port),
    )  # fmt: skip
    assert code == ExitCode.REQUEST_FAILED, out
    final = final_line(out, "C-GET")
    assert "status 0xC000 (failure)" in final or "status 0xB000 (warning)" in final, final
    got = received(tmp_path)
    assert f"completed {len(got)}, failed 1, warning 0); {len(got)} instance(s) received" in final
    in_study = find_uids(orthanc, "Instance", {"StudyInstanceUID": FAILING_STUDY}, "SOPInstanceUID")
    assert len(in_study) == 2 and set(got) < set(in_study)
    odd = out.split("foreign element (0008,0058)", 1)
    assert len(odd) == 2, out
    assert "(not group 0000: kept aside)" in odd[1].splitlines()[0]
    assert "SCU <== connection closed: released" in out


@cell("dul movescu +P", "Orthanc", "C-MOVE", "Study Root, SERIES level")
@each_driver
def test_move_dul_to_orthanc(
    driver: str, orthancs: Orthancs, archive_dir: Path, tmp_path: Path
) -> None:
    orthanc = orthancs.archive
    port = free_port()
    orthanc.add_modality("movescu", "MOVESCU", port)
    series = f"{ROOT_UID}.1.2.1"
    code, out, _ = run(
        driver, "movescu", "-v", "-S", "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"StudyInstanceUID={ROOT_UID}.1.2", "-k", f"SeriesInstanceUID={series}",
        "-aem", "MOVESCU", "+P", str(port), "-od", str(tmp_path),
        "-aec", orthanc.aet, HOST, str(orthanc.dicom_port),
    )  # fmt: skip
    assert code == ExitCode.OK, out
    wanted = find_uids(orthanc, "Instance", {"SeriesInstanceUID": series}, "SOPInstanceUID")
    assert sorted(received(tmp_path)) == wanted
    assert received(tmp_path) == expected(archive_dir, "1.2.1.")
    final = final_line(out, "C-MOVE")
    assert "status 0x0000 (success)" in final
    assert "completed 2, failed 0, warning 0); 2 instance(s) received" in final


# -- Orthanc's Q/R SCU (REST) against dul's qrscp ---------------------------------------------


class Retrieval(NamedTuple):
    """Orthanc's query at one level, what it finds in the archive, what retrieving moves."""

    level: str  # Orthanc's name of the level
    query: dict[str, str]
    keyword: str  # the key the answers are compared on
    answers: list[str]  # its values, sorted; the first answer is retrieved
    moved: str  # the UID prefix (after ROOT_UID) of the instances that retrieval moves


RETRIEVALS = {
    "STUDY": Retrieval(
        "Study",
        {"PatientID": "QR-PID1", "StudyInstanceUID": ""},
        "StudyInstanceUID",
        [f"{ROOT_UID}.1.1", f"{ROOT_UID}.1.2"],
        "1.1.",
    ),
    "SERIES": Retrieval(
        "Series",
        {"StudyInstanceUID": f"{ROOT_UID}.2.2", "SeriesInstanceUID": ""},
        "SeriesInstanceUID",
        [f"{ROOT_UID}.2.2.1", f"{ROOT_UID}.2.2.2"],
        "2.2.1.",
    ),
    "IMAGE": Retrieval(
        "Instance",
        {
            "StudyInstanceUID": f"{ROOT_UID}.1.2",
            "SeriesInstanceUID": f"{ROOT_UID}.1.2.2",
            "SOPInstanceUID": "",
        },
        "SOPInstanceUID",
        [f"{ROOT_UID}.1.2.2.1", f"{ROOT_UID}.1.2.2.2"],
        "1.2.2.1",
    ),
}


@contextlib.contextmanager
def qrscp_for(orthanc: Orthanc, driver: str, archive_dir: Path) -> Iterator[Any]:
    """dul's qrscp over the archive, moving to ``orthanc``, declared to it as modality qrscp."""
    moves = ["--move", orthanc.aet, f"{HOST}:{orthanc.dicom_port}"]
    with qrscp(driver, archive_dir, *moves) as (port, log):
        orthanc.add_modality("qrscp", "QRSCP", port)
        yield log


def orthanc_query(orthanc: Orthanc, level: str, query: dict[str, str]) -> tuple[str, list[Any]]:
    """Orthanc's C-FIND to qrscp (``/modalities/qrscp/query``): its ID and each answer."""
    answer = orthanc.post("/modalities/qrscp/query", {"Level": level, "Query": query})
    query_id = answer["ID"]
    answers = [
        orthanc.get(f"/queries/{query_id}/answers/{n}/content?simplify")
        for n in orthanc.get(f"/queries/{query_id}/answers")
    ]
    return query_id, answers


@cell("Orthanc (REST query, retrieve)", "dul qrscp", "C-FIND, then C-MOVE", "Study Root")
@pytest.mark.parametrize(
    "level",
    [
        "STUDY",
        "SERIES",
        "IMAGE",
    ],
)
@each_driver
def test_query_retrieve_orthanc_to_dul(
    driver: str, level: str, orthancs: Orthancs, archive_dir: Path, tmp_path: Path
) -> None:
    """Orthanc's answers are the archive's entities at that level; retrieving the first moves
    its instances to Orthanc, whose stored data sets are the archive's, bit for bit."""
    orthanc = orthancs.receiver
    orthanc.clear()
    case = RETRIEVALS[level]
    with qrscp_for(orthanc, driver, archive_dir) as log:
        query_id, answers = orthanc_query(orthanc, case.level, case.query)
        found = [str(answer[case.keyword]) for answer in answers]
        orthanc.post(
            f"/queries/{query_id}/answers/{found.index(min(found))}/retrieve",
            {"TargetAet": orthanc.aet, "Synchronous": True},
        )
        wait_for(lambda: log.getvalue().count("ended: released") >= 2)
    assert sorted(found) == case.answers
    moved = expected(archive_dir, case.moved)
    assert len(orthanc.get("/instances")) == len(moved), log.getvalue()
    assert {uid: orthanc_dataset(orthanc, uid, tmp_path)[1] for uid in moved} == moved


@cell(
    "Orthanc (REST query, retrieve)",
    "dul qrscp",
    "C-FIND, then C-MOVE",
    "PATIENT level: found on Patient Root, the move refused on Study Root (A900H)",
)
@each_driver
def test_patient_level_orthanc_to_dul(driver: str, orthancs: Orthancs, archive_dir: Path) -> None:
    """Orthanc queries the PATIENT level on Patient Root, then retrieves it with a Study Root
    C-MOVE at the PATIENT level. Study Root has no PATIENT level (PS3.4 C.6.2.1), so qrscp
    answers A900H (identifier does not match SOP class) and moves nothing; docs/qr.md."""
    orthanc = orthancs.receiver
    orthanc.clear()
    with qrscp_for(orthanc, driver, archive_dir) as log:
        query_id, answers = orthanc_query(orthanc, "Patient", {"PatientID": "QR-PID1"})
        with pytest.raises(AssertionError, match="HTTP 500") as refused:
            orthanc.post(
                f"/queries/{query_id}/answers/0/retrieve",
                {"TargetAet": orthanc.aet, "Synchronous": True},
            )
        wait_for(lambda: log.getvalue().count("ended: released") >= 2)
    assert [answer["PatientID"] for answer in answers] == ["QR-PID1"]
    assert "DIMSE status 0xA900" in str(refused.value)
    text = log.getvalue()
    assert "Patient Root Query/Retrieve Information Model - FIND" in text
    assert "C-MOVE-RQ: status 0xA900: the study root model has no PATIENT level" in text
    assert orthanc.get("/instances") == []
