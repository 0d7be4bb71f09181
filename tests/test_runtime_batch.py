"""A Receive step brings the data set fragments already decoded after its event (a batch).

The peer's bytes are all written before the acceptor reads: one read holds every fragment, so
the service must get them in one step, every byte in order, and the association ends as usual.
"""

from __future__ import annotations

import socket

from examples import runtime
from examples.runtime import Association, DatasetReader, Steps
from examples.sockets import driver

import dul
from dul import dimse

CT = "1.2.840.10008.5.1.4.1.1.2"
PDU = 16384
SIZE = 100_000  # 7 fragments at 16 KiB PDUs: the whole stream fits in the socket's buffer

POLICY = dimse.AcceptorPolicy(contexts={CT: (dimse.EXPLICIT_VR_LITTLE_ENDIAN,)}, maximum_length=PDU)


def _wire(data: bytes) -> bytes:
    """A-ASSOCIATE-RQ, one C-STORE-RQ with ``data``, A-RELEASE-RQ: a requestor's bytes."""
    requestor = dimse.Session(dul.Connection(dul.Role.REQUESTOR))
    acceptor = dimse.Session(dul.Connection(dul.Role.ACCEPTOR))
    request = dul.AssociateRequest(
        called_ae_title="SCP",
        calling_ae_title="SCU",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=1,
                abstract_syntax=CT,
                transfer_syntaxes=(dimse.EXPLICIT_VR_LITTLE_ENDIAN,),
            ),
        ),
        user_information=dul.UserInformation(maximum_length=PDU),
    )
    out = [requestor.send(request)]
    acceptor.receive_data(out[0])
    answer = POLICY.evaluate(acceptor.next_event())  # type: ignore[arg-type]
    requestor.receive_data(acceptor.send(answer))
    assert isinstance(requestor.next_event(), dul.AssociateAccept)
    store = dimse.CStoreRequest(
        message_id=1, affected_sop_class_uid=CT, affected_sop_instance_uid="1.2.3.4"
    )
    out += requestor.send_message(store, context_id=1, dataset=data)
    out.append(requestor.send(dul.ReleaseRequest()))
    return b"".join(out)


class CountingSteps(driver.Steps):
    """The sockets driver's steps, counting the Receive steps it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.receives = 0

    def receive(
        self, transport: driver.Association, timeout: float | None, interruptible: bool
    ) -> object:
        self.receives += 1
        return super().receive(transport, timeout, interruptible)


def test_fragments_already_read_come_in_one_step() -> None:
    data = bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256)
    pieces: list[bytes] = []

    def handle(
        assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
    ) -> Steps[None]:
        while (piece := (yield from dataset.next())) is not None:
            pieces.append(bytes(piece))
        assert isinstance(event.message, dimse.CStoreRequest)
        yield from assoc.send(event.message.response(0), context_id=event.context_id)

    service = runtime.acceptor(POLICY.evaluate, {dimse.CStoreRequest: handle})
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(_wire(data))
        theirs.shutdown(socket.SHUT_WR)  # the peer's close follows its A-RELEASE-RQ
        assoc = driver.Association(ours, dul.Role.ACCEPTOR)
        link = runtime.Association(assoc.session, driver.DEFAULT_TIMEOUTS)
        steps = CountingSteps()
        runtime.drive(steps, assoc, link, service(link))
    assert b"".join(pieces) == data  # nothing lost, nothing reordered
    assert len(pieces) == -(-SIZE // (PDU - 12))  # one piece per fragment, as sent
    # A-ASSOCIATE-RQ, the C-STORE-RQ, its data set (one batch), A-RELEASE-RQ, the close.
    assert steps.receives <= 5 < len(pieces)
    assert assoc.closed is not None
