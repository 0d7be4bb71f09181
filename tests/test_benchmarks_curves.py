"""benchmarks.curves still runs and draws: tiny sweeps of dul alone; the numbers are not checked."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a package at the top of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks import curves  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("performance-size.png", "performance-rss.png", "performance-concurrency.png")


def _sane(stats: dict[str, object]) -> None:
    rates = stats["rates"]
    assert isinstance(rates, list) and len(rates) >= 5 and all(r > 0 for r in rates)
    assert stats["min"] <= stats["median"] <= stats["max"]  # type: ignore[operator]


def test_smoke_sweeps_write_every_point_and_draw(tmp_path: Path) -> None:
    data = curves.main(["--smoke", "--stacks", "dul", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "performance-curves.json").read_text())
    assert written["mode"] == data["mode"] == "smoke"
    (point,) = written["sizes"]
    assert (point["size"], point["count"], list(point["stacks"])) == (10_000, 2, ["dul"])
    dul = point["stacks"]["dul"]
    for key in ("mbps", "files_per_s", "scu_rss", "scp_rss"):
        _sane(dul[key])
    assert 5 < dul["scu_rss"]["median"] < 500  # MB: an interpreter, not a page or a leak
    assert [p["associations"] for p in written["concurrency"]] == curves.CONCURRENCY["smoke"]
    for p in written["concurrency"]:
        assert {"dul sockets", "dul trio", "dul asyncio"} <= set(p["servers"])
        assert not any(name.startswith(("DCMTK", "pynetdicom")) for name in p["servers"])
        for value in p["servers"].values():
            _sane(value["files_per_s"])
    drawn = importlib.util.find_spec("matplotlib") is not None  # without it: the numbers only
    for name in PLOTS:
        assert (
            (tmp_path / name).read_bytes()[:8] == PNG if drawn else not (tmp_path / name).exists()
        )


def test_draw_again_from_the_numbers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="scripts/test.sh installs the bench extra")

    def stats(median: float) -> dict[str, object]:
        return {"median": median, "min": median / 2, "max": median * 2, "rates": [median] * 5}

    point = {"mbps": stats(10), "files_per_s": stats(1), "scu_rss": stats(30), "scp_rss": stats(3)}
    data = {
        "caption": "synthetic",
        "sizes": [
            {"size": s, "count": 1, "stacks": {"dul": point, "dcmtk": point}} for s in (1, 9)
        ],
        "concurrency": [
            {"associations": n, "files": 5, "servers": {"dul trio": {"files_per_s": stats(n)}}}
            for n in (1, 10)
        ]
        + [{"associations": 100, "files": 5, "servers": {"dul trio": {"error": "too slow"}}}],
    }
    source = tmp_path / "numbers.json"
    source.write_text(json.dumps(data))
    curves.main(["--from-json", str(source), "--out", str(tmp_path / "plots")])
    for name in PLOTS:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG
