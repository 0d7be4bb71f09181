"""The trio and asyncio drivers on the same core, against each other, the sockets driver and DCMTK.

Every pair of requestor and acceptor among the three drivers echoes and stores (plain TCP and
TLS); the async drivers stream 20 MB in bounded memory, stop reading a stream when the peer stops
reading, abort cleanly when cancelled mid-data set, close a silent peer by ARTIM, refuse beyond
their bound, and serve 200 simultaneous associations. The requestors and the acceptors are
services (``examples.runtime``): the same steps run on every driver; a scenario that needs its
own event loop drives them with ``runtime.drive_async`` under ``trio.run`` or ``asyncio.run``.
Servers run in a thread of their own unless a test needs both ends in one event loop; time
bounds are liveness bounds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from examples import runtime
from examples.apps import echo
from examples.asyncio import driver as asyncio_driver
from examples.make_test_file import make_dataset
from examples.runtime import Association, Sleep, Steps
from examples.sockets import driver as sockets_driver
from examples.trio import driver as trio_driver
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

import dul
from dul import dimse
from peers import HOST, Dcmtk

VERIFICATION = dimse.VERIFICATION_SOP_CLASS
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = dimse.EXPLICIT_VR_LITTLE_ENDIAN
IMPLICIT = dimse.IMPLICIT_VR_LITTLE_ENDIAN

KINDS = ["sockets", "trio", "asyncio"]
ASYNC_DRIVERS: dict[str, ModuleType] = {"trio": trio_driver, "asyncio": asyncio_driver}
ASYNC_KINDS = list(ASYNC_DRIVERS)

#: Every wait in these tests ends within this: a broken driver fails a test, never hangs it.
LIVENESS = 30.0
TIMEOUTS = sockets_driver.Timeouts(connect=LIVENESS, acse=LIVENESS, dimse=LIVENESS, artim=LIVENESS)
POLICY = dimse.AcceptorPolicy(contexts={VERIFICATION: (), CT_STORAGE: ()})
CHUNK = 64 * 1024


def association_request(called_ae_title: str = "ANY-SCP") -> dul.AssociateRequest:
    """Verification and CT Image Storage, each in explicit or implicit VR little endian."""
    contexts = tuple(
        dul.PresentationContext(
            context_id=2 * i + 1, abstract_syntax=uid, transfer_syntaxes=(EXPLICIT, IMPLICIT)
        )
        for i, uid in enumerate((VERIFICATION, CT_STORAGE))
    )
    return dul.AssociateRequest(
        called_ae_title=called_ae_title,
        calling_ae_title="DUL-TEST",
        presentation_contexts=contexts,
    )


def pattern(seed: str, size: int) -> bytes:
    """``size`` bytes (even) that differ for every ``seed``."""
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def chunks(data: bytes, size: int = CHUNK) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start : start + size]


def digest(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def run_async(kind: str, function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``function(*args)`` under trio or asyncio."""
    if kind == "trio":
        return trio.run(function, *args)
    return asyncio.run(function(*args))  # type: ignore[arg-type]


async def connect_and_run(
    kind: str, port: int, service: runtime.Service[Any], **options: Any
) -> tuple[Any, Any]:
    """Connect with an async driver, in the running event loop, and run ``service``:
    (its result, the driver's association)."""
    driver = ASYNC_DRIVERS[kind]
    assoc = await driver.Association.connect(HOST, port, timeouts=TIMEOUTS, **options)
    link = Association(assoc.session, TIMEOUTS)
    return await runtime.drive_async(driver.Steps(), assoc, link, service(link)), assoc


def run_requestor(kind: str, port: int, service: runtime.Service[Any], **options: Any) -> Any:
    """Run ``service`` as the requestor on driver ``kind``: its result."""
    module = sockets_driver if kind == "sockets" else ASYNC_DRIVERS[kind]
    return module.run_requestor(service, HOST, port, timeouts=TIMEOUTS, **options)


# -- what the requestors do ----------------------------------------------------------------------


