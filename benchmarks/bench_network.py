"""Over loopback: C-ECHO round trips, associations per second, the wire's limit.

Many associations at once into one SCP: ``bench_load``.

Every server is a child process on 127.0.0.1, started once and stopped by its PID: dul's
blocking-sockets ``echoscp`` tool, a trio and an asyncio server on dul's drivers (``--serve``
below), a pynetdicom ``AE`` as shipped, and DCMTK's ``storescp`` (with ``TCP_NODELAY=1``). The
clients run in this process, except DCMTK's ``echoscu``, which runs as users run it:

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
    python -m benchmarks.bench_network --serve trio PORT        # a server, for the rows
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from examples.sockets.driver import Timeouts

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


def sockets_echoes(watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` C-ECHOs on one association of the blocking-sockets driver; (count, seconds)."""
    from examples.sockets.driver import Association

    assoc = Association.request(HOST, port, ECHO_REQUEST, timeouts=_timeouts())
    try:
        started = watch.start()
        for _ in range(count):
            if assoc.echo() != 0:
                raise RuntimeError("C-ECHO failed")
        timed = watch.stop(started, count)
    finally:
        assoc.release()
    return timed


def sockets_associations(watch: Stopwatch, port: int, count: int) -> Timed:
    """``count`` associations (request, C-ECHO, release), one after the other."""
    from examples.sockets.driver import Association

    timeouts = _timeouts()
    started = watch.start()
    for _ in range(count):
        assoc = Association.request(HOST, port, ECHO_REQUEST, timeouts=timeouts)
        try:
            if assoc.echo() != 0:
                raise RuntimeError("C-ECHO failed")
        finally:
            assoc.release()
    return watch.stop(started, count)


def trio_echoes(watch: Stopwatch, port: int, count: int) -> Timed:
    """As :func:`sockets_echoes`, on the trio driver."""
    import trio
    from examples.trio.driver import Association

    async def main() -> Timed:
        assoc = await Association.request(HOST, port, ECHO_REQUEST, timeouts=_timeouts())
        try:
            started = watch.start()
            for _ in range(count):
                if await assoc.echo() != 0:
                    raise RuntimeError("C-ECHO failed")
            return watch.stop(started, count)
        finally:
            await assoc.release()

    return trio.run(main)


def trio_associations(watch: Stopwatch, port: int, count: int) -> Timed:
    """As :func:`sockets_associations`, on the trio driver."""
    import trio
    from examples.trio.driver import Association

    async def main() -> Timed:
        timeouts = _timeouts()
        started = watch.start()
        for _ in range(count):
            assoc = await Association.request(HOST, port, ECHO_REQUEST, timeouts=timeouts)
            try:
                if await assoc.echo() != 0:
                    raise RuntimeError("C-ECHO failed")
            finally:
                await assoc.release()
        return watch.stop(started, count)

    return trio.run(main)


def asyncio_echoes(watch: Stopwatch, port: int, count: int) -> Timed:
    """As :func:`sockets_echoes`, on the asyncio driver."""
    from examples.asyncio.driver import Association

    async def main() -> Timed:
        assoc = await Association.request(HOST, port, ECHO_REQUEST, timeouts=_timeouts())
        try:
            started = watch.start()
            for _ in range(count):
                if await assoc.echo() != 0:
                    raise RuntimeError("C-ECHO failed")
            return watch.stop(started, count)
        finally:
            await assoc.release()

    return asyncio.run(main())


