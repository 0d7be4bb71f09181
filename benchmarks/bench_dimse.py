"""DIMSE in one process: dul's Session beside pynetdicom's DUL+DIMSE decode of the same bytes.

* **C-STORE receive**: one 2 MiB C-STORE-RQ (command and data set) as P-DATA-TF PDUs of 16 KiB
  (maximum length 16384), fed to an established acceptor :class:`dul.dimse.Session` in 256 KiB
  reads of a reused buffer, as a driver's ``recv_into`` delivers them; the Session frames,
  decodes, runs the state machine and reassembles the message (streamed: each data set fragment
  is a view; whole: joined into one ``bytes``). pynetdicom gets the same PDUs the way its DUL
  reads them (header, then body, joined into a ``bytearray``, copied to ``bytes``) and runs what
  its DUL and DIMSE providers run on each: ``P_DATA_TF.decode``, ``to_primitive``,
  ``DIMSEMessage.decode_msg`` and, at the end, ``message_to_primitive``. Its FSM, queues and
  threads are left out, which flatters it. The limit is one memcpy of the stream.
* **Operations on one association**: a requestor and an acceptor Session in one process, each
  request answered before the next (a window of 1): C-ECHO, and C-STORE of 10 KB data sets.
  pynetdicom's column runs its encode and decode path for the same messages (``primitive_to_
  message``, ``encode_msg``, ``P_DATA_TF`` encode and decode, ``decode_msg``,
  ``message_to_primitive``), again without FSM, queues or threads.

Rates: MB/s (10**6 bytes) of PDU stream, and operations (request + response) per second.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any, NamedTuple

import dul
from dul import dimse

from ._harness import MIN_TIME, Case, Row, measure_together

__all__ = [
    "CT_IMAGE_STORAGE",
    "PynetdicomPeer",
    "Received",
    "establish",
    "receive",
    "run",
    "store_stream",
]

MB = 1e6
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SOP_INSTANCE = "1.2.826.0.1.3680043.10.1234.1"
#: Context IDs of the request :func:`establish` sends.
STORE_CONTEXT, ECHO_CONTEXT = 1, 3
#: What one socket read delivers.
READ_SIZE = 256 << 10


class Received(NamedTuple):
    """What a receiver saw: messages completed and data set bytes."""

    messages: int
    dataset_bytes: int


def establish(
    max_length: int = 16 << 10, *, whole_datasets: bool = False
) -> tuple[dimse.Session, dimse.Session]:
    """A requestor and an acceptor Session, associated; each announces ``max_length``.

    The operations window is unlimited: the receive rows feed requests they never answer.
    """
    unlimited = dul.AsyncOpsWindow(invoked=0, performed=0)
    requestor = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
    acceptor = dimse.Session(dul.Connection(dul.Role.ACCEPTOR), whole_datasets=whole_datasets)
    request = dul.AssociateRequest(
        called_ae_title="ACCEPTOR",
        calling_ae_title="REQUESTOR",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=STORE_CONTEXT,
                abstract_syntax=CT_IMAGE_STORAGE,
                transfer_syntaxes=(dimse.EXPLICIT_VR_LITTLE_ENDIAN,),
            ),
            dul.PresentationContext(
                context_id=ECHO_CONTEXT,
                abstract_syntax=dimse.VERIFICATION_SOP_CLASS,
                transfer_syntaxes=(dimse.IMPLICIT_VR_LITTLE_ENDIAN,),
            ),
        ),
        user_information=dul.UserInformation(maximum_length=max_length, async_ops_window=unlimited),
    )
    policy = dimse.AcceptorPolicy(
        contexts={
            CT_IMAGE_STORAGE: (dimse.EXPLICIT_VR_LITTLE_ENDIAN,),
            dimse.VERIFICATION_SOP_CLASS: (dimse.IMPLICIT_VR_LITTLE_ENDIAN,),
        },
        maximum_length=max_length,
        async_ops_window=unlimited,
    )
    acceptor.receive_data(requestor.send(request))
    received = acceptor.next_event()
    assert isinstance(received, dul.AssociateRequest)
    answer = policy.evaluate(received)
    assert isinstance(answer, dul.AssociateAccept)
    requestor.receive_data(acceptor.send(answer))
    assert isinstance(requestor.next_event(), dul.AssociateAccept)
    return requestor, acceptor


@functools.lru_cache(maxsize=4)
def _payload(size: int) -> bytes:
    """Non-zero bytes of an even ``size``; made once."""
    return (bytes(range(1, 256)) * (size // 255 + 1))[:size]


def store_request(message_id: int = 1) -> dimse.CStoreRequest:
    return dimse.CStoreRequest(
        message_id=message_id,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid=SOP_INSTANCE,
    )


def store_stream(dataset_size: int, max_length: int = 16 << 10) -> bytes:
    """The bytes on the wire of one C-STORE-RQ with a ``dataset_size`` data set."""
    requestor, _ = establish(max_length)
    buffers = requestor.send_message(
        store_request(), context_id=STORE_CONTEXT, dataset=_payload(dataset_size)
    )
    return b"".join(buffers)


def _reads(stream: bytes, read_size: int) -> list[memoryview]:
    """``stream`` in a reused-looking buffer, cut in reads regardless of PDU boundaries.

    The views are of a ``bytearray``, so dul copies what it is fed, as it must with a driver's
    ``recv_into`` buffer.
    """
    view = memoryview(bytearray(stream))
    return [view[i : i + read_size] for i in range(0, len(stream), read_size)]


def receive(acceptor: dimse.Session, reads: Sequence[memoryview]) -> Received:
    """Feed ``reads`` to ``acceptor`` and consume every event; what arrived."""
    feed = acceptor.receive_data
    next_event = acceptor.next_event
    need_data = dul.NEED_DATA
    messages = size = 0
    for read in reads:
        feed(read)
        while (event := next_event()) is not need_data:
            if type(event) is dimse.DatasetChunk:
                size += len(event.data)
            elif type(event) is dimse.MessageReceived:
                if event.dataset is not None:
                    size += len(event.dataset)
                    messages += 1
                elif not event.has_dataset:
                    messages += 1
            else:
                raise AssertionError(f"unexpected event {event!r}")
            if type(event) is dimse.DatasetChunk and event.is_last:
                messages += 1
    return Received(messages, size)


# -- pynetdicom ---------------------------------------------------------------------------------


class _Pipe:
    """One direction of a loopback: what one side sent, read back ``recv``-style.

    ``recv(n)`` returns up to ``n`` bytes as a new ``bytes``, as ``socket.recv`` does (that copy
    stands for the kernel's).
    """

    def __init__(self) -> None:
        self.data = b""
        self.offset = 0

    def load(self, data: bytes) -> None:
        """Append ``data`` to what is still unread."""
        self.data = self.data[self.offset :] + data if self.pending() else data
        self.offset = 0

    def send(self, data: bytes) -> int:
        self.load(bytes(data))
        return len(data)

    def recv(self, n: int) -> bytes:
        start = self.offset
        self.offset = min(start + n, len(self.data))
        return self.data[start : self.offset]

    def pending(self) -> int:
        return len(self.data) - self.offset


class PynetdicomPeer:
    """A requestor and an acceptor pynetdicom ``Association`` wired back to back, no threads.

    Each side's DUL reads and writes through pynetdicom's own ``AssociationSocket.recv`` and
    ``send`` (4 KiB ``recv`` calls, joined into a ``bytearray``) over an in-memory pipe, and its
    provider code runs as its reactor would run it: ``_read_pdu_data`` (decode, event handlers),
    the FSM's action for the event (DT-2 hands the P-DATA primitive to ``DIMSEServiceProvider.
    receive_primitive``: ``decode_msg``, ``message_to_primitive``, the message queue), and on the
    way out ``DIMSEServiceProvider.send_msg`` then the FSM's DT-1 (``P_DATA_TF`` encode, send).
    Left out: the reactor threads, their polling sleeps and the socket system calls, which is
    what makes pynetdicom slow on a real network; this is its best case.
    """

    def __init__(self, max_length: int) -> None:
        from pynetdicom import AE
        from pynetdicom.association import Association
        from pynetdicom.transport import AssociationSocket

        ae = AE()
        self.requestor = Association(ae, "requestor")
        self.acceptor = Association(ae, "acceptor")
        self.requestor.acceptor.maximum_length = max_length
        self.acceptor.requestor.maximum_length = max_length
        to_acceptor, to_requestor = _Pipe(), _Pipe()
        self._inbox = {id(self.acceptor): to_acceptor, id(self.requestor): to_requestor}
        for assoc, inbox, outbox in (
            (self.requestor, to_requestor, to_acceptor),
            (self.acceptor, to_acceptor, to_requestor),
        ):
            assoc.dul.socket = _Shim(assoc, inbox, outbox, AssociationSocket)
            assoc.dul.state_machine.current_state = "Sta6"  # established

    def feed(self, assoc: Any, data: bytes) -> None:
        """Put bytes, as if sent by the peer, in ``assoc``'s receive pipe."""
        self._inbox[id(assoc)].load(data)

    def receive(self, assoc: Any) -> Any:
        """Read and process PDUs until a DIMSE message is complete; its primitive."""
        dul = assoc.dul
        queue = assoc.dimse.msg_queue
        inbox = self._inbox[id(assoc)]
        while inbox.pending():
            dul._read_pdu_data()
            dul.state_machine.do_action(dul.event_queue.get(False))
            if not queue.empty():
                return queue.get(False)[1]
        raise AssertionError("pynetdicom did not complete a message")

    def send(self, assoc: Any, primitive: Any, context_id: int) -> None:
        """Send a DIMSE primitive: its PDUs go to the other side's pipe."""
        dul = assoc.dul
        assoc.dimse.send_msg(primitive, context_id)
        while dul._process_recv_primitive():
            dul.state_machine.do_action(dul.event_queue.get(False))


