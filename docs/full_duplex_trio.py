"""Full duplex on trio: one task streams C-STORE data sets while another reads the answers.

Run against any storage SCP, e.g. DCMTK's ``storescp 11112``::

    python docs/full_duplex_trio.py 127.0.0.1 11112 --count 3 --size 1000000

docs/full-duplex.md explains each rule this follows.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence

import trio

import dul
from dul import dimse

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PIECE = 64 * 1024  # bytes per send_dataset call: the writer gives way to the reader between them


def element(group: int, number: int, value: bytes) -> bytes:
    """One data element in implicit VR little endian (PS3.5 §7.1.3), padded to even length."""
    value += b"\0" * (len(value) % 2)
    return (
        group.to_bytes(2, "little")
        + number.to_bytes(2, "little")
        + len(value).to_bytes(4, "little")
        + value
    )


def dataset(instance_uid: str, size: int) -> bytes:
    """A minimal Secondary Capture data set with ``size`` bytes of pixel data."""
    return (
        element(0x0008, 0x0016, SECONDARY_CAPTURE.encode())
        + element(0x0008, 0x0018, instance_uid.encode())
        + element(0x7FE0, 0x0010, bytes(size))
    )


class AssociationEnded(Exception):
    """The association ended before all was stored: ``args[0]`` says why, as the reader saw it."""


#: The states in which a writer's LocalProtocolError means that the association is over.
OVER = (dul.State.IDLE, dul.State.AWAITING_TRANSPORT_CLOSE)


class Duplex:
    """A requestor whose reading and writing run in two tasks."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
        # Held from a send_*() call until its buffers are written: PDUs never interleave, and
        # they reach the wire in the order the Connection made them.
        self.write_lock = trio.Lock()
        # Held by whoever sends a DIMSE message, from its command to its last data set piece:
        # PS3.7 §6.3.1 forbids interleaving messages, and the Session refuses to.
        self.message_lock = trio.Lock()
        self.window = trio.Condition()  # notified when a response frees the operations window
        self.statuses: list[int] = []
        self.ended: dul.ConnectionClosed | dul.RemoteProtocolError | None = None

    async def write(self, buffers: Sequence[bytes | memoryview]) -> None:
        """Gather-write ``buffers`` (call with ``write_lock`` held); a partial send goes on."""
        pending = [memoryview(b).cast("B") for b in buffers if len(b)]
        while pending:
            sent = await self.sock.sendmsg(pending[:512])  # below the usual IOV_MAX of 1024
            while sent:
                if sent >= len(pending[0]):
                    sent -= len(pending.pop(0))
                else:
                    pending[0], sent = pending[0][sent:], 0

    async def send(self, event: dul.Event) -> None:
        async with self.write_lock:
            await self.write([self.session.send(event)])

    async def next_event(self) -> object:
        """The next event, reading as needed; writes what the protocol queued by itself."""
        while True:
            try:
                event = self.session.next_event()
            finally:  # an A-ABORT after a peer's violation: at a PDU boundary, thanks to the lock
                if queued := self.session.data_to_send():
                    async with self.write_lock:
                        await self.write([queued])
            if event is not dul.NEED_DATA:
                return event
            try:
                data = await self.sock.recv(256 * 1024)
            except OSError:
                data = b""  # reset by the peer: a close, for the state machine (Evt17)
            self.session.receive_data(data)

    async def reader(self) -> None:
        """Take the responses as they come, until the connection ends; ``ended`` says how."""
        try:
            while not isinstance(event := await self.next_event(), dul.ConnectionClosed):
                if isinstance(event, dimse.MessageReceived) and isinstance(
                    event.message, dimse.Response
                ):
                    self.statuses.append(event.message.status)
                    async with self.window:
                        self.window.notify_all()
            self.ended = event
        except dul.RemoteProtocolError as exc:  # its A-ABORT went out in next_event()
            self.ended = exc
        finally:
            async with self.window:  # wake a writer that waits for a response
                self.window.notify_all()

    async def store(self, data: bytes | bytearray | memoryview, instance_uid: str) -> None:
        """One C-STORE: the command, then the data set in pieces, the lock given up between them.

        One task calls this (several would take the window and the message ID under a lock).
        """
        async with self.window:
            # The asynchronous operations window (PS3.7 D.3.3.3) bounds the requests outstanding.
            while not self.session.can_invoke and self.ended is None:
                await self.window.wait()
        request = dimse.CStoreRequest(
            message_id=self.session.next_message_id(),
            affected_sop_class_uid=SECONDARY_CAPTURE,
            affected_sop_instance_uid=instance_uid,
        )
        context_id = self.session.context_for(SECONDARY_CAPTURE)
        view = memoryview(data)
        async with self.message_lock:
            async with self.write_lock:
                await self.write(
                    self.session.send_message(request, context_id=context_id, dataset_follows=True)
                )
            for start in range(0, len(view), PIECE):
                piece = view[start : start + PIECE]
                async with self.write_lock:  # raises LocalProtocolError once the peer aborted
                    await self.write(
                        self.session.send_dataset(
                            context_id, piece, is_last=start + PIECE >= len(view)
                        )
                    )

    async def wait_answered(self) -> None:
        async with self.window:
            while self.session.outstanding and self.ended is None:
                await self.window.wait()


async def main(host: str, port: int, count: int, size: int) -> list[int]:
    """Associate, store ``count`` data sets of ``size`` pixel bytes, release; the statuses."""
    sock = trio.socket.socket()
    await sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    duplex = Duplex(sock)
    context = dul.PresentationContext(
        context_id=1,
        abstract_syntax=SECONDARY_CAPTURE,
        transfer_syntaxes=(dimse.IMPLICIT_VR_LITTLE_ENDIAN,),
    )
    await duplex.send(
        dul.AssociateRequest(
            called_ae_title="STORESCP", calling_ae_title="DUPLEX", presentation_contexts=(context,)
        )
    )
    if not isinstance(answer := await duplex.next_event(), dul.AssociateAccept):
        raise SystemExit(f"no association: {answer}")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(duplex.reader)  # from here on, reading and writing overlap
            for n in range(1, count + 1):
                try:
                    await duplex.store(dataset(f"2.25.{n}", size), f"2.25.{n}")
                except dul.LocalProtocolError:
                    if duplex.session.connection.state not in OVER:
                        raise  # our own mistake
                    break  # the association is over: the reader says why
            else:
                await duplex.wait_answered()
                await duplex.send(dul.ReleaseRequest())  # the reader sees the A-RELEASE-RP
    finally:
        sock.close()  # released (AR-3: must_close), aborted, or an error: close in every case
    ended = duplex.ended
    if not (isinstance(ended, dul.ConnectionClosed) and ended.cause is dul.CloseCause.RELEASED):
        raise AssociationEnded(ended)
    return duplex.statuses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    statuses = trio.run(main, args.host, args.port, args.count, args.size)
    print(" ".join(f"0x{s:04X}" for s in statuses))
