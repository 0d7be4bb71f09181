"""What a service asks of its driver, and the trampolines that answer.

A service is a generator: it yields a :data:`Step` each time it needs the outside world and is
resumed with the answer (``.send``) or with the error that happened instead (``.throw``):

- :class:`Send` — write these buffers, in order, as one gather-write; answered ``None``;
- :class:`Receive` — the next event of the session (a DIMSE message, a data set fragment, a
  PDU, ``ConnectionClosed``), reading as needed; answered with a list: that event, then the
  fragments of the same data set already decoded after it (a batch, see :func:`drive`); or
  ``TimeoutError`` after ``timeout`` seconds, or (``interruptible``) :class:`Interrupted` on
  the first Ctrl-C;
- :class:`Poll` — the next event if it has arrived already, else ``None``;
- :class:`Abort` — send an A-ABORT if the state allows one, and close;
- :class:`Close` — write what the protocol queued, and close;
- :class:`Sleep` — wait ``seconds``;
- :class:`Connect` — open another association, as the requestor (a C-MOVE's sub-association):
  answered with its :class:`~examples.runtime.Association`, whose steps then go to it.

Each step names the association it is for (``link``; the runtime's ``Association`` fills it
in), so one service may run two at once, in turn. Its return value is the service's result. A
driver owns everything else: the socket, TLS, ARTIM, the other timers, concurrency, signals.
:func:`drive` and :func:`drive_async` are the trampolines, over a :class:`Driver` (blocking) or
an :class:`AsyncDriver` (trio's or asyncio's): the async one serves both loops alike, since it
awaits only what the driver gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import dul
from dul import dimse

from .errors import Timeouts

__all__ = [
    "Abort",
    "AsyncDriver",
    "Close",
    "Connect",
    "Driver",
    "Interrupted",
    "Poll",
    "Receive",
    "Send",
    "Sleep",
    "Step",
    "Steps",
    "drive",
    "drive_async",
]

T = TypeVar("T")
Buffer = bytes | bytearray | memoryview


class Interrupted(Exception):
    """The user pressed Ctrl-C (once): delivered at an interruptible :class:`Receive`."""


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``buffers`` in order, in as few system calls as the transport allows.

    They may be views of a buffer the service reuses after this step is answered: the driver
    writes (or copies) them before it resumes the service.
    """

    buffers: Sequence[Buffer]
    link: object = None


@dataclass(frozen=True, slots=True)
class Receive:
    """The next event of the session (and the data set fragments already decoded after it);
    ``TimeoutError`` after ``timeout`` seconds (None: never)."""

    timeout: float | None
    interruptible: bool = False
    link: object = None


@dataclass(frozen=True, slots=True)
class _OnLink:
    link: object = None


class Poll(_OnLink):
    """The next event if it has arrived already (a message begun is read to its end), or None."""

    __slots__ = ()


class Abort(_OnLink):
    """A-ABORT (if the state allows one), then close the transport."""

    __slots__ = ()


class Close(_OnLink):
    """Write what the protocol queued, then close the transport."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (qrscp's ``--delay``, for tests of C-CANCEL)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an association to ``host:port`` as the requestor; answered with its Association.

    A failure to connect is a :class:`~examples.runtime.DriverError` thrown in. The service
    then sends the A-ASSOCIATE-RQ on it (``yield from sub.associate(request)``); the driver
    closes it, at the latest when the service ends.
    """

    host: str
    port: int
    timeouts: Timeouts
    trace: Callable[[str, object], None] | None = None


Step = Send | Receive | Poll | Abort | Close | Sleep | Connect
#: A generator of steps that returns ``T``: a service, or a part of one (``yield from``).
Steps = Generator[Step, Any, T]


