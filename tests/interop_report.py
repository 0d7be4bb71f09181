"""The interoperability report: each interop cell's result, recorded during a test run, as a table.

A *cell* is one test of ``tests/test_interop_*.py``: one pair of peers (dul, DCMTK, pynetdicom,
Orthanc), one service, one variant (transfer syntax, maximum PDU length), on one of dul's drivers
(sockets, trio, asyncio: the cell's ``driver``, also in its name). While the tests run, a
:class:`CellRecorder` (a pytest plugin object registered by a fixture of each module, so no
conftest is needed) writes every result so far to a JSON file: ``$DUL_INTEROP_REPORT`` if set,
else ``.pytest_cache/d/dul-interop/cells.json``. Then::

    python tests/interop_report.py             # write docs/interop.md from the last run
    python tests/interop_report.py --summary   # cells run, passed, failed, skipped; per driver
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from orthanc import orthanc_version

ROOT = Path(__file__).resolve().parent.parent
#: The user property (``item.user_properties``) holding a cell's description.
PROPERTY = "interop_cell"
SCHEMA = 1

__all__ = ["PROPERTY", "CellRecorder", "environment", "main", "report_path", "write_markdown"]


def cell(requestor: str, acceptor: str, service: str, variant: str = "") -> Any:
    """Describe a test as an interop cell (a decorator); each module's ``_describe_cell``
    fixture adds the driver and what its parameters say (syntax, PDU length)."""

    def describe(function: Any) -> Any:
        function.interop_cell = {
            "requestor": requestor,
            "acceptor": acceptor,
            "service": service,
            "variant": variant,
        }
        return function

    return describe


def report_path(config: Any = None) -> Path:
    """Where the results go: ``$DUL_INTEROP_REPORT``, else in pytest's cache directory."""
    explicit = os.environ.get("DUL_INTEROP_REPORT")
    if explicit:
        return Path(explicit)
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("dul-interop")) / "cells.json"
    return ROOT / ".pytest_cache" / "d" / "dul-interop" / "cells.json"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment(dcmtk_storescp: str | None) -> dict[str, str | None]:
    """The versions the results depend on."""
    dcmtk = None
    if dcmtk_storescp is not None:
        out = subprocess.run(
            [dcmtk_storescp, "--version"], capture_output=True, text=True, check=False
        ).stdout
        words = next((line for line in out.splitlines() if "dcmtk" in line.lower()), "").split()
        dcmtk = next((w.lstrip("v") for w in words if w[:1] == "v" and w[1:2].isdigit()), None)
    import dul

    return {
        "dul": dul.__version__,
        "DCMTK": dcmtk,
        "Orthanc": orthanc_version(),
        "pynetdicom": _version("pynetdicom"),
        "pydicom": _version("pydicom"),
        "Python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
    }


