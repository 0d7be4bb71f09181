"""Reassembly (PS3.7 §6.3.1, PS3.8 Annex E): PDVs in, DIMSE messages and data sets out.

Messages are cut into fragments and P-DATA-TFs every which way, streamed or whole; each way a
peer can break the message structure is a RemoteProtocolError; a large data set streams through
a Session pair in bounded memory; DCMTK's own C-STORE (a capture) reassembles to the file.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
import zlib
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dul
from dimse_peer import SessionPair, dataset_offset, make_test_file, next_events
from dul import PresentationDataValue, RemoteProtocolError
from dul.dimse import (
    AcceptorPolicy,
    Assembler,
    CEchoRequest,
    CEchoResponse,
    CFindResponse,
    CStoreRequest,
    DatasetChunk,
    Message,
    MessageReceived,
    Session,
    encode_message,
)
from dul.testing import dimse_messages
from helpers import CT_IMAGE_STORAGE, FEEDS, VERIFICATION, Feed, chunks, make_request

PDV = PresentationDataValue
STORE = CStoreRequest(
    message_id=1, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid="1.2.3"
)
STORE_COMMAND = encode_message(STORE, True)
ECHO_COMMAND = encode_message(CEchoRequest(message_id=2), False)


def pdv(data: bytes, *, command: bool, last: bool = True, context_id: int = 1) -> PDV:
    return PDV(context_id=context_id, is_command=command, is_last=last, data=data)


def received(
    assembler: Assembler, *groups: tuple[PDV, ...]
) -> list[MessageReceived | DatasetChunk]:
    """Feed each group of PDVs as one P-DATA-TF; every event, in order."""
    events: list[MessageReceived | DatasetChunk] = []
    for group in groups:
        events.extend(assembler.receive(group))
    return events


# -- any fragmentation, any grouping ---------------------------------------------------------------


def _cut(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` in 1 to 5 non-empty fragments, cut anywhere."""
    cuts = draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=4, unique=True))
    edges = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _fragments(context_id: int, pieces: list[bytes], *, command: bool) -> list[PDV]:
    last = len(pieces) - 1
    return [
        pdv(piece, command=command, last=i == last, context_id=context_id)
        for i, piece in enumerate(pieces)
    ]


@st.composite
def streams(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, Message, bool, bytes]], list[tuple[PDV, ...]]]:
    """1 to 3 messages with their data sets, as PDVs cut anywhere, grouped into P-DATA-TFs
    anywhere (a receiver must cope even with a group that spans two messages)."""
    messages = []
    values: list[PDV] = []
    for _ in range(draw(st.integers(1, 3))):
        message, has_dataset = draw(dimse_messages())
        context_id = draw(st.sampled_from([1, 3, 255]))
        dataset = draw(st.binary(min_size=1, max_size=600)) if has_dataset else b""
        messages.append((context_id, message, has_dataset, dataset))
        command = _cut(draw, encode_message(message, has_dataset))
        values += _fragments(context_id, command, command=True)
        if has_dataset:
            values += _fragments(context_id, _cut(draw, dataset), command=False)
    cuts = draw(st.lists(st.integers(1, len(values)), max_size=len(values), unique=True))
    edges = [0, *sorted(c for c in cuts if c < len(values)), len(values)]
    return messages, [tuple(values[a:b]) for a, b in itertools.pairwise(edges)]


@given(streams())
def test_streaming_any_split(
    stream: tuple[list[tuple[int, Message, bool, bytes]], list[tuple[PDV, ...]]],
) -> None:
    """Streaming: each message as soon as its command set is complete, then its data set as
    chunks that are the PDVs' own views, the last one marked."""
    messages, groups = stream
    assembler = Assembler()
    events = received(assembler, *groups)
    assert assembler.idle

    for context_id, message, has_dataset, dataset in messages:
        event = events.pop(0)
        assert event == MessageReceived(
            context_id=context_id, message=message, has_dataset=has_dataset
        )
        if not has_dataset:
            continue
        parts = []
        while True:
            chunk = events.pop(0)
            assert isinstance(chunk, DatasetChunk)
            assert chunk.context_id == context_id
            parts.append(bytes(chunk.data))
            if chunk.is_last:
                break
        assert b"".join(parts) == dataset
    assert events == []

    dataset_values = [v for group in groups for v in group if not v.is_command]
    chunks = [e for e in received(Assembler(), *groups) if isinstance(e, DatasetChunk)]
    assert [c.data for c in chunks] == [v.data for v in dataset_values]
    # handed on, not copied
    assert all(c.data is v.data for c, v in zip(chunks, dataset_values, strict=True))


