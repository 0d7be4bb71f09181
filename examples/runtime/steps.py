"""What a service asks of its driver, and the trampolines that answer.

A service is a generator: it yields a :data:`Step` each time it needs the outside world and is
resumed with the answer (``.send``) or with the error that happened instead (``.throw``):

- :class:`Send` — write these buffers, in order, as one gather-write; answered ``None``;
- :class:`Receive` — the next event of the session (a DIMSE message, a data set fragment, a
  PDU, ``ConnectionClosed``), reading as needed; answered with the event, or ``TimeoutError``
  after ``timeout`` seconds;
- :class:`Abort` — send an A-ABORT if the state allows one, and close;
- :class:`Close` — write what the protocol queued, and close.

Its return value is the service's result. A driver owns everything else: the socket, TLS, ARTIM,
the other timers, concurrency, signals. :func:`drive` and :func:`drive_async` are the
trampolines, over any transport with ``write``, ``next_event``, ``abort`` and ``close`` (plain
or ``async``): the async one serves trio and asyncio alike, since it awaits only the transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "Abort",
    "Close",
    "Receive",
    "Send",
    "Step",
    "Steps",
    "drive",
    "drive_async",
]

T = TypeVar("T")
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``buffers`` in order, in as few system calls as the transport allows.

    They may be views of a buffer the service reuses after this step is answered: the driver
    writes (or copies) them before it resumes the service.
    """

    buffers: Sequence[Buffer]


@dataclass(frozen=True, slots=True)
class Receive:
    """The next event of the session; ``TimeoutError`` after ``timeout`` seconds (None: never)."""

    timeout: float | None


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT (if the state allows one), then close the transport."""


@dataclass(frozen=True, slots=True)
class Close:
    """Write what the protocol queued, then close the transport."""


Step = Send | Receive | Abort | Close
#: A generator of steps that returns ``T``: a service, or a part of one (``yield from``).
Steps = Generator[Step, Any, T]


class Transport(Protocol):
    """What :func:`drive` needs of a blocking driver's association."""

    def write(self, data: Sequence[Buffer]) -> None: ...
    def next_event(self, timeout: float | None = None) -> object: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """What :func:`drive_async` needs of an async driver's association."""

    def write(self, data: Sequence[Buffer]) -> Awaitable[None]: ...
    def next_event(self, timeout: float | None = None) -> Awaitable[object]: ...
    def abort(self) -> Awaitable[None]: ...
    def close(self) -> Awaitable[None]: ...


def drive(transport: Transport, steps: Steps[T]) -> T:
    """Run ``steps`` on a blocking transport; the transport is closed at the end.

    An ``Exception`` while answering a step goes back into the service; anything else (Ctrl-C)
    and an error the service lets out abort the association.
    """
    answer: object = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = steps.send(answer) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer, error = None, None
            try:
                if isinstance(step, Send):
                    transport.write(step.buffers)
                elif isinstance(step, Receive):
                    answer = transport.next_event(step.timeout)
                elif isinstance(step, Abort):
                    transport.abort()
                else:
                    transport.close()
            except Exception as exc:
                error = exc
    except BaseException:
        steps.close()
        transport.abort()
        raise
    finally:
        transport.close()


async def drive_async(transport: AsyncTransport, steps: Steps[T]) -> T:
    """Run ``steps`` on an async transport (trio's or asyncio's); see :func:`drive`.

    A cancellation arrives as the transport's await raising: the association is aborted (the
    drivers shield that last write) and the cancellation goes on.
    """
    answer: object = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = steps.send(answer) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer, error = None, None
            try:
                if isinstance(step, Send):
                    await transport.write(step.buffers)
                elif isinstance(step, Receive):
                    answer = await transport.next_event(step.timeout)
                elif isinstance(step, Abort):
                    await transport.abort()
                else:
                    await transport.close()
            except Exception as exc:
                error = exc
    except BaseException:
        steps.close()
        await transport.abort()
        raise
    finally:
        await transport.close()
