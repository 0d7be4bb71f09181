"""Query/Retrieve: the index and C-FIND matching, identifiers, sub-operation counters, and the
tools (findscu, getscu, movescu, qrscp) dul against dul on each driver.

The matching rules are PS3.4 C.2.2.2's; each test says which. The tools run in this process
(``*_main(argv)``; qrscp in a thread), except where a real signal or ``python -m`` is the point:
those run in child processes. The evidence is the tools' own: the matches findscu prints and
extracts, the files getscu and movescu write (their data sets compared byte for byte with the
archive's), the final statuses and counters they log. Interoperability with DCMTK and
pynetdicom is ``test_interop_qr.py``.
"""

from __future__ import annotations

import datetime
import fnmatch
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from examples.apps import qr, storage
from examples.apps.qr import common as qr_common
from examples.apps.qr import model as qr_model
from examples.tools import main
from examples.tools.cli import ExitCode, ToolError
from examples.tools.sample_files import dataset_bytes
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from dul import dimse
from peers import HOST, free_port

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ("sockets", "trio", "asyncio")
ROOT_UID = "2.25.179536565782057534153425101251671424019"
CT = "1.2.840.10008.5.1.4.1.1.2"


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 patients x 2 studies x 2 series x 2 images, explicit VR little endian."""
    directory = tmp_path_factory.mktemp("archive")
    qr.write_sample_archive(directory)
    return directory


@pytest.fixture(scope="module")
def archive(archive_dir: Path) -> qr.Archive:
    return qr.Archive.from_directory(archive_dir)


def sources(directory: Path) -> dict[str, bytes]:
    """The data set bytes of each file of an archive, by SOP instance UID."""
    return {
        storage.read_dicom_file(p).sop_instance_uid: dataset_bytes(p)
        for p in directory.rglob("*.dcm")
    }


def received(directory: Path) -> dict[str, bytes]:
    """The data set bytes of each file a tool wrote, by SOP instance UID."""
    return {
        storage.read_dicom_file(p).sop_instance_uid: dataset_bytes(p)
        for p in directory.iterdir()
        if p.is_file()
    }


def identifier(*keys: str) -> Dataset:
    return qr.build_identifier(list(keys))


def values(datasets: list[Dataset], keyword: str) -> list[str]:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None
    return ["\\".join(qr.element_values(ds, tag)) for ds in datasets]


@contextmanager
def qrscp(driver: str, directory: Path, *argv: str) -> Iterator[tuple[int, io.StringIO]]:
    """dul's qrscp on ``driver`` in a thread, with -v: (port, its log)."""
    stream = io.StringIO()
    args = ["--driver", driver, "-v", "-aet", "QRSCP", *argv, "0", str(directory)]
    with main.server_in_thread("qrscp", args, stream) as server:
        yield server.port, stream


def run(driver: str, tool: str, *argv: str) -> tuple[int, str, str]:
    """A tool on ``driver`` in this process: (exit status, what it logged, what it printed)."""
    stream, out = io.StringIO(), io.StringIO()
    code = main.main(tool, ["--driver", driver, *argv], stream=stream, out=out)
    return code, stream.getvalue(), out.getvalue()


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.02)


def final_line(log: str, service: str) -> str:
    """The line an SCU logs for the final response of its request."""
    lines = [line for line in log.splitlines() if f"{service} final response" in line]
    assert len(lines) == 1, log
    return lines[0]


# -- matching (PS3.4 C.2.2.2) ---------------------------------------------------------------------


def key(vr: str, *texts: str) -> qr.Key:
    return qr.Key(0x00100010, vr, texts)


def matches(k: qr.Key, *have: str, vr: str | None = None) -> bool:
    return qr.match_key(k, (vr or k.vr, tuple(have)))


def test_universal_matching() -> None:
    """C.2.2.2.3: an empty key matches every entity, even one without the attribute; '*' too."""
    assert matches(key("PN"), "DOE^JOHN")
    assert qr.match_key(key("PN"), None)
    assert matches(key("LO", "*"), "anything")
    assert qr.match_key(key("LO", "*"), None)