def store(
    assoc: Association,
    uid: str,
    data: bytes | Iterable[bytes | memoryview],
    *,
    length: int | None = None,
    transfer_syntax: str | None = None,
) -> Steps[int]:
    """C-STORE one data set, whole or streamed from ``data``'s chunks: the status."""
    context_id = assoc.context_for(CT_STORAGE, transfer_syntax)
    assert context_id is not None
    request = dimse.CStoreRequest(
        message_id=assoc.session.next_message_id(),
        affected_sop_class_uid=CT_STORAGE,
        affected_sop_instance_uid=uid,
    )
    if isinstance(data, bytes):
        yield from assoc.send(request, context_id=context_id, dataset=data)
    else:
        assert length is not None
        yield from assoc.send(request, context_id=context_id, dataset_follows=True)
        sent = 0
        for chunk in data:
            sent += len(chunk)
            yield from assoc.send_dataset(context_id, chunk, is_last=sent >= length)
    response, _ = yield from assoc.receive_response()
    return response.status


def echo_status(assoc: Association) -> Steps[int]:
    context_id = assoc.context_for(VERIFICATION)
    assert context_id is not None
    return (yield from echo.echo(assoc, context_id))


def associated(
    work: Callable[[Association], Steps[Any]],
    called_ae_title: str = "ANY-SCP",
    *,
    release: bool = True,
) -> runtime.Service[Any]:
    """A requestor's service: associate, ``work``, release."""

    def service(assoc: Association) -> Steps[Any]:
        yield from assoc.associate(association_request(called_ae_title))
        result = yield from work(assoc)
        if release:
            yield from assoc.release()
        return result

    return service


# -- an SCP that records what it receives ------------------------------------------------------


