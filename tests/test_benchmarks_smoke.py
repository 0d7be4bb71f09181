"""The benchmarks still run: each once, at tiny sizes. Results are checked, times never are."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from pydicom.filereader import read_dataset

import dul
from dul import dimse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a package at the top of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    _harness,
    bench_codec,
    bench_dimse,
    bench_load,
    bench_memory,
    bench_network,
    bench_pair,
    bench_part10,
    bench_storage,
    run,
)
from benchmarks._harness import (  # noqa: E402
    MIN_REPEAT,
    Case,
    Row,
    Stats,
    measure,
    measure_together,
    print_table,
)
from benchmarks.bench_storage import Stopwatch, Timed, interleaved  # noqa: E402

from peers import Dcmtk  # noqa: E402


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
    assert "next_event" in text and "next_single_pdv" in text  # Sta6's fast path


def test_run_smoke_prints_tables_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, markdown = tmp_path / "out.json", tmp_path / "out.md"
    rows = run.main(
        ["--smoke", "--only", "codec,pair,dimse", "--json", str(path), "--markdown", str(markdown)]
    )
    out = capsys.readouterr().out
    assert "## codec" in out and "## pair" in out and "## dimse" in out and "## summary" in out
    document = json.loads(path.read_text())
    assert document["mode"] == "smoke"
    assert [r["measure"] for r in document["rows"]] == [row.measure for row in rows]
    assert {r["clock"] for r in document["rows"]} == {"wall"}
    assert document["environment"]["machine"]["cores"] >= 1
    for row in rows:
        assert_sane(row.dul)
    pair = [row for row in rows if row.group == "pair"]
    assert len(pair) == 4 and all(row.limit is not None for row in pair)
    table = markdown.read_text().splitlines()
    assert table[0].startswith("| measure | unit | clock | dul | pynetdicom 3.x | DCMTK |")
    assert len([line for line in table if line.startswith("| ")]) == 2 + len(rows)  # one each


def test_part10_rows_read_the_same_meta_as_pydicom() -> None:
    rows = bench_part10.run("smoke")
    assert [row.peer_name for row in rows] == ["pydicom dcmread", "pydicom read_file_meta_info"]
    for row in rows:
        assert_sane(row.dul)
        assert_sane(row.peer)


def test_run_refuses_an_unknown_benchmark() -> None:
    with pytest.raises(SystemExit):
        run.main(["--smoke", "--only", "codec,nonesuch"])


# -- the summary table --------------------------------------------------------------------------


def _stats(value: float) -> Stats:
    return Stats(median=value, min=value, max=value, number=1, rates=(value,) * MIN_REPEAT)


def test_summary_puts_each_measure_on_one_line_with_its_peers_in_columns() -> None:
    ours, other = _stats(100.0), _stats(50.0)
    rows = [
        Row("memory", "m", "MB", ours, peer=_stats(200.0), peer_name="pynetdicom storescp"),
        Row("memory", "m", "MB", ours, peer=_stats(400.0), peer_name="DCMTK storescp"),
        Row("memory", "m", "MB", ours, peer=_stats(10.0), peer_name="DCMTK storescp +B"),
        Row("memory", "m", "MB", other, peer=_stats(25.0), peer_name="DCMTK"),  # other numbers
        Row("pair", "p", "MB/s", ours, limit=_stats(1000.0), limit_name="slice+join"),
    ]
    lines = run.summarize(rows)
    assert [sorted(line.peers) for line in lines] == [
        ["DCMTK", "pynetdicom"],
        ["DCMTK"],  # a second DCMTK peer of the same measure takes a line of its own
        ["DCMTK"],
        [],
    ]
    cells, notes = run.summary_table(lines, "cpu")
    first = cells[1]
    assert first[2] == "-"  # memory is not timed
    assert first[6:8] == ["0.50", "0.25"]  # dul/pynetdicom, dul/DCMTK
    assert (cells[2][7], cells[3][7]) == ("10.00", "2.00")
    assert cells[4][2] == "CPU (this process)" and cells[4][-1] == "0.10"
    assert notes == ["pynetdicom storescp", "DCMTK storescp", "DCMTK storescp +B", "slice+join"]
    out = io.StringIO()
    run.print_summary(rows, "wall", out)
    assert len(out.getvalue().splitlines()) == 2 + len(lines) + len(notes)


def test_machine_names_the_cpu_and_load() -> None:
    info = run.machine()
    assert info["cpu_model"] and info["cores"] >= 1 and info["python"].split()[1][0] == "3"


# -- DIMSE in one process -----------------------------------------------------------------------


def test_dimse_receive_delivers_the_whole_message() -> None:
    stream = bench_dimse.store_stream(100_000, 4096)
    reads = bench_dimse._reads(stream, 1000)
    for whole in (False, True):
        acceptor = bench_dimse.establish(4096, whole_datasets=whole)[1]
        for _ in range(2):  # one association receives message after message
            assert bench_dimse.receive(acceptor, reads) == bench_dimse.Received(1, 100_000)


def test_pynetdicom_peer_decodes_dul_bytes_to_the_same_message(pynetdicom: ModuleType) -> None:
    peer = bench_dimse.PynetdicomPeer(4096)
    stream = bench_dimse.store_stream(50_000, 4096)
    for _ in range(2):
        peer.feed(peer.acceptor, stream)
        primitive = peer.receive(peer.acceptor)
        assert primitive.MessageID == 1
        assert primitive.AffectedSOPClassUID == bench_dimse.CT_IMAGE_STORAGE
        assert primitive.AffectedSOPInstanceUID == bench_dimse.SOP_INSTANCE
        assert primitive.DataSet.getvalue() == bench_dimse._payload(50_000)


@pytest.mark.parametrize("kind", ["echo", "store"])
def test_dimse_operations_are_answered(kind: str, pynetdicom: ModuleType) -> None:
    assert bench_dimse.dul_operations(kind, 3, 10_000, 4096)() == 3
    peer = bench_dimse.PynetdicomPeer(4096)
    one = (
        bench_dimse._pynetdicom_echo(peer)
        if kind == "echo"
        else bench_dimse._pynetdicom_store(peer, bench_dimse._payload(10_000))
    )
    assert one().Status == 0


def test_dimse_rows(pynetdicom: ModuleType) -> None:
    rows = bench_dimse.run("smoke")
    assert [row.unit for row in rows] == ["MB/s", "MB/s", "ops/s", "ops/s"]
    for row in rows:
        assert_sane(row.dul)
        assert_sane(row.peer)
    assert all(row.limit is not None for row in rows[:2])


# -- across processes ---------------------------------------------------------------------------


def test_interleaved_warms_up_then_repeats_and_follows_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []

    def case(name: str, wall: float, cpu: float) -> Callable[[], Timed]:
        return lambda: log.append(name) or Timed(10.0, wall, cpu)  # type: ignore[func-returns-value]

    cases = [case("a", 2.0, 1.0), case("b", 5.0, 0.5)]
    wall = interleaved(cases)
    assert log == ["a", "b"] * (1 + MIN_REPEAT)
    assert [s.median for s in wall] == [5.0, 2.0]
    monkeypatch.setattr(_harness, "clock_name", "cpu")
    assert [s.median for s in interleaved(cases, warmup=False)] == [10.0, 20.0]
    assert bench_storage.clock_unit("echoes/s") == "echoes/CPU-s"
    with pytest.raises(ValueError, match="at least 5"):
        interleaved(cases, repeat=MIN_REPEAT - 1)


def test_stopwatch_counts_the_cpu_of_children() -> None:
    watch = Stopwatch()
    started = watch.start()
    subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True, capture_output=True)
    timed = watch.stop(started, 1.0)
    assert timed.cpu > 0  # the child's CPU time, not only this process's
    assert timed.wall >= timed.cpu * 0.5


def test_loopback_limit_moves_every_byte() -> None:
    assert bench_network.loopback_seconds(3 << 20, send_size=1 << 20, recv_size=4096) > 0


def test_network_rows(dcmtk: Dcmtk, pynetdicom: ModuleType) -> None:
    rows = bench_network.run("smoke")
    echo = [row for row in rows if row.unit == "echoes/s"]
    assert len(echo) == 8  # 4 dul clients, each beside pynetdicom and DCMTK
    assert {row.peer_name for row in echo} == {"pynetdicom↔pynetdicom", "DCMTK echoscu→storescp"}
    assert len([row for row in rows if row.unit == "assoc/s"]) == 8
    assert any(row.limit_name.startswith("loopback") for row in rows)
    for row in rows:
        assert_sane(row.dul)


def test_load_fails_loudly_on_a_refusing_server(pynetdicom: ModuleType) -> None:
    # pynetdicom's echo server accepts no storage context: every association must count as failed.
    with (
        bench_network._servers(["pynetdicom"], None) as servers,
        bench_load.LoadClients(2) as clients,
    ):
        port, _ = servers["pynetdicom"]
        with pytest.raises(RuntimeError, match=r"0 of 6 stored.*not accepted"):
            clients.run(port, 3, 2)


def test_load_row_stores_every_file_and_reports_its_costs(dcmtk: Dcmtk) -> None:
    (row,) = bench_load.run("smoke")
    assert row.group == "load" and row.measure.startswith("4 concurrent associations x 2")
    assert "CPU per file" in row.measure
    assert_sane(row.dul)


def test_load_generator_sends_valid_stores() -> None:
    # What the generator sends decodes as C-STORE-RQ commands and data sets of the stated size.
    wire = bench_load._Wire(3)
    assert isinstance(dul.decode(wire.request)[0], dul.AssociateRequest)
    for i, store in enumerate(wire.stores):
        command, dataset = dul.decode(store)
        message, has_dataset = dimse.decode_message(command.values[0].data)
        assert isinstance(message, dimse.CStoreRequest) and message.message_id == i + 1
        assert has_dataset and len(dataset.values[0].data) == bench_load.FILE_SIZE
        parsed = read_dataset(
            io.BytesIO(dataset.values[0].data), is_implicit_VR=False, is_little_endian=True
        )
        assert parsed.SOPInstanceUID == message.affected_sop_instance_uid


def test_storage_configuration_stores_every_file(dcmtk: Dcmtk, tmp_path: Path) -> None:
    config = bench_storage.Config(2, 10_000, 16384, "write")
    inputs = tmp_path / "in"
    total = bench_storage._write_files(inputs, config.count, config.size)
    rows = bench_storage.bench_config(config, inputs, total, tmp_path, dcmtk.bindir)
    assert len(rows) == 2 * 3  # MB/s and files/s, for 3 dul cases, beside DCMTK
    assert all(row.peer_name == "DCMTK storescu→storescp" for row in rows)
    for row in rows:
        assert_sane(row.dul)
        assert_sane(row.peer)
    files = [row for row in rows if row.unit == "files/s"]
    mb = [row for row in rows if row.unit == "MB/s"]
    assert all(row.limit is None for row in files) and all(row.limit for row in mb)
    # the same runs: files/s is MB/s scaled by files per MB
    assert files[0].dul.median == pytest.approx(mb[0].dul.median * config.count * 1e6 / total)


@pytest.mark.skipif(not Path(bench_memory.GNU_TIME).exists(), reason="GNU time is not installed")
def test_peak_rss_is_the_child_own(tmp_path: Path) -> None:
    report = tmp_path / "rss"
    small = bench_memory.peak_rss([sys.executable, "-c", "pass"], report)
    big = bench_memory.peak_rss(
        [sys.executable, "-c", "b = bytearray(100_000_000); b[::4096] = b'x' * len(b[::4096])"],
        report,
    )
    assert 1 < small < 40  # not this (large) test process's size, inherited over exec
    assert 95 < big - small < 130


@pytest.mark.skipif(not Path(bench_memory.GNU_TIME).exists(), reason="GNU time is not installed")
def test_storescp_peak_rss_after_receiving(tmp_path: Path) -> None:
    from examples.tools.sample_files import write_sample

    path = write_sample(tmp_path / "in.dcm", size=300_000)
    sent: list[int] = []

    def send(port: int) -> None:
        from examples.tools.main import main

        argv = ["-q", "127.0.0.1", str(port), str(path)]
        assert main("storescu", argv, stream=io.StringIO()) == 0
        sent.append(port)

    rss = bench_memory.scp_peak_rss(
        [sys.executable, "-m", "examples.storescp", "-q", "-od", str(tmp_path / "out")],
        send,
        tmp_path / "out",
        tmp_path / "rss",
    )
    assert sent and 5 < rss < 200