def test_single_value_matching() -> None:
    """C.2.2.2.1: exact, case-sensitive except PN; padding is not significant."""
    assert matches(key("LO", "QR-PID1"), "QR-PID1")
    assert not matches(key("LO", "QR-PID1"), "qr-pid1")
    assert not matches(key("LO", "QR-PID1"), "QR-PID10")
    assert matches(key("PN", "doe^john"), "DOE^JOHN")
    assert not qr.match_key(key("LO", "QR-PID1"), None)
    assert matches(key("IS", "4"), "4.0")


def test_wildcard_matching() -> None:
    """C.2.2.2.4: '*' any run of characters, '?' one; not for UIDs or dates."""
    assert matches(key("PN", "DOE*"), "DOE^JOHN")
    assert matches(key("PN", "*^JO?N"), "DOE^JOHN")
    assert not matches(key("PN", "*^JO?N"), "DOE^JOAN^X")
    assert matches(key("CS", "C?"), "CT")
    assert not matches(key("CS", "C?"), "CTX")
    assert not matches(key("LO", "a.b"), "axb")  # regex characters are literal
    assert not matches(key("UI", "1.2.*"), "1.2.3")


def test_list_of_uid_matching() -> None:
    """C.2.2.2.2: a list of UIDs matches an entity whose UID is any of them."""
    uids = key("UI", "1.2.3", "1.2.4")
    assert matches(uids, "1.2.4")
    assert not matches(uids, "1.2.5")


def test_range_matching() -> None:
    """C.2.2.2.5: D1-D2, -D2, D1- for DA; times and date-times likewise."""
    assert matches(key("DA", "20200101-20201231"), "20200315")
    assert not matches(key("DA", "20200101-20201231"), "20210315")
    assert matches(key("DA", "-20200315"), "20200315")
    assert matches(key("DA", "2021-"), "20210101")
    assert not matches(key("DA", "2021-"), "20201231")
    assert matches(key("DA", "20200315"), "20200315")
    assert matches(key("TM", "1000-1100"), "103000")
    assert matches(key("TM", "-1030"), "103059.5")  # an upper bound includes its last second
    assert not matches(key("TM", "1031-"), "103059")
    assert matches(key("DT", "2020-20201231235959"), "20200601120000.5")


def test_empty_value_and_multiple_values() -> None:
    """'""' matches an empty attribute only; an attribute with several values matches when any
    does (ModalitiesInStudy)."""
    assert matches(key("PN", '""'))
    assert not matches(key("PN", '""'), "DOE")
    assert matches(key("CS", "MR"), "CT", "MR")
    assert matches(key("CS", "CT", "US"), "MR", "US")
    assert qr.match_key(qr.Key(0x00400275, "SQ", ()), None)


@given(
    st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 1, 1)),
    st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 1, 1)),
    st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 1, 1)),
)
def test_date_range_is_an_interval(
    low: datetime.date, high: datetime.date, day: datetime.date
) -> None:
    """A DA range matches exactly the dates between its bounds, inclusive; open ends too."""
    text = {d: d.strftime("%Y%m%d") for d in (low, high, day)}
    assert matches(key("DA", f"{text[low]}-{text[high]}"), text[day]) == (low <= day <= high)
    assert matches(key("DA", f"-{text[high]}"), text[day]) == (day <= high)
    assert matches(key("DA", f"{text[low]}-"), text[day]) == (low <= day)


@given(
    st.text(alphabet="AB^*?", max_size=6),
    st.text(alphabet="AB^", max_size=6),
)
def test_wildcards_are_fnmatch(pattern: str, value: str) -> None:
    """On an alphabet without fnmatch's brackets, '*' and '?' mean what they mean to fnmatch;
    an empty attribute matches no wildcard key but '*' (universal matching)."""
    if not pattern or pattern == "*":
        return  # universal matching: covered above (also matches an empty value)
    have = (value,) if value else ()  # an empty attribute has no value (element_values)
    assert matches(key("LO", pattern), *have) == (
        bool(value) and fnmatch.fnmatchcase(value, pattern)
    )