class _Shim:
    """What ``DULServiceProvider`` holds as its socket, running ``AssociationSocket``'s methods."""

    def __init__(self, assoc: Any, inbox: _Pipe, outbox: _Pipe, cls: Any) -> None:
        self.assoc = assoc
        self.event_queue = assoc.dul.event_queue
        self._recv_socket = inbox
        self._send_socket = outbox
        self._cls = cls

    def recv(self, n: int) -> Any:
        self.socket = self._recv_socket
        return self._cls.recv(self, n)

    def send(self, data: bytes) -> None:
        self.socket = self._send_socket
        self._cls.send(self, data)


def _pynetdicom_available() -> bool:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        return False
    return True


def _pynetdicom_echo(peer: PynetdicomPeer) -> Callable[[], object]:
    """One C-ECHO operation through pynetdicom's DUL and DIMSE providers, both ways."""
    from pynetdicom.dimse_primitives import C_ECHO

    def operation() -> object:
        request = C_ECHO()
        request.MessageID = 1
        request.AffectedSOPClassUID = dimse.VERIFICATION_SOP_CLASS
        peer.send(peer.requestor, request, ECHO_CONTEXT)
        received = peer.receive(peer.acceptor)
        response = C_ECHO()
        response.MessageIDBeingRespondedTo = received.MessageID
        response.AffectedSOPClassUID = received.AffectedSOPClassUID
        response.Status = 0x0000
        peer.send(peer.acceptor, response, ECHO_CONTEXT)
        answer = peer.receive(peer.requestor)
        if answer.Status != 0:
            raise AssertionError("pynetdicom's C-ECHO failed")
        return answer

    return operation


