"""Many associations at once into one SCP: a light load generator, the servers, the row.

The **load generator** is a pool of client processes (``--client``, started once per run and
fed commands on stdin), each driving its share of the associations at once from one
``selectors`` loop over non-blocking sockets. Everything it sends is encoded by dul once, before
the timing (the A-ASSOCIATE-RQ, each C-STORE-RQ command and its 10 KB data set as P-DATA-TF
PDUs, the A-RELEASE-RQ), so a file costs it one ``send`` and a ``recv``; every answer is decoded
(the A-ASSOCIATE-AC must accept the context, every C-STORE-RSP must have status 0x0000), and any
failure fails the run. It costs a small fraction of the CPU of any SCP measured here (the row
reports the clients' CPU per file beside the servers'), and with twice the client processes the
rates stay within the noise (``check_clients``): the generator is not what is measured.

The **servers**, each one process started once and stopped by its PID, all discarding the data
sets: dul's ``storescp --ignore`` on each driver (sockets, trio, asyncio) with room for 1024
associations, DCMTK's ``storescp --fork --ignore`` (a process per association, ``TCP_NODELAY=1``)
and a pynetdicom ``AE`` with room for 1024 associations, its other settings as shipped.
``--workers N`` rows join in when dul's storescp offers the option (``WORKERS``).

    python -m benchmarks.bench_load [--quick | --smoke] [--clock cpu]
    python -m benchmarks.bench_load --client                 # one load process (reads stdin)
    python -m benchmarks.bench_load --serve-pynetdicom PORT  # pynetdicom's SCP for the curves
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dul
from dul import dimse

from . import _harness
from ._harness import Row, Stats, environment, print_table
from .bench_storage import (
    HOST,
    Timed,
    _env,
    _free_port,
    _server,
    clock_unit,
    find_dcmtk,
    interleaved,
)

__all__ = [
    "SIZES",
    "WORKERS",
    "LoadClients",
    "check_clients",
    "main",
    "run",
    "server_command",
    "servers_offered",
    "workers_supported",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MAX_PDU = 16384
FILE_SIZE = 10_000
#: By mode: (associations, files each) of the row, and the client processes of the generator.
SIZES = {
    "full": {"load": (200, 20), "clients": 2},
    "quick": {"load": (200, 5), "clients": 2},
    "smoke": {"load": (4, 2), "clients": 1},
}
#: The worker counts of the ``--workers N`` rows, measured when storescp offers the option.
WORKERS = (1, 2)


# -- the load generator -------------------------------------------------------------------------


class _Wire:
    """The bytes of one association's work, encoded once: request, stores, release."""

    def __init__(self, files: int, size: int = FILE_SIZE) -> None:
        request = dul.AssociateRequest(
            called_ae_title="ANY-SCP",
            calling_ae_title="LOAD",
            presentation_contexts=(
                dul.PresentationContext(
                    context_id=1,
                    abstract_syntax=CT_IMAGE_STORAGE,
                    transfer_syntaxes=(dimse.EXPLICIT_VR_LITTLE_ENDIAN,),
                ),
            ),
            user_information=dul.UserInformation(maximum_length=MAX_PDU),
        )
        self.request = dul.encode(request)
        self.stores = []
        for i in range(files):
            uid = f"1.2.826.0.1.3680043.10.1234.{i + 1}"
            dataset = _dataset(uid, size)
            command = dimse.encode_message(
                dimse.CStoreRequest(
                    message_id=i + 1,
                    affected_sop_class_uid=CT_IMAGE_STORAGE,
                    affected_sop_instance_uid=uid,
                ),
                True,
            )
            self.stores.append(
                dul.encode(dul.PData(values=(_pdv(command, is_command=True),)))
                + dul.encode(dul.PData(values=(_pdv(dataset, is_command=False),)))
            )
        self.largest = max(len(store) for store in self.stores) // 2
        self.release = dul.encode(dul.ReleaseRequest())


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One data element in explicit VR little endian (PS3.5 §7.1.2); values padded even."""
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _dataset(sop_instance_uid: str, size: int) -> bytes:
    """A CT image's identifying elements and pixel data: ``size`` bytes, valid for any SCP."""
    head = (
        _element(0x0008, 0x0016, b"UI", CT_IMAGE_STORAGE.encode())
        + _element(0x0008, 0x0018, b"UI", sop_instance_uid.encode())
        + _element(0x0010, 0x0010, b"PN", b"LOAD^TEST")
    )
    pixels = size - len(head) - 12
    return head + _element(
        0x7FE0, 0x0010, b"OB", bytes(range(256)) * (pixels // 256) + bytes(pixels % 256)
    )


def _pdv(data: bytes, *, is_command: bool) -> dul.PresentationDataValue:
    return dul.PresentationDataValue(context_id=1, is_command=is_command, is_last=True, data=data)


class _Client:
    """One association driven by the loop: connect, associate, store each file, release."""

    def __init__(self, wire: _Wire, port: int) -> None:
        self.wire = wire
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect_ex((HOST, port))
        self.inbox = bytearray()
        self.step = -1  # -1: awaiting the A-ASSOCIATE-AC; 0..files-1: that store; files: release
        self.stored = 0
        self.connected = False

    def on_connected(self) -> None:
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        self.connected = True
        self.sock.setblocking(True)  # the SCP reads as we write: sendall never waits long
        self.sock.sendall(self.wire.request)

    def on_readable(self) -> bool:
        """Read what arrived and answer whole PDUs; True when the association is over."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed by the SCP at step {self.step}")
        self.inbox += data
        while len(self.inbox) >= 6:
            kind, length = self.inbox[0], struct.unpack_from(">I", self.inbox, 2)[0]
            if len(self.inbox) < 6 + length:
                break
            pdu = bytes(self.inbox[: 6 + length])
            del self.inbox[: 6 + length]
            if self._answer(kind, pdu):
                return True
        return False

    def _answer(self, kind: int, pdu: bytes) -> bool:
        files = len(self.wire.stores)
        if self.step == -1:
            (accept,) = dul.decode(pdu)
            if not isinstance(accept, dul.AssociateAccept) or not any(
                c.result == 0 for c in accept.presentation_contexts
            ):
                raise ConnectionError(f"association not accepted: {accept!r:.200}")
            peer_max = accept.user_information.maximum_length
            if peer_max and peer_max < self.wire.largest:
                raise ConnectionError(f"the SCP receives PDUs of {peer_max} bytes at most")
        elif self.step < files:
            # One PDV of a whole command (header 6 + item length 4, context id, flags 0x03), as
            # every SCP here sends a C-STORE-RSP; anything else is decoded in full and refused.
            one_pdv = len(pdu) > 12 and struct.unpack_from(">I", pdu, 6)[0] + 10 == len(pdu)
            if kind != dul.PDUType.P_DATA_TF or not one_pdv or pdu[11] != 0x03:
                raise ConnectionError(f"in place of a C-STORE-RSP: {dul.decode(pdu)!r:.200}")
            response, _ = dimse.decode_message(memoryview(pdu)[12:])
            if not isinstance(response, dimse.CStoreResponse) or response.status != 0:
                raise ConnectionError(f"C-STORE failed: {response!r:.200}")
            self.stored += 1
        else:
            if kind != dul.PDUType.RELEASE_RP:
                raise ConnectionError(f"PDU type {kind} in place of an A-RELEASE-RP")
            return True
        self.step += 1
        self.sock.sendall(self.wire.stores[self.step] if self.step < files else self.wire.release)
        return False


def drive(port: int, associations: int, files: int, timeout: float = 600.0) -> int:
    """``associations`` at once, each storing ``files`` data sets of 10 KB; the files stored.

    Raises on any failure: refused, rejected, aborted, a status other than success, a timeout.
    """
    wire = _Wire(files)
    selector = selectors.DefaultSelector()
    clients = [_Client(wire, port) for _ in range(associations)]
    for client in clients:
        selector.register(client.sock, selectors.EVENT_WRITE, client)
    stored = 0
    open_count = len(clients)
    deadline = time.monotonic() + timeout
    try:
        while open_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{open_count} associations still open after {timeout} s")
            for key, _ in selector.select(timeout=1.0):
                client = key.data
                if not client.connected:
                    client.on_connected()
                    selector.modify(client.sock, selectors.EVENT_READ, client)
                elif client.on_readable():
                    stored += client.stored
                    selector.unregister(client.sock)
                    client.sock.close()
                    open_count -= 1
    finally:
        for client in clients:
            client.sock.close()
        selector.close()
    return stored


def client_main() -> None:
    """A load process: per line ``PORT ASSOCIATIONS FILES`` on stdin, run it, print a result."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        port, associations, files = (int(x) for x in line.split())
        cpu = time.process_time()
        try:
            stored = drive(port, associations, files)
        except Exception as exc:  # reported to the parent, which fails the run
            result: dict[str, object] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            result = {"stored": stored, "cpu": time.process_time() - cpu}
        print(json.dumps(result), flush=True)


class LoadClients:
    """``processes`` load processes, started once; :meth:`run` splits a load among them."""

    def __init__(self, processes: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_load", "--client"],
                env=_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            if "ready" not in json.loads(proc.stdout.readline() or "{}"):
                raise RuntimeError("a load process did not start")

    def run(self, port: int, associations: int, files: int) -> tuple[float, float]:
        """Run the load; (wall seconds, CPU seconds of the load processes). Raises on failure."""
        shares = [associations // len(self.procs)] * len(self.procs)
        for i in range(associations % len(self.procs)):
            shares[i] += 1
        busy = [(p, n) for p, n in zip(self.procs, shares, strict=True) if n]
        started = time.perf_counter()
        for proc, share in busy:
            assert proc.stdin is not None
            proc.stdin.write(f"{port} {share} {files}\n")
            proc.stdin.flush()
        results = []
        for proc, _ in busy:
            assert proc.stdout is not None
            results.append(json.loads(proc.stdout.readline() or '{"error": "load process died"}'))
        wall = time.perf_counter() - started
        errors = [r["error"] for r in results if "error" in r]
        stored = sum(r.get("stored", 0) for r in results)
        if errors or stored != associations * files:
            raise RuntimeError(f"load: {stored} of {associations * files} stored; {errors[:3]}")
        return wall, sum(r["cpu"] for r in results)

    def close(self) -> None:
        """End the load processes (they exit at the end of stdin), by their PIDs."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()

    def __enter__(self) -> LoadClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its threads and the children it has reaped (``--fork``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class LoadCase:
    """One server under one load; each call is a repeat. Keeps the clients' CPU per file."""

    def __init__(
        self, clients: LoadClients, port: int, pid: int, associations: int, files: int
    ) -> None:
        self.clients, self.port, self.pid = clients, port, pid
        self.associations, self.files = associations, files
        self.client_cpu: list[float] = []
        self.server_cpu: list[float] = []

    def __call__(self) -> Timed:
        server_before = _tree_cpu(self.pid)
        wall, client_cpu = self.clients.run(self.port, self.associations, self.files)
        server_cpu = _tree_cpu(self.pid) - server_before
        work = self.associations * self.files
        self.client_cpu.append(client_cpu / work)
        self.server_cpu.append(server_cpu / work)
        return Timed(work, wall, client_cpu + server_cpu)


# -- the servers --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def workers_supported() -> bool:
    """Whether dul's storescp offers ``--workers N`` (a pool of worker processes)."""
    out = subprocess.run(
        [sys.executable, "-m", "examples.storescp", "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return "--workers" in out.stdout


def server_command(name: str, dcmtk: Path | None) -> list[str]:
    """The command (port to append) of the server ``name``: see :func:`servers_offered`."""
    python = [sys.executable, "-m"]
    if name.startswith("dul "):
        driver, _, workers = name[4:].partition(", ")
        cmd = [*python, "examples.storescp", "--driver", driver, "-q", "--ignore"]
        cmd += ["--max-associations", "1024", "-pdu", str(MAX_PDU)]
        if workers:
            cmd += ["--workers", workers.split()[0]]
        return cmd
    if name == "DCMTK storescp --fork":
        if dcmtk is None:
            raise RuntimeError("DCMTK's storescp is not on PATH")
        return [str(dcmtk / "storescp"), "--fork", "--ignore", "-pdu", str(MAX_PDU)]
    if name == "pynetdicom":
        return [*python, "benchmarks.bench_load", "--serve-pynetdicom"]
    raise ValueError(f"no server {name!r}")


def servers_offered(dcmtk: Path | None, *, pynetdicom: bool = False) -> list[str]:
    """The servers to measure: dul on each driver, its worker pools if offered, DCMTK --fork."""
    names = [f"dul {driver}" for driver in ("sockets", "trio", "asyncio")]
    if workers_supported():
        names += [f"dul sockets, {n} worker{'s' if n > 1 else ''}" for n in WORKERS]
    if dcmtk is not None:
        names.append("DCMTK storescp --fork")
    if pynetdicom:
        names.append("pynetdicom")
    return names


def serve_pynetdicom(port: int) -> None:
    """pynetdicom's storage SCP, discarding data sets, with room for 1024 associations."""
    from pynetdicom import AE, StoragePresentationContexts, evt

    ae = AE(ae_title="ANY-SCP")
    ae.supported_contexts = StoragePresentationContexts
    ae.maximum_associations = 1024
    ae.maximum_pdu_size = MAX_PDU
    ae.start_server((HOST, port), block=True, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0x0000)])


@contextlib.contextmanager
def started(names: Sequence[str], dcmtk: Path | None) -> Iterator[dict[str, tuple[int, int]]]:
    """Each server of ``names`` on a free port; yields {name: (port, PID)}; stops them by PID."""
    with contextlib.ExitStack() as stack:
        found = {}
        for name in names:
            port = _free_port()
            proc = stack.enter_context(_server(server_command(name, dcmtk), port))
            found[name] = (port, proc.pid)
        yield found


# -- the row ------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def check_clients(
    port: int, pid: int, associations: int, files: int, processes: int
) -> tuple[Stats, Stats]:
    """The same load from ``processes`` and from twice as many load processes, interleaved.

    Equal rates mean the load generator is not the limit.
    """
    with LoadClients(processes) as few, LoadClients(2 * processes) as more:
        return tuple(  # type: ignore[return-value]
            interleaved([LoadCase(c, port, pid, associations, files) for c in (few, more)])
        )


def run(mode: str) -> list[Row]:
    """The load row: each server under the same load, in one interleaved run."""
    associations, files = SIZES[mode]["load"]
    processes = SIZES[mode]["clients"]
    dcmtk = find_dcmtk()
    names = servers_offered(dcmtk)
    if mode == "smoke":
        names = names[:1]
    what = f"{associations} concurrent associations x {files} C-STORE of 10 KB into one SCP"
    with started(names, dcmtk) as servers, LoadClients(processes) as clients:
        cases = [LoadCase(clients, *servers[n], associations, files) for n in names]
        measured = dict(zip(names, interleaved(cases), strict=True))
        check = None
        if mode == "full":
            check = check_clients(*servers["dul trio"], associations, files, processes)
    reference = measured.get("DCMTK storescp --fork")
    rows = []
    for name, case in zip(names, cases, strict=True):
        if name.startswith("DCMTK"):
            continue
        costs = (
            f"CPU per file: SCP {_median(case.server_cpu) * 1e6:.0f} µs, "
            f"load {_median(case.client_cpu) * 1e6:.0f} µs"
        )
        rows.append(
            Row(
                group="load",
                measure=f"{what}: {name} storescp ({costs}; {processes} load processes)",
                unit=clock_unit("files/s"),
                dul=measured[name],
                peer=reference,
                peer_name="DCMTK storescp --fork",
            )
        )
    if check is not None:
        few, more = check
        rows.append(
            Row(
                group="load",
                measure=f"{what}: dul trio storescp, {2 * processes} load processes (check: "
                f"{more.median / few.median:.2f}x the rate with {processes})",
                unit=clock_unit("files/s"),
                dul=more,
                peer=reference,
                peer_name="DCMTK storescp --fork",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Print the load row, or be a load process (``--client``) or pynetdicom's server."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_load", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--smoke", action="store_true")
    parser.add_argument("--clock", choices=sorted(_harness.CLOCKS), default="wall")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-pynetdicom", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_main()
        return []
    if args.serve_pynetdicom is not None:
        serve_pynetdicom(args.serve_pynetdicom)
        return []
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    _harness.clock_name = args.clock
    env = environment()
    print(f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; mode {mode}.")
    rows = run(mode)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