class Received:
    """What an SCP received: data set digests by SOP Instance UID, and how each association ended.

    ``gate``, while clear, holds every C-STORE handler before it reads its data set: the SCP
    stops reading.
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, int]] = {}
        self.causes: list[dul.CloseCause | None] = []
        self.events: list[object] = []
        self.gate = threading.Event()
        self.gate.set()

    def on_close(self, assoc: Any) -> None:
        self.causes.append(assoc.closed.cause if assoc.closed is not None else None)

    def on_event(self, direction: str, event: object) -> None:
        if direction == "received" and not isinstance(event, dimse.DatasetChunk):
            self.events.append(event)

    def record(self, event: dimse.MessageReceived, hasher: Any, size: int) -> None:
        message = event.message
        assert isinstance(message, dimse.CStoreRequest)
        self.files[message.affected_sop_instance_uid] = (hasher.hexdigest(), size)

    def store(
        self, assoc: Association, event: dimse.MessageReceived, dataset: runtime.DatasetReader
    ) -> Steps[None]:
        while not self.gate.is_set():  # the SCP stops reading (the event loop goes on)
            yield Sleep(0.02)
        hasher, size = hashlib.sha256(), 0
        while (chunk := (yield from dataset.next())) is not None:
            hasher.update(chunk)
            size += len(chunk)
        self.record(event, hasher, size)
        yield from assoc.send(store_response(event), context_id=event.context_id)

    def server(self, kind: str, **options: Any) -> Any:
        """A server of ``kind`` (not started) whose handlers record here."""
        options = {"timeouts": TIMEOUTS, **options}
        module = sockets_driver if kind == "sockets" else ASYNC_DRIVERS[kind]
        handlers = {dimse.CEchoRequest: echo.respond, dimse.CStoreRequest: self.store}
        return module.Server(
            HOST,
            0,
            service=runtime.acceptor(POLICY.evaluate, handlers),
            on_close=self.on_close,
            on_event=self.on_event,
            **options,
        )


def store_response(event: dimse.MessageReceived) -> dimse.CStoreResponse:
    message = event.message
    assert isinstance(message, dimse.CStoreRequest)
    return dimse.CStoreResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
    )


@contextlib.contextmanager
def running_server(kind: str, received: Received, **options: Any) -> Iterator[Any]:
    """Serve in a thread of its own (its own event loop); yield the server (``.port``)."""
    server = received.server(kind, **options)
    if kind == "sockets":
        with server:
            yield server
        return
    ready: queue.Queue[Any] = queue.Queue()
    failure: list[BaseException] = []

    async def serve_trio() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            ready.put(trio.lowlevel.current_trio_token())

    async def serve_asyncio() -> None:
        async with server:
            stop = asyncio.Event()
            ready.put((asyncio.get_running_loop(), stop))
            await stop.wait()

    def run() -> None:
        try:
            run_async(kind, serve_trio if kind == "trio" else serve_asyncio)
        except BaseException as exc:
            failure.append(exc)
            ready.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    handle = ready.get(timeout=LIVENESS)
    try:
        assert handle is not None, failure
        yield server
    finally:
        if handle is not None:
            if kind == "trio":
                trio.from_thread.run_sync(server.shutdown, trio_token=handle)
            else:
                loop, stop = handle
                loop.call_soon_threadsafe(stop.set)
        thread.join(LIVENESS)
        assert not thread.is_alive(), "the server did not stop"
        if failure:
            raise failure[0]


async def with_own_server(
    kind: str, received: Received, scenario: Callable[[Any], Awaitable[Any]], **options: Any
) -> Any:
    """Run ``scenario(server)`` against a server of driver ``kind`` in this same event loop."""
    server = received.server(kind, **options)
    if kind == "trio":
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            try:
                return await scenario(server)
            finally:
                server.shutdown()
    async with server:
        return await scenario(server)


# -- a requestor session with any driver -------------------------------------------------------

#: How a client hands a data set over: whole, or streamed in chunks.
FILES = [("bytes", 10_240), ("chunks", 300_000), ("many chunks", 1_000_000)]


def client_session(kind: str, port: int, **options: Any) -> tuple[list[int], dict[str, Any]]:
    """Associate, C-ECHO, C-STORE each of :data:`FILES`, release: the statuses and files sent."""
    files = {f"2.25.{i + 1}": (how, pattern(how, size)) for i, (how, size) in enumerate(FILES)}
    sent = {uid: digest(data) for uid, (_, data) in files.items()}

    def work(assoc: Association) -> Steps[list[int]]:
        statuses = [(yield from echo_status(assoc))]
        for uid, (how, data) in files.items():
            source = data if how == "bytes" else chunks(data)
            statuses.append((yield from store(assoc, uid, source, length=len(data))))
        return statuses

    return run_requestor(kind, port, associated(work), **options), sent


@pytest.mark.parametrize("server", KINDS)
@pytest.mark.parametrize("client", KINDS)
def test_echo_and_store(client: str, server: str) -> None:
    """Each driver's requestor against each driver's acceptor: echo, stores, release."""
    received = Received()
    with running_server(server, received) as scp:
        statuses, sent = client_session(client, scp.port)
    assert statuses == [0x0000] * (1 + len(FILES))
    assert received.files == sent
    assert received.causes == [dul.CloseCause.RELEASED]


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts around a self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=LIVENESS,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.mark.parametrize("server", KINDS)
@pytest.mark.parametrize("client", KINDS)
def test_echo_and_store_over_tls(
    client: str, server: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts
    received = Received()
    with running_server(server, received, ssl_context=server_context) as scp:
        statuses, sent = client_session(client, scp.port, ssl_context=client_context)
    assert statuses == [0x0000] * (1 + len(FILES))
    assert received.files == sent
    assert received.causes == [dul.CloseCause.RELEASED]


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_a_failed_tls_handshake_harms_neither_end(
    kind: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """A requestor that does not trust the certificate gets a DriverError; the server goes on."""
    server_context, client_context = tls_contexts
    untrusting = ssl.create_default_context()  # the system's CAs: not our self-signed one

    async def scenario(server: Any) -> int:
        driver = ASYNC_DRIVERS[kind]
        with pytest.raises(runtime.DriverError, match="CERTIFICATE_VERIFY_FAILED"):
            await driver.Association.connect(
                HOST, server.port, timeouts=TIMEOUTS, ssl_context=untrusting
            )
        status, _ = await connect_and_run(
            kind, server.port, associated(echo_status), ssl_context=client_context
        )
        return int(status)

    received = Received()
    serve = partial(with_own_server, ssl_context=server_context)
    assert run_async(kind, serve, kind, received, scenario) == 0x0000
    assert received.causes == [dul.CloseCause.RELEASED]


# -- streaming and flow control ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_streamed_store_of_20_mb_keeps_memory_bounded(kind: str) -> None:
    """20 MB made on the fly go through both ends of one event loop in a few MB of memory."""
    size = 20 << 20
    seeds = [str(i % 7) for i in range(size // CHUNK)]
    expected = hashlib.sha256()
    for seed in seeds:
        expected.update(pattern(seed, CHUNK))

    def source() -> Iterator[bytes]:
        for seed in seeds:
            yield pattern(seed, CHUNK)  # made when asked for: nothing holds the whole data set

    def work(assoc: Association) -> Steps[int]:
        return (yield from store(assoc, "2.25.20", source(), length=size))

    async def scenario(server: Any) -> int:
        status, _ = await connect_and_run(kind, server.port, associated(work))
        return int(status)

    received = Received()
    tracemalloc.start()
    try:
        status = run_async(kind, with_own_server, kind, received, scenario)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 0x0000
    assert received.files == {"2.25.20": (expected.hexdigest(), size)}
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MB traced for a 20 MB data set"


def test_asyncio_copies_reused_buffers_where_the_transport_keeps_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From Python 3.12 asyncio's writelines may keep views of unsent data: a view of a buffer
    the caller reuses must reach the transport as a copy, immutable bytes as they are."""
    monkeypatch.setattr(asyncio_driver, "_TRANSPORT_KEEPS_VIEWS", True)
    data = pattern("reused", 8 * CHUNK)
    written: list[bytes | bytearray | memoryview] = []

    def reused_chunks() -> Iterator[memoryview]:
        buffer = bytearray(CHUNK)
        for start in range(0, len(data), CHUNK):
            buffer[:] = data[start : start + CHUNK]
            yield memoryview(buffer)  # overwritten when the next chunk is asked for

    async def scenario(server: Any) -> int:
        assoc = await asyncio_driver.Association.connect(HOST, server.port, timeouts=TIMEOUTS)
        transport = assoc.protocol.transport
        real = transport.writelines

        def spy(buffers: list[bytes | bytearray | memoryview]) -> None:
            written.extend(buffers)
            real(buffers)

        transport.writelines = spy

        def work(link: Association) -> Steps[int]:
            return (yield from store(link, "2.25.21", reused_chunks(), length=len(data)))

        link = Association(assoc.session, TIMEOUTS)
        steps = associated(work)(link)
        return int(await runtime.drive_async(asyncio_driver.Steps(), assoc, link, steps))

    received = Received()
    with running_server("sockets", received) as server:
        status = asyncio.run(scenario(server))
    assert status == 0x0000
    assert received.files == {"2.25.21": digest(data)}
    assert written and all(isinstance(b, bytes) or memoryview(b).readonly for b in written), (
        "a writable view reached the transport"
    )