# -- the archive ------------------------------------------------------------------------------


def test_archive_levels(archive: qr.Archive) -> None:
    assert len(archive) == 16
    counts = {level: len(archive.entities(level)) for level in qr.Level}
    assert counts == {
        qr.Level.PATIENT: 2,
        qr.Level.STUDY: 4,
        qr.Level.SERIES: 8,
        qr.Level.IMAGE: 16,
    }


def test_find_study_level(archive: qr.Archive) -> None:
    """Keys of the level and above are matched and returned; computed ones are computed."""
    query = identifier(
        "QueryRetrieveLevel=STUDY",
        "PatientName=doe*",
        "StudyDate=20210101-",
        "StudyInstanceUID",
        "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries",
        "ModalitiesInStudy",
        "SeriesDescription",  # below the level: returned empty, not matched
    )
    for model in qr.Model:
        found = archive.find(query, model)
        assert values(found, "StudyInstanceUID") == [f"{ROOT_UID}.1.2"]
        assert values(found, "NumberOfStudyRelatedInstances") == ["4"]
        assert values(found, "NumberOfStudyRelatedSeries") == ["2"]
        assert values(found, "ModalitiesInStudy") == ["CT"]
        assert values(found, "SeriesDescription") == [""]
        assert values(found, "QueryRetrieveLevel") == ["STUDY"]
        assert values(found, "StudyDate") == ["20210315"]


def test_find_each_level(archive: qr.Archive) -> None:
    cases = [
        (["QueryRetrieveLevel=PATIENT", "PatientID", "NumberOfPatientRelatedStudies"], 2),
        (["QueryRetrieveLevel=SERIES", "PatientID=QR-PID2", "SeriesInstanceUID"], 4),
        (["QueryRetrieveLevel=IMAGE", f"SeriesInstanceUID={ROOT_UID}.2.1.2", "SOPInstanceUID"], 2),
        (["QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={ROOT_UID}.1.1.1.1\\{ROOT_UID}.2.2.2.2"], 2),
        (["QueryRetrieveLevel=SERIES", "SeriesNumber=2", "StudyDate=-20211231"], 2),
    ]
    for keys, count in cases:
        assert len(archive.find(identifier(*keys), qr.Model.PATIENT_ROOT)) == count, keys
    patients = archive.find(identifier(*cases[0][0]), qr.Model.PATIENT_ROOT)
    assert values(patients, "NumberOfPatientRelatedStudies") == ["2", "2"]


def test_find_refuses_a_level_the_model_lacks(archive: qr.Archive) -> None:
    """PS3.4 C.6.2: the Study Root model has no patient level; no level at all is an error too."""
    with pytest.raises(qr.QueryError) as raised:
        archive.find(identifier("QueryRetrieveLevel=PATIENT"), qr.Model.STUDY_ROOT)
    assert raised.value.status == qr.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    with pytest.raises(qr.QueryError):
        archive.find(Dataset(), qr.Model.PATIENT_ROOT)


def test_retrieve(archive: qr.Archive) -> None:
    instances = archive.retrieve(
        identifier("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT_UID}.2.1"),
        qr.Model.STUDY_ROOT,
    )
    assert sorted(i.sop_instance_uid for i in instances) == [
        f"{ROOT_UID}.2.1.{r}.{i}" for r in (1, 2) for i in (1, 2)
    ]