def asyncio_associations(watch: Stopwatch, port: int, count: int) -> Timed:
    """As :func:`sockets_associations`, on the asyncio driver."""
    from examples.asyncio.driver import Association

    async def main() -> Timed:
        timeouts = _timeouts()
        started = watch.start()
        for _ in range(count):
            assoc = await Association.request(HOST, port, ECHO_REQUEST, timeouts=timeouts)
            try:
                if await assoc.echo() != 0:
                    raise RuntimeError("C-ECHO failed")
            finally:
                await assoc.release()
        return watch.stop(started, count)

    return asyncio.run(main())


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
    from examples.sockets.driver import Association

    request = _request(CT_IMAGE_STORAGE, dimse.EXPLICIT_VR_LITTLE_ENDIAN)
    request = dul.AssociateRequest(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=request.presentation_contexts,
        user_information=dul.UserInformation(maximum_length=max_pdu),
    )
    assoc = Association.request(HOST, port, request, timeouts=_timeouts())
    fragment = (assoc.connection.max_send_length or 1 << 20) - 6
    fragment -= fragment % 2
    piece = fragment * max(1, (1 << 20) // fragment)
    chunk = _chunk(piece)

    def chunks() -> Iterator[memoryview]:
        left = total
        while left > 0:
            yield chunk[: min(piece, left)]
            left -= piece

    try:
        started = watch.start()
        response = assoc.store(
            CT_IMAGE_STORAGE, "1.2.826.0.1.3680043.10.1234.9", chunks(), length=total
        )
        timed = watch.stop(started, total / MB)
    finally:
        assoc.release()
    if response.status != 0:
        raise RuntimeError(f"C-STORE failed: 0x{response.status:04X}")
    return timed


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


def _store_policy() -> dimse.AcceptorPolicy:
    from examples.apps.storage import storage_policy

    return storage_policy(ae_title=None, maximum_length=MAX_PDU)


def serve(kind: str, port: int) -> None:
    """Serve C-ECHO (and C-STORE, discarding data sets) on ``port`` until killed."""
    if kind == "trio":
        _serve_trio(port)
    elif kind == "asyncio":
        _serve_asyncio(port)
    elif kind == "pynetdicom":
        from pynetdicom import AE

        ae = AE(ae_title="ANY-SCP")
        ae.add_supported_context(dimse.VERIFICATION_SOP_CLASS, dimse.IMPLICIT_VR_LITTLE_ENDIAN)
        ae.maximum_pdu_size = MAX_PDU
        ae.start_server((HOST, port), block=True)
    else:
        raise ValueError(f"no server of kind {kind!r}")


def _store_response(event: dimse.MessageReceived) -> dimse.CStoreResponse:
    message = event.message
    assert isinstance(message, dimse.CStoreRequest)
    return dimse.CStoreResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
    )


def _serve_trio(port: int) -> None:
    import trio
    from examples.trio import driver

    async def discard(
        assoc: driver.Association, event: dimse.MessageReceived, dataset: driver.DatasetReader
    ) -> None:
        await dataset.drain()
        await assoc.send(_store_response(event), context_id=event.context_id)

    server = driver.Server(
        HOST,
        port,
        policy=_store_policy(),
        handlers={dimse.CEchoRequest: driver.echo_handler, dimse.CStoreRequest: discard},
        max_associations=1024,
        timeouts=_timeouts(),
    )

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                async for _ in signals:  # stop cleanly (a profiler's output gets written)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def _serve_asyncio(port: int) -> None:
    from examples.asyncio import driver

    async def discard(
        assoc: driver.Association, event: dimse.MessageReceived, dataset: driver.DatasetReader
    ) -> None:
        await dataset.drain()
        await assoc.send(_store_response(event), context_id=event.context_id)

    async def main() -> None:
        server = driver.Server(
            HOST,
            port,
            policy=_store_policy(),
            handlers={dimse.CEchoRequest: driver.echo_handler, dimse.CStoreRequest: discard},
            max_associations=1024,
            timeouts=_timeouts(),
        )
        async with server:
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):  # stop cleanly
                loop.add_signal_handler(signum, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def _servers(kinds: Sequence[str], dcmtk: Path | None) -> Iterator[dict[str, tuple[int, int]]]:
    """Start the servers ``kinds`` names, each on a free port; yield their (port, PID)."""
    python = [sys.executable, "-m"]
    commands = {
        "sockets": [*python, "examples.echoscp", "--max-associations", "64"],
        "trio": [*python, "benchmarks.bench_network", "--serve", "trio"],
        "asyncio": [*python, "benchmarks.bench_network", "--serve", "asyncio"],
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
    parser.add_argument("--serve", choices=("trio", "asyncio", "pynetdicom"))
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