@given(streams())
def test_whole_any_split(
    stream: tuple[list[tuple[int, Message, bool, bytes]], list[tuple[PDV, ...]]],
) -> None:
    """Whole data sets: one event per message, once its data set is complete, with the bytes."""
    messages, groups = stream
    events = received(Assembler(whole_datasets=True), *groups)
    assert events == [
        MessageReceived(
            context_id=context_id,
            message=message,
            has_dataset=has_dataset,
            dataset=dataset if has_dataset else None,
        )
        for context_id, message, has_dataset, dataset in messages
    ]
    assert all(type(e.dataset) in (bytes, type(None)) for e in events)  # type: ignore[union-attr]


def test_idle_between_messages_only() -> None:
    assembler = Assembler()
    assert assembler.idle
    assembler.receive((pdv(STORE_COMMAND[:10], command=True, last=False),))
    assert not assembler.idle
    assembler.receive((pdv(STORE_COMMAND[10:], command=True),))
    assert not assembler.idle  # the data set is still expected
    assembler.receive((pdv(b"\0\0", command=False),))
    assert assembler.idle


# -- the peer breaks the message structure ---------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        pytest.param(
            [(pdv(STORE_COMMAND[:20], command=True, last=False),
              pdv(STORE_COMMAND[20:], command=True, context_id=3))],
            "switched from presentation context 1 to 3 mid-way",
            id="command-switches-context",
        ),
        pytest.param(
            [(pdv(STORE_COMMAND, command=True),), (pdv(b"\0\0", command=False, context_id=3),)],
            "switched from presentation context 1 to 3 mid-way",
            id="dataset-on-another-context",
        ),
        pytest.param(
            [(pdv(STORE_COMMAND, command=True), pdv(b"\0\0", command=False, last=False)),
             (pdv(b"\0\0", command=False, context_id=5),)],
            "switched from presentation context 1 to 5 mid-way",
            id="dataset-switches-context",
        ),
        pytest.param(
            [(pdv(b"\0\0", command=False),)],
            "a data set arrived without a command announcing it",
            id="dataset-without-command",
        ),
        pytest.param(
            [(pdv(ECHO_COMMAND, command=True),), (pdv(b"\0\0", command=False),)],
            "a data set arrived without a command announcing it",
            id="dataset-after-a-command-without-one",
        ),
        pytest.param(
            [(pdv(STORE_COMMAND, command=True),), (pdv(ECHO_COMMAND, command=True),)],
            "a command arrived while the data set announced by CStoreRequest was still expected",
            id="command-while-dataset-expected",
        ),
        pytest.param(
            [(pdv(STORE_COMMAND, command=True), pdv(b"\0\0", command=False, last=False)),
             (pdv(ECHO_COMMAND, command=True),)],
            "a command arrived while the data set announced by CStoreRequest",
            id="command-in-the-middle-of-a-dataset",
        ),
        pytest.param(
            [(pdv(STORE_COMMAND[:20], command=True, last=False), pdv(b"\0\0", command=False))],
            "a data set fragment arrived before its command set was complete",
            id="dataset-before-command-complete",
        ),
        pytest.param(
            [(pdv(ECHO_COMMAND[:-2], command=True),)],
            r"command set: \(0000,0800\) CommandDataSetType declares 2 bytes, only 0 remain",
            id="malformed-command-set",
        ),
        pytest.param(
            [(pdv(b"\0" * 4096, command=True, last=False),)] * 16
            + [(pdv(b"\0\0", command=True, last=False),)],
            "command set longer than 65536 bytes",
            id="endless-command-set",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_structure_violations(groups: list[tuple[PDV, ...]], problem: str, whole: bool) -> None:
    assembler = Assembler(whole_datasets=whole)
    with pytest.raises(RemoteProtocolError, match=problem) as info:
        received(assembler, *groups)
    assert info.value.reason == 6


def test_max_dataset_length() -> None:
    """Whole data sets are bounded: up to the limit is fine, beyond it is the peer's fault."""
    limit = 1000
    dataset = bytes(range(250)) * 4
    for extra, fails in ((b"", False), (b"\0\0", True)):
        assembler = Assembler(whole_datasets=True, max_dataset_length=limit)
        groups = [
            (pdv(STORE_COMMAND, command=True),),
            (pdv(dataset[:600], command=False, last=False),),
            (pdv(dataset[600:] + extra, command=False),),
        ]
        if fails:
            with pytest.raises(RemoteProtocolError, match="data set longer than the limit of 1000"):
                received(assembler, *groups)
        else:
            (event,) = received(assembler, *groups)
            assert isinstance(event, MessageReceived) and event.dataset == dataset


def test_pending_find_responses_with_identifiers() -> None:
    """A C-FIND's Pending responses each carry an identifier; the final one none."""
    pending = encode_message(CFindResponse(message_id_being_responded_to=4, status=0xFF00), True)
    final = encode_message(CFindResponse(message_id_being_responded_to=4), False)
    assembler = Assembler(whole_datasets=True)
    events = received(
        assembler,
        (pdv(pending, command=True), pdv(b"match 1\0", command=False)),
        (pdv(pending, command=True),),
        (pdv(b"match 2\0", command=False),),
        (pdv(final, command=True),),
    )
    assert [(e.message.status, e.dataset) for e in events] == [  # type: ignore[union-attr]
        (0xFF00, b"match 1\0"),
        (0xFF00, b"match 2\0"),
        (0x0000, None),
    ]


# -- through Sessions ------------------------------------------------------------------------------

POLICY = AcceptorPolicy(contexts={VERIFICATION: (), CT_IMAGE_STORAGE: ()})


def store_pair(how: Feed = "whole", **acceptor_options: object) -> tuple[SessionPair, int]:
    """An associated Session pair (the acceptor with ``acceptor_options``) and CT's context."""
    acceptor = Session(dul.Connection(dul.Role.ACCEPTOR), **acceptor_options)  # type: ignore[arg-type]
    pair = SessionPair(how=how, acceptor=acceptor)
    pair.associate(make_request(), attrs.evolve(POLICY, maximum_length=16384))
    return pair, pair.requestor.context_for(CT_IMAGE_STORAGE)


def test_large_dataset_streams_in_bounded_memory() -> None:
    """64 MiB through a Session pair, handed over buffer by buffer as a driver would: the peak of
    what is allocated meanwhile stays within a few PDUs (64 KiB here), never near the data set's
    size; every chunk is a view, and the bytes arrive intact."""
    pdu = 65536
    piece_size, pieces = 1 << 20, 64
    source = bytes(i % 251 for i in range(piece_size + pieces))  # each piece starts elsewhere
    expected_crc = 0
    for i in range(pieces):
        expected_crc = zlib.crc32(source[i : i + piece_size], expected_crc)
    pair = SessionPair()
    pair.associate(make_request(), attrs.evolve(POLICY, maximum_length=pdu))
    sender, receiver = pair.requestor, pair.acceptor
    context_id = sender.context_for(CT_IMAGE_STORAGE)
    crc = total = count = 0
    views = True

    def hand_over(buffers: list[bytes | memoryview]) -> None:
        nonlocal crc, total, count, views
        for buffer in buffers:
            receiver.receive_data(buffer)
            while (event := receiver.next_event()) is not dul.NEED_DATA:
                if isinstance(event, DatasetChunk):
                    views &= isinstance(event.data, memoryview)
                    crc = zlib.crc32(event.data, crc)
                    total += len(event.data)
                    count += 1
                else:
                    assert isinstance(event, MessageReceived) and event.has_dataset

    tracemalloc.start()
    try:
        hand_over(sender.send_message(STORE, context_id=context_id, dataset_follows=True))
        for i in range(pieces):
            view = memoryview(source)[i : i + piece_size]
            hand_over(sender.send_dataset(context_id, view, is_last=i == pieces - 1))
            del view
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == pieces * piece_size and crc == expected_crc
    assert count == pieces * -(-piece_size // (pdu - 6))  # one PDV per PDU, 6 bytes of header
    assert views
    assert peak < 8 * pdu, f"peak of {peak} bytes for a {total}-byte data set"


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_dataset_and_commands_cross_any_split(how: Feed, whole: bool) -> None:
    """A C-ECHO, then a C-STORE, through a Session pair, the bytes split every way."""
    pair, context_id = store_pair(how, whole_datasets=whole)
    dataset = bytes(range(256)) * 150  # 38,400 bytes: three PDUs of at most 16 KiB
    requestor = pair.requestor
    pair.send_message(requestor, CEchoRequest(message_id=1), context_id=1)
    events = pair.deliver(requestor)
    pair.send_message(pair.acceptor, CEchoResponse(message_id_being_responded_to=1), context_id=1)
    pair.deliver(pair.acceptor)
    pair.send_message(requestor, STORE, context_id=context_id, dataset=dataset)
    events += pair.deliver(requestor)

    messages = [e for e in events if isinstance(e, MessageReceived)]
    assert [type(m.message) for m in messages] == [CEchoRequest, CStoreRequest]
    if whole:
        assert messages[1].dataset == dataset
        assert len(events) == 2
    else:
        pieces = [e for e in events if isinstance(e, DatasetChunk)]
        assert b"".join(bytes(c.data) for c in pieces) == dataset
        assert [c.is_last for c in pieces] == [False, False, True]


# -- DCMTK's C-STORE, from a capture ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["storescu-storescp", "storescu-storescp-pdu4096"])
@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize("whole", [False, True], ids=["streaming", "whole"])
def test_dcmtk_store_reassembles_to_the_file(
    capture_dir: Path, tmp_path: Path, name: str, how: Feed, whole: bool
) -> None:
    """storescu's A-ASSOCIATE-RQ, C-STORE-RQ and A-RELEASE-RQ fed to our acceptor (which answers
    with storescp's recorded A-ASSOCIATE-AC): the data set is the file's, after its meta."""
    module = make_test_file()
    module.write(tmp_path / "ct.dcm")
    file_bytes = (tmp_path / "ct.dcm").read_bytes()
    expected = file_bytes[dataset_offset(file_bytes) :]

    rq = (capture_dir / f"{name}.rq.bin").read_bytes()
    accept = dul.decode((capture_dir / f"{name}.ac.bin").read_bytes())[0]
    assert isinstance(accept, dul.AssociateAccept)
    session = Session(dul.Connection(dul.Role.ACCEPTOR), whole_datasets=whole)
    associate_rq_length = 6 + int.from_bytes(rq[2:6], "big")
    session.receive_data(rq[:associate_rq_length])
    assert isinstance(session.next_event(), dul.AssociateRequest)
    session.send(accept)

    events = []
    for piece in chunks(rq[associate_rq_length:], how, random.Random(0)):
        session.receive_data(piece)
        events.extend(next_events(session))

    assert isinstance(events[-1], dul.ReleaseRequest)
    message = events[0]
    assert isinstance(message, MessageReceived)
    assert isinstance(message.message, CStoreRequest)
    assert message.message.affected_sop_instance_uid == module.SOP_INSTANCE_UID
    if whole:
        assert message.dataset == expected
    else:
        pieces = [e for e in events if isinstance(e, DatasetChunk)]
        assert b"".join(bytes(c.data) for c in pieces) == expected
        assert len(pieces) == (1 if name == "storescu-storescp" else 3)  # one per PDU
