"""A requestor and an acceptor Connection in one process, moving P-DATA one way.

The requestor's ``send_data`` fragments each message into P-DATA-TF buffers; a simulated transport
hands them to the acceptor's ``receive_data`` either as a socket would deliver them (the buffers
joined, as one ``writev`` would send them, and cut into 256 KiB reads regardless of PDU
boundaries) or one buffer at a time; the acceptor's ``next_event()`` loop consumes the PDVs. The
limit moves the same bytes the same way with no protocol at all: the payload cut into the same
fragments with ``memoryview``, joined, cut into reads, appended to a receive ``bytearray`` and
sliced out again. Rates are MB/s (10**6 bytes) of payload.

``python -m benchmarks.bench_pair --profile`` prints where dul's time goes (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
from collections.abc import Callable, Sequence
from typing import NamedTuple

import dul

from ._harness import Case, Row, measure_together

__all__ = ["Transferred", "establish", "limit_transfer", "profile", "run", "transfer"]

MB = 1e6
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: Each message (one dataset) is this large; the transfer repeats it.
MESSAGE_SIZE = 8 << 20
#: What one socket read delivers in the "chunks" mode.
READ_SIZE = 256 << 10


class Transferred(NamedTuple):
    """What the receiving side saw: payload bytes, PDVs, and messages ended (last fragments)."""

    data_bytes: int
    pdvs: int
    messages: int


def _fragment(max_length: int) -> int:
    """The fragment size ``send_data`` cuts for a peer's maximum length: even, 6 bytes less."""
    fragment = max_length - 6
    return fragment - fragment % 2


