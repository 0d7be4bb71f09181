"""Run every benchmark module and print one table: dul beside pynetdicom, DCMTK and the limit.

    python -m benchmarks.run [--quick | --smoke] [--json out.json] [--markdown out.md]
                             [--only codec,pair,...] [--clock wall|cpu]

``--quick`` finishes in under two minutes (CI runs it, reporting, never asserting a time);
``--smoke`` uses tiny sizes and only proves that everything still runs (its numbers mean
nothing). Each module prints its own table as it finishes; the summary at the end puts each
measure on one line, with the peers in their own columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from . import (
    _harness,
    bench_codec,
    bench_dimse,
    bench_load,
    bench_memory,
    bench_network,
    bench_pair,
    bench_part10,
    bench_storage,
)
from ._harness import MIN_REPEAT, Row, Stats, environment, print_table

__all__ = ["BENCHMARKS", "Line", "machine", "main", "print_summary", "summarize"]

#: The modules, in the order they run: in-process first, then over loopback.
MODULES: dict[str, ModuleType] = {
    "codec": bench_codec,
    "pair": bench_pair,
    "part10": bench_part10,
    "dimse": bench_dimse,
    "network": bench_network,
    "storage": bench_storage,
    "load": bench_load,
    "memory": bench_memory,
}
BENCHMARKS: dict[str, Callable[[str], list[Row]]] = {
    name: module.run for name, module in MODULES.items()
}
#: Which processes ``--clock cpu`` counts, by group: the in-process modules time this process
#: alone; the loopback ones count every process involved; memory is not timed.
CLOCK_SCOPE = {
    "network": "all processes",
    "storage": "all processes",
    "load": "all processes",
    "memory": None,
}


def machine() -> dict[str, Any]:
    """The CPU model, cores and load average: what a reader needs to weigh the numbers."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def clock_of(group: str, clock: str) -> str:
    """What timed a group's rows: "wall", "CPU (this process)", "CPU (all processes)", "-"."""
    scope = CLOCK_SCOPE.get(group, "this process")
    if scope is None:
        return "-"
    return "wall" if clock == "wall" else f"CPU ({scope})"


# -- the summary --------------------------------------------------------------------------------


class Line:
    """One measure of the summary: dul, and the peers sorted into the pynetdicom/DCMTK columns."""

    def __init__(self, row: Row) -> None:
        self.group = row.group
        self.measure = row.measure
        self.unit = row.unit
        self.dul = row.dul
        self.limit = row.limit
        self.limit_name = row.limit_name
        self.peers: dict[str, tuple[str, Stats]] = {}

    def column(self, row: Row) -> str | None:
        """The column ``row``'s peer goes in, or None if this line cannot take it."""
        if row.peer is None:
            return "" if not self.peers else None
        column = "DCMTK" if row.peer_name.startswith("DCMTK") else "pynetdicom"
        return None if column in self.peers else column


def summarize(rows: Iterable[Row]) -> list[Line]:
    """Merge the rows that share a measure and dul's numbers into lines, peers in columns.

    A measure with two peers of one kind (DCMTK storescp, DCMTK storescp +B) takes a second line.
    """
    lines: list[Line] = []
    for row in rows:
        target = None
        for line in reversed(lines):
            if (line.group, line.measure, line.unit) != (row.group, row.measure, row.unit):
                break
            if line.dul == row.dul and line.column(row) is not None:
                target = line
                break
        if target is None:
            target = Line(row)
            lines.append(target)
        column = target.column(row)
        if row.peer is not None and column:
            target.peers[column] = (row.peer_name, row.peer)
        if target.limit is None and row.limit is not None:
            target.limit, target.limit_name = row.limit, row.limit_name
    return lines


def _number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _cell(stats: Stats | None) -> str:
    if stats is None:
        return "-"
    return f"{_number(stats.median)} ({_number(stats.min)}-{_number(stats.max)})"


def _ratio(ours: Stats, theirs: Stats | None) -> str:
    return "-" if theirs is None or not theirs.median else f"{ours.median / theirs.median:.2f}"


