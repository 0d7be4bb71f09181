"""Run every benchmark module and print one table per module.

    python -m benchmarks.run [--quick | --smoke] [--json out.json] [--only codec,pair]
                             [--clock wall|cpu]

``--quick`` finishes in well under a minute; ``--smoke`` uses tiny sizes and only proves that
everything still runs (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from . import _harness, bench_codec, bench_pair
from ._harness import MIN_REPEAT, Row, environment, print_table, write_json

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS: dict[str, Callable[[str], list[Row]]] = {
    "codec": bench_codec.run,
    "pair": bench_pair.run,
}


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmarks the arguments ask for; return their rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, well under a minute")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: only proves it runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--clock",
        choices=sorted(_harness.CLOCKS),
        default="wall",
        help="wall: perf_counter (default); cpu: this process's CPU time, for a loaded machine",
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
    print(
        f"dul {env['dul']}, pynetdicom {env['pynetdicom'] or '(not installed)'}, "
        f"{env['implementation']} {env['python']} on {env['system']} {env['machine']}, "
        f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; commit {env['commit']}; "
        f"mode {mode}, {env['clock']} clock.\n"
        f"Rates: median (min-max) of {MIN_REPEAT} or more repeats; higher is better."
    )
    rows: list[Row] = []
    for name in names:
        started = time.perf_counter()
        found = BENCHMARKS[name](mode)
        print(f"\n## {name} ({time.perf_counter() - started:.1f} s)\n")
        print_table(found)
        sys.stdout.flush()
        rows.extend(found)
    if args.json:
        write_json(args.json, rows, mode)
    return rows


if __name__ == "__main__":
    main()
