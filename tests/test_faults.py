"""Faults on the wire between storescu and storescp: nothing reported stored is lost.

Each test puts :mod:`faults`' relay between the two tools (dul's on each driver, DCMTK's for a
subset) and injects one fault: a cut in the middle of a data set, a reset in the middle of a
PDU, a half-close during release, a stall past the timeouts, a throttle, a delay between
messages; also a peer killed (SIGKILL) mid-transfer, and the SCP's disk full (a 1 MiB tmpfs,
root only). Whatever happens, the peers' own evidence must agree:

- every file storescu reports stored is on the SCP's disk, its data set byte-identical to the
  sent file's; dul's storescp leaves no partial file, under its final name or a temporary one;
- storescu's exit status and output name the files not stored;
- the timeouts fire (the test finishes: a bound on liveness, never a timing assertion);
- no thread or file descriptor is left behind by the in-process tools and the relay.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from examples.apps import storage
from examples.tools.cli import ExitCode
from examples.tools.sample_files import dataset_bytes, write_sample

from faults import A_RELEASE_RQ, P_DATA_TF, Action, Fault, Point, relay
from peers import HOST, Dcmtk, DulTools, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent

DRIVERS = ("sockets", "trio", "asyncio")
#: Short timeouts: a stalled peer is given up on in 2 s (the tools' -to/-ta/-td).
TIMEOUTS = ("-to", "2", "-ta", "2", "-td", "2")
FILES = 3


@dataclass(frozen=True)
class Case:
    """A fault, and whether every file can still be stored despite it."""

    fault: Fault
    all_stored: bool


CASES = {
    # The second file's data set PDU is cut in its middle: the first is stored, not the others.
    "cut-mid-dataset": Case(Fault(Point(P_DATA_TF, nth=2, dataset=True), Action.CUT), False),
    # The third P-DATA-TF (the second file's command) is reset half-way.
    "reset-mid-pdu": Case(Fault(Point(P_DATA_TF, nth=3), Action.RESET), False),
    # The SCP sees end of stream where the A-RELEASE-RQ was due: every file is stored already.
    "half-close-release": Case(Fault(Point(A_RELEASE_RQ, offset=0), Action.HALF_CLOSE), True),
    # The second C-STORE-RSP never comes: storescu's -td fires.
    "stall-response": Case(
        Fault(Point(P_DATA_TF, nth=2, offset=0), Action.STALL, to_server=False), False
    ),
    # The second data set stops half-way: storescp's -td and storescu's -td fire.
    "stall-request": Case(Fault(Point(P_DATA_TF, nth=2, dataset=True), Action.STALL), False),
    # 40 kB/s from the first byte: slow, but within every timeout.
    "throttle": Case(Fault(Point(offset=0), Action.THROTTLE, rate=40_000), True),
    # After the first command, each piece waits 0.1 s: between messages and PDUs.
    "delay": Case(Fault(Point(P_DATA_TF, nth=1, offset=-1), Action.DELAY, seconds=0.1), True),
}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait until ``predicate()``, at most ``timeout`` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def nothing_left_behind() -> Iterator[None]:
    """No thread nor file descriptor more after the block than before (given a few seconds)."""
    threads, fds = threading.active_count(), open_fds()
    yield
    assert wait_for(lambda: threading.active_count() <= threads), threading.enumerate()
    assert wait_for(lambda: open_fds() <= fds), f"{open_fds()} file descriptors, {fds} before"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Three small CT images (a data set PDU each)."""
    return [write_sample(tmp_path / "in" / f"{i}.dcm", index=700 + i) for i in range(FILES)]


def instance_uid(path: Path) -> str:
    return storage.read_dicom_file(path).sop_instance_uid


def reported_stored(log: str, files: list[Path]) -> list[Path]:
    """The files storescu -v reported stored (a success or warning response for each)."""
    return [f for f in files if re.search(rf"{re.escape(str(f))}: status 0x(0000|B...)", log)]


def check_outcome(code: int, log: str, files: list[Path], out: Path, *, dul_scp: bool) -> None:
    """storescu's report agrees with the SCP's disk, and names the files not stored."""
    stored = reported_stored(log, files)
    on_disk = {p.name: p for p in out.iterdir()}
    for sent in stored:  # reported stored: complete and byte-identical
        uid = instance_uid(sent)
        matches = [p for p in on_disk.values() if p.name.endswith(f".{uid}")]
        assert matches, f"{sent} reported stored, not on disk: {sorted(on_disk)}"
        assert dataset_bytes(matches[0]) == dataset_bytes(sent)
    assert f"{len(stored)} of {FILES} files stored" in log
    if len(stored) == FILES:
        assert "not stored" not in log
    else:
        assert code != ExitCode.OK
        assert f"{FILES - len(stored)} of {FILES} files not stored" in log
        for sent in files:
            assert (f"not stored: {sent}\n" in log) == (sent not in stored), log
    if dul_scp:  # no temporary file left, and every file there is complete
        assert not [name for name in on_disk if name.endswith(".part")], sorted(on_disk)
        by_uid = {instance_uid(f): f for f in files}
        for path in on_disk.values():
            sent = by_uid[path.name.split(".", 1)[1]]
            assert dataset_bytes(path) == dataset_bytes(sent), f"{path.name} is incomplete"


