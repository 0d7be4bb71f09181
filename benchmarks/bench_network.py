"""Over loopback: C-ECHO round trips, associations per second, the wire's limit.

Many associations at once into one SCP: ``bench_load``.

Every server is a child process on 127.0.0.1, started once and stopped by its PID: dul's
``echoscp`` tool on the sockets driver and ``storescp --ignore`` on trio and asyncio, a
pynetdicom ``AE`` as shipped (``--serve`` below), and DCMTK's ``storescp`` (with
``TCP_NODELAY=1``). The clients run in this process, except DCMTK's ``echoscu``, which runs
as users run it:

* **C-ECHO round trips** on one association: each repeat opens an association (not timed), times
  K C-ECHOs one after the other, releases. DCMTK: ``echoscu --repeat K+1`` minus
  ``echoscu --repeat 1``, both timed from outside (process start-up cancels out), to storescp.
* **Associations per second** from one client process, one after the other: associate, one
  C-ECHO, release. DCMTK's ``echoscu`` is one process per association: its rate is bound by
  process start-up, not by the protocol (marked so).
* **P-DATA over loopback**: one large data set, C-STORE from memory by dul's sockets driver to
  dul's ``storescp --ignore``, beside the loopback limit: two threads of this process moving the
  same bytes with ``sendall`` (1 MiB) and ``recv_into`` (256 KiB), no protocol.

The wall clock (default) gives round-trip times and rates as a user sees them; on a loaded
machine they include waiting for a CPU. ``--clock cpu`` divides the work by the CPU time of every
process involved (this one, its children, the server), read from the kernel: the cost of the
work, which load disturbs far less (its unit says "/CPU-s"). The repeats of the cases in one
group are interleaved, so load from other processes falls on all alike.

    python -m benchmarks.bench_network [--quick | --smoke]     # the rows
    python -m benchmarks.bench_network --serve pynetdicom PORT  # a server, for the rows
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from examples.runtime import Timeouts

import dul
from dul import dimse

from . import _harness
from ._harness import Row, Stats, environment, print_table
from .bench_storage import (
    HOST,
    Stopwatch,
    Timed,
    _env,
    _free_port,
    _server,
    clock_unit,
    find_dcmtk,
    interleaved,
)

__all__ = [
    "DRIVERS",
    "SIZES",
    "loopback_seconds",
    "main",
    "run",
    "serve",
]

MB = 1e6
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: What dul's tools announce by default, and DCMTK's default too.
MAX_PDU = 16384
#: By mode: C-ECHOs per repeat (dul, pynetdicom, DCMTK: enough that its start-up, subtracted,
#: is noise), associations per repeat (dul, pynetdicom, DCMTK echoscu runs), and the bytes of
#: the P-DATA-over-loopback rows.
SIZES = {
    "full": {
        "echoes": (2000, 100, 5000),
        "associations": (300, 20, 30),
        "stream": 1 << 30,
    },
    "quick": {
        "echoes": (300, 20, 2000),
        "associations": (60, 5, 8),
        "stream": 64 << 20,
    },
    "smoke": {
        "echoes": (10, 2, 10),
        "associations": (3, 1, 1),
        "stream": 1 << 20,
    },
}


# -- requests -----------------------------------------------------------------------------------


def _request(abstract_syntax: str, transfer_syntax: str) -> dul.AssociateRequest:
    return dul.AssociateRequest(
        called_ae_title="ANY-SCP",
        calling_ae_title="BENCH",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=1, abstract_syntax=abstract_syntax, transfer_syntaxes=(transfer_syntax,)
            ),
        ),
        user_information=dul.UserInformation(maximum_length=MAX_PDU),
    )


ECHO_REQUEST = _request(dimse.VERIFICATION_SOP_CLASS, dimse.IMPLICIT_VR_LITTLE_ENDIAN)
STORE_REQUEST = _request(CT_IMAGE_STORAGE, dimse.EXPLICIT_VR_LITTLE_ENDIAN)


def _timeouts() -> Timeouts:
    """The drivers' defaults, as the tools use them: no DIMSE timeout (DCMTK's default too).

    A DIMSE timeout costs the sockets driver a ``poll`` before each ``recv`` and ``sendmsg``
    (CPython's socket timeouts); the rows measure what a user gets by default.
    """
    return Timeouts()


# -- dul clients --------------------------------------------------------------------------------
#
# Each is a service (``examples.runtime``) that times its own work, run by the driver named: the
# sockets driver directly, trio and asyncio inside one event loop for all its associations.


def _driver(kind: str) -> Any:
    return importlib.import_module(f"examples.{kind}.driver")


def _run(kind: str, services: Sequence[Any]) -> list[Any]:
    """Run ``services``, one association each, one after the other, on driver ``kind``."""
    from examples import runtime

    module = _driver(kind)
    if kind == "sockets":
        return [
            module.run_requestor(service, HOST, port, timeouts=_timeouts())
            for service, port in services
        ]

    async def main() -> list[Any]:
        results = []
        for service, port in services:
            assoc = await module.Association.connect(HOST, port, timeouts=_timeouts())
            link = runtime.Association(assoc.session, _timeouts())
            results.append(await runtime.drive_async(module.Steps(), assoc, link, service(link)))
        return results

    if kind == "trio":
        import trio

        return trio.run(main)  # type: ignore[no-any-return]
    return asyncio.run(main())


def _echoes(count: int, watch: Stopwatch | None = None) -> Any:
    """A service: associate, ``count`` C-ECHOs (timed by ``watch``, if given), release."""
    from examples.apps.echo import echo

    def service(assoc: Any) -> Any:
        yield from assoc.associate(ECHO_REQUEST)
        context_id = assoc.context_for(dimse.VERIFICATION_SOP_CLASS)
        started = watch.start() if watch is not None else None
        for _ in range(count):
            if (yield from echo(assoc, context_id)) != 0:
                raise RuntimeError("C-ECHO failed")
        timed = watch.stop(started, count) if watch is not None else None
        yield from assoc.release()
        return timed

    return service


def dul_echoes(kind: str, watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` C-ECHOs on one association of driver ``kind``; (count, seconds)."""
    (timed,) = _run(kind, [(_echoes(count, watch), port)])
    return timed  # type: ignore[no-any-return]


def dul_associations(kind: str, watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` associations (request, C-ECHO, release), one after the other."""
    started = watch.start()
    _run(kind, [(_echoes(1), port)] * count)
    return watch.stop(started, count)


sockets_echoes = functools.partial(dul_echoes, "sockets")
trio_echoes = functools.partial(dul_echoes, "trio")
asyncio_echoes = functools.partial(dul_echoes, "asyncio")
sockets_associations = functools.partial(dul_associations, "sockets")
trio_associations = functools.partial(dul_associations, "trio")
asyncio_associations = functools.partial(dul_associations, "asyncio")


def _store(assoc: Any, uid: str, data: Any, length: int | None = None) -> Any:
    """C-STORE ``data`` (bytes, or chunks adding up to ``length``): the status."""
    context_id = assoc.context_for(CT_IMAGE_STORAGE)
    request = dimse.CStoreRequest(
        message_id=assoc.session.next_message_id(),
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid=uid,
    )
    if length is None:
        yield from assoc.send(request, context_id=context_id, dataset=data)
    else:
        yield from assoc.send(request, context_id=context_id, dataset_follows=True)
        sent = 0
        for chunk in data:
            sent += len(chunk)
            yield from assoc.send_dataset(context_id, chunk, is_last=sent >= length)
    response, _ = yield from assoc.receive_response()
    return response.status


# -- pynetdicom and DCMTK clients ---------------------------------------------------------------


def _pynetdicom_ae() -> object:
    from pynetdicom import AE

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(dimse.VERIFICATION_SOP_CLASS, dimse.IMPLICIT_VR_LITTLE_ENDIAN)
    return ae


def _pynetdicom_associate(ae: object, port: int) -> object:
    assoc = ae.associate(HOST, port, ae_title="ANY-SCP", max_pdu=MAX_PDU)  # type: ignore[attr-defined]
    if not assoc.is_established:
        raise RuntimeError("pynetdicom: no association")
    return assoc


def _pynetdicom_echo(assoc: object) -> None:
    status = assoc.send_c_echo()  # type: ignore[attr-defined]
    if not status and assoc.is_aborted:  # type: ignore[attr-defined]
        raise PynetdicomAborted("pynetdicom: the association aborted during a C-ECHO")
    if not status or status.Status != 0:
        raise RuntimeError(f"pynetdicom: C-ECHO failed: {status!r}")


#: pynetdicom associations that aborted during a repeat (which was then run again): now and then
#: an association of pynetdicom's client with pynetdicom's server ends with an A-ABORT mid-way.
#: That is the peer's behaviour; the rows say how often it happened.
PYNETDICOM_ABORTS: list[str] = []


def _pynetdicom_retrying(fn: Callable[[Stopwatch, int, int], Timed]) -> Callable[..., Timed]:
    """``fn``, run again (twice at most) when pynetdicom's association aborts mid-way."""

    @functools.wraps(fn)
    def call(watch: Stopwatch, port: int, count: int) -> Timed:
        for attempt in range(3):
            try:
                return fn(watch, port, count)
            except PynetdicomAborted as exc:
                if attempt == 2:
                    raise
                PYNETDICOM_ABORTS.append(str(exc))
                print(f"bench_network: {exc}; running the repeat again", file=sys.stderr)
        raise AssertionError("unreachable")

    return call


class PynetdicomAborted(RuntimeError):
    """pynetdicom's association ended while a C-ECHO was outstanding."""


@_pynetdicom_retrying
def pynetdicom_echoes(watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` C-ECHOs on one pynetdicom association."""
    assoc = _pynetdicom_associate(_pynetdicom_ae(), port)
    try:
        started = watch.start()
        for _ in range(count):
            _pynetdicom_echo(assoc)
        timed = watch.stop(started, count)
    finally:
        assoc.release()  # type: ignore[attr-defined]
    return timed


@_pynetdicom_retrying
def pynetdicom_associations(watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` pynetdicom associations (request, C-ECHO, release), one after the other."""
    ae = _pynetdicom_ae()
    started = watch.start()
    for _ in range(count):
        assoc = _pynetdicom_associate(ae, port)
        try:
            _pynetdicom_echo(assoc)
        finally:
            assoc.release()  # type: ignore[attr-defined]
    return watch.stop(started, count)


def _echoscu(watch: Stopwatch, echoscu: str, port: int, repeat: int) -> Timed:
    """One ``echoscu --repeat N`` run, start-up included."""
    cmd = [echoscu, "-aec", "ANY-SCP", "--repeat", str(repeat), HOST, str(port)]
    started = watch.start()
    result = subprocess.run(cmd, env=_env(), capture_output=True, timeout=300, check=False)
    timed = watch.stop(started, repeat)
    if result.returncode != 0:
        raise RuntimeError(f"echoscu failed ({result.returncode}): {result.stderr[-300:]!r}")
    return timed


def dcmtk_echoes(watch: Stopwatch, echoscu: str, port: int, count: int) -> Timed:
    """The C-ECHOs of one DCMTK ``echoscu --repeat count+1`` run, less a run of one C-ECHO."""
    many = _echoscu(watch, echoscu, port, count + 1)
    one = _echoscu(watch, echoscu, port, 1)
    return Timed(count, max(many.wall - one.wall, 1e-9), max(many.cpu - one.cpu, 1e-9))


def dcmtk_associations(watch: Stopwatch, echoscu: str, port: int, count: int) -> Timed:
    """``count`` runs of DCMTK echoscu, one after the other: start-up bound."""
    started = watch.start()
    for _ in range(count):
        _echoscu(watch, echoscu, port, 1)
    return watch.stop(started, count)


# -- P-DATA over loopback and the limit ---------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _chunk(size: int) -> memoryview:
    return memoryview((bytes(range(1, 256)) * (size // 255 + 1))[:size])


def sockets_stream(watch: Stopwatch, port: int, total: int, max_pdu: int) -> Timed:
    """One C-STORE of ``total`` bytes, streamed from memory; work in MB."""
    request = _request(CT_IMAGE_STORAGE, dimse.EXPLICIT_VR_LITTLE_ENDIAN)
    request = dul.AssociateRequest(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=request.presentation_contexts,
        user_information=dul.UserInformation(maximum_length=max_pdu),
    )

    def service(assoc: Any) -> Any:
        yield from assoc.associate(request)
        fragment = (assoc.connection.max_send_length or 1 << 20) - 6
        fragment -= fragment % 2
        piece = fragment * max(1, (1 << 20) // fragment)
        chunk = _chunk(piece)

        def chunks() -> Iterator[memoryview]:
            left = total
            while left > 0:
                yield chunk[: min(piece, left)]
                left -= piece

        started = watch.start()
        uid = "1.2.826.0.1.3680043.10.1234.9"
        status = yield from _store(assoc, uid, chunks(), length=total)
        timed = watch.stop(started, total / MB)
        yield from assoc.release()
        if status != 0:
            raise RuntimeError(f"C-STORE failed: 0x{status:04X}")
        return timed

    (timed,) = _run("sockets", [(service, port)])
    return timed  # type: ignore[no-any-return]


def loopback_seconds(total: int, send_size: int = 1 << 20, recv_size: int = 256 << 10) -> float:
    """Seconds to move ``total`` bytes over loopback TCP between two threads, no protocol."""
    payload = _chunk(send_size)
    with socket.create_server((HOST, 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    received = [0]

    def receive() -> None:
        buffer = bytearray(recv_size)
        count = 0
        while count < total:
            n = server.recv_into(buffer)
            if not n:
                break
            count += n
        received[0] = count

    with client, server:
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=receive)
        start = time.perf_counter()
        thread.start()
        left = total
        while left > 0:
            client.sendall(payload[: min(send_size, left)])
            left -= send_size
        thread.join()
        seconds = time.perf_counter() - start
    if received[0] != total:
        raise RuntimeError(f"loopback: {received[0]} of {total} bytes received")
    return seconds


def loopback(total: int) -> Callable[[], Timed]:
    """The loopback limit as an :func:`interleaved` case (work in MB)."""
    watch = Stopwatch()

    def case() -> Timed:
        started = watch.start()
        loopback_seconds(total)
        return watch.stop(started, total / MB)

    return case


# -- servers ------------------------------------------------------------------------------------


def serve(kind: str, port: int) -> None:
    """Serve C-ECHO on ``port`` with pynetdicom until killed (dul's servers are its tools)."""
    if kind != "pynetdicom":
        raise ValueError(f"no server of kind {kind!r}")
    from pynetdicom import AE

    ae = AE(ae_title="ANY-SCP")
    ae.add_supported_context(dimse.VERIFICATION_SOP_CLASS, dimse.IMPLICIT_VR_LITTLE_ENDIAN)
    ae.maximum_pdu_size = MAX_PDU
    ae.start_server((HOST, port), block=True)


#: dul's async servers: storescp, data sets discarded, many associations at once.
_IGNORE = ("--ignore", "--max-associations", "1024")


@contextlib.contextmanager
def _servers(kinds: Sequence[str], dcmtk: Path | None) -> Iterator[dict[str, tuple[int, int]]]:
    """Start the servers ``kinds`` names, each on a free port; yield their (port, PID)."""
    python = [sys.executable, "-m"]
    commands = {
        "sockets": [*python, "examples.echoscp", "--max-associations", "64"],
        # storescp --ignore: C-ECHO, and C-STORE with the data sets discarded.
        "trio": [
            *python,
            "examples.storescp",
            "--driver",
            "trio",
            "--ignore",
            "--max-associations",
            "1024",
        ],
        "asyncio": [
            *python,
            "examples.storescp",
            "--driver",
            "asyncio",
            "--ignore",
            "--max-associations",
            "1024",
        ],
        "pynetdicom": [*python, "benchmarks.bench_network", "--serve", "pynetdicom"],
    }
    found: dict[str, tuple[int, int]] = {}
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            port = _free_port()
            if kind == "dcmtk":
                if dcmtk is None:
                    continue
                cmd = [str(dcmtk / "storescp"), "--ignore"]
            elif kind.startswith("sockets-store-"):
                pdu = kind.rsplit("-", 1)[1]
                cmd = [*python, "examples.storescp", "--ignore", "-pdu", pdu]
            else:
                cmd = commands[kind]
            found[kind] = port, stack.enter_context(_server(cmd, port)).pid
        yield found


# -- rows ---------------------------------------------------------------------------------------


def _rows(
    unit: str,
    measures: Sequence[tuple[str, Stats]],
    peers: Sequence[tuple[str, Stats | None]],
) -> list[Row]:
    """One row per (dul measure, peer); a measure without peers gets one row alone."""
    rows = []
    present = [(peer, s) for peer, s in peers if s is not None]
    for name, stats in measures:
        if not present:
            rows.append(Row(group="network", measure=name, unit=clock_unit(unit), dul=stats))
        rows += [
            Row(
                group="network",
                measure=name,
                unit=clock_unit(unit),
                dul=stats,
                peer=peer_stats,
                peer_name=peer,
            )
            for peer, peer_stats in present
        ]
    return rows


DRIVERS = ("sockets", "trio", "asyncio")


def bench_echo(mode: str, dcmtk: Path | None) -> list[Row]:
    """C-ECHO round trips and associations per second, every client beside its server."""
    echoes, pyn_echoes, dcmtk_echo_count = SIZES[mode]["echoes"]
    assocs, pyn_assocs, dcmtk_runs = SIZES[mode]["associations"]
    echoscu = str(dcmtk / "echoscu") if dcmtk is not None else None
    rows: list[Row] = []
    with _servers([*DRIVERS, "pynetdicom", "dcmtk"], dcmtk) as servers:

        def case(fn: Callable[..., Timed], kind: str, *args: object) -> Callable[[], Timed]:
            port, pid = servers[kind]
            return functools.partial(fn, Stopwatch([pid]), *args[:-1], port, args[-1])

        for what, unit, counts, dul_fns, pyn_fn, dcmtk_fn in (
            (
                "C-ECHO round trips on one association",
                "echoes/s",
                (echoes, pyn_echoes, dcmtk_echo_count),
                (sockets_echoes, trio_echoes, asyncio_echoes),
                pynetdicom_echoes,
                dcmtk_echoes,
            ),
            (
                "associations (associate, C-ECHO, release), one client process",
                "assoc/s",
                (assocs, pyn_assocs, dcmtk_runs),
                (sockets_associations, trio_associations, asyncio_associations),
                pynetdicom_associations,
                dcmtk_associations,
            ),
        ):
            cases = [case(fn, kind, counts[0]) for fn, kind in zip(dul_fns, DRIVERS, strict=True)]
            if echoscu is not None:  # dul's sockets client against DCMTK's server
                cases.append(case(dul_fns[0], "dcmtk", counts[0]))
            cases.append(case(pyn_fn, "pynetdicom", counts[1]))
            aborts_before = len(PYNETDICOM_ABORTS)
            if echoscu is not None:
                cases.append(case(dcmtk_fn, "dcmtk", echoscu, counts[2]))
            measured = iter(interleaved(cases))
            ours = [(f"{what}: dul {d} SCU ↔ dul {d} SCP", next(measured)) for d in DRIVERS]
            if echoscu is not None:
                ours.append((f"{what}: dul sockets SCU → DCMTK storescp", next(measured)))
            pyn = next(measured)
            theirs = next(measured, None)
            dcmtk_name = "DCMTK echoscu→storescp"
            if unit == "assoc/s":
                dcmtk_name += " (a process per association: start-up bound)"
            pyn_name = "pynetdicom↔pynetdicom"
            aborts = len(PYNETDICOM_ABORTS) - aborts_before
            if aborts:
                pyn_name += f" ({aborts} association(s) aborted: repeat(s) run again)"
            rows += _rows(unit, ours, [(pyn_name, pyn), (dcmtk_name, theirs)])
    return rows


def bench_stream(mode: str) -> list[Row]:
    """One data set from memory over loopback, dul's sockets driver both ends, beside the limit."""
    total = SIZES[mode]["stream"]
    pdus = (MAX_PDU, 131072) if mode != "smoke" else (MAX_PDU,)
    kinds = [f"sockets-store-{pdu}" for pdu in pdus]
    with _servers(kinds, None) as servers:
        cases = [
            functools.partial(sockets_stream, Stopwatch([servers[k][1]]), servers[k][0], total, pdu)
            for k, pdu in zip(kinds, pdus, strict=True)
        ]
        cases.append(loopback(total))
        *ours, limit = interleaved(cases)
    return [
        Row(
            group="network",
            measure=(
                f"P-DATA over loopback: C-STORE of {total >> 20} MiB from memory, max PDU "
                f"{pdu >> 10} KiB, dul sockets SCU → dul storescp --ignore"
            ),
            unit=clock_unit("MB/s"),
            dul=stats,
            limit=limit,
            limit_name="loopback TCP, 2 threads",
        )
        for pdu, stats in zip(pdus, ours, strict=True)
    ]


def run(mode: str) -> list[Row]:
    """All network rows; ``mode`` is one of ``_harness.MODES``."""
    dcmtk = find_dcmtk()
    return bench_echo(mode, dcmtk) + bench_stream(mode)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the rows and print them, or (``--serve KIND PORT``) be one of the servers."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_network", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--smoke", action="store_true")
    parser.add_argument("--clock", choices=sorted(_harness.CLOCKS), default="wall")
    parser.add_argument("--serve", choices=("pynetdicom",))
    parser.add_argument("port", nargs="?", type=int)
    args = parser.parse_args(argv)
    if args.serve:
        if args.port is None:
            parser.error("--serve needs a port")
        serve(args.serve, args.port)
        return []
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    _harness.clock_name = args.clock
    env = environment()
    print(
        f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; mode {mode}, "
        f"{args.clock} clock."
    )
    rows = run(mode)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