def test_retrieve_selects_on_unique_keys_only(archive: qr.Archive) -> None:
    """Issue 16 item 2 (PS3.4 C.4.2.2.1, C.4.3.2.1): other keys are ignored, group 0002 too
    (Orthanc's instance-level C-MOVE carries (0002,0003)); a missing unique key is 0xA900."""
    uid = f"{ROOT_UID}.1.1.1.1"
    query = identifier("QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={uid}", "PatientName=NOBODY")
    query.add_new(0x00020003, "UI", uid)
    for model in qr.Model:
        assert [i.sop_instance_uid for i in archive.retrieve(query, model)] == [uid]
    with pytest.raises(qr.QueryError) as raised:
        archive.retrieve(
            identifier("QueryRetrieveLevel=SERIES", "Modality=CT"), qr.Model.STUDY_ROOT
        )
    assert raised.value.status == qr.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    assert "(0020,000E)" in str(raised.value)
    nothing = identifier("QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2.3.4")
    assert archive.retrieve(nothing, qr.Model.STUDY_ROOT) == []
    final, _ = qr.SubOperations(0).final(
        dimse.CMoveResponse, dimse.CMoveRequest(
            message_id=1, affected_sop_class_uid="1.2.3", move_destination="X"
        ),
    )  # fmt: skip
    assert qr_common.counters_text(final).endswith("no instance matched: nothing was retrieved")


# -- identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", list(qr_model._ENCODINGS))
def test_identifier_round_trip(syntax: str) -> None:
    """An identifier with wildcards and ranges survives each uncompressed syntax and deflate."""
    query = identifier(
        "QueryRetrieveLevel=STUDY", "PatientName=D?E*", "StudyDate=2020-", "0020,000D=1.2\\1.3"
    )
    back = qr.decode_identifier(qr.encode_identifier(query, syntax), syntax)
    assert qr.query_keys(back) == qr.query_keys(query)


def test_transcode_keeps_the_data_set(archive: qr.Archive) -> None:
    instance = archive.instances[0]
    data = instance.read()
    for target in qr.TRANSCODABLE:
        other = qr.transcode(data, instance.transfer_syntax, target)
        assert qr.transcode(other, target, instance.transfer_syntax) == data
    with pytest.raises(ValueError):
        qr.transcode(data, instance.transfer_syntax, "1.2.840.10008.1.2.4.50")


def test_keys() -> None:
    """-k as DCMTK spells it: a tag or a keyword, a value or none."""
    assert qr.parse_key("0010,0010=DOE*") == (0x00100010, "PN", "DOE*")
    assert qr.parse_key("(0020,000d)") == (0x0020000D, "UI", None)
    assert qr.parse_key("StudyDate=") == (0x00080020, "DA", "")
    for bad in ("NoSuchKeyword=1", "9999,9999=1", "ReferencedStudySequence=1"):
        with pytest.raises(ToolError):
            qr.parse_key(bad)


def test_query_file_and_keys(tmp_path: Path) -> None:
    """The query file gives the identifier; -k keys override and add to it."""
    path = tmp_path / "query.dcm"
    path.write_bytes(
        qr.encode_identifier(
            identifier("QueryRetrieveLevel=PATIENT", "PatientName=X*", "PatientID"),
            qr.EXPLICIT_VR_LITTLE_ENDIAN,
        )
    )
    built = qr.build_identifier(["PatientName=DOE*", "PatientSex"], [str(path)])
    assert [(k.tag, k.values) for k in qr.query_keys(built)] == [
        (0x00080052, ("PATIENT",)),
        (0x00100010, ("DOE*",)),
        (0x00100020, ()),
        (0x00100040, ()),
    ]


# -- sub-operations ---------------------------------------------------------------------------