def run_storescu(tools: DulTools, port: int, files: list[Path]) -> tuple[int, str]:
    stream = io.StringIO()
    argv = ["-v", *TIMEOUTS, HOST, str(port), *map(str, files)]
    return tools.storescu_main(argv, stream=stream), stream.getvalue()


# -- dul storescu -> relay -> dul storescp ---------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("name", list(CASES))
def test_dul_to_dul(name: str, driver: str, files: list[Path], tmp_path: Path) -> None:
    case = CASES[name]
    tools = DulTools(driver)
    out = tmp_path / "out"
    out.mkdir()
    server_log = io.StringIO()
    with nothing_left_behind():
        argv = ["-v", "-ta", "2", "-td", "2", "-od", str(out), "0"]
        with tools.server_in_thread("storescp", argv, server_log) as server:
            with relay(server.port, case.fault) as proxy:
                code, log = run_storescu(tools, proxy.port, files)
            assert proxy.fired.is_set()
            # The association ends on the SCP too (its own -td fires on a stalled data set).
            assert wait_for(lambda: "ended:" in server_log.getvalue()), server_log.getvalue()
    if case.all_stored:
        assert f"{FILES} of {FILES} files stored" in log, log
    check_outcome(code, log, files, out, dul_scp=True)


# -- with DCMTK as the peer -------------------------------------------------------------------

DCMTK_SCP_CASES = ["cut-mid-dataset", "reset-mid-pdu", "stall-response", "throttle"]


@pytest.mark.parametrize("name", DCMTK_SCP_CASES)
def test_dul_storescu_to_dcmtk_storescp(
    name: str, dcmtk: Dcmtk, files: list[Path], tmp_path: Path
) -> None:
    """dul's storescu reports stored only what DCMTK's storescp wrote whole."""
    case = CASES[name]
    with (
        nothing_left_behind(),
        dcmtk.storescp(tmp_path, "-dhl") as port,
        relay(port, case.fault) as proxy,
    ):
        code, log = run_storescu(DulTools("sockets"), proxy.port, files)
        assert proxy.fired.is_set()
    if case.all_stored:
        assert code == ExitCode.OK, log
    check_outcome(code, log, files, tmp_path / "received", dul_scp=False)


DCMTK_SCU_CASES = ["cut-mid-dataset", "reset-mid-pdu", "stall-request", "throttle"]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("name", DCMTK_SCU_CASES)
def test_dcmtk_storescu_to_dul_storescp(
    name: str, driver: str, dcmtk: Dcmtk, files: list[Path], tmp_path: Path
) -> None:
    """DCMTK's storescu gets success only for what dul's storescp wrote whole, no partial file."""
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    server_log = io.StringIO()
    with nothing_left_behind():
        argv = ["-v", "-ta", "2", "-td", "2", "-od", str(out), "0"]
        with DulTools(driver).server_in_thread("storescp", argv, server_log) as server:
            with relay(server.port, case.fault) as proxy:
                result = dcmtk.run(
                    "storescu", "-v", "-to", "2", "-ta", "2", "-td", "2",
                    HOST, str(proxy.port), *map(str, files), timeout=30,
                )  # fmt: skip
                assert proxy.fired.is_set()
            assert wait_for(lambda: "ended:" in server_log.getvalue()), server_log.getvalue()
    log = result.stdout + result.stderr
    successes = log.count("Received Store Response (Success)")
    complete = [p for p in out.iterdir() if not p.name.endswith(".part")]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    assert successes <= len(complete), log
    by_uid = {instance_uid(f): f for f in files}
    for path in complete:
        assert dataset_bytes(path) == dataset_bytes(by_uid[path.name.split(".", 1)[1]])
    if case.all_stored:
        assert result.returncode == 0 and successes == FILES, log
    else:
        assert result.returncode != 0, log


# -- the SCP's disk full ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs folder (mounting needs root: skipped otherwise); unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("driver", DRIVERS)
def test_disk_full(driver: str, small_disk: Path, tmp_path: Path) -> None:
    """A data set the disk cannot hold gets 0xA700, leaves nothing; the association goes on,
    and a store that found the disk full succeeds once space is freed."""
    big = write_sample(tmp_path / "in" / "big.dcm", size=2_000_000, index=800)
    small = write_sample(tmp_path / "in" / "small.dcm", index=801)
    tools = DulTools(driver)
    with (
        nothing_left_behind(),
        tools.server_in_thread("storescp", ["-od", str(small_disk), "0"]) as server,
    ):
        argv = ["-v", "-nh", *TIMEOUTS, HOST, str(server.port)]
        stream = io.StringIO()
        code = tools.storescu_main([*argv, str(big), str(small)], stream=stream)
        log = stream.getvalue()
        assert code == ExitCode.REQUEST_FAILED, log
        assert f"{big}: status 0xA700" in log and f"not stored: {big}\n" in log
        assert f"{small}: status 0x0000" in log  # the partial file's space was freed
        assert [p.name for p in small_disk.iterdir()] == [f"CT.{instance_uid(small)}"]
        assert dataset_bytes(small_disk / f"CT.{instance_uid(small)}") == dataset_bytes(small)
        # Filled to the last byte by another: the store fails, and succeeds once it is freed.
        (small_disk / f"CT.{instance_uid(small)}").unlink()
        filler = small_disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as fp:
            while True:
                fp.write(b"\0" * 4096)
        for expected, status in ((ExitCode.REQUEST_FAILED, "0xA700"), (ExitCode.OK, "0x0000")):
            stream = io.StringIO()
            assert tools.storescu_main([*argv, str(small)], stream=stream) == expected
            assert f"{small}: status {status}" in stream.getvalue(), stream.getvalue()
            if filler.exists():
                assert [p.name for p in small_disk.iterdir()] == ["filler"]  # nothing partial
                filler.unlink()
    assert [p.name for p in small_disk.iterdir()] == [f"CT.{instance_uid(small)}"]
    assert dataset_bytes(small_disk / f"CT.{instance_uid(small)}") == dataset_bytes(small)


# -- a peer killed (SIGKILL) mid-transfer -----------------------------------------------------

#: Slowed from the second command on (DCMTK's data set PDUs are more than one a file), so the
#: kill lands in the middle of the second data set.
SLOW_SECOND_DATASET = Fault(
    Point(P_DATA_TF, nth=2, dataset=False, offset=-1), Action.THROTTLE, rate=4000
)


@pytest.mark.parametrize("driver", DRIVERS)
def test_storescp_killed(driver: str, files: list[Path], tmp_path: Path) -> None:
    """storescp (dul's, in a child process) killed mid data set: storescu on each driver says
    which files were not stored; no file under its final name is incomplete."""
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "examples.storescp", "-od", str(out), str(port)]
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_listening(port)
        with nothing_left_behind(), relay(port, SLOW_SECOND_DATASET) as proxy:
            result: list[tuple[int, str]] = []
            client = threading.Thread(
                target=lambda: result.append(run_storescu(DulTools(driver), proxy.port, files))
            )
            client.start()
            assert proxy.fired.wait(30)
            time.sleep(0.2)  # a few fragments into the second data set
            server.send_signal(signal.SIGKILL)
            client.join(30)
            assert not client.is_alive()
    finally:
        server.kill()
        server.wait()
    code, log = result[0]
    assert code == ExitCode.ASSOCIATION_ABORTED, log
    assert f"not stored: {files[1]}\n" in log
    stored = reported_stored(log, files)
    complete = [p for p in out.iterdir() if not p.name.endswith(".part")]
    assert len(complete) == len(stored)  # the killed SCP may leave a hidden .part, no more
    check_outcome(code, log, files, out, dul_scp=False)


@pytest.mark.parametrize("driver", DRIVERS)
def test_storescu_killed(driver: str, dcmtk: Dcmtk, files: list[Path], tmp_path: Path) -> None:
    """DCMTK's storescu killed mid data set: storescp on each driver keeps no partial file.

    What the killed process had written the kernel still delivers (loopback buffers hold MB):
    a data set complete by then may be stored, whole; nothing else may stay.
    """
    files[1] = write_sample(tmp_path / "in" / "big.dcm", size=1_000_000, index=799)
    out = tmp_path / "out"
    out.mkdir()
    server_log = io.StringIO()
    slow = Fault(SLOW_SECOND_DATASET.point, Action.THROTTLE, rate=1_000_000)
    with (
        nothing_left_behind(),
        DulTools(driver).server_in_thread(
            "storescp", ["-v", "-od", str(out), "0"], server_log
        ) as srv,
        relay(srv.port, slow) as proxy,
    ):
        command = [dcmtk.tool("storescu"), HOST, str(proxy.port), *map(str, files)]
        client = subprocess.Popen(command, env=dcmtk.env, stdout=subprocess.DEVNULL)
        try:
            assert proxy.fired.wait(30)
            time.sleep(0.2)
            client.send_signal(signal.SIGKILL)
        finally:
            client.wait(30)
        assert wait_for(lambda: "ended:" in server_log.getvalue()), server_log.getvalue()
    on_disk = {p.name: p for p in out.iterdir()}
    by_name = {f"CT.{instance_uid(f)}": f for f in files}
    assert f"CT.{instance_uid(files[0])}" in on_disk
    assert set(on_disk) <= set(by_name), sorted(on_disk)  # no .part either
    for name, path in on_disk.items():
        assert dataset_bytes(path) == dataset_bytes(by_name[name])
