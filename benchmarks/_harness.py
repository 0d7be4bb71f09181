"""The timing harness: repeat a callable, keep rates, print a table and write JSON.

A measurement is a callable doing a known amount of work (``work`` units: PDUs, bytes) per call.
It is called once to warm up, then ``repeat`` times (at least 5) for ``number`` calls each; each
repeat gives a rate, work per second, and we report the median, min and max rate. Higher is
better everywhere. Measurements compared in one row run their repeats interleaved. Garbage
collection is off while timing, as in :mod:`timeit`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "CLOCKS",
    "MIN_REPEAT",
    "MODES",
    "Case",
    "Row",
    "Stats",
    "measure",
    "measure_together",
    "print_table",
    "write_json",
]

#: Never fewer repeats than this: a median of fewer says little on a shared machine.
MIN_REPEAT = 5
#: full: the numbers to quote; quick: well under a minute; smoke: tiny sizes, proves it runs.
MODES = ("full", "quick", "smoke")
#: How time is read: "wall" (``perf_counter``, the default) or "cpu" (``process_time``: user +
#: system time of this process, which a loaded machine disturbs less; it still counts page
#: faults, but not the time other processes hold the CPU).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock_name = "wall"

#: Seconds one repeat should last when ``number`` is calibrated, by mode.
MIN_TIME = {"full": 0.2, "quick": 0.02, "smoke": 0.0}


@dataclass(frozen=True)
class Stats:
    """Rates (work units per second) of the repeats of one measurement."""

    median: float
    min: float
    max: float
    number: int
    rates: tuple[float, ...]


@dataclass(frozen=True)
class Case:
    """A callable doing ``work`` units per call; ``warmup`` (default: ``fn``) runs first, once."""

    fn: Callable[[], object]
    work: float
    number: int | None = None
    warmup: Callable[[], object] | None = None


def measure_together(
    cases: Sequence[Case], *, repeat: int = MIN_REPEAT, min_time: float = 0.2
) -> list[Stats]:
    """Time ``cases`` with their repeats interleaved (a b c a b c ...), and return their rates.

    Load from other processes then falls on every case alike, which keeps their ratios honest on
    a shared machine. A case without ``number`` has its warm-up call timed and ``number`` chosen
    so that one repeat lasts about ``min_time`` seconds.
    """
    if repeat < MIN_REPEAT:
        raise ValueError(f"repeat must be at least {MIN_REPEAT}, not {repeat}")
    clock = CLOCKS[clock_name]
    numbers = []
    for case in cases:
        start = clock()
        (case.warmup or case.fn)()
        once = clock() - start
        number = case.number
        if number is None:
            number = max(1, math.ceil(min_time / once)) if once > 0 else 1
        numbers.append(number)
    rates: list[list[float]] = [[] for _ in cases]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for case, number, case_rates in zip(cases, numbers, rates, strict=True):
                fn = case.fn
                start = clock()
                for _ in range(number):
                    fn()
                elapsed = clock() - start
                case_rates.append(case.work * number / elapsed if elapsed > 0 else math.inf)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [
        Stats(
            median=statistics.median(r),
            min=min(r),
            max=max(r),
            number=number,
            rates=tuple(r),
        )
        for r, number in zip(rates, numbers, strict=True)
    ]


def measure(
    fn: Callable[[], object],
    work: float,
    *,
    number: int | None = None,
    repeat: int = MIN_REPEAT,
    min_time: float = 0.2,
    warmup: Callable[[], object] | None = None,
) -> Stats:
    """Time ``fn``, which does ``work`` units per call, alone (see :func:`measure_together`)."""
    return measure_together([Case(fn, work, number, warmup)], repeat=repeat, min_time=min_time)[0]


@dataclass(frozen=True)
class Row:
    """One line of the table: dul beside its peer and the limit, in the same unit."""

    group: str
    measure: str
    unit: str
    dul: Stats
    peer: Stats | None = None
    limit: Stats | None = None
    peer_name: str = "pynetdicom"
    limit_name: str = ""

    @property
    def ratio(self) -> float | None:
        """dul's median rate over the peer's: above 1, dul is faster."""
        return self.dul.median / self.peer.median if self.peer else None

    @property
    def of_limit(self) -> float | None:
        """dul's median rate as a fraction of the limit's."""
        return self.dul.median / self.limit.median if self.limit else None


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _stats(stats: Stats | None) -> str:
    if stats is None:
        return "-"
    return f"{_number(stats.median)} ({_number(stats.min)}-{_number(stats.max)})"


def _ratio(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def print_table(rows: Sequence[Row], file: TextIO | None = None) -> None:
    """Print ``rows`` as an aligned table: median rate, with (min-max) of the repeats."""
    out = file or sys.stdout
    header = ("measure", "unit", "dul", "peer", "dul/peer", "limit", "dul/limit")
    lines = [
        (
            row.measure,
            row.unit,
            _stats(row.dul),
            f"{row.peer_name}: {_stats(row.peer)}" if row.peer else "-",
            _ratio(row.ratio),
            f"{row.limit_name}: {_stats(row.limit)}" if row.limit else "-",
            _ratio(row.of_limit),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = {4, 6}

    def fmt(cells: Iterable[str]) -> str:
        return "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(fmt(header), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for line in lines:
        print(fmt(line), file=out)


def environment() -> dict[str, Any]:
    """What the numbers depend on: interpreter, machine, library versions."""
    import dul

    try:
        from importlib.metadata import version

        pynetdicom_version: str | None = version("pynetdicom")
    except Exception:  # not installed: the peer columns are empty
        pynetdicom_version = None
    return {
        "commit": _commit(),
        "clock": clock_name,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
        "dul": dul.__version__,
        "pynetdicom": pynetdicom_version,
    }


def _commit() -> str | None:
    """The git commit of the dul being measured, "+dirty" if its files differ; None if unknown."""
    import dul

    package = Path(dul.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=package, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def write_json(path: str | Path, rows: Sequence[Row], mode: str) -> None:
    """Write the rows, with the environment, as JSON for later comparison."""
    document = {
        "mode": mode,
        "environment": environment(),
        "rows": [{**asdict(row), "ratio": row.ratio, "of_limit": row.of_limit} for row in rows],
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