def test_suboperation_statuses() -> None:
    """PS3.4 C.4.2.1.3: Success, Warning B000 (failures), A702 (none done), Cancel FE00."""
    request = dimse.CGetRequest(message_id=7, affected_sop_class_uid=qr.PATIENT_ROOT_GET)
    ops = qr.SubOperations(3)
    ops.record(0x0000, "1.1")
    pending = ops.pending(dimse.CGetResponse, request)
    assert (pending.status, pending.remaining_suboperations, pending.completed_suboperations) == (
        0xFF00,
        2,
        1,
    )
    ops.record(0xB007, "1.2")
    ops.record(0xA700, "1.3")
    final, failed = ops.final(dimse.CGetResponse, request)
    assert (final.status, final.remaining_suboperations) == (0xB000, None)
    assert (final.completed_suboperations, final.warning_suboperations) == (1, 1)
    assert failed is not None and qr.element_values(failed, 0x00080058) == ("1.3",)
    nothing = qr.SubOperations(1)
    nothing.record(None, "2.1")
    assert nothing.final(dimse.CGetResponse, request)[0].status == 0xA702
    cancelled = qr.SubOperations(4)
    cancelled.record(0x0000, "3.1")
    response, failed = cancelled.final(dimse.CGetResponse, request, cancelled=True)
    assert (response.status, response.remaining_suboperations, failed) == (0xFE00, 3, None)


# -- the tools, dul against dul -----------------------------------------------------------------


@pytest.mark.parametrize("scp", list(DRIVERS))
@pytest.mark.parametrize("scu", list(DRIVERS))
def test_find(scu: str, scp: str, archive_dir: Path, tmp_path: Path) -> None:
    """findscu prints each match and extracts it (-X); every driver against every driver."""
    with qrscp(scp, archive_dir) as (port, log):
        code, out, printed = run(
            scu,
            "findscu",
            "-v",
            "-S",
            "-X",
            "-od",
            str(tmp_path),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=ROE*",
            "-k",
            "StudyInstanceUID",
            "-aec",
            "QRSCP",
            HOST,
            str(port),
        )
    assert code == ExitCode.OK, out
    assert "status 0x0000 (success), 2 match(es)" in final_line(out, "C-FIND")
    assert printed.count("# Find response") == 2
    extracted = [
        qr.decode_identifier(p.read_bytes(), qr.EXPLICIT_VR_LITTLE_ENDIAN)
        for p in sorted(tmp_path.glob("rsp*.dcm"))
    ]
    assert values(extracted, "StudyInstanceUID") == [f"{ROOT_UID}.2.1", f"{ROOT_UID}.2.2"]
    assert values(extracted, "PatientName") == ["ROE^JANE", "ROE^JANE"]
    assert "C-FIND: 2 match(es)" in log.getvalue()


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_get(driver: str, archive_dir: Path, tmp_path: Path) -> None:
    """C-GET: the SCP sends the matches on the same association, counters in each response."""
    with qrscp(driver, archive_dir) as (port, log):
        code, out, _ = run(
            driver,
            "getscu",
            "-v",
            "-k",
            "QueryRetrieveLevel=PATIENT",
            "-k",
            "PatientID=QR-PID1",
            "-od",
            str(tmp_path),
            "-aec",
            "QRSCP",
            HOST,
            str(port),
        )
    assert code == ExitCode.OK, out
    expected = {u: d for u, d in sources(archive_dir).items() if u.startswith(f"{ROOT_UID}.1.")}
    assert len(expected) == 8
    assert received(tmp_path) == expected
    assert "C-GET pending: remaining 7, completed 1, failed 0, warning 0" in out
    assert "status 0x0000 (success) (completed 8, failed 0, warning 0)" in final_line(out, "C-GET")
    accept = log.getvalue().split("SCP#1 ==> A-ASSOCIATE-AC", 1)[1].split("SCP#1 <==", 1)[0]
    assert f"role selection: {CT} (CT Image Storage): SCU 0, SCP 1" in accept  # PS3.7 D.3.3.4


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_move(driver: str, archive_dir: Path, tmp_path: Path) -> None:
    """C-MOVE: a sub-association to the destination movescu itself listens as (+P)."""
    port_in = free_port()
    with qrscp(driver, archive_dir, "--move", "MOVESCU", f"{HOST}:{port_in}") as (port, _log):
        code, out, _ = run(
            driver,
            "movescu",
            "-v",
            "-S",
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"SeriesInstanceUID={ROOT_UID}.2.2.1",
            "+P",
            str(port_in),
            "-od",
            str(tmp_path),
            "-aec",
            "QRSCP",
            HOST,
            str(port),
        )
    assert code == ExitCode.OK, out
    expected = {u: d for u, d in sources(archive_dir).items() if u.startswith(f"{ROOT_UID}.2.2.1.")}
    assert received(tmp_path) == expected
    assert "C-MOVE pending: remaining 1, completed 1" in out
    assert "2 instance(s) received" in final_line(out, "C-MOVE")
    # the sub-association's C-STOREs name the originator (PS3.7 9.3.1.1)
    assert "move originator AE title: MOVESCU" in out


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_cancel(driver: str, archive_dir: Path, tmp_path: Path) -> None:
    """--cancel N: C-CANCEL after N pending responses; the SCP stops, final status FE00."""
    port_in = free_port()
    moves = ["--move", "MOVESCU", f"{HOST}:{port_in}"]
    with qrscp(driver, archive_dir, "--delay", "0.1", *moves) as (port, log):
        target = ["-aec", "QRSCP", HOST, str(port)]
        find = run(
            driver, "findscu", "-v", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE", *target
        )
        get = run(
            driver, "getscu", "-v", "--cancel", "2", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=QR-PID2", "-od", str(tmp_path), *target,
        )  # fmt: skip
        move = run(
            driver, "movescu", "-v", "--cancel", "1", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=QR-PID1", "+P", str(port_in), "--ignore", *target,
        )  # fmt: skip
    for code, out, _ in (find, get, move):
        assert code == ExitCode.OK, out
    assert "status 0xFE00 (cancel), 1 match(es)" in final_line(find[1], "C-FIND")
    assert "(remaining 6, completed 2, failed 0, warning 0); 2 instance(s)" in final_line(
        get[1], "C-GET"
    )
    assert "(remaining 7, completed 1, failed 0, warning 0); 1 instance(s)" in final_line(
        move[1], "C-MOVE"
    )
    assert len(list(tmp_path.iterdir())) == 2
    assert log.getvalue().count("C-CANCEL received") == 3


