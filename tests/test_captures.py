"""The recorded associations in examples/captures are there, whole, and what they claim to be."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from peers import HOST, Dcmtk, split_pdus

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP = 0x01, 0x02, 0x04, 0x05, 0x06

CAPTURES = ["echoscu-storescp", "storescu-storescp", "storescu-storescp-pdu4096", "pynetdicom-echo"]

# The PDU types each direction carried, in order.
EXPECTED = {
    "echoscu-storescp": ([1, 4, 5], [2, 4, 6]),
    "storescu-storescp": ([1, 4, 4, 5], [2, 4, 6]),
    "storescu-storescp-pdu4096": ([1, 4, 4, 4, 4, 5], [2, 4, 6]),
    "pynetdicom-echo": ([1, 4, 5], [2, 4, 6]),
}

ROOT = Path(__file__).resolve().parent.parent


def load_example(name: str) -> ModuleType:
    """Import examples/NAME.py (examples is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_files(capture_dir: Path, name: str) -> None:
    rq = (capture_dir / f"{name}.rq.bin").read_bytes()
    ac = (capture_dir / f"{name}.ac.bin").read_bytes()
    both = (capture_dir / f"{name}.bin").read_bytes()

    assert rq
    assert ac
    assert rq[0] == A_ASSOCIATE_RQ
    assert ac[0] == A_ASSOCIATE_AC
    assert both == rq + ac


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_is_whole_pdus(capture_dir: Path, name: str) -> None:
    rq = split_pdus((capture_dir / f"{name}.rq.bin").read_bytes())
    ac = split_pdus((capture_dir / f"{name}.ac.bin").read_bytes())

    assert ([t for t, _ in rq], [t for t, _ in ac]) == EXPECTED[name]
    # The associate PDUs name the same AE titles (called, then calling: 16 bytes each).
    assert rq[0][1][4:36] == ac[0][1][4:36]
    # A-RELEASE-RQ and -RP have a fixed length of 4.
    assert len(rq[-1][1]) == len(ac[-1][1]) == 4


def test_pdu4096_fragments(capture_dir: Path) -> None:
    """With a maximum length of 4096 announced, no P-DATA-TF the requestor sent is longer."""
    rq = split_pdus((capture_dir / "storescu-storescp-pdu4096.rq.bin").read_bytes())
    assert all(len(body) <= 4096 for t, body in rq if t == P_DATA_TF)


def test_relay_records_both_directions(tmp_path: Path) -> None:
    """examples/capture.py relays a connection and records what each side sent."""
    capture = load_example("capture")

    def target(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            received = b""
            while chunk := conn.recv(4096):
                received += chunk
            conn.sendall(b"reply to " + received)

    with socket.create_server((HOST, 0)) as server, capture.listen(0) as listener:
        server_thread = threading.Thread(target=target, args=(server,), daemon=True)
        server_thread.start()
        result = []
        relay_thread = threading.Thread(
            target=lambda: result.append(
                capture.relay_one(listener, server.getsockname()[:2], timeout=10.0)
            ),
            daemon=True,
        )
        relay_thread.start()
        with socket.create_connection(listener.getsockname()[:2], timeout=10.0) as client:
            client.sendall(b"hello")
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(4096):
                reply += chunk
        relay_thread.join(10.0)
        server_thread.join(10.0)

    assert reply == b"reply to hello"
    [recorded] = result
    assert bytes(recorded.requestor) == b"hello"
    assert bytes(recorded.acceptor) == b"reply to hello"

    paths = capture.write_capture(recorded, tmp_path / "x")
    assert [p.name for p in paths] == ["x.rq.bin", "x.ac.bin", "x.bin"]
    assert (tmp_path / "x.bin").read_bytes() == b"hello" + b"reply to hello"


@pytest.mark.interop
def test_record_echoscu_storescp(dcmtk: Dcmtk, tmp_path: Path, capture_dir: Path) -> None:
    """Recording echoscu -> storescp again gives the same PDUs as the stored capture."""
    capture = load_example("capture")
    result = []
    with dcmtk.storescp(tmp_path) as scp_port, capture.listen(0) as listener:
        relay = threading.Thread(
            target=lambda: result.append(capture.relay_one(listener, (HOST, scp_port))),
            daemon=True,
        )
        relay.start()
        relay_port = str(listener.getsockname()[1])
        echo = dcmtk.run("echoscu", "-aet", "ECHOSCU", "-aec", "STORESCP", HOST, relay_port)
        relay.join(30.0)

    assert echo.returncode == 0, echo.stderr
    [recorded] = result
    stored_rq = (capture_dir / "echoscu-storescp.rq.bin").read_bytes()
    rq = split_pdus(bytes(recorded.requestor))
    assert [t for t, _ in rq] == [A_ASSOCIATE_RQ, P_DATA_TF, A_RELEASE_RQ]
    assert rq[0][1][4:36] == split_pdus(stored_rq)[0][1][4:36]
    if b"OFFIS_DCMTK_367" in recorded.requestor:  # the DCMTK that made the stored capture
        assert bytes(recorded.requestor) == stored_rq