@functools.lru_cache(maxsize=4)
def _payload(size: int) -> bytes:
    """Non-zero bytes, so no allocator shortcut for zero pages flatters a copy. Made once."""
    return (bytes(range(1, 256)) * (size // 255 + 1))[:size]


def establish(max_length: int) -> tuple[dul.Connection, dul.Connection]:
    """A requestor and an acceptor with one accepted context; each announces ``max_length``."""
    requestor = dul.Connection(dul.Role.REQUESTOR)
    acceptor = dul.Connection(dul.Role.ACCEPTOR)
    request = dul.AssociateRequest(
        called_ae_title="ACCEPTOR",
        calling_ae_title="REQUESTOR",
        presentation_contexts=(
            dul.PresentationContext(
                context_id=1,
                abstract_syntax=CT_IMAGE_STORAGE,
                transfer_syntaxes=(EXPLICIT_VR_LITTLE_ENDIAN,),
            ),
        ),
        user_information=dul.UserInformation(maximum_length=max_length),
    )
    acceptor.receive_data(requestor.send(request))
    received = acceptor.next_event()
    assert isinstance(received, dul.AssociateRequest)
    accept = received.accept(
        (
            dul.PresentationContextAC(
                context_id=1, result=0, transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN
            ),
        ),
        dul.UserInformation(maximum_length=max_length),
    )
    requestor.receive_data(acceptor.send(accept))
    assert isinstance(requestor.next_event(), dul.AssociateAccept)
    return requestor, acceptor


class _Wire:
    """The simulated transport: a reused send buffer, read back in ``read_size`` slices.

    A gathered write copies the buffers into it once (as ``sendmsg`` copies into the kernel);
    reading hands out views of it (dul copies what it is fed, so the next write may overwrite
    them, as a driver's ``recv_into`` buffer is reused). With ``read_size`` None, each buffer is
    delivered by itself, uncopied. Reusing one buffer keeps allocator noise (fresh pages for
    every multi-MiB message) out of the measurement: dul's own allocations are what is measured.
    """

    def __init__(self, read_size: int | None) -> None:
        self.read_size = read_size
        self.buffer = bytearray()

    def carry(self, buffers: Sequence[bytes | memoryview]) -> Sequence[bytes | memoryview]:
        """What the receiver's reads return for one gathered write of ``buffers``."""
        if self.read_size is None:
            return buffers
        total = sum(len(b) for b in buffers)
        if len(self.buffer) < total:
            self.buffer = bytearray(total)  # grown once: every message is the same size
        wire = self.buffer
        pos = 0
        for buffer in buffers:
            end = pos + len(buffer)
            wire[pos:end] = buffer
            pos = end
        view = memoryview(wire)[:total]
        step = self.read_size
        return [view[i : i + step] for i in range(0, total, step)]


def transfer(
    max_length: int,
    total: int,
    *,
    message_size: int = MESSAGE_SIZE,
    read_size: int | None = READ_SIZE,
) -> Transferred:
    """Send ``total`` bytes as datasets of ``message_size`` from requestor to acceptor.

    ``read_size`` None feeds each buffer ``send_data`` returned by itself.
    """
    requestor, acceptor = establish(max_length)
    payload = _payload(message_size)
    feed = acceptor.receive_data
    next_event = acceptor.next_event
    need_data = dul.NEED_DATA
    wire = _Wire(read_size)
    data_bytes = pdvs = messages = 0
    for _ in range(total // message_size):
        buffers = requestor.send_data(1, payload, is_command=False)
        for read in wire.carry(buffers):
            feed(read)
            while (event := next_event()) is not need_data:
                assert isinstance(event, dul.PDataReceived)
                for value in event.values:
                    data_bytes += len(value.data)
                    pdvs += 1
                    messages += value.is_last
    return Transferred(data_bytes, pdvs, messages)


def limit_transfer(
    max_length: int,
    total: int,
    *,
    message_size: int = MESSAGE_SIZE,
    read_size: int | None = READ_SIZE,
) -> Transferred:
    """The same bytes moved the same way, without dul: the floor of the pair's cost.

    The receiver knows each fragment's size in advance instead of parsing headers.
    """
    fragment = _fragment(max_length)
    header = bytes(12)  # the P-DATA-TF header and the PDV header of one fragment
    payload = memoryview(_payload(message_size))
    received = bytearray()
    wire = _Wire(read_size)
    data_bytes = pdvs = messages = 0
    for _ in range(total // message_size):
        buffers: list[bytes | memoryview] = []
        sizes = []
        for start in range(0, message_size, fragment):
            piece = payload[start : start + fragment]
            buffers.append(header)
            buffers.append(piece)
            sizes.append(len(piece))
        pending = iter(sizes)
        size: int | None = next(pending)
        for read in wire.carry(buffers):
            received += read
            pos = 0
            with memoryview(received) as view:
                while size is not None and len(received) - pos >= 12 + size:
                    with view[pos + 12 : pos + 12 + size] as body:
                        data_bytes += len(body)
                    pdvs += 1
                    pos += 12 + size
                    size = next(pending, None)
            del received[:pos]
        messages += 1
    return Transferred(data_bytes, pdvs, messages)


def _expected(max_length: int, total: int, message_size: int) -> Transferred:
    messages = total // message_size
    fragments = -(-message_size // _fragment(max_length))
    return Transferred(messages * message_size, messages * fragments, messages)


def _checked(
    move: Callable[..., Transferred],
    max_length: int,
    total: int,
    message_size: int,
    read_size: int | None,
) -> Callable[[], None]:
    """``move`` bound to its arguments, failing if any call delivers less than was sent."""
    expected = _expected(max_length, total, message_size)

    def call() -> None:
        result = move(max_length, total, message_size=message_size, read_size=read_size)
        if result != expected:
            raise AssertionError(f"{move.__name__} moved {result}, not {expected}")

    return call


def bench(
    max_length: int,
    total: int,
    read_size: int | None,
    *,
    message_size: int = MESSAGE_SIZE,
    warmup_total: int | None = None,
) -> Row:
    """One row: dul's pair against the limit, same sizes, in MB/s of payload."""
    work = _expected(max_length, total, message_size).data_bytes / MB
    warm = warmup_total or total
    dul_stats, limit_stats = measure_together(
        [
            Case(
                _checked(move, max_length, total, message_size, read_size),
                work,
                number=1,
                warmup=_checked(move, max_length, warm, message_size, read_size),
            )
            for move in (transfer, limit_transfer)
        ]
    )
    feeding = "per buffer" if read_size is None else f"{_size(read_size)} reads"
    return Row(
        group="pair",
        measure=f"pair {_size(total)}, max PDU {_size(max_length)}, {feeding}",
        unit="MB/s",
        dul=dul_stats,
        limit=limit_stats,
        limit_name="slice+join",
    )


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n >> 30} GiB"
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} B"


def run(mode: str) -> list[Row]:
    """All pair rows; ``mode`` is one of ``_harness.MODES``."""
    if mode == "smoke":
        # Tiny PDUs and odd reads, so reads split headers and PDUs span reads.
        return [
            bench(max_length, 64 << 10, read_size, message_size=16 << 10)
            for max_length in (1024, 4096)
            for read_size in (1000, None)
        ]
    total = 64 << 20 if mode == "quick" else 1 << 30
    return [
        bench(max_length, total, read_size, warmup_total=min(total, 64 << 20))
        for max_length in (16 << 10, 1 << 20)
        for read_size in (READ_SIZE, None)
    ]


def profile(
    max_length: int = 16 << 10,
    total: int = 256 << 20,
    read_size: int | None = READ_SIZE,
    top: int = 25,
) -> str:
    """cProfile one pair transfer; the ``top`` functions by own time, as text."""
    message_size = min(MESSAGE_SIZE, total)
    warm = min(total, 16 << 20)
    transfer(max_length, warm, message_size=message_size, read_size=read_size)
    profiler = cProfile.Profile()
    profiler.enable()
    transfer(max_length, total, message_size=message_size, read_size=read_size)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    """Profile the pair (``--profile``); the timed rows are run by ``benchmarks.run``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pair")
    parser.add_argument("--profile", action="store_true", required=True)
    parser.add_argument("--max-length", type=int, default=16 << 10)
    parser.add_argument("--total-mib", type=int, default=256)
    parser.add_argument("--per-buffer", action="store_true", help="feed each buffer by itself")
    args = parser.parse_args(argv)
    read_size = None if args.per_buffer else READ_SIZE
    print(profile(args.max_length, args.total_mib << 20, read_size))


if __name__ == "__main__":
    main()