def _pynetdicom_store(peer: PynetdicomPeer, dataset: bytes) -> Callable[[], object]:
    """One C-STORE operation (request with data set, response) through pynetdicom."""
    from pynetdicom.dimse_primitives import C_STORE

    def operation() -> object:
        request = C_STORE()
        request.MessageID = 1
        request.AffectedSOPClassUID = CT_IMAGE_STORAGE
        request.AffectedSOPInstanceUID = SOP_INSTANCE
        request.Priority = 2
        request.DataSet = BytesIO(dataset)
        peer.send(peer.requestor, request, STORE_CONTEXT)
        received = peer.receive(peer.acceptor)
        if len(received.DataSet.getvalue()) != len(dataset):
            raise AssertionError("pynetdicom's C-STORE data set arrived incomplete")
        response = C_STORE()
        response.MessageIDBeingRespondedTo = received.MessageID
        response.AffectedSOPClassUID = received.AffectedSOPClassUID
        response.AffectedSOPInstanceUID = received.AffectedSOPInstanceUID
        response.Status = 0x0000
        peer.send(peer.acceptor, response, STORE_CONTEXT)
        answer = peer.receive(peer.requestor)
        if answer.Status != 0:
            raise AssertionError("pynetdicom's C-STORE failed")
        return answer

    return operation