class Driver(Protocol):
    """What :func:`drive` needs of a blocking driver: its association's transport calls
    (``transport`` is the driver's own association object), and the steps a driver answers."""

    def write(self, transport: Any, data: Sequence[Buffer]) -> None: ...
    def receive(self, transport: Any, timeout: float | None, interruptible: bool) -> object: ...
    def decoded(self, transport: Any) -> object:
        """The next event in what was read already, or ``dul.NEED_DATA``: no read, no wait."""

    def poll(self, transport: Any) -> object | None: ...
    def abort(self, transport: Any) -> None: ...
    def close(self, transport: Any) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def connect(self, step: Connect) -> tuple[Any, Any]:
        """A new transport and the runtime Association over its session."""


#: What :func:`drive_async` needs of an async driver: :class:`Driver`'s methods, each awaitable.
AsyncDriver = Any


def _call(step: Step, transports: dict[int, Any]) -> tuple[str, tuple[Any, ...]]:
    """Which driver method answers ``step``, and with what: the part both trampolines share."""
    if isinstance(step, Sleep):
        return "sleep", (step.seconds,)
    if isinstance(step, Connect):
        return "connect", (step,)
    target = transports[id(step.link)] if id(step.link) in transports else transports[0]
    if isinstance(step, Send):
        return "write", (target, step.buffers)
    if isinstance(step, Receive):
        return "receive", (target, step.timeout, step.interruptible)
    return type(step).__name__.lower(), (target,)  # poll, abort, close


def _answer(step: Step, result: Any, transports: dict[int, Any]) -> Any:
    """The answer to send into the service; a new association's transport is kept."""
    if isinstance(step, Connect):
        transport, link = result
        transports[id(link)] = transport
        return link
    return result


def _more(event: object) -> bool:
    """Whether more of the same data set may already be decoded after ``event``."""
    return type(event) is dimse.DatasetChunk and not event.is_last


def drive(driver: Driver, transport: Any, link: object, steps: Steps[T]) -> T:
    """Run ``steps`` (whose association is ``link``, over ``transport``) on a blocking driver.

    An ``Exception`` while answering a step goes back into the service; anything else (Ctrl-C)
    and an error the service lets out abort its associations. All are closed at the end.

    A :class:`Receive` that brings a data set fragment (not the last) is answered with it and
    the fragments already decoded after it, up to the data set's end or the first other event
    (kept last, in order), as the driver's ``decoded`` gives them: one round trip through the
    service's generators per read, not per PDU. An error met there ends the batch, as its last
    item (the runtime raises it when it comes to it).
    """
    transports = {0: transport, id(link): transport}
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
                name, args = _call(step, transports)
                answer = _answer(step, getattr(driver, name)(*args), transports)
                if name == "receive":
                    batch: list[object] = [answer]
                    while _more(answer):
                        try:
                            answer = driver.decoded(args[0])
                        except Exception as exc:
                            answer = exc
                        if answer is dul.NEED_DATA:
                            break
                        batch.append(answer)
                    answer = batch
            except Exception as exc:
                error = exc
    except BaseException:
        steps.close()
        for target in set(transports.values()):
            driver.abort(target)
        raise
    finally:
        for target in set(transports.values()):
            driver.close(target)


async def drive_async(driver: AsyncDriver, transport: Any, link: object, steps: Steps[T]) -> T:
    """Run ``steps`` on an async driver (trio's or asyncio's); see :func:`drive`.

    A cancellation arrives as the driver's await raising: the associations are aborted (the
    drivers shield that last write) and the cancellation goes on.
    """
    transports = {0: transport, id(link): transport}
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
                name, args = _call(step, transports)
                answer = _answer(step, await getattr(driver, name)(*args), transports)
                if name == "receive":
                    batch: list[object] = [answer]
                    while _more(answer):
                        try:
                            answer = await driver.decoded(args[0])
                        except Exception as exc:
                            answer = exc
                        if answer is dul.NEED_DATA:
                            break
                        batch.append(answer)
                    answer = batch
            except Exception as exc:
                error = exc
    except BaseException:
        steps.close()
        for target in set(transports.values()):
            await driver.abort(target)
        raise
    finally:
        for target in set(transports.values()):
            await driver.close(target)
