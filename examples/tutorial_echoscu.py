"""A C-ECHO SCU on a blocking socket: the whole life of an association, on one page.

Usage: python examples/tutorial_echoscu.py HOST PORT [--aec STORESCP] [--aet ECHOSCU]
"""

import argparse
import socket
import sys

import dul
from dul import dimse

parser = argparse.ArgumentParser(description="Send a C-ECHO and print its status.")
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("--aec", default="ANY-SCP", help="called AE title (the peer's)")
parser.add_argument("--aet", default="ECHOSCU", help="calling AE title (ours)")
args = parser.parse_args()

sock = socket.create_connection((args.host, args.port), timeout=30)  # transport open: Evt1+2
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls
session = dimse.Session(dul.Connection(dul.Role.REQUESTOR))  # DIMSE over one Connection
buffer = bytearray(65536)  # reused for every read: receive_data() copies what it keeps


def next_event() -> object:
    """The next event, reading from the socket while dul needs more bytes."""
    while (event := session.next_event()) is dul.NEED_DATA:
        session.receive_data(memoryview(buffer)[: sock.recv_into(buffer)])  # b"": closed
    sock.sendall(session.data_to_send())  # what dul answers by itself (an A-ABORT)
    return event


verification = dul.PresentationContext(
    context_id=1,
    abstract_syntax=dimse.VERIFICATION_SOP_CLASS,
    transfer_syntaxes=("1.2.840.10008.1.2",),
)
request = dul.AssociateRequest(
    called_ae_title=args.aec, calling_ae_title=args.aet, presentation_contexts=(verification,)
)
sock.sendall(session.send(request))
if not isinstance(event := next_event(), dul.AssociateAccept) or 1 not in session.contexts:
    sys.exit(f"association failed: {event}")  # an A-ASSOCIATE-RJ, an A-ABORT, or no context

sock.sendmsg(session.send_message(dimse.CEchoRequest(message_id=1), context_id=1))  # one write
response = next_event()
assert isinstance(response, dimse.MessageReceived)
print(f"C-ECHO status 0x{response.message.status:04X}")

sock.sendall(session.send(dul.ReleaseRequest()))
while not isinstance(event := next_event(), dul.ConnectionClosed):
    pass  # the A-RELEASE-RP arrives, then the connection ends (AR-3)
sock.close()
print(f"association {event.cause.value}")
sys.exit(0 if response.message.status == 0x0000 else 1)
