"""Curves: where each stack bends, drawn as PNG plots for docs/performance.md.

    python -m benchmarks.curves [--quick | --smoke] [--out DIR] [--stacks dul,dcmtk,pynetdicom]
    python -m benchmarks.curves --from-json DIR/performance-curves.json   # draw again, no run

Three sweeps, every point the median (min-max) of 5 interleaved repeats after a warm-up, as in
``benchmarks.run``, everything on 127.0.0.1, every server a child process stopped by its PID,
DCMTK with ``TCP_NODELAY=1``:

* **data set size** (10 KB to 200 MB, fewer files as they grow): each storescu run as a process,
  as a user runs it (start-up included), storing the set on one association into its own
  stack's storescp, which writes each file (DCMTK ``+B``: as it arrives), all at a maximum PDU
  of 16 KiB: dul → dul, DCMTK → DCMTK, pynetdicom → pynetdicom (at most ``PYNETDICOM_FILES``
  files per point: it takes about 20 ms a file). MB/s and files/s from the same runs.
* **peak RSS** in the same runs: the storescu's own (under GNU time, as ``bench_memory``), and
  the storescp's over each run (``VmHWM``, reset through ``/proc/PID/clear_refs`` before it).
* **concurrent associations** (1 to 500), each storing ``CONCURRENT_FILES`` data sets of 10 KB,
  from ``bench_load``'s load processes into one storescp per driver (sockets, trio, asyncio; and
  ``--workers N`` when it exists), DCMTK ``storescp --fork`` and a pynetdicom AE, all
  discarding; a server that fails or takes over ``BUDGET`` seconds for a point is not run at
  larger ones (the JSON says why).

Writes ``performance-size.png``, ``performance-rss.png``, ``performance-concurrency.png`` and the
numbers, ``performance-curves.json``, to ``--out`` (default ``docs/_static``). Drawing needs
matplotlib (``pip install -e '.[bench]'``); without it the numbers are still written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _harness, bench_load
from ._harness import MIN_REPEAT, Stats, environment
from .bench_memory import GNU_TIME, _Measured
from .bench_storage import (
    HOST,
    MB,
    ROOT,
    Stopwatch,
    Timed,
    _free_port,
    _server,
    _write_files,
    find_dcmtk,
    interleaved,
    stats,
)
from .run import machine

__all__ = [
    "CONCURRENCY",
    "SIZE_POINTS",
    "STACKS",
    "draw",
    "main",
    "measure_concurrency",
    "measure_sizes",
]

#: (data set bytes, files) per point of the size sweep, by mode.
SIZE_POINTS = {
    "full": [
        (10_000, 1000),
        (100_000, 200),
        (1_000_000, 50),
        (10_000_000, 10),
        (50_000_000, 4),
        (200_000_000, 1),
    ],
    "quick": [(10_000, 200), (1_000_000, 20), (50_000_000, 1)],
    "smoke": [(10_000, 2)],
}
#: Concurrent associations per point of the concurrency sweep, by mode.
CONCURRENCY = {
    "full": [1, 10, 50, 100, 200, 500],
    "quick": [1, 10, 100],
    "smoke": [1, 2],
}
CONCURRENT_FILES = {"full": 5, "quick": 5, "smoke": 2}
#: The most files pynetdicom's storescu sends per point.
PYNETDICOM_FILES = 50
#: Seconds a server's warm-up run of a concurrency point may take before larger points skip it.
BUDGET = 10.0
STACKS = ("dul", "dcmtk", "pynetdicom")
LABELS = {"dul": "dul", "dcmtk": "DCMTK", "pynetdicom": "pynetdicom"}
PDU = "16384"


# -- the size sweep -----------------------------------------------------------------------------


def _peak_rss(pid: int) -> float:
    """The process's peak RSS (``VmHWM``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmHWM for {pid}")