def summary_table(lines: Sequence[Line], clock: str) -> tuple[list[list[str]], list[str]]:
    """The summary's cells (header first) and its notes: what each peer and limit ran."""
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    header = [
        "measure",
        "unit",
        "clock",
        "dul",
        "pynetdicom 3.x",
        "DCMTK",
        "dul/pynetdicom",
        "dul/DCMTK",
        "limit",
        "dul/limit",
    ]
    cells = [header]
    for line in lines:
        peer_cells = []
        for column in ("pynetdicom", "DCMTK"):
            name, stats = line.peers.get(column, ("", None))
            text = _cell(stats)
            if stats is not None and name != column:
                text += f" {note(name)}"
            peer_cells.append(text)
        limit = _cell(line.limit)
        if line.limit is not None:
            limit += f" {note(line.limit_name)}"
        cells.append(
            [
                line.measure,
                line.unit,
                clock_of(line.group, clock),
                _cell(line.dul),
                *peer_cells,
                _ratio(line.dul, line.peers.get("pynetdicom", ("", None))[1]),
                _ratio(line.dul, line.peers.get("DCMTK", ("", None))[1]),
                limit,
                _ratio(line.dul, line.limit),
            ]
        )
    return cells, notes


def print_summary(
    rows: Sequence[Row], clock: str, file: TextIO | None = None, *, markdown: bool = False
) -> None:
    """Print the summary: one line per measure, aligned text or a Markdown table."""
    out = file or sys.stdout
    cells, notes = summary_table(summarize(rows), clock)
    if markdown:
        print("| " + " | ".join(cells[0]) + " |", file=out)
        print("|" + "|".join(" --- " for _ in cells[0]) + "|", file=out)
        for line in cells[1:]:
            print("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |", file=out)
        print(file=out)
        for i, text in enumerate(notes, 1):
            print(f"[{i}] {text}  ", file=out)
        return
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    numeric = {6, 7, 9}
    for n, line in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(w) if i in numeric else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip(),
            file=out,
        )
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for i, text in enumerate(notes, 1):
        print(f"[{i}] {text}", file=out)


def _json(path: str, rows: Sequence[Row], mode: str, clock: str, extra: dict[str, Any]) -> None:
    document = {
        "mode": mode,
        "environment": {**environment(), **extra},
        "rows": [
            {
                **asdict(row),
                "ratio": row.ratio,
                "of_limit": row.of_limit,
                "clock": clock_of(row.group, clock),
            }
            for row in rows
        ],
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmarks the arguments ask for; return their rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, under two minutes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: only proves it runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the summary as Markdown")
    parser.add_argument(
        "--clock",
        choices=sorted(_harness.CLOCKS),
        default="wall",
        help="wall: perf_counter (default); cpu: CPU time (of this process in-process, of every "
        "process involved over loopback), for a loaded machine",
    )
    parser.add_argument(
        "--only", metavar="NAMES", help=f"comma-separated subset of {','.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    _harness.clock_name = args.clock
    env = environment()
    before = machine()
    print(
        f"dul {env['dul']}, pynetdicom {env['pynetdicom'] or '(not installed)'}, "
        f"{before['python']} on {env['system']} {env['machine']}, {before['cpu_model']}, "
        f"{before['cores']} CPUs, load average {_load(before)}; commit {env['commit']}; "
        f"mode {mode}, {args.clock} clock.\n"
        f"Rates: median (min-max) of {MIN_REPEAT} or more repeats after a warm-up; higher is "
        "better, except peak RSS. DCMTK runs with TCP_NODELAY=1; pynetdicom as shipped."
    )
    rows: list[Row] = []
    started = time.perf_counter()
    for name in names:
        begun = time.perf_counter()
        found = BENCHMARKS[name](mode)
        print(f"\n## {name} ({time.perf_counter() - begun:.1f} s)\n")
        print_table(found)
        sys.stdout.flush()
        rows.extend(found)
    after = machine()
    print(
        f"\n## summary ({time.perf_counter() - started:.0f} s; load average at the end "
        f"{_load(after)})\n"
    )
    print_summary(rows, args.clock)
    extra = {"machine": before, "load_average_end": after["load_average"]}
    if args.json:
        _json(args.json, rows, mode, args.clock, extra)
    if args.markdown:
        with open(args.markdown, "w") as out:
            print_summary(rows, args.clock, out, markdown=True)
    return rows


def _load(info: dict[str, Any]) -> str:
    load = info["load_average"]
    return "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