def test_get_failed_suboperations(tmp_path: Path) -> None:
    """An instance getscu proposed no context for is a failed sub-operation: status B000, the
    counters, and its UID in the Failed SOP Instance UID List."""
    directory = tmp_path / "archive"
    paths = qr.write_sample_archive(directory, patients=1, studies=1, series=1, images=2)
    odd = pydicom.dcmread(paths[1])
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.2"
    if int(pydicom.__version__.split(".")[0]) >= 3:
        odd.save_as(paths[1], enforce_file_format=True)
    else:  # pydicom 2.x
        odd.save_as(paths[1], write_like_original=False)
    out_dir = tmp_path / "got"
    out_dir.mkdir()
    with qrscp("sockets", directory) as (port, log):
        code, out, _ = run(
            "sockets", "getscu", "-v", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", f"PatientID={odd.PatientID}", "-od", str(out_dir), "-aec", "QRSCP", HOST,
            str(port),
        )  # fmt: skip
    assert code == ExitCode.REQUEST_FAILED
    assert "status 0xB000 (warning) (completed 1, failed 1, warning 0)" in final_line(out, "C-GET")
    assert f"FailedSOPInstanceUIDList: {odd.SOPInstanceUID}" in out
    assert "no context with the SCP role" in log.getvalue()


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_move_failures(driver: str, archive_dir: Path) -> None:
    """An unknown destination: A801. A destination that does not answer: A702, all failed."""
    dead = free_port()
    with qrscp(driver, archive_dir, "--move", "DEAD", f"{HOST}:{dead}") as (port, _):
        keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"SeriesInstanceUID={ROOT_UID}.1.1.1"]
        target = ["-aec", "QRSCP", HOST, str(port)]
        unknown = run(driver, "movescu", *keys, "-aem", "NOBODY", *target)
        refused = run(driver, "movescu", *keys, "-aem", "DEAD", *target)
    assert unknown[0] == refused[0] == ExitCode.REQUEST_FAILED
    assert "status 0xA801 (failure)" in final_line(unknown[1], "C-MOVE")
    assert "unknown move destination 'NOBODY'" in unknown[1]
    assert "status 0xA702 (failure) (completed 0, failed 2, warning 0)" in final_line(
        refused[1], "C-MOVE"
    )