class CellRecorder:
    """A pytest plugin object: records the outcome of each test of one module, as it happens.

    The outcome is the call's, or the setup's when setup did not pass (a missing peer: skipped,
    or failed under CI), and "failed" when teardown fails. The file is rewritten after every
    report, so a run cut short still leaves what it did.
    """

    def __init__(self, path: Path, module: str, env: dict[str, str | None]) -> None:
        self.path = path
        self.prefix = f"{module}::"
        self.document: dict[str, Any] = {"schema": SCHEMA, "environment": env, "cells": {}}
        self.write()

    def pytest_runtest_logreport(self, report: Any) -> None:
        """pytest's hook: one report per phase (setup, call, teardown) of each test."""
        if not report.nodeid.startswith(self.prefix):
            return
        cells = self.document["cells"]
        cell = cells.setdefault(
            report.nodeid,
            {"name": report.nodeid[len(self.prefix) :], "outcome": None, "duration": 0.0},
        )
        described = dict(report.user_properties).get(PROPERTY)
        if described:
            cell.update(described)
        cell["duration"] = round(cell["duration"] + report.duration, 3)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            cell["outcome"] = report.outcome
            if getattr(report, "wasxfail", None) is not None and report.skipped:
                cell["outcome"] = "xfailed"  # xfail(strict=True): known, and said why
                cell["reason"] = report.wasxfail
        elif report.when == "teardown" and report.failed:
            cell["outcome"] = "failed"
        self.write()

    def write(self) -> None:
        """Write the results so far (atomically: a reader never sees half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".part")
        partial.write_text(json.dumps(self.document, indent=1) + "\n")
        os.replace(partial, self.path)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _counts(cells: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
    for cell in cells.values():
        outcome = cell.get("outcome") or "failed"  # started, never finished: not a pass
        counts[outcome if outcome in counts else "failed"] += 1
    return counts


def _by_driver(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The cells of each driver, drivers in the order their first cell ran."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key, cell in cells.items():
        groups.setdefault(cell.get("driver") or "", {})[key] = cell
    return groups


def _count_line(counts: dict[str, int]) -> str:
    ran = counts["passed"] + counts["failed"] + counts["xfailed"]
    xfailed = f", {counts['xfailed']} expected to fail" if counts["xfailed"] else ""
    return (
        f"{ran} ran, {counts['passed']} passed, {counts['failed']} failed{xfailed}, "
        f"{counts['skipped']} skipped"
    )


def summary(document: dict[str, Any]) -> str:
    """How many cells ran, passed, failed, were skipped: in all, then a line per driver."""
    cells = document["cells"]
    lines = [f"interop cells: {_count_line(_counts(cells))}"]
    for driver, group in _by_driver(cells).items():
        if driver:
            lines.append(f"  {driver} driver: {_count_line(_counts(group))}")
    return "\n".join(lines)


_MARKS = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "skipped": "⏭ skipped",
    "xfailed": "⚠️ expected to fail",
}


def write_markdown(document: dict[str, Any], out: Path) -> None:
    """Write the table of cells as a Markdown page for the docs."""
    env = document["environment"]
    peers = ", ".join(f"{name} {value}" for name, value in env.items() if value)
    lines = [
        "# Interoperability",
        "",
        "Generated by `python tests/interop_report.py` from the last run of the interop tests",
        "(`tests/test_interop_storage.py`, `tests/test_interop_qr.py`,",
        "`tests/test_interop_orthanc.py`); do not edit by hand.",
        "",
        f"Versions: {peers}.",
        "",
        "The cells run on each of dul's drivers: blocking sockets, trio and asyncio. The tools",
        "and the core are the same on all three. The sockets driver runs the whole C-STORE",
        "matrix (four transfer syntaxes, three or four maximum PDU lengths); trio and asyncio",
        "run a corner of it, in each direction and with each peer: a 1.5 MB implicit VR data",
        "set streamed from disk and an 18 KB deflated one sent whole, each at the smallest and",
        "the largest PDU length. Every other cell (echo, rejection, aborts, TLS) runs on all",
        "three.",
        "",
        "Each cell is one test over loopback TCP between two real peers, started for the test",
        "and stopped by PID (the pynetdicom peers run in a thread). A cell passes on the peer's",
        "own evidence: the file DCMTK or pynetdicom stored holds the bytes dul sent, bit for bit,",
        "and the file dul stored holds the bytes they sent (and `dcmdump` reads it); statuses",
        "and exit codes are the expected ones; rejections carry the right source and reason;",
        "an abort is seen as one by the other side. *Max PDU* is the maximum length both sides",
        "announced (PS3.8 Annex D.1).",
        "",
        "Orthanc runs as a child process with a configuration the tests write; its evidence is",
        "its REST API: the file it stored (`/instances/{id}/file`, the data set after the meta",
        "group; a deflated one compared inflated, as Orthanc deflates again), what it finds",
        "(`/tools/find`), and the answers of its own SCU driven through `/modalities/{id}/...`.",
        "A cell *expected to fail* is a known gap with its issue, checked to still fail",
        "(`xfail(strict=True)`): it turns into a failure the day it passes.",
        "",
        f"Interop cells: {_count_line(_counts(document['cells']))}.",
    ]
    for driver, group in _by_driver(document["cells"]).items():
        title = f"{driver} driver" if driver else "Cells without a driver"
        lines += [
            "",
            f"## {title[:1].upper()}{title[1:]}",
            "",
            f"{_count_line(_counts(group)).capitalize()}.",
            "",
            "| Requestor (SCU) | Acceptor (SCP) | Service | Variant | Result |",
            "| --- | --- | --- | --- | --- |",
        ]
        for cell in group.values():
            outcome = cell.get("outcome") or "failed"
            mark = _MARKS.get(outcome, outcome)
            if cell.get("reason"):
                mark += f": {cell['reason']}"
            lines.append(
                f"| {cell.get('requestor', '?')} | {cell.get('acceptor', '?')} | "
                f"{cell.get('service', cell['name'])} | {cell.get('variant', '')} | "
                f"{mark} |"
            )
    out.write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary or write the page; 1 when the report is missing or a cell failed."""
    parser = argparse.ArgumentParser(
        prog="python tests/interop_report.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", type=Path, default=None, help="the results (default: see top)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "interop.md", help="the page to write"
    )
    parser.add_argument("--summary", action="store_true", help="only print the summary line")
    args = parser.parse_args(argv)
    path = args.json or report_path()
    if not path.is_file():
        print(f"no interop results at {path}: run tests/test_interop_storage.py first")
        return 1
    document = _load(path)
    if args.summary:
        print(summary(document))
    else:
        write_markdown(document, args.out)
        print(f"{summary(document)}\nwrote {args.out}")
    return 1 if _counts(document["cells"])["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