# -- dul operations -----------------------------------------------------------------------------


class _Wire:
    """A reused send buffer: one gathered write copied in, handed to the peer as one view."""

    def __init__(self) -> None:
        self.buffer = bytearray(1 << 16)

    def carry(self, buffers: Sequence[bytes | memoryview]) -> memoryview:
        total = sum(len(b) for b in buffers)
        if len(self.buffer) < total:
            self.buffer = bytearray(total)
        pos = 0
        for buffer in buffers:
            end = pos + len(buffer)
            self.buffer[pos:end] = buffer
            pos = end
        return memoryview(self.buffer)[:total]


def _next_message(session: dimse.Session) -> dimse.MessageReceived:
    event = session.next_event()
    if not isinstance(event, dimse.MessageReceived):
        raise AssertionError(f"expected a DIMSE message, got {event!r}")
    return event


def _drain_dataset(session: dimse.Session) -> int:
    """Consume the data set fragments of the message just received; their total length."""
    size = 0
    while True:
        event = session.next_event()
        if not isinstance(event, dimse.DatasetChunk):
            raise AssertionError(f"expected a data set fragment, got {event!r}")
        size += len(event.data)
        if event.is_last:
            return size


def dul_operations(
    kind: str, count: int, dataset_size: int = 10_000, max_length: int = 16 << 10
) -> Callable[[], int]:
    """``count`` C-ECHO (``kind="echo"``) or C-STORE operations per call, on one Session pair.

    Each call returns the number of operations answered with Success.
    """
    requestor, acceptor = establish(max_length)
    to_acceptor, to_requestor = _Wire(), _Wire()
    dataset = _payload(dataset_size)

    def echo() -> int:
        ok = 0
        for _ in range(count):
            request = dimse.CEchoRequest(message_id=requestor.next_message_id())
            acceptor.receive_data(
                to_acceptor.carry(requestor.send_message(request, context_id=ECHO_CONTEXT))
            )
            event = _next_message(acceptor)
            message = event.message
            assert isinstance(message, dimse.CEchoRequest)
            response = dimse.CEchoResponse(message_id_being_responded_to=message.message_id)
            requestor.receive_data(
                to_requestor.carry(acceptor.send_message(response, context_id=event.context_id))
            )
            answer = _next_message(requestor)
            ok += answer.request is request and answer.message.status == 0
        return ok

    def store() -> int:
        ok = 0
        for _ in range(count):
            request = dimse.CStoreRequest(
                message_id=requestor.next_message_id(),
                affected_sop_class_uid=CT_IMAGE_STORAGE,
                affected_sop_instance_uid=SOP_INSTANCE,
            )
            acceptor.receive_data(
                to_acceptor.carry(
                    requestor.send_message(request, context_id=STORE_CONTEXT, dataset=dataset)
                )
            )
            event = _next_message(acceptor)
            message = event.message
            assert isinstance(message, dimse.CStoreRequest) and event.has_dataset
            if _drain_dataset(acceptor) != dataset_size:
                raise AssertionError("the data set arrived incomplete")
            response = dimse.CStoreResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                affected_sop_instance_uid=message.affected_sop_instance_uid,
            )
            requestor.receive_data(
                to_requestor.carry(acceptor.send_message(response, context_id=event.context_id))
            )
            answer = _next_message(requestor)
            ok += answer.request is request and answer.message.status == 0
        return ok

    return echo if kind == "echo" else store


