"""docs/full_duplex_trio.py, the program of docs/full-duplex.md, does what the page says.

Against DCMTK's storescp it stores every data set; against a peer that sends an invalid PDU in
the middle of a data set, what it wrote is still whole PDUs, the last one an A-ABORT.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import trio

import dul
from peers import HOST, Dcmtk, split_pdus

PROGRAM = Path(__file__).resolve().parent.parent / "docs" / "full_duplex_trio.py"


@pytest.fixture(scope="module")
def program() -> ModuleType:
    spec = importlib.util.spec_from_file_location("full_duplex_trio", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stores_on_storescp(program: ModuleType, dcmtk: Dcmtk, tmp_path: Path) -> None:
    size = 1_000_001  # odd: the last piece is odd, the data set padded to even
    with dcmtk.storescp(tmp_path) as port:
        statuses = trio.run(program.main, HOST, port, 3, size)
    assert statuses == [0x0000] * 3
    stored = sorted((tmp_path / "received").iterdir())
    assert [p.name for p in stored] == ["SC.2.25.1", "SC.2.25.2", "SC.2.25.3"]
    pixel_data = bytes(size + 1)
    assert all(p.read_bytes().endswith(pixel_data) for p in stored)


def _aborting_peer(listener: socket.socket, after: int, received: bytearray) -> None:
    """Accept, answer the A-ASSOCIATE-RQ; once ``after`` bytes of P-DATA came, stop reading
    for a while, send an invalid PDU, and record everything until the requestor closes.

    While this peer does not read, the requestor's writer fills the socket buffers and waits in
    the middle of a PDU: the moment when an A-ABORT that is not serialized would cut in.
    """
    sock, _ = listener.accept()
    with sock:
        conn = dul.Connection(dul.Role.ACCEPTOR)
        while not isinstance(event := conn.next_event(), dul.AssociateRequest):
            data = sock.recv(65536)
            received += data
            conn.receive_data(data)
        contexts = [
            dul.PresentationContextAC(
                context_id=c.context_id, transfer_syntax=c.transfer_syntaxes[0]
            )
            for c in event.presentation_contexts
        ]
        sock.sendall(conn.send(event.accept(tuple(contexts))))
        start = len(received)
        while len(received) - start < after:
            received += sock.recv(65536)
        time.sleep(0.3)
        sock.sendall(b"\x99\x00\x00\x00\x00\x02xx")  # PDU type 99H: unrecognized (Evt19)
        time.sleep(0.05)  # the requestor reads it while its writer still waits
        while data := sock.recv(65536):
            received += data


def test_abort_from_the_reader_lands_between_pdus(program: ModuleType) -> None:
    received = bytearray()
    with socket.create_server((HOST, 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # fills sooner
        port = listener.getsockname()[1]
        peer = threading.Thread(target=_aborting_peer, args=(listener, 256 * 1024, received))
        peer.start()
        try:
            with pytest.raises(program.AssociationEnded) as ended:
                trio.run(program.main, HOST, port, 1, 20_000_000)
        finally:
            peer.join(timeout=30)
    assert isinstance(ended.value.args[0], dul.RemoteProtocolError)
    pdus = split_pdus(bytes(received))  # whole PDUs only, or this raises
    types = [pdu_type for pdu_type, _ in pdus]
    assert types[0] == 0x01 and types[-1] == 0x07 and set(types[1:-1]) == {0x04}
    for _, body in pdus[1:-1]:  # each P-DATA-TF holds exactly one whole PDV
        assert int.from_bytes(body[:4], "big") == len(body) - 4
    last_pdv_control = pdus[-2][1][5]
    assert not last_pdv_control & 0x02, "the data set was finished before the abort: no race"
    assert len(received) < 20_000_000
