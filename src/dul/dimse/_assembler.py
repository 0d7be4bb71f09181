"""Reassembly: PDVs in, DIMSE messages out (PS3.7 §6.3.1, PS3.8 Annex E).

A message is a command set, then, when CommandDataSetType says so, a data set, each sent as
fragments on one presentation context. By default the data set is streamed as
:class:`DatasetChunk` events (memory bounded by one PDU, whatever its size); with
``whole_datasets=True`` it is joined and handed over with the message.
"""

from __future__ import annotations

from attrs import field, frozen

from .._errors import RemoteProtocolError
from .._events import PresentationDataValue
from ._messages import Message, Request, decode_message

__all__ = ["Assembler", "DatasetChunk", "MessageIncomplete", "MessageReceived"]

#: Command sets are small (a few hundred bytes); this bounds what a peer can make us buffer. Each
#: fragment counts its data and its 6-byte PDV item header, so that a stream of empty fragments
#: is refused too.
MAX_COMMAND_LENGTH = 1 << 16
#: Data set fragments smaller than this are copied when joined, not kept as views of their PDUs
#: (a view costs ~200 bytes: a peer sending tiny fragments must not make us hold 30 times them).
_COPIED_FRAGMENT = 1024


@frozen(kw_only=True)
class MessageReceived:
    """A DIMSE message arrived.

    ``has_dataset`` says whether a data set belongs to it. In streaming mode ``dataset`` is
    ``None`` and the data set follows as :class:`DatasetChunk` events; with whole data sets it is
    the joined bytes. ``request`` is, for a response, the request it answers (when known).
    """

    context_id: int
    message: Message
    has_dataset: bool
    dataset: bytes | None = field(
        default=None, repr=lambda d: "None" if d is None else f"<{len(d)} bytes>"
    )
    request: Request | None = None


@frozen(kw_only=True)
class DatasetChunk:
    """A fragment of the data set of the message last received; ``is_last`` ends it."""

    context_id: int
    data: bytes | memoryview = field(repr=lambda d: f"<{len(d)} bytes>")
    is_last: bool


@frozen(kw_only=True)
class MessageIncomplete:
    """The message being received was cut: what ended it (a release, an abort, the transport
    closing, the end after a protocol error) comes next. It is incomplete: discard what arrived.

    ``message`` is the command, or ``None`` when the command set itself was cut. In streaming
    mode its :class:`MessageReceived` and some :class:`DatasetChunk` events came before, the last
    without ``is_last``; with whole data sets nothing of it did.
    """

    context_id: int
    message: Message | None


def _error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"DIMSE: {message}", reason=6)


class Assembler:
    """Turns the PDVs of ``PDataReceived`` events into DIMSE message events."""

    def __init__(
        self, *, whole_datasets: bool = False, max_dataset_length: int | None = None
    ) -> None:
        self.whole_datasets = whole_datasets
        self.max_dataset_length = max_dataset_length
        self._command = bytearray()
        self._command_length = 0
        self._context_id: int | None = None
        self._pending: MessageReceived | None = None  # its data set is being received
        self._dataset: list[bytes | memoryview | bytearray] = []
        self._dataset_length = 0

    @property
    def idle(self) -> bool:
        """True between messages: no command or data set is half received."""
        return self._context_id is None

    def receive(
        self, values: tuple[PresentationDataValue, ...]
    ) -> list[MessageReceived | DatasetChunk]:
        """Feed the PDVs of one P-DATA-TF; returns the events they complete, in order."""
        out: list[MessageReceived | DatasetChunk] = []
        for value in values:
            if self._context_id is not None and value.context_id != self._context_id:
                raise _error(
                    f"a message switched from presentation context {self._context_id} to "
                    f"{value.context_id} mid-way"
                )
            if value.is_command:
                self._receive_command(value, out)
            else:
                self._receive_dataset(value, out)
        return out

    def _receive_command(
        self, value: PresentationDataValue, out: list[MessageReceived | DatasetChunk]
    ) -> None:
        if self._pending is not None:
            raise _error(
                f"a command arrived while the data set announced by "
                f"{type(self._pending.message).__name__} was still expected"
            )
        self._context_id = value.context_id
        self._command_length += len(value.data) + 6
        if self._command_length > MAX_COMMAND_LENGTH:
            raise _error(
                f"command set longer than {MAX_COMMAND_LENGTH} bytes (fragment headers included)"
            )
        if not value.is_last:
            self._command += value.data
            return
        if self._command:
            self._command += value.data
            data: bytes | memoryview = bytes(self._command)
            self._command.clear()
        else:  # in one fragment, the usual case
            data = value.data
        self._command_length = 0
        message, has_dataset = decode_message(data)
        event = MessageReceived(
            context_id=value.context_id, message=message, has_dataset=has_dataset
        )
        if not has_dataset:
            self._context_id = None
            out.append(event)
            return
        self._pending = event
        if not self.whole_datasets:
            out.append(event)

    def _receive_dataset(
        self, value: PresentationDataValue, out: list[MessageReceived | DatasetChunk]
    ) -> None:
        pending = self._pending
        if pending is None:
            if self._command_length:
                raise _error("a data set fragment arrived before its command set was complete")
            raise _error("a data set arrived without a command announcing it")
        if self.whole_datasets:
            self._keep(value.data)
            self._dataset_length += len(value.data)
            if (
                self.max_dataset_length is not None
                and self._dataset_length > self.max_dataset_length
            ):
                raise _error(f"data set longer than the limit of {self.max_dataset_length} bytes")
        elif value.data or value.is_last:  # an empty fragment that ends nothing says nothing
            out.append(
                DatasetChunk(context_id=value.context_id, data=value.data, is_last=value.is_last)
            )
        if value.is_last:
            if self.whole_datasets:
                dataset = b"".join(self._dataset)
                self._dataset.clear()
                self._dataset_length = 0
                out.append(
                    MessageReceived(
                        context_id=pending.context_id,
                        message=pending.message,
                        has_dataset=True,
                        dataset=dataset,
                        request=pending.request,
                    )
                )
            self._pending = None
            self._context_id = None

    def interrupt(self) -> MessageIncomplete | None:
        """Forget the message half received, if any, and say what it was."""
        if self._context_id is None:
            return None
        cut = MessageIncomplete(
            context_id=self._context_id,
            message=None if self._pending is None else self._pending.message,
        )
        self._command.clear()
        self._command_length = 0
        self._dataset.clear()
        self._dataset_length = 0
        self._pending = None
        self._context_id = None
        return cut

    def _keep(self, data: bytes | memoryview) -> None:
        """Hold a fragment of a whole data set: a view if large, else copied onto the last."""
        if len(data) >= _COPIED_FRAGMENT:
            self._dataset.append(data)
        elif data:
            tail = self._dataset[-1] if self._dataset else None
            if not isinstance(tail, bytearray):
                tail = bytearray()
                self._dataset.append(tail)
            tail += data