def watch_stall(progress: Callable[[], int], on_stall: Callable[[int], None]) -> threading.Thread:
    """A thread that calls ``on_stall(progress())`` once ``progress()`` stops moving."""

    def watch() -> None:
        deadline = time.monotonic() + LIVENESS
        last = -1
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = progress()
            if now == last and now > 0:
                on_stall(now)
                return
            last = now
        on_stall(-1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("server", ["sockets", "own"])
@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_a_peer_that_stops_reading_stops_the_stream(kind: str, server: str) -> None:
    """The data set source is read no faster than the peer reads: nothing piles up in memory.

    Against its own acceptor, whose handler waits before reading, the acceptor must stop
    reading too (asyncio: ``pause_reading``; trio reads only when asked).
    """
    total = 96 << 20
    pulled = [0]
    stalled_at: list[int] = []
    received = Received()
    received.gate.clear()
    block = pattern("stall", CHUNK)

    def source() -> Iterator[bytes]:  # a sync iterable: writes alone must pace it
        for _ in range(total // CHUNK):
            pulled[0] += CHUNK
            yield block

    def stalled(at: int) -> None:
        stalled_at.append(at)
        received.gate.set()

    with running_server("sockets" if server == "sockets" else kind, received) as scp:

        def work(assoc: Association) -> Steps[int]:
            return (yield from store(assoc, "2.25.96", source(), length=total))

        async def scenario() -> int:
            status, _ = await connect_and_run(kind, scp.port, associated(work))
            return int(status)

        watcher = watch_stall(lambda: pulled[0], stalled)
        status = run_async(kind, scenario)
        watcher.join(LIVENESS)
    assert status == 0x0000
    assert received.files["2.25.96"] == digest(block * (total // CHUNK))
    (at,) = stalled_at
    # What the kernel's socket buffers and one transport buffer hold: far from the whole stream.
    assert 0 < at < total // 2, f"{at / 2**20:.1f} MB read ahead of a peer that stopped reading"


# -- cancellation ------------------------------------------------------------------------------


def run_cancellable(
    kind: str,
    scenario: Callable[[Callable[[], None], Callable[[], None]], Coroutine[Any, Any, None]],
) -> None:
    """Run ``scenario(cancel, cancel_from_thread)`` in a cancellable task; it must be cancelled.

    Under asyncio, no task may be left once it is.
    """
    if kind == "trio":

        async def main_trio() -> None:
            token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                await scenario(
                    scope.cancel, lambda: trio.from_thread.run_sync(scope.cancel, trio_token=token)
                )
            assert scope.cancelled_caught

        trio.run(main_trio)
        return

    async def main_asyncio() -> None:
        loop = asyncio.get_running_loop()
        holder: list[asyncio.Task[Any]] = []

        def cancel() -> None:
            holder[0].cancel()

        def cancel_from_thread() -> None:
            loop.call_soon_threadsafe(cancel)

        task = loop.create_task(scenario(cancel, cancel_from_thread))
        holder.append(task)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main_asyncio())


@pytest.mark.parametrize("peer_reads", [True, False], ids=["peer-reading", "peer-stalled"])
@pytest.mark.parametrize("server", ["sockets", "own"])
@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_cancelling_a_transfer_aborts_the_association(
    kind: str, server: str, peer_reads: bool
) -> None:
    """Cancelled mid-data set, the requestor sends an A-ABORT (after the PDU it had begun) and
    closes: the acceptor sees the abort, not a broken stream."""
    total = 1 << 30  # never sent whole: the transfer is cancelled long before
    pulled = [0]
    received = Received()
    if not peer_reads:
        received.gate.clear()
    associations: list[Any] = []
    block = pattern("cancel", CHUNK)

    async def scenario(cancel: Callable[[], None], cancel_from_thread: Callable[[], None]) -> None:
        def source() -> Iterator[bytes]:
            while True:
                pulled[0] += CHUNK
                if peer_reads and pulled[0] == 64 * CHUNK:
                    cancel()
                yield block

        def stalled(at: int) -> None:
            cancel_from_thread()
            time.sleep(0.3)  # the requestor is aborting now, against a peer that does not read
            received.gate.set()

        def work(link: Association) -> Steps[int]:
            return (yield from store(link, "2.25.1", source(), length=total))

        if not peer_reads:
            watch_stall(lambda: pulled[0], stalled)
        driver = ASYNC_DRIVERS[kind]
        assoc = await driver.Association.connect(HOST, port, timeouts=TIMEOUTS)
        associations.append(assoc)
        link = Association(assoc.session, TIMEOUTS)
        await runtime.drive_async(driver.Steps(), assoc, link, associated(work)(link))

    with running_server("sockets" if server == "sockets" else kind, received) as scp:
        port = scp.port
        run_cancellable(kind, scenario)
    (assoc,) = associations
    assert assoc.closed.cause is dul.CloseCause.ABORTED_LOCALLY
    if kind == "trio":
        assert assoc.stream.socket.fileno() == -1
    else:
        assert assoc.protocol.lost.done()
        assert assoc.protocol.transport.is_closing()
    assert received.causes == [dul.CloseCause.ABORTED_BY_PEER]
    assert any(isinstance(event, dul.Abort) for event in received.events)
    assert "2.25.1" not in received.files


# -- ARTIM, the association bound --------------------------------------------------------------


@pytest.mark.parametrize("sent", [0, 40], ids=["nothing", "a partial request"])
@pytest.mark.parametrize("kind", KINDS)
def test_artim_closes_a_peer_that_never_sends_a_request(kind: str, sent: int) -> None:
    """PS3.8 §9.1.4: the acceptor starts ARTIM on connect and closes when it expires, whether
    the peer sends nothing or starts an A-ASSOCIATE-RQ and never finishes it."""
    received = Received()
    timeouts = runtime.Timeouts(acse=LIVENESS, artim=0.2)
    with (
        running_server(kind, received, timeouts=timeouts) as scp,
        socket.create_connection((HOST, scp.port), timeout=LIVENESS) as sock,
    ):
        sock.sendall(dul.encode(association_request())[:sent])
        assert sock.recv(1) == b""  # closed by the acceptor (a timeout here fails the test)
    assert received.causes == [dul.CloseCause.ARTIM_EXPIRED]


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_an_association_beyond_the_bound_is_rejected(kind: str) -> None:
    """At ``max_associations``, a request gets a transient, local-limit rejection (RJ 2/3/2)."""

    async def scenario(server: Any) -> None:
        def work(first: Association) -> Steps[None]:
            second: Association = yield runtime.Connect(HOST, server.port, TIMEOUTS)
            with pytest.raises(runtime.AssociationRejected) as info:
                yield from second.associate(association_request())
            reject = info.value.reject
            assert (reject.result, reject.source, reject.reason) == (2, 3, 2)
            assert (yield from echo_status(first)) == 0x0000

        await connect_and_run(kind, server.port, associated(work))

    received = Received()
    run_async(kind, partial(with_own_server, max_associations=1), kind, received, scenario)
    assert received.causes == [dul.CloseCause.RELEASED]  # on_close is for served associations


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_shutting_down_aborts_associations_that_outlive_the_grace(kind: str) -> None:
    """A server stopping cancels its association tasks: each aborts (A-ABORT, then close)."""
    stopping: list[Any] = []

    def work(assoc: Association) -> Steps[None]:
        assert (yield from echo_status(assoc)) == 0x0000
        server = servers[0]
        if kind == "trio":
            server.shutdown(grace=0)
        else:
            stopping.append(asyncio.ensure_future(server.shutdown(grace=0)))
        with pytest.raises(runtime.AssociationAborted) as info:
            yield from assoc.receive_message()
        assert info.value.cause is dul.CloseCause.ABORTED_BY_PEER

    servers: list[Any] = []

    async def scenario(server: Any) -> None:
        servers.append(server)
        await connect_and_run(kind, server.port, associated(work, release=False))
        for task in stopping:
            await task

    received = Received()
    run_async(kind, with_own_server, kind, received, scenario)
    assert received.causes == [dul.CloseCause.ABORTED_LOCALLY]


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_200_simultaneous_associations(kind: str) -> None:
    """200 associations open at once, 20 x 10 KB stored on each: every file arrives intact."""
    associations, files, size = 200, 20, 10_240
    data = {
        f"2.25.{a}.{f}": pattern(f"{a}/{f}", size)
        for a in range(associations)
        for f in range(files)
    }
    established = [0]

    async def scenario(server: Any) -> list[int]:
        port = server.port
        statuses: list[int] = []

        def work(a: int) -> Callable[[Association], Steps[None]]:
            def stores(assoc: Association) -> Steps[None]:
                established[0] += 1
                while established[0] < associations:  # all 200 established before any stores
                    yield Sleep(0.01)
                for f in range(files):
                    uid = f"2.25.{a}.{f}"
                    statuses.append((yield from store(assoc, uid, data[uid])))

            return stores

        async def one(a: int) -> None:
            await connect_and_run(kind, port, associated(work(a)))

        if kind == "trio":
            async with trio.open_nursery() as nursery:
                for a in range(associations):
                    nursery.start_soon(one, a)
        else:
            await asyncio.gather(*(one(a) for a in range(associations)))
        return statuses

    received = Received()
    serve = partial(with_own_server, max_associations=associations)
    statuses = run_async(kind, serve, kind, received, scenario)
    assert established[0] == associations
    assert statuses == [0x0000] * (associations * files)
    assert received.files == {uid: digest(value) for uid, value in data.items()}
    assert received.causes == [dul.CloseCause.RELEASED] * associations


# -- DCMTK -------------------------------------------------------------------------------------


def ct_dataset(sop_instance_uid: str | None = None) -> tuple[str, bytes]:
    """The example CT image (with another SOP Instance UID if given): the UID, and the data set
    in explicit VR little endian."""
    ds = make_dataset()
    if sop_instance_uid is not None:
        ds.SOPInstanceUID = sop_instance_uid
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return str(ds.SOPInstanceUID), fp.getvalue()


@pytest.mark.interop
@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_echo_and_store_to_storescp(kind: str, dcmtk: Dcmtk, tmp_path: Path) -> None:
    """Our requestor against DCMTK's storescp: C-ECHO, then C-STORE (whole and streamed)."""
    whole_uid, whole = ct_dataset()
    streamed_uid, streamed = ct_dataset("2.25.1234567890")

    def work(assoc: Association) -> Steps[list[int]]:
        statuses = [(yield from echo_status(assoc))]
        # The data sets are explicit VR: context_for() fails if storescp chose implicit.
        statuses.append((yield from store(assoc, whole_uid, whole, transfer_syntax=EXPLICIT)))
        source = chunks(streamed, 4096)
        status = yield from store(
            assoc, streamed_uid, source, length=len(streamed), transfer_syntax=EXPLICIT
        )
        statuses.append(status)
        return statuses

    with dcmtk.storescp(tmp_path) as port:
        statuses = run_requestor(kind, port, associated(work, "STORESCP"))
    assert statuses == [0x0000] * 3
    expected = make_dataset()
    for uid in (whole_uid, streamed_uid):
        written = dcmread(tmp_path / "received" / f"CT.{uid}")
        assert written.SOPInstanceUID == uid
        assert written.PixelData == expected.PixelData
        assert written.PatientName == expected.PatientName


@pytest.mark.interop
@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_echoscu_and_storescu_to_our_server(kind: str, dcmtk: Dcmtk, tmp_path: Path) -> None:
    """DCMTK's requestors against our acceptor."""
    uid, data = ct_dataset()
    path = tmp_path / "ct.dcm"
    make_dataset().save_as(path, enforce_file_format=True)
    received = Received()
    with running_server(kind, received) as scp:
        echo = dcmtk.run("echoscu", "-aec", "ANY-SCP", HOST, str(scp.port), timeout=LIVENESS)
        store = dcmtk.run(
            "storescu", "-aec", "ANY-SCP", "-xe", HOST, str(scp.port), str(path), timeout=LIVENESS
        )
    assert echo.returncode == 0, echo.stderr
    assert store.returncode == 0, store.stderr
    assert received.causes == [dul.CloseCause.RELEASED] * 2
    assert received.files[uid] == digest(data)