def _checked_operations(fn: Callable[[], int], count: int) -> Callable[[], None]:
    def call() -> None:
        if fn() != count:
            raise AssertionError("an operation failed")

    return call


# -- rows ---------------------------------------------------------------------------------------


def bench_receive(dataset_size: int, max_length: int, *, min_time: float) -> list[Row]:
    """The C-STORE receive rows (streamed and whole data sets), in MB/s of PDU stream."""
    stream = store_stream(dataset_size, max_length)
    reads = _reads(stream, READ_SIZE)
    streaming = establish(max_length)[1]
    whole = establish(max_length, whole_datasets=True)[1]
    expected = Received(1, dataset_size)
    for session in (streaming, whole):
        got = receive(session, reads)
        if got != expected:
            raise AssertionError(f"dul received {got}, not {expected}")

    def streamed() -> object:
        return receive(streaming, reads)

    def joined() -> object:
        return receive(whole, reads)

    peer: Callable[[], object] | None = None
    if _pynetdicom_available():
        pynetdicom = PynetdicomPeer(max_length)
        acceptor = pynetdicom.acceptor

        def peer() -> object:
            pynetdicom.feed(acceptor, stream)
            return pynetdicom.receive(acceptor)

        primitive = peer()
        if (
            primitive.DataSet.getvalue() != _payload(dataset_size)
            or primitive.AffectedSOPInstanceUID != SOP_INSTANCE
            or primitive.MessageID != 1
        ):
            raise AssertionError("pynetdicom decodes a different message from dul's stream")

    scratch = bytearray(stream)

    def memcpy() -> object:
        return bytes(scratch)

    work = len(stream) / MB
    what = f"C-STORE receive, {_size(dataset_size)} at max PDU {_size(max_length)}"
    rows = []
    for how, fn in (("streamed", streamed), ("whole data set", joined)):
        cases = [Case(f, work) for f in (fn, peer, memcpy) if f is not None]
        stats = iter(measure_together(cases, min_time=min_time))
        rows.append(
            Row(
                group="dimse",
                measure=f"{what}, Session ({how})",
                unit="MB/s",
                dul=next(stats),
                peer=next(stats) if peer else None,
                limit=next(stats),
                peer_name="pynetdicom DUL+DIMSE decode",
                limit_name="memcpy",
            )
        )
    return rows


def bench_operations(count: int, *, min_time: float, max_length: int = 16 << 10) -> list[Row]:
    """C-ECHO and 10 KB C-STORE operations per second on one in-process Session pair."""
    rows = []
    for kind, label in (("echo", "C-ECHO"), ("store", "C-STORE 10 KB")):
        ours = _checked_operations(dul_operations(kind, count, max_length=max_length), count)
        theirs: Callable[[], object] | None = None
        if _pynetdicom_available():
            peer = PynetdicomPeer(max_length)
            one = (
                _pynetdicom_echo(peer)
                if kind == "echo"
                else _pynetdicom_store(peer, _payload(10_000))
            )

            def theirs(one: Callable[[], object] = one) -> object:
                for _ in range(count):
                    one()
                return None

        cases = [Case(f, count) for f in (ours, theirs) if f is not None]
        stats = iter(measure_together(cases, min_time=min_time))
        rows.append(
            Row(
                group="dimse",
                measure=f"{label} operations, Session pair in one process",
                unit="ops/s",
                dul=next(stats),
                peer=next(stats) if theirs else None,
                peer_name="pynetdicom DUL+DIMSE",
            )
        )
    return rows


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):g} MiB"
    return f"{n / (1 << 10):g} KiB" if n >= 1 << 10 else f"{n} B"


def run(mode: str) -> list[Row]:
    """All DIMSE rows; ``mode`` is one of ``_harness.MODES``."""
    min_time = MIN_TIME[mode]
    if mode == "smoke":
        return bench_receive(64 << 10, 4096, min_time=min_time) + bench_operations(
            5, min_time=min_time
        )
    return bench_receive(2 << 20, 16 << 10, min_time=min_time) + bench_operations(
        100, min_time=min_time
    )
