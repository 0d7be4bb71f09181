"""Peak memory: a storescp receiving one large data set, a storescu sending one.

Each run starts the process measured under GNU time (``/usr/bin/time -f %M``), lets it do its one
transfer over loopback, stops it (by its PID) and reads its peak resident set size as the kernel
reports it (``ru_maxrss``): that process's own high-water mark, interpreter and imports included.

* **storescp**, receiving one data set of 200 MB (``--quick``: 50 MB) and writing it to a file:
  dul's (blocking sockets), DCMTK's as shipped (it builds the data set in memory) and with
  ``+B`` (bit-preserving: written as it arrives), pynetdicom's ``python -m pynetdicom storescp``
  (as shipped: the data set in memory). The sender is DCMTK's storescu for all of them
  (``TCP_NODELAY=1``).
* **storescu**, sending the same file: dul's (it reads the meta group with :mod:`dul.part10`
  and imports no pydicom), DCMTK's, pynetdicom's (it reads the file with pydicom). The receiver
  is DCMTK's ``storescp --ignore``.
* The same tools started and stopped with no association (storescp stopped by SIGTERM,
  storescu asked for ``--help``, pynetdicom's in full runs only): what the interpreter and
  imports cost before any data.

Values are MB (10**6 bytes) of peak RSS, median (min-max) of 5 runs: lower is better, and a
``dul/peer`` ratio below 1 means dul uses less. Only one transfer per process, so the page cache
(the file written, the file read) is not counted: it is the kernel's, not the process's.

    python -m benchmarks.bench_memory [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ._harness import MIN_REPEAT, Row, Stats, environment, print_table
from .bench_storage import HOST, _env, _free_port, _stop, _wait_listening, find_dcmtk, stats

__all__ = ["SIZES", "UNIT", "main", "peak_rss", "run"]

MB = 1e6
#: Data set bytes by mode.
SIZES = {"full": 200_000_000, "quick": 50_000_000, "smoke": 2_000_000}
UNIT = "MB peak RSS (lower is better)"


#: GNU time: it forks the process measured from itself, a small process, and reports that
#: child's own peak RSS. (Measured from here, a child's ``ru_maxrss`` would start at this
#: process's size: Linux carries the high-water mark of the memory a child is spawned with over
#: ``exec``.)
GNU_TIME = "/usr/bin/time"


class _Measured:
    """A command run under GNU time, which writes its peak RSS (KiB) to a file at the end."""

    def __init__(self, cmd: list[str], report: Path) -> None:
        self.report = report
        self.log = report.with_suffix(".log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [GNU_TIME, "-f", "%M", "-o", str(report), *cmd],
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def child(self) -> int | None:
        """The PID of the command (GNU time's one child), or None once it has ended."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def terminate(self) -> None:
        """SIGTERM to the command, by its PID (GNU time would not pass it on)."""
        pid = self.child()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def finish(self, timeout: float) -> float:
        """Wait for the end; the command's peak RSS in MB. It must have exited 0 (or on SIGTERM)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pid = self.child()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{self.proc.args[5:8]} did not finish in {timeout} s") from None
        lines = self.report.read_text().split()
        if code not in (0, 128 + signal.SIGTERM) or not lines:
            output = self.log.read_text(errors="replace")[-1000:]
            raise RuntimeError(f"{self.proc.args[5:8]} exited with {code}: {output}")
        return int(lines[-1]) * 1024 / MB


def peak_rss(cmd: list[str], report: Path, timeout: float = 600) -> float:
    """Run ``cmd`` to completion; its peak RSS in MB."""
    return _Measured(cmd, report).finish(timeout)


def scp_peak_rss(
    cmd: list[str], send: Callable[[int], None] | None, out: Path, report: Path
) -> float:
    """Start the server ``cmd`` (port appended), ``send(port)``, stop it by its PID; its peak RSS.

    ``out`` is emptied first (and checked for a file afterwards when something was sent).
    """
    port = _free_port()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    server = _Measured([*cmd, str(port)], report)
    try:
        _wait_listening(port, server.proc)
        if send is not None:
            send(port)
        else:
            # Let the server take in the probe connection of _wait_listening before SIGTERM:
            # examples.sockets.driver.Server.shutdown fails on an association thread created
            # but not yet started ("cannot join thread before it is started").
            time.sleep(0.5)
    finally:
        server.terminate()
        rss = server.finish(60)
    if send is not None and not any(f.stat().st_size for f in out.iterdir()):
        raise RuntimeError(f"{cmd[:3]} wrote nothing")
    shutil.rmtree(out, ignore_errors=True)
    return rss


def _measure(cases: Sequence[Callable[[], float]], *, warmup: bool) -> list[Stats]:
    """Peak RSS of each case, ``MIN_REPEAT`` times, interleaved (after one warm-up round)."""
    if warmup:
        for case in cases:
            case()
    values: list[list[float]] = [[] for _ in cases]
    for _ in range(MIN_REPEAT):
        for case, found in zip(cases, values, strict=True):
            found.append(case())
    return [stats(v) for v in values]


@contextlib.contextmanager
def _receiver(cmd: list[str]) -> Iterator[int]:
    """A server discarding what it receives, for the storescu rows; its port."""
    port = _free_port()
    proc = subprocess.Popen(
        [*cmd, str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        _stop(proc)


def _row(what: str, dul: Stats, peers: Sequence[tuple[str, Stats]]) -> list[Row]:
    if not peers:
        return [Row(group="memory", measure=what, unit=UNIT, dul=dul)]
    return [
        Row(group="memory", measure=what, unit=UNIT, dul=dul, peer=value, peer_name=name)
        for name, value in peers
    ]


def run(mode: str) -> list[Row]:
    """Peak RSS rows: storescp receiving, storescu sending, and idle start-up."""
    from examples.apps.storage import read_dicom_file
    from examples.tools.sample_files import write_sample

    if not os.access(GNU_TIME, os.X_OK):
        print(f"bench_memory: {GNU_TIME} (GNU time) is missing: no memory rows", file=sys.stderr)
        return []
    dcmtk = find_dcmtk()
    size = SIZES[mode]
    warmup = mode == "full"
    python = [sys.executable, "-m"]
    with tempfile.TemporaryDirectory(prefix="dul-bench-memory-") as tmp:
        work = Path(tmp)
        path = write_sample(work / "in" / "big.dcm", size=size, index=1)
        length = read_dicom_file(path).length
        label = f"{length / MB:.0f} MB" if length >= 10 * MB else f"{length / MB:.1f} MB"
        out = work / "out"
        report = work / "rss.txt"

        dul_scu = [*python, "examples.storescu", "-q"]
        pyn_scu = [*python, "pynetdicom", "storescu", "-q"]
        if dcmtk is not None:
            sender = [str(dcmtk / "storescu"), HOST]
            sender_name = "DCMTK storescu"
        else:
            sender = [*dul_scu, HOST]
            sender_name = "dul storescu"

        def send(port: int) -> None:
            result = subprocess.run(
                [*sender, str(port), str(path)], env=_env(), capture_output=True, timeout=600
            )
            if result.returncode != 0:
                raise RuntimeError(f"{sender_name} failed: {result.stderr[-300:]!r}")

        dul_scp = [*python, "examples.storescp", "-q", "-od", str(out)]
        pyn_scp = [*python, "pynetdicom", "storescp", "-q", "-ba", HOST, "-od", str(out)]
        scps: list[tuple[str, list[str]]] = [("pynetdicom storescp", pyn_scp)]
        if dcmtk is not None:
            scps.append(("DCMTK storescp", [str(dcmtk / "storescp"), "-od", str(out)]))
            scps.append(("DCMTK storescp +B", [str(dcmtk / "storescp"), "+B", "-od", str(out)]))
        rows: list[Row] = []

        # Receiving and writing one data set.
        measured = _measure(
            [
                lambda cmd=cmd: scp_peak_rss(cmd, send, out, report)  # type: ignore[misc]
                for cmd in [dul_scp, *(cmd for _, cmd in scps)]
            ],
            warmup=warmup,
        )
        rows += _row(
            f"storescp receiving one {label} data set and writing it (sent by {sender_name})",
            measured[0],
            [(name, value) for (name, _), value in zip(scps, measured[1:], strict=True)],
        )

        # Sending one file.
        receiver = (
            [str(dcmtk / "storescp"), "--ignore"]
            if dcmtk is not None
            else [*python, "examples.storescp", "-q", "--ignore"]
        )
        with _receiver(receiver) as port:
            target = [HOST, str(port), str(path)]
            scus: list[tuple[str, list[str]]] = [("pynetdicom storescu", [*pyn_scu, *target])]
            if dcmtk is not None:
                scus.append(("DCMTK storescu", [str(dcmtk / "storescu"), *target]))
            measured = _measure(
                [
                    lambda cmd=cmd: peak_rss(cmd, report)  # type: ignore[misc]
                    for cmd in [[*dul_scu, *target], *(cmd for _, cmd in scus)]
                ],
                warmup=warmup,
            )
        rows += _row(
            f"storescu sending one {label} file",
            measured[0],
            [(name, value) for (name, _), value in zip(scus, measured[1:], strict=True)],
        )

        # Start-up only: the floor under both.
        idle_scps = [
            (name, cmd) for name, cmd in scps if name != "DCMTK storescp +B"
        ]  # +B changes nothing when idle
        measured = _measure(
            [
                lambda cmd=cmd: scp_peak_rss(cmd, None, out, report)  # type: ignore[misc]
                for cmd in [dul_scp, *(cmd for _, cmd in idle_scps)]
            ],
            warmup=False,
        )
        rows += _row(
            "storescp started and stopped, no association (interpreter and imports)",
            measured[0],
            [(name, value) for (name, _), value in zip(idle_scps, measured[1:], strict=True)],
        )
        # pynetdicom's (it imports pydicom: about 60 MB) in full runs only: --quick stays short.
        idle_scus = [("pynetdicom storescu", [*pyn_scu, "--help"])] if mode == "full" else []
        if dcmtk is not None:
            idle_scus.append(("DCMTK storescu", [str(dcmtk / "storescu"), "--help"]))
        measured = _measure(
            [
                lambda cmd=cmd: peak_rss(cmd, report)  # type: ignore[misc]
                for cmd in [[*dul_scu, "--help"], *(cmd for _, cmd in idle_scus)]
            ],
            warmup=False,
        )
        rows += _row(
            "storescu started with --help, no association (interpreter and imports)",
            measured[0],
            [(name, value) for (name, _), value in zip(idle_scus, measured[1:], strict=True)],
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the memory rows and print them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a 50 MB data set")
    size.add_argument("--smoke", action="store_true", help="a tiny data set: only proves it runs")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    env = environment()
    print(f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; mode {mode}.")
    rows = run(mode)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
