"""The benchmarks still run: each once, at tiny sizes. Results are checked, times never are."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a package at the top of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_codec, bench_pair, run  # noqa: E402
from benchmarks._harness import (  # noqa: E402
    MIN_REPEAT,
    Case,
    Row,
    Stats,
    measure,
    measure_together,
    print_table,
)


def assert_sane(stats: Stats | None) -> None:
    """Rates from at least MIN_REPEAT repeats, all positive and finite, median between them."""
    assert stats is not None
    assert stats.number >= 1
    assert len(stats.rates) >= MIN_REPEAT
    assert all(math.isfinite(rate) and rate > 0 for rate in stats.rates)
    assert stats.min <= stats.median <= stats.max
    assert (stats.min, stats.max) == (min(stats.rates), max(stats.rates))


def test_measure_warms_up_then_repeats() -> None:
    calls: list[int] = []
    stats = measure(lambda: calls.append(1), 10.0, number=3, min_time=0)
    assert len(calls) == 1 + 3 * MIN_REPEAT
    assert_sane(stats)


def test_measure_calibrates_number_and_uses_the_warmup_callable() -> None:
    warmups: list[int] = []
    calls: list[int] = []
    stats = measure(lambda: calls.append(1), 1.0, warmup=lambda: warmups.append(1), min_time=0)
    assert (len(warmups), stats.number, len(calls)) == (1, 1, MIN_REPEAT)


def test_measure_together_interleaves_the_repeats() -> None:
    log: list[str] = []
    cases = [
        Case(lambda: log.append("a"), 1.0, number=1),
        Case(lambda: log.append("b"), 1.0, number=1),
    ]
    stats = measure_together(cases, min_time=0)
    assert log == ["a", "b"] * (1 + MIN_REPEAT)
    assert len(stats) == 2
    for one in stats:
        assert_sane(one)


def test_measure_refuses_fewer_than_five_repeats() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        measure(lambda: None, 1.0, repeat=MIN_REPEAT - 1)


def test_table_has_one_line_per_row_and_the_ratios() -> None:
    dul = Stats(median=300.0, min=200.0, max=400.0, number=1, rates=(200.0, 300.0, 400.0))
    peer = Stats(median=100.0, min=90.0, max=110.0, number=1, rates=(90.0, 100.0, 110.0))
    rows = [
        Row("g", "m1", "MB/s", dul, peer=peer, limit=dul, limit_name="memcpy"),
        Row("g", "m2", "PDU/s", dul),
    ]
    out = io.StringIO()
    print_table(rows, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "3.00" in lines[2] and "1.00" in lines[2] and "memcpy: 300 (200-400)" in lines[2]
    assert rows[1].ratio is None and lines[3].split()[-1] == "-"


def test_codec_rows_compare_the_same_bytes(pynetdicom: ModuleType) -> None:
    rows = bench_codec.run("smoke")
    assert [row.unit for row in rows] == ["PDU/s"] * 4 + ["MB/s"] * 3
    for row in rows:
        assert_sane(row.dul)
        assert_sane(row.peer)
        if row.unit == "MB/s":
            assert_sane(row.limit)


def test_codec_inputs_are_what_they_claim() -> None:
    request = bench_codec.associate_request(10, 3)
    assert len(request.presentation_contexts) == 10
    assert {len(c.transfer_syntaxes) for c in request.presentation_contexts} == {3}
    for max_length in (16 << 10, 1 << 20):
        event, data = bench_codec.pdata_bytes(max_length)
        assert len(data) == 6 + max_length
        assert data[0] == 0x04 and int.from_bytes(data[2:6], "big") == max_length
        assert bytes(event.values[0].data) == data[12:]


@pytest.mark.parametrize(
    "read_size", [1, 1000, None], ids=["1 B reads", "1000 B reads", "per buffer"]
)
@pytest.mark.parametrize("move", [bench_pair.transfer, bench_pair.limit_transfer])
def test_pair_moves_every_byte(move: object, read_size: int | None) -> None:
    # 8 KiB messages at a 1 KiB maximum length: fragments of 1018 bytes, 9 per message.
    result = move(1024, 32 << 10, message_size=8 << 10, read_size=read_size)  # type: ignore[operator]
    assert result == bench_pair.Transferred(data_bytes=32 << 10, pdvs=4 * 9, messages=4)


def test_pair_rows_fail_when_bytes_go_missing() -> None:
    def short(max_length: int, total: int, **_: object) -> bench_pair.Transferred:
        return bench_pair.Transferred(data_bytes=total - 2, pdvs=9, messages=1)

    with pytest.raises(AssertionError, match="moved"):
        bench_pair._checked(short, 1024, 8 << 10, 8 << 10, None)()


def test_pair_connections_use_the_announced_maximum_length() -> None:
    requestor, acceptor = bench_pair.establish(4096)
    assert requestor.state == acceptor.state == 6  # Sta6: association established
    assert requestor.max_send_length == acceptor.max_receive_length == 4096


def test_profile_names_dul_functions() -> None:
    text = bench_pair.profile(1024, 64 << 10, top=40)
    assert "next_pdu" in text and "_decode_pdata" in text


def test_run_smoke_prints_tables_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.json"
    rows = run.main(["--smoke", "--json", str(path)])
    out = capsys.readouterr().out
    assert "## codec" in out and "## pair" in out
    document = json.loads(path.read_text())
    assert document["mode"] == "smoke"
    assert [r["measure"] for r in document["rows"]] == [row.measure for row in rows]
    for row in rows:
        assert_sane(row.dul)
    pair = [row for row in rows if row.group == "pair"]
    assert len(pair) == 4 and all(row.limit is not None for row in pair)


def test_run_refuses_an_unknown_benchmark() -> None:
    with pytest.raises(SystemExit):
        run.main(["--smoke", "--only", "codec,nonesuch"])
