"""Storage throughput: dul's storescu → storescp beside DCMTK's, over loopback, as users run them.

Two sets of files, 50 x 2 MB and 500 x 10 KB (full mode), sent by each implementation's storescu
(a child process per run: start-up and reading the files included, as a user would run it) to
the same implementation's storescp (one child process for all runs), which writes each data set
to a file, bit-preserving (``+B`` for DCMTK), or discards it (``--ignore``). Both sides of both
implementations announce a maximum PDU length of 131072, DCMTK's largest. The runs of dul and
DCMTK are interleaved, so that load falls on both alike. Rates: MB/s (10**6 bytes of data set)
and files/s, from the same runs; and the cost of a tool's start-up, as echoscu runs per second.
Rows marked "dul SCU in-process" run dul's storescu in the benchmark's own process instead (no
interpreter start-up, no imports): what the library and driver cost, beside DCMTK's processes.

    python -m benchmarks.bench_storage [--quick | --smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ._harness import MIN_REPEAT, Case, Row, Stats, environment, measure_together, print_table
from ._harness import write_json as _write_json

__all__ = ["SETS", "main", "run"]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MAX_PDU = "131072"
MB = 1e6
#: (number of files, data set bytes per file) by mode.
SETS = {
    "full": [(50, 2_000_000), (500, 10_000)],
    "quick": [(10, 2_000_000), (100, 10_000)],
    "smoke": [(3, 200_000), (10, 10_000)],
}


def _env() -> dict[str, str]:
    """Children find dul (src/) and examples/ without an install; DCMTK reads TCP_NODELAY."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["TCP_NODELAY"] = "1"
    return env


def find_dcmtk() -> Path | None:
    """The directory of DCMTK's storescp (pynetdicom's scripts of the same name are skipped)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "storescp"
        if os.access(candidate, os.X_OK):
            out = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, check=False
            )
            if "dcmtk" in out.stdout.lower():
                return candidate.parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def _server(cmd: list[str], port: int) -> Iterator[None]:
    """A storescp child process, stopped by its PID."""
    proc = subprocess.Popen(
        [*cmd, str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _runner(cmd: list[str]) -> Callable[[], None]:
    def run_once() -> None:
        result = subprocess.run(cmd, env=_env(), capture_output=True, timeout=600, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed ({result.returncode}): {result.stderr[-500:]!r}")

    return run_once


def _in_process(argv: list[str]) -> Callable[[], None]:
    """dul's storescu run in this process: no interpreter start-up, no imports."""
    from examples.tools.blocking import storescu_main

    def run_once() -> None:
        log = io.StringIO()
        if storescu_main(argv, stream=log) != 0:
            raise RuntimeError(f"dul storescu failed: {log.getvalue()[-500:]}")

    return run_once


def _scaled(stats: Stats, factor: float) -> Stats:
    return replace(
        stats,
        median=stats.median * factor,
        min=stats.min * factor,
        max=stats.max * factor,
        rates=tuple(r * factor for r in stats.rates),
    )


def _write_files(directory: Path, count: int, size: int) -> int:
    """``count`` CT images of about ``size`` bytes of data set; their total data set bytes."""
    from examples.tools.sample_files import write_sample
    from examples.tools.storage import read_dicom_file

    directory.mkdir(parents=True)
    total = 0
    for i in range(count):
        path = write_sample(directory / f"{i:04}.dcm", size=size, index=1000 + i)
        total += read_dicom_file(path).length
    return total


def run(mode: str) -> list[Row]:
    """Measure both implementations on each set of files, writing and ignoring; the rows."""
    dcmtk = find_dcmtk()
    if dcmtk is None:
        raise SystemExit("bench_storage needs DCMTK's storescp and storescu on PATH")
    python = [sys.executable, "-m"]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dul-bench-storage-") as tmp:
        work = Path(tmp)
        for count, size in SETS[mode]:
            inputs = work / f"in-{count}x{size}"
            total = _write_files(inputs, count, size)
            label = f"{count} x {size / 1e6:g} MB" if size >= MB else f"{count} x {size // 1000} KB"
            for action in ("write", "ignore"):
                out_dul, out_dcmtk = work / "out-dul", work / "out-dcmtk"
                for out in (out_dul, out_dcmtk):
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                dul_scp = [*python, "examples.sockets.storescp", "-pdu", MAX_PDU]
                dcmtk_scp = [str(dcmtk / "storescp"), "-pdu", MAX_PDU]
                if action == "write":
                    dul_scp += ["-od", str(out_dul)]
                    dcmtk_scp += ["+B", "-od", str(out_dcmtk)]
                else:
                    dul_scp.append("--ignore")
                    dcmtk_scp.append("--ignore")
                dul_port, dcmtk_port = _free_port(), _free_port()
                with _server(dul_scp, dul_port), _server(dcmtk_scp, dcmtk_port):
                    dul_scu = [*python, "examples.sockets.storescu", "-pdu", MAX_PDU]
                    dcmtk_scu = [str(dcmtk / "storescu"), "-pdu", MAX_PDU, "+sd", "+r"]
                    dul_args = [HOST, str(dul_port), str(inputs)]
                    cases = [
                        Case(_runner([*dul_scu, *dul_args]), total / MB, 1),
                        Case(_in_process(["-pdu", MAX_PDU, *dul_args]), total / MB, 1),
                        Case(
                            _runner([*dcmtk_scu, HOST, str(dcmtk_port), str(inputs)]), total / MB, 1
                        ),
                    ]
                    ours, in_process, theirs = measure_together(cases, repeat=MIN_REPEAT)
                    if action == "write":
                        stored = len(list(out_dul.iterdir())), len(list(out_dcmtk.iterdir()))
                        if stored != (count, count):
                            raise RuntimeError(f"files stored (dul, DCMTK): {stored}, not {count}")
                for unit, factor in (("MB/s", 1.0), ("files/s", count * MB / total)):
                    for how, stats in (("", ours), (" (dul SCU in-process)", in_process)):
                        rows.append(
                            Row(
                                group="storage",
                                measure=f"storescu → storescp, {label}, {action}{how}",
                                unit=unit,
                                dul=_scaled(stats, factor),
                                peer=_scaled(theirs, factor),
                                peer_name="DCMTK",
                            )
                        )
        # What a run costs before any file: process start-up (and imports), one association.
        port = _free_port()
        with _server([*python, "examples.sockets.echoscp"], port):
            cases = [
                Case(_runner([*python, "examples.sockets.echoscu", HOST, str(port)]), 1, 1),
                Case(_runner([str(dcmtk / "echoscu"), HOST, str(port)]), 1, 1),
            ]
            ours, theirs = measure_together(cases, repeat=MIN_REPEAT)
        rows.append(
            Row(
                group="storage",
                measure="echoscu start-up + C-ECHO (to dul echoscp)",
                unit="runs/s",
                dul=ours,
                peer=theirs,
                peer_name="DCMTK",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the storage benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_storage", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer files")
    size.add_argument("--smoke", action="store_true", help="tiny sets: only proves it runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    env = environment()
    print(
        f"dul {env['dul']}, {env['implementation']} {env['python']} on {env['system']} "
        f"{env['machine']}, {env['cpus']} CPUs, load average {env['load_average']}; mode {mode}.\n"
        f"Rates: median (min-max) of {MIN_REPEAT} runs; higher is better.\n"
    )
    rows = run(mode)
    print_table(rows)
    if args.json:
        _write_json(args.json, rows, mode)
    return rows


if __name__ == "__main__":
    main()
