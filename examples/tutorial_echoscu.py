"""A C-ECHO SCU on a blocking socket: the whole life of a dul.Connection on one page.

Usage: python examples/tutorial_echoscu.py HOST PORT [--aec STORESCP] [--aet ECHOSCU]
"""

import argparse
import socket
import struct
import sys

import dul

VERIFICATION, IMPLICIT_VR_LE = "1.2.840.10008.1.1", "1.2.840.10008.1.2"


def c_echo_rq(message_id: int) -> bytes:
    """A C-ECHO-RQ command set (PS3.7 §9.3.5): group 0000, implicit VR little endian."""
    elements = [(0x0002, VERIFICATION.encode() + b"\0"), (0x0100, struct.pack("<H", 0x0030))]
    elements += [(0x0110, struct.pack("<H", message_id)), (0x0800, struct.pack("<H", 0x0101))]
    body = b"".join(struct.pack("<HHI", 0, tag, len(value)) + value for tag, value in elements)
    return struct.pack("<HHII", 0, 0x0000, 4, len(body)) + body  # Command Group Length first


def status_of(command: bytes) -> int:
    """The Status (0000,0900) of a response command set."""
    offset = 0
    while True:
        _, tag, length = struct.unpack_from("<HHI", command, offset)
        if tag == 0x0900:
            return int(struct.unpack_from("<H", command, offset + 8)[0])
        offset += 8 + length


def main() -> int:
    parser = argparse.ArgumentParser(description="Send a C-ECHO and print its status.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--aec", default="ANY-SCP", help="called AE title (the peer's)")
    parser.add_argument("--aet", default="ECHOSCU", help="calling AE title (ours)")
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls
    conn = dul.Connection(dul.Role.REQUESTOR)
    buffer = bytearray(65536)  # reused for every read: receive_data() copies what it keeps

    def next_event() -> dul.Event:
        """The next event, reading from the socket while the connection needs more bytes."""
        try:
            while (event := conn.next_event()) is dul.NEED_DATA:
                conn.receive_data(memoryview(buffer)[: sock.recv_into(buffer)])  # 0: closed
            return event
        finally:
            sock.sendall(conn.data_to_send())  # what dul answers by itself (an A-ABORT)

    context = dul.PresentationContext(
        context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)
    )
    request = dul.AssociateRequest(
        called_ae_title=args.aec, calling_ae_title=args.aet, presentation_contexts=(context,)
    )
    sock.sendall(conn.send(request))
    if not isinstance(event := next_event(), dul.AssociateAccept):
        sys.exit(f"association failed: {event}")  # an A-ASSOCIATE-RJ, or an A-ABORT
    if 1 not in conn.accepted_contexts:
        sock.sendall(conn.send(dul.Abort()))
        sys.exit("the peer does not accept the Verification SOP class")

    sock.sendall(b"".join(conn.send_data(1, c_echo_rq(message_id=1), is_command=True)))
    response, last = bytearray(), False  # the response may come in fragments, one per PDV
    while not last:
        if not isinstance(event := next_event(), dul.PDataReceived):
            sys.exit(f"no C-ECHO-RSP but {event}")
        for pdv in event.values:
            response += pdv.data
            last = pdv.is_last
    status = status_of(bytes(response))
    print(f"C-ECHO status 0x{status:04X}")

    sock.sendall(conn.send(dul.ReleaseRequest()))
    while not isinstance(event := next_event(), dul.ConnectionClosed):
        pass  # the A-RELEASE-RP arrives, then the connection ends
    sock.close()
    print(f"association {event.cause.value}")
    return 0 if status == 0x0000 else 1


if __name__ == "__main__":
    sys.exit(main())