def _reset_peak(pid: int) -> None:
    """Reset the process's peak RSS to its current RSS (Linux: ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class SizeCase:
    """One stack at one point: each call runs its storescu once; keeps both peak RSS figures."""

    def __init__(self, scu: list[str], scp_pid: int, out: Path, files: int, mb: float) -> None:
        self.scu, self.scp_pid, self.out, self.files, self.mb = scu, scp_pid, out, files, mb
        self.scu_rss: list[float] = []
        self.scp_rss: list[float] = []
        self.watch = Stopwatch([scp_pid])

    def __call__(self) -> Timed:
        _reset_peak(self.scp_pid)
        report = self.out.with_name(self.out.name + ".rss")
        started = self.watch.start()
        rss = _Measured(self.scu, report).finish(900)
        timed = self.watch.stop(started, self.mb)
        self.scu_rss.append(rss)
        self.scp_rss.append(_peak_rss(self.scp_pid))
        stored = sum(1 for _ in self.out.iterdir())
        shutil.rmtree(self.out)
        self.out.mkdir()
        if stored < self.files:
            raise RuntimeError(f"{self.scu[:4]}: {stored} of {self.files} files stored")
        return timed


def _commands(stack: str, dcmtk: Path | None, out: Path) -> tuple[list[str], list[str]]:
    """(storescp without its port, storescu without peer and files) of ``stack``."""
    python = [sys.executable, "-m"]
    if stack == "dul":
        return (
            [*python, "examples.storescp", "-q", "-pdu", PDU, "-od", str(out)],
            [*python, "examples.storescu", "-q", "-pdu", PDU],
        )
    if stack == "dcmtk":
        assert dcmtk is not None
        return (
            [str(dcmtk / "storescp"), "+B", "-pdu", PDU, "-od", str(out)],
            [str(dcmtk / "storescu"), "-pdu", PDU, "+sd", "+r"],
        )
    return (
        [*python, "pynetdicom", "storescp", "-q", "-ba", HOST, "-pdu", PDU, "-od", str(out)],
        [*python, "pynetdicom", "storescu", "-q", "-r", "-pdu", PDU],
    )


def _as_dict(value: Stats) -> dict[str, Any]:
    return asdict(value)


def measure_sizes(mode: str, stacks: Sequence[str], dcmtk: Path | None) -> list[dict[str, Any]]:
    """The size sweep: per point, per stack, MB/s, files/s, SCU and SCP peak RSS."""
    points = []
    with tempfile.TemporaryDirectory(prefix="dul-curves-") as tmp:
        work = Path(tmp)
        for size, count in SIZE_POINTS[mode]:
            inputs = work / f"in-{size}"
            total = _write_files(inputs, count, size)
            subset, subset_total = inputs, total
            if "pynetdicom" in stacks and count > PYNETDICOM_FILES:
                subset = work / f"in-{size}-pynetdicom"
                subset.mkdir()
                for path in sorted(inputs.iterdir())[:PYNETDICOM_FILES]:
                    os.link(path, subset / path.name)
                subset_total = total * PYNETDICOM_FILES // count
            cases: dict[str, SizeCase] = {}
            with contextlib.ExitStack() as stack:
                for name in stacks:
                    out = work / f"out-{name}"
                    out.mkdir(exist_ok=True)
                    scp, scu = _commands(name, dcmtk, out)
                    port = _free_port()
                    pid = stack.enter_context(_server(scp, port)).pid
                    files, mb = (
                        (min(count, PYNETDICOM_FILES), subset_total / MB)
                        if name == "pynetdicom"
                        else (count, total / MB)
                    )
                    source = subset if name == "pynetdicom" else inputs
                    cases[name] = SizeCase(
                        [*scu, HOST, str(port), str(source)], pid, out, files, mb
                    )
                measured = interleaved(list(cases.values()))
            point: dict[str, Any] = {"size": size, "count": count, "stacks": {}}
            for (name, case), mbps in zip(cases.items(), measured, strict=True):
                per_file = case.files / case.mb
                point["stacks"][name] = {
                    "files": case.files,
                    "mbps": _as_dict(mbps),
                    "files_per_s": _as_dict(stats([rate * per_file for rate in mbps.rates])),
                    "scu_rss": _as_dict(stats(case.scu_rss[1:])),  # the warm-up left out
                    "scp_rss": _as_dict(stats(case.scp_rss[1:])),
                }
            points.append(point)
            print(f"size {size:>11,} B x {count:>4}: " + _brief(point["stacks"], "mbps", "MB/s"))
            shutil.rmtree(inputs)
            if subset != inputs:
                shutil.rmtree(subset)
    return points


def _brief(found: dict[str, Any], key: str, unit: str) -> str:
    parts = []
    for name, value in found.items():
        if "error" in value:
            parts.append(f"{name} ({value['error'][:60]})")
        else:
            parts.append(f"{name} {value[key]['median']:,.1f}")
    return ", ".join(parts) + f" {unit}"


# -- the concurrency sweep ----------------------------------------------------------------------


def measure_concurrency(
    mode: str, stacks: Sequence[str], dcmtk: Path | None
) -> list[dict[str, Any]]:
    """The concurrency sweep: per point, per server, files/s (or why it was not run)."""
    names = [
        name
        for name in bench_load.servers_offered(dcmtk, pynetdicom="pynetdicom" in stacks)
        if ("dcmtk" in stacks or not name.startswith("DCMTK"))
        and ("dul" in stacks or not name.startswith("dul"))
    ]
    files = CONCURRENT_FILES[mode]
    dropped: dict[str, str] = {}
    points = []
    with (
        bench_load.started(names, dcmtk) as servers,
        bench_load.LoadClients(bench_load.SIZES[mode]["clients"]) as clients,
    ):
        for associations in CONCURRENCY[mode]:
            found: dict[str, Any] = {}
            cases = {}
            for name in names:
                if name in dropped:
                    found[name] = {"error": dropped[name]}
                    continue
                cases[name] = bench_load.LoadCase(clients, *servers[name], associations, files)
            rates: dict[str, list[float]] = {name: [] for name in cases}
            slow: list[str] = []  # measured here, left out of larger points
            for repeat in range(1 + MIN_REPEAT):  # a warm-up round, then the repeats
                for name, case in cases.items():
                    if name in dropped:
                        continue
                    begun = time.perf_counter()
                    try:
                        timed = case()
                    except RuntimeError as exc:
                        dropped[name] = f"failed at {associations} associations: {exc}"[:300]
                        continue
                    if repeat:
                        rates[name].append(timed.rate(_harness.clock_name))
                    elif time.perf_counter() - begun > BUDGET:
                        slow.append(name)
            for name in slow:
                dropped.setdefault(name, f"not run above {associations} associations (too slow)")
            for name in cases:
                if len(rates[name]) == MIN_REPEAT:
                    found[name] = {"files_per_s": _as_dict(stats(rates[name]))}
                else:
                    found[name] = {"error": dropped[name]}
            points.append({"associations": associations, "files": files, "servers": found})
            print(f"{associations:>4} associations: " + _brief(found, "files_per_s", "files/s"))
    return points


# -- drawing ------------------------------------------------------------------------------------


def _series(points: list[dict[str, Any]], x_key: str, group: str, name: str, key: str) -> Any:
    xs, medians, lows, highs = [], [], [], []
    for point in points:
        value = point[group].get(name)
        if not value or key not in value:
            continue
        xs.append(point[x_key])
        medians.append(value[key]["median"])
        lows.append(value[key]["median"] - value[key]["min"])
        highs.append(value[key]["max"] - value[key]["median"])
    return xs, medians, [lows, highs]


def _names(points: list[dict[str, Any]], group: str) -> list[str]:
    names: list[str] = []
    for point in points:
        names += [n for n in point[group] if n not in names]
    return names


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _sizes_axis(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("data set size (bytes, one file)")
    ax.grid(True, which="both", alpha=0.3)


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    """Draw the PNG plots of ``data`` (as :func:`main` writes it) into ``out``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    caption = data.get("caption", "")
    written = []
    sizes = data.get("sizes") or []
    if sizes:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, key, unit in zip(axes, ("mbps", "files_per_s"), ("MB/s", "files/s"), strict=True):
            for name in _names(sizes, "stacks"):
                xs, ys, err = _series(sizes, "size", "stacks", name, key)
                ax.errorbar(
                    xs,
                    ys,
                    yerr=err,
                    marker="o",
                    capsize=3,
                    label=f"{_label(name)} → {_label(name)}",
                )
            _sizes_axis(ax)
            ax.set_ylabel(unit)
        axes[0].set_title("storage throughput (storescu → storescp, written)")
        axes[1].set_title("the same runs, files per second")
        axes[0].legend()
        fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written.append(out / "performance-size.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, key, title in zip(
            axes,
            ("scu_rss", "scp_rss"),
            ("storescu peak RSS (sending the set)", "storescp peak RSS (receiving, writing)"),
            strict=True,
        ):
            for name in _names(sizes, "stacks"):
                xs, ys, err = _series(sizes, "size", "stacks", name, key)
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=_label(name))
            _sizes_axis(ax)
            ax.set_title(title)
        axes[0].set_ylabel("MB (lower is better)")
        axes[0].legend()
        fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written.append(out / "performance-rss.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    concurrency = data.get("concurrency") or []
    if concurrency:
        fig, ax = plt.subplots(figsize=(8, 4.6))
        for name in _names(concurrency, "servers"):
            xs, ys, err = _series(concurrency, "associations", "servers", name, "files_per_s")
            if xs:
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent associations")
        ax.set_ylabel("files/s")
        files = concurrency[0]["files"]
        ax.set_title(f"concurrent associations into one storescp, {files} x 10 KB each, discarded")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written.append(out / "performance-concurrency.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


# -- the command --------------------------------------------------------------------------------


def _caption(env: dict[str, Any], info: dict[str, Any], mode: str) -> str:
    load = info.get("load_average") or []
    return (
        f"dul {env['dul']} ({env['commit']}), {info['cpu_model']}, {info['cores']} CPUs, "
        f"load {load[0] if load else '?':.2f} at the start; {info['python']}; mode {mode}; "
        "median of 5 interleaved repeats, bars min-max"
    )


@contextlib.contextmanager
def _timer(what: str) -> Iterator[None]:
    begun = time.perf_counter()
    yield
    print(f"({what}: {time.perf_counter() - begun:.0f} s)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the sweeps the arguments ask for, write the JSON and draw the plots."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.curves",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer points")
    size.add_argument("--smoke", action="store_true", help="tiny points: only proves it runs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_static", metavar="DIR")
    parser.add_argument("--stacks", default=",".join(STACKS), help="default: %(default)s")
    parser.add_argument(
        "--sweeps", default="sizes,concurrency", help="which sweeps (default: %(default)s)"
    )
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="draw only, from PATH")
    parser.add_argument("--no-draw", action="store_true", help="write the numbers only")
    args = parser.parse_args(argv)
    if args.from_json:
        data: dict[str, Any] = json.loads(args.from_json.read_text())
        for path in draw(data, args.out):
            print(f"wrote {path}")
        return data
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    stacks = [s for s in args.stacks.split(",") if s]
    unknown = set(stacks) - set(STACKS)
    if unknown:
        parser.error(f"unknown stack(s): {', '.join(sorted(unknown))}")
    dcmtk = find_dcmtk()
    if dcmtk is None and "dcmtk" in stacks:
        print("DCMTK's storescp is not on PATH: its curves are left out", file=sys.stderr)
        stacks.remove("dcmtk")
    if not Path(GNU_TIME).exists():
        parser.error(f"the size sweep needs GNU time at {GNU_TIME}")
    env, info = environment(), machine()
    data = {"mode": mode, "environment": env, "machine": info, "caption": _caption(env, info, mode)}
    sweeps = args.sweeps.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    numbers = args.out / "performance-curves.json"
    for sweep, measure in (("sizes", measure_sizes), ("concurrency", measure_concurrency)):
        if sweep in sweeps:
            with _timer(f"{sweep} sweep"):
                data[sweep] = measure(mode, stacks, dcmtk)
            data["load_average_end"] = machine()["load_average"]
            numbers.write_text(json.dumps(data, indent=1) + "\n")  # kept if a later sweep fails
    print(f"wrote {numbers}")
    if args.no_draw:
        return data
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "matplotlib is not installed (pip install -e '.[bench]'): no plots drawn; draw them "
            f"later with: python -m benchmarks.curves --from-json {numbers}",
            file=sys.stderr,
        )
        return data
    for path in draw(data, args.out):
        print(f"wrote {path}")
    return data


if __name__ == "__main__":
    main()