def test_get_transcodes(tmp_path: Path) -> None:
    """An implicit VR file sent on the explicit VR context the SCP accepted: the same data set,
    re-encoded (PS3.5 A.1 and A.2 differ only in the VR fields)."""
    directory = tmp_path / "archive"
    (path,) = qr.write_sample_archive(
        directory, patients=1, studies=1, series=1, images=1,
        transfer_syntax=qr.IMPLICIT_VR_LITTLE_ENDIAN,
    )  # fmt: skip
    study = pydicom.dcmread(path).StudyInstanceUID
    out_dir = tmp_path / "got"
    out_dir.mkdir()
    with qrscp("trio", directory) as (port, _):
        code, out, _ = run(
            "trio", "getscu", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "-od", str(out_dir), "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
    assert code == ExitCode.OK, out
    (stored,) = out_dir.iterdir()
    assert storage.read_dicom_file(stored).transfer_syntax == qr.EXPLICIT_VR_LITTLE_ENDIAN
    (source,) = directory.iterdir()
    assert qr.transcode(
        dataset_bytes(source), qr.IMPLICIT_VR_LITTLE_ENDIAN, qr.EXPLICIT_VR_LITTLE_ENDIAN
    ) == dataset_bytes(stored)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_usage_errors(driver: str, archive_dir: Path, tmp_path: Path) -> None:
    """No Query/Retrieve Level, an unknown key: usage errors (1) before any association."""
    assert run(driver, "findscu", "-k", "PatientName=X", HOST, "1")[0] == ExitCode.USAGE
    assert run(driver, "getscu", "-k", "Nonsense=1", HOST, "1")[0] == ExitCode.USAGE
    missing = str(tmp_path / "missing")
    code, out, _ = run(
        driver, "getscu", "-k", "QueryRetrieveLevel=STUDY", "-od", missing, HOST, "1"
    )
    assert code == ExitCode.CANNOT_WRITE_OUTPUT, out
    with qrscp(driver, archive_dir) as (port, _):
        code, out, _ = run(
            driver, "findscu", "-k", "QueryRetrieveLevel=STUDY", "-aec", "X", HOST, str(port)
        )
        assert code == ExitCode.OK  # any called AE title, unless --require-called-aet
        code, out, _ = run(
            driver, "findscu", "-P", "-k", "QueryRetrieveLevel=FRAME", HOST, str(port)
        )
        assert code == ExitCode.REQUEST_FAILED
        assert "status 0xA900 (failure)" in final_line(out, "C-FIND")


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_port_in_use(driver: str, archive_dir: Path) -> None:
    """A port that cannot be bound: network set-up failure (60), for qrscp and movescu +P."""
    with socket.create_server((HOST, 0)) as busy:
        port = str(busy.getsockname()[1])
        code, out, _ = run(driver, "qrscp", port, str(archive_dir))
        assert code == ExitCode.NETWORK_SETUP, out
        code, out, _ = run(
            driver, "movescu", "-k", "QueryRetrieveLevel=STUDY", "+P", port, HOST, "1"
        )
        assert code == ExitCode.NETWORK_SETUP, out
    assert f"cannot listen on 127.0.0.1:{port}" in out


def test_demo_find(archive_dir: Path) -> None:
    """The function the README's demo calls: a qrscp and a findscu, traced, in this process."""
    stream = io.StringIO()
    from examples import demo

    assert demo.demo_find(archive_dir, stream=stream) == ExitCode.OK
    text = stream.getvalue()
    assert "SCU ==> C-FIND-RQ" in text and "SCP#1 ==> C-FIND-RSP" in text
    assert text.count("# Find response") == 4
    assert "NumberOfStudyRelatedInstances: 4" in text


# -- signals and python -m, in child processes ----------------------------------------------------


def _child(driver: str, tool: str, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", f"examples.{tool}", "--driver", driver, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_ctrl_c_cancels(driver: str, archive_dir: Path) -> None:
    """Ctrl-C while responses are pending: a C-CANCEL, the SCP's Cancel, exit status 130.

    trio and asyncio send the C-CANCEL at once; the sockets driver reads in the thread the
    signal interrupts, so unless the signal came before it waited again, it sends it once the
    next response has arrived (one more match).
    """
    with qrscp("sockets", archive_dir, "--delay", "0.3") as (port, log):
        child = _child(
            driver, "findscu", "-v", "-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID",
            "-aec", "QRSCP", HOST, str(port),
        )  # fmt: skip
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("# Find response 1")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        wait_for(lambda: "ended: released" in log.getvalue())
    assert child.returncode == qr.EXIT_INTERRUPTED, err
    assert "SCU ==> C-CANCEL-RQ" in err
    count = (first + out).count("# Find response")
    assert count in ((1, 2) if driver == "sockets" else (1,))
    assert f"status 0xFE00 (cancel), {count} match(es)" in final_line(err, "C-FIND")
    assert "C-CANCEL received" in log.getvalue()


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_ctrl_c_twice_aborts(driver: str, archive_dir: Path) -> None:
    """A second Ctrl-C does not wait for the SCP: the association is aborted."""
    with qrscp("sockets", archive_dir, "--delay", "1") as (port, log):
        child = _child(
            driver, "findscu", "-v", "-k", "QueryRetrieveLevel=PATIENT", "-aec", "QRSCP", HOST,
            str(port),
        )  # fmt: skip
        assert child.stderr is not None
        for line in child.stderr:
            if "SCU ==> C-FIND-RQ" in line:
                break
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=30)
        wait_for(lambda: "ended: aborted by peer" in log.getvalue())
    assert child.returncode == qr.EXIT_INTERRUPTED, err
    assert "interrupted again: association aborted" in err
    assert "SCU ==> A-ABORT" in err


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_qrscp_main(driver: str, archive_dir: Path) -> None:
    """python -m examples.qrscp --driver D serves until SIGTERM, then exits 0."""
    child = _child(driver, "qrscp", "-v", "-aet", "QRSCP", "0", str(archive_dir))
    assert child.stdout is not None
    line = child.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert match, line
    try:
        code, out, printed = run(
            driver, "findscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientName",
            "-aec", "QRSCP", HOST, match.group(1),
        )  # fmt: skip
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    assert code == ExitCode.OK, out
    assert printed.count("# Find response") == 2
    assert child.returncode == 0, err
    assert "serving 16 instance(s)" in err


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_tls_find_and_get(driver: str, archive_dir: Path, tmp_path: Path) -> None:
    """The Q/R tools take the same TLS options as the others, on every driver."""
    from test_tools import make_certificate

    cert, key = map(str, make_certificate(tmp_path))
    tls = ["--tls-cert", cert, "--tls-key", key, "--tls-ca", cert]
    out = tmp_path / "got"
    out.mkdir()
    with qrscp(driver, archive_dir, *tls) as (port, _):
        level = ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=QR-PID1"]
        code, log, printed = run(driver, "findscu", *tls, *level, "-aec", "QRSCP", HOST, str(port))
        assert code == ExitCode.OK, log
        assert "QR-PID1" in printed
        code, log, _ = run(driver, "getscu", *tls, *level, "-od", str(out), HOST, str(port))
        assert code == ExitCode.OK, log
        assert len(received(out)) == 8
        code, log, _ = run(driver, "findscu", "--tls", *level, HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
        assert "CERTIFICATE_VERIFY_FAILED" in log
