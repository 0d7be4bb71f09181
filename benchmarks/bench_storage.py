"""Storage over loopback: C-STORE of sets of files on one association, dul beside its peers.

Two sets of files, 50 x 2 MB and 500 x 10 KB (full mode), each sent on one association by a
storescu to a storescp (one child process per configuration, started once, stopped by its PID)
that writes each data set to a file (bit-preserving: ``+B`` for DCMTK) or discards it
(``--ignore``). Maximum PDU lengths: 16384 (the default of both dul's and DCMTK's tools) and
131072, the largest DCMTK allows (both sides announce it). DCMTK's tools run with
``TCP_NODELAY=1``; pynetdicom's ``python -m pynetdicom storescu/storescp`` run as shipped (it
reads each file with pydicom and sends the re-encoded data set).

The cases of one configuration, interleaved:

* dul storescu → dul storescp, the SCU a child process (interpreter start-up and imports
  included, as a user runs it);
* the same SCU run in this process (no start-up): what the library and driver cost;
* that in-process dul storescu → DCMTK storescp;
* DCMTK storescu → DCMTK storescp, the reference;
* pynetdicom storescu → pynetdicom storescp (full mode; a subset of the small files, as it takes
  about 50 ms per file);
* the loopback limit for the MB/s rows: the same bytes between two threads, no protocol.

Rates: MB/s (10**6 bytes of data set) and files/s from the same runs. ``--clock cpu`` counts the
CPU time of every process involved (this one, the SCU child, the SCP), read from the kernel;
the wall clock (default) includes waiting, which a loaded machine inflates.

    python -m benchmarks.bench_storage [--quick | --smoke] [--json PATH] [--clock cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import _harness
from ._harness import MIN_REPEAT, Row, Stats, environment, print_table
from ._harness import write_json as _write_json

__all__ = [
    "CONFIGS",
    "Stopwatch",
    "Timed",
    "find_dcmtk",
    "interleaved",
    "main",
    "run",
]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MB = 1e6
#: The largest maximum PDU length DCMTK's tools accept.
DCMTK_MAX_PDU = 131072


@dataclass(frozen=True)
class Config:
    """One configuration: ``count`` files of ``size`` bytes at ``max_pdu``, written or not."""

    count: int
    size: int
    max_pdu: int
    action: str  # "write" or "ignore"
    pynetdicom_count: int | None = None  # files pynetdicom sends (None: it is not run)


def _configs(
    count: int, size: int, pdus: Sequence[int], actions: Sequence[str], pyn: int | None
) -> list[Config]:
    return [Config(count, size, pdu, action, pyn) for pdu in pdus for action in actions]


#: The configurations by mode.
CONFIGS: dict[str, list[Config]] = {
    "full": [
        *_configs(50, 2_000_000, (16384, DCMTK_MAX_PDU), ("write", "ignore"), 50),
        *_configs(500, 10_000, (16384,), ("write", "ignore"), 100),
    ],
    "quick": [
        *_configs(10, 2_000_000, (16384, DCMTK_MAX_PDU), ("ignore",), None),
        *_configs(100, 10_000, (16384,), ("ignore",), None),
    ],
    "smoke": [Config(3, 10_000, 16384, "write", 3)],
}


# -- processes, shared with bench_network and bench_memory ----------------------------------------


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
            try:
                out = subprocess.run(
                    [candidate, "--version"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "dcmtk" in out.stdout.lower():
                return candidate.parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until ``proc`` accepts connections on ``port`` (and is still running then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                pass
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server {proc.args} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            time.sleep(0.05)  # a server that lost the port to another process exits at once
            if proc.poll() is not None:
                raise RuntimeError(f"server {proc.args} exited with {proc.returncode}")
            return


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child by its PID: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _server(cmd: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server child process listening on ``port`` (appended to ``cmd``), stopped by its PID."""
    proc = subprocess.Popen(
        [*cmd, str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, proc)
        yield proc
    finally:
        _stop(proc)


# -- timing across processes ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads, living and ended) of process ``pid``.

    From ``/proc/PID/stat``: its resolution is one clock tick (10 ms), so a repeat should last
    well over a second for a per-repeat figure to be within a percent or two.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class Stopwatch:
    """Wall time, and CPU time of this process, of its children waited for, and of ``pids``."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = tuple(pids)

    def cpu(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time() + children.ru_utime + children.ru_stime
        return own + sum(_process_cpu(pid) for pid in self.pids)

    def start(self) -> tuple[float, float]:
        return time.perf_counter(), self.cpu()

    def stop(self, started: tuple[float, float], work: float) -> Timed:
        return Timed(work, time.perf_counter() - started[0], self.cpu() - started[1])


@dataclass(frozen=True)
class Timed:
    """What one repeat of a case did: ``work`` units in ``wall`` and ``cpu`` seconds."""

    work: float
    wall: float
    cpu: float

    def rate(self, clock: str) -> float:
        seconds = self.cpu if clock == "cpu" else self.wall
        return self.work / seconds if seconds > 0 else float("inf")


def stats(rates: Sequence[float]) -> Stats:
    """Stats of repeats already measured."""
    return Stats(
        median=statistics.median(rates),
        min=min(rates),
        max=max(rates),
        number=1,
        rates=tuple(rates),
    )


def interleaved(
    cases: Sequence[Callable[[], Timed]], *, repeat: int = MIN_REPEAT, warmup: bool = True
) -> list[Stats]:
    """Warm each case up once, then run ``repeat`` rounds of all of them, interleaved.

    A case times itself (a :class:`Stopwatch`) so that its set-up stays out of the rate; rates
    follow the harness's clock (``--clock``): wall, or the CPU time of every process involved.
    """
    if repeat < MIN_REPEAT:
        raise ValueError(f"repeat must be at least {MIN_REPEAT}, not {repeat}")
    if warmup:
        for case in cases:
            case()
    clock = _harness.clock_name
    rates: list[list[float]] = [[] for _ in cases]
    for _ in range(repeat):
        for case, case_rates in zip(cases, rates, strict=True):
            case_rates.append(case().rate(clock))
    return [stats(r) for r in rates]


def clock_unit(unit: str) -> str:
    """``unit`` as the harness's clock measures it: per CPU-second of all processes, or not."""
    if _harness.clock_name != "cpu":
        return unit
    what, _, per = unit.partition("/")
    return f"{what}/CPU-{per}"


# -- cases ----------------------------------------------------------------------------------------


def _subprocess_case(cmd: list[str], work: float, pids: Sequence[int]) -> Callable[[], Timed]:
    """Run ``cmd`` to completion per repeat; it must exit 0."""
    watch = Stopwatch(pids)

    def case() -> Timed:
        started = watch.start()
        result = subprocess.run(cmd, env=_env(), capture_output=True, timeout=900, check=False)
        timed = watch.stop(started, work)
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed ({result.returncode}): {result.stderr[-500:]!r}")
        return timed

    return case


def _in_process_case(argv: list[str], work: float, pids: Sequence[int]) -> Callable[[], Timed]:
    """dul's storescu (sockets driver) run in this process: no interpreter start-up."""
    from examples.tools.main import main

    watch = Stopwatch(pids)

    def case() -> Timed:
        log = io.StringIO()
        started = watch.start()
        status = main("storescu", argv, stream=log)
        timed = watch.stop(started, work)
        if status != 0:
            raise RuntimeError(f"dul storescu failed: {log.getvalue()[-500:]}")
        return timed

    return case


def _loopback_case(total: int) -> Callable[[], Timed]:
    from .bench_network import loopback_seconds

    watch = Stopwatch()

    def case() -> Timed:
        started = watch.start()
        loopback_seconds(total)
        return watch.stop(started, total / MB)

    return case


def _write_files(directory: Path, count: int, size: int) -> int:
    """``count`` CT images of about ``size`` bytes of data set; their total data set bytes."""
    from examples.apps.storage import read_dicom_file
    from examples.tools.sample_files import write_sample

    directory.mkdir(parents=True)
    total = 0
    for i in range(count):
        path = write_sample(directory / f"{i:04}.dcm", size=size, index=1000 + i)
        total += read_dicom_file(path).length
    return total


def _label(count: int, size: int) -> str:
    return f"{count} x {size / 1e6:g} MB" if size >= MB else f"{count} x {size // 1000} KB"


def _scaled(value: Stats, factor: float) -> Stats:
    return replace(
        value,
        median=value.median * factor,
        min=value.min * factor,
        max=value.max * factor,
        rates=tuple(r * factor for r in value.rates),
    )


def _clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def bench_config(config: Config, inputs: Path, total: int, work: Path, dcmtk: Path) -> list[Row]:
    """The rows of one configuration: MB/s and files/s, dul's cases beside the peers."""
    python = [sys.executable, "-m"]
    pdu = str(config.max_pdu)
    outs = {name: work / f"out-{name}" for name in ("dul", "dcmtk", "pynetdicom")}
    for out in outs.values():
        _clean(out)

    def scp(name: str) -> list[str]:
        write = config.action == "write"
        if name == "dul":
            cmd = [*python, "examples.storescp", "-pdu", pdu]
            return [*cmd, "-od", str(outs["dul"])] if write else [*cmd, "--ignore"]
        if name == "dcmtk":
            cmd = [str(dcmtk / "storescp"), "-pdu", pdu]
            return [*cmd, "+B", "-od", str(outs["dcmtk"])] if write else [*cmd, "--ignore"]
        cmd = [*python, "pynetdicom", "storescp", "-ba", HOST, "-pdu", pdu]
        return [*cmd, "-od", str(outs["pynetdicom"])] if write else [*cmd, "--ignore"]

    names = ["dul", "dcmtk"] + (["pynetdicom"] if config.pynetdicom_count else [])
    ports = {name: _free_port() for name in names}
    pyn_inputs = inputs
    pyn_total = total
    if config.pynetdicom_count and config.pynetdicom_count < config.count:
        pyn_inputs = inputs.with_name(inputs.name + f"-first{config.pynetdicom_count}")
        if not pyn_inputs.exists():
            pyn_inputs.mkdir()
            for path in sorted(inputs.iterdir())[: config.pynetdicom_count]:
                os.link(path, pyn_inputs / path.name)
        pyn_total = total * config.pynetdicom_count // config.count
    with contextlib.ExitStack() as stack:
        pids = {name: stack.enter_context(_server(scp(name), ports[name])).pid for name in names}
        dul_args = ["-pdu", pdu, HOST, str(ports["dul"]), str(inputs)]
        mb = total / MB
        cases = [
            _subprocess_case([*python, "examples.storescu", *dul_args], mb, [pids["dul"]]),
            _in_process_case(dul_args, mb, [pids["dul"]]),
            _in_process_case(
                ["-pdu", pdu, HOST, str(ports["dcmtk"]), str(inputs)], mb, [pids["dcmtk"]]
            ),
            _subprocess_case(
                [
                    str(dcmtk / "storescu"),
                    "-pdu",
                    pdu,
                    "+sd",
                    "+r",
                    HOST,
                    str(ports["dcmtk"]),
                    str(inputs),
                ],
                mb,
                [pids["dcmtk"]],
            ),
            _loopback_case(total),
        ]
        if config.pynetdicom_count:
            cases.append(
                _subprocess_case(
                    [
                        *python,
                        "pynetdicom",
                        "storescu",
                        "-r",
                        "-pdu",
                        pdu,
                        HOST,
                        str(ports["pynetdicom"]),
                        str(pyn_inputs),
                    ],
                    pyn_total / MB,
                    [pids["pynetdicom"]],
                )
            )
        measured = interleaved(cases)
    if config.action == "write":  # every file stored (DCMTK may keep repeats under new names)
        for name in names:
            expected = config.pynetdicom_count if name == "pynetdicom" else config.count
            stored = len(list(outs[name].iterdir()))
            if stored < (expected or 0):
                raise RuntimeError(f"{name} storescp stored {stored} files, not {expected}")
    sub, inproc, to_dcmtk, reference, limit, *rest = measured
    pyn = rest[0] if rest else None
    label = _label(config.count, config.size)
    what = (
        f"C-STORE {label} on one association, max PDU {config.max_pdu >> 10} KiB, {config.action}"
    )
    measures = [
        (f"{what}: dul storescu → dul storescp", sub),
        (f"{what}: dul storescu (in-process) → dul storescp", inproc),
        (f"{what}: dul storescu (in-process) → DCMTK storescp", to_dcmtk),
    ]
    pyn_name = "pynetdicom"
    if pyn is not None and config.pynetdicom_count != config.count:
        pyn_name = f"pynetdicom ({config.pynetdicom_count} of the files)"
    rows = []
    for unit, factor in (("MB/s", 1.0), ("files/s", config.count * MB / total)):
        for name, value in measures:
            for peer, peer_stats in (("DCMTK storescu→storescp", reference), (pyn_name, pyn)):
                if peer_stats is None:
                    continue
                rows.append(
                    Row(
                        group="storage",
                        measure=name,
                        unit=clock_unit(unit),
                        dul=_scaled(value, factor),
                        peer=_scaled(peer_stats, factor),
                        peer_name=peer,
                        limit=limit if unit == "MB/s" else None,
                        limit_name="loopback TCP, 2 threads" if unit == "MB/s" else "",
                    )
                )
    return rows


def run(mode: str) -> list[Row]:
    """Every configuration of ``mode``; the rows."""
    dcmtk = find_dcmtk()
    if dcmtk is None:
        raise SystemExit("bench_storage needs DCMTK's storescp and storescu on PATH")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dul-bench-storage-") as tmp:
        work = Path(tmp)
        totals: dict[tuple[int, int], int] = {}
        for config in CONFIGS[mode]:
            inputs = work / f"in-{config.count}x{config.size}"
            key = (config.count, config.size)
            if key not in totals:
                totals[key] = _write_files(inputs, config.count, config.size)
            rows += bench_config(config, inputs, totals[key], work, dcmtk)
    return [*rows, bench_startup(dcmtk)]


def bench_startup(dcmtk: Path) -> Row:
    """What a tool's run costs before any file: process start-up, imports, one association."""
    python = [sys.executable, "-m"]
    port = _free_port()
    with _server([*python, "examples.echoscp"], port) as server:
        args = [HOST, str(port)]
        ours, theirs = interleaved(
            [
                _subprocess_case([*python, "examples.echoscu", *args], 1, [server.pid]),
                _subprocess_case([str(dcmtk / "echoscu"), *args], 1, [server.pid]),
            ]
        )
    return Row(
        group="storage",
        measure="echoscu run: start-up, one association, C-ECHO (to dul echoscp)",
        unit=clock_unit("runs/s"),
        dul=ours,
        peer=theirs,
        peer_name="DCMTK echoscu",
    )


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the storage benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_storage", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer files")
    size.add_argument("--smoke", action="store_true", help="tiny sets: only proves it runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--clock", choices=sorted(_harness.CLOCKS), default="wall")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    _harness.clock_name = args.clock
    env = environment()
    print(
        f"dul {env['dul']}, {env['implementation']} {env['python']} on {env['system']} "
        f"{env['machine']}, {env['cpus']} CPUs, load average {env['load_average']}; mode {mode}, "
        f"{args.clock} clock.\nRates: median (min-max) of {MIN_REPEAT} runs; higher is better.\n"
    )
    rows = run(mode)
    print_table(rows)
    if args.json:
        _write_json(args.json, rows, mode)
    return rows


if __name__ == "__main__":
    main()
