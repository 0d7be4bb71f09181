"""Part 10 meta read: what a storescu does per file before sending it, dul beside pydicom.

Files/s opening a file and reading its preamble and File Meta Information, learning the SOP
class, instance, transfer syntax and where the data set starts:

* dul: :func:`dul.part10.read_file_meta`;
* pydicom: ``dcmread(path, stop_before_pixels=True)`` (what a pydicom-based tool does: it parses
  the data set up to the pixel data too), and ``pydicom.filereader.read_file_meta_info`` (the
  meta group alone) on a second line.

The file is a CT image of the test set (``examples.tools.sample_files``), about 9 KB, in explicit
VR little endian; both sides read it from the page cache.

    python -m benchmarks.bench_part10 [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from dul import part10

from ._harness import MIN_TIME, Case, Row, environment, measure_together, print_table

__all__ = ["main", "run"]

UNIT = "files/s"


def _dul(path: Path) -> Callable[[], object]:
    def read() -> object:
        with path.open("rb") as fp:
            return part10.read_file_meta(fp).transfer_syntax

    return read


def run(mode: str) -> list[Row]:
    """The meta-read rows (pydicom writes the sample file, and is the peer)."""
    import pydicom
    from examples.tools.sample_files import write_sample
    from pydicom.filereader import read_file_meta_info

    min_time = MIN_TIME[mode]
    with tempfile.TemporaryDirectory(prefix="dul-bench-part10-") as tmp:
        path = write_sample(Path(tmp) / "ct.dcm", index=1)
        ours = _dul(path)
        size = f"{path.stat().st_size / 1000:.1f} KB CT"
        with path.open("rb") as fp:
            meta = part10.read_file_meta(fp)
        theirs = pydicom.dcmread(path, stop_before_pixels=True)
        if meta.media_storage_sop_instance_uid != theirs.file_meta.MediaStorageSOPInstanceUID:
            raise AssertionError("dul and pydicom read different meta groups: not comparable")

        def dcmread() -> object:
            return pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID

        def meta_only() -> object:
            return read_file_meta_info(path).TransferSyntaxUID

        dul_stats, dcmread_stats, meta_stats = measure_together(
            [Case(ours, 1), Case(dcmread, 1), Case(meta_only, 1)], min_time=min_time
        )
    return [
        Row(
            group="part10",
            measure=f"meta read per file ({size}), vs dcmread(stop_before_pixels=True)",
            unit=UNIT,
            dul=dul_stats,
            peer=dcmread_stats,
            peer_name="pydicom dcmread",
        ),
        Row(
            group="part10",
            measure=f"meta read per file ({size}), vs read_file_meta_info",
            unit=UNIT,
            dul=dul_stats,
            peer=meta_stats,
            peer_name="pydicom read_file_meta_info",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the meta-read rows and print them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_part10", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter repeats")
    size.add_argument("--smoke", action="store_true", help="one call per repeat: proves it runs")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    env = environment()
    print(f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; mode {mode}.")
    rows = run(mode)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
