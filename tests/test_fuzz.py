"""Fuzzing the receive path: mutated real PDU streams into both roles in every state.

The streams are the captured associations (examples/captures), cut per direction and per PDU,
and valid PDUs drawn by ``dul.testing``, which also mutates them (bit flips, length-field
edits, truncation, duplication, deletion, reordering, splicing) and cuts them into chunks.
``dul.testing.feed`` checks dul's promises (docs/security.md) after every call: only
RemoteProtocolError escapes, what dul queues is a valid A-ABORT or A-ASSOCIATE-RJ, states
follow Table 9-10, ARTIM runs only in Sta2 and Sta13, and the receive buffer holds no more than
its cap and one chunk.

Short under the dev and ci profiles; ``HYPOTHESIS_PROFILE=fuzz`` runs them for long. The
coverage-guided harness (``fuzz/fuzz_receive.py``, atheris) and the live-peer fuzzer
(``examples/fuzz/fuzz_peer.py``) are smoke-tested here; the regressions at the end are what
they found.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dul
from dul import (
    Abort,
    AbortSource,
    AssociateRequest,
    Connection,
    ContextResult,
    PresentationContext,
    RemoteProtocolError,
    Role,
    State,
)
from dul.dimse import AcceptorPolicy
from dul.testing import (
    RECEIVING_SCENARIOS,
    Chunks,
    InvariantError,
    Scenario,
    chunk,
    chunked,
    connection_in,
    feed,
    length_fields,
    mutate,
    mutated_streams,
    pdu_spans,
    pdu_streams,
    random_pick,
)
from peers import Dcmtk

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "examples" / "captures"
NAMES = ("echoscu-storescp", "storescu-storescp", "storescu-storescp-pdu4096", "pynetdicom-echo")


def _streams() -> list[bytes]:
    """Each captured direction whole, and each distinct PDU in it."""
    out: dict[bytes, None] = {}
    for name in NAMES:
        for side in ("rq", "ac"):
            data = (CAPTURES / f"{name}.{side}.bin").read_bytes()
            out[data] = None
            for start, end in pdu_spans(data):
                out[data[start:end]] = None
    return list(out)


STREAMS = _streams()
#: Per scenario, a tenth of the profile's examples: 17 scenarios stay fast under dev and ci.
PER_SCENARIO = max(10, settings().max_examples // 10)
FLAGS = st.fixed_dictionaries(
    {"close": st.booleans(), "artim": st.booleans(), "respond": st.booleans()}
)
LIMITS = st.sampled_from(
    [{}, {"pdu_length_limit": 1024, "associate_length_limit": 4096}, {"pdu_length_limit": 6}]
)


# -- the mutators themselves -----------------------------------------------------------------


def test_length_fields_of_a_captured_request() -> None:
    """Every length field of the echoscu A-ASSOCIATE-RQ is found: PDU, items, sub-items."""
    rq = (CAPTURES / "echoscu-storescp.rq.bin").read_bytes()
    first = rq[: pdu_spans(rq)[0][1]]
    fields = length_fields(first)
    # PDU, application context, presentation context (+ abstract, 1 transfer syntax), user
    # information (+ maximum length, implementation class UID and version name).
    assert len(fields) == 9
    assert fields[0] == (2, 4)
    for offset, width in fields[1:]:
        assert width == 2
        assert first[offset - 2] in (0x10, 0x20, 0x30, 0x40, 0x50, 0x51, 0x52, 0x55)


def test_length_fields_of_pdata() -> None:
    """A P-DATA-TF's PDU length and each PDV item length."""
    pdata = dul.encode(
        dul.PData(
            values=(
                dul.PresentationDataValue(context_id=1, is_command=True, is_last=True, data=b"ab"),
                dul.PresentationDataValue(context_id=1, is_command=False, is_last=True, data=b"c"),
            )
        )
    )
    assert length_fields(pdata) == [(2, 4), (6, 4), (6 + 4 + 4, 4)]


@settings(deadline=None)
@given(st.sampled_from(range(len(STREAMS))), st.sampled_from(range(len(STREAMS))), st.integers())
def test_mutate_is_bounded_and_deterministic(i: int, j: int, seed: int) -> None:
    """One mutation at most doubles a stream, plus the spliced one and 64 bytes; the same
    choices give the same bytes."""
    data, other = STREAMS[i], STREAMS[j]
    first = mutate(data, random_pick(random.Random(seed)), other)
    assert first == mutate(data, random_pick(random.Random(seed)), other)
    assert len(first) <= 2 * len(data) + len(other) + 64


@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1))
def test_chunk_keeps_every_byte(data: bytes, seed: int) -> None:
    """Chunks are non-empty, in order, all of ``data``; at most 16 unless cut bytewise."""
    chunks = chunk(data, random_pick(random.Random(seed)))
    assert b"".join(chunks) == data
    assert all(chunks)
    assert len(chunks) <= 16 or all(len(c) == 1 for c in chunks)


def test_every_scenario_is_reached() -> None:
    for scenario in RECEIVING_SCENARIOS:
        conn = connection_in(scenario)
        assert (conn.role, conn.state) == (scenario.role, scenario.state)


def test_feed_catches_a_broken_promise() -> None:
    """The checker can fail: a connection that queues a PDU other than A-ABORT/-RJ is caught."""
    conn = connection_in(Scenario(Role.REQUESTOR, State(6)))
    conn._outgoing.append(dul.encode(dul.ReleaseRequest()))  # as if dul had queued it itself
    with pytest.raises(InvariantError, match="ReleaseRequest"):
        feed(conn, [dul.encode(dul.PData(values=(_pdv(1),)))])


def _pdv(context_id: int) -> dul.PresentationDataValue:
    return dul.PresentationDataValue(
        context_id=context_id, is_command=True, is_last=True, data=b"x"
    )


# -- the property: mutated real streams into every state -------------------------------------


@pytest.mark.parametrize("scenario", RECEIVING_SCENARIOS, ids=str)
@settings(max_examples=PER_SCENARIO, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunked(mutated_streams(STREAMS)),
    flags=FLAGS,
    limits=LIMITS,
)
def test_mutated_captures(
    scenario: Scenario, chunks: Chunks, flags: dict[str, bool], limits: dict[str, int]
) -> None:
    """Mutated captured streams: only RemoteProtocolError, valid replies, bounded buffer."""
    conn = connection_in(scenario, **limits)
    feed(conn, chunks, **flags)


@pytest.mark.parametrize("scenario", RECEIVING_SCENARIOS, ids=str)
@settings(max_examples=PER_SCENARIO, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunked(mutated_streams(pdu_streams(), max_mutations=2)), flags=FLAGS)
def test_mutated_valid_pdus(scenario: Scenario, chunks: Chunks, flags: dict[str, bool]) -> None:
    """The same with streams of valid PDUs of every kind (``dul.testing``), mutated or not."""
    feed(connection_in(scenario), chunks, **flags)


@settings(max_examples=PER_SCENARIO, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunked(mutated_streams([(CAPTURES / f"{n}.rq.bin").read_bytes() for n in NAMES])),
    flags=FLAGS,
)
def test_acceptor_that_answers(chunks: Chunks, flags: dict[str, bool]) -> None:
    """An acceptor whose application answers (AcceptorPolicy, release responses) goes through
    the whole association on a mutated requestor stream; its answers never fail to send."""
    outcome = feed(Connection(Role.ACCEPTOR), chunks, **(flags | {"respond": True}))
    assert outcome.peak_buffer <= (1 << 20) + 6 + max(map(len, chunks), default=0)


def test_unmutated_captures_go_all_the_way() -> None:
    """Unmutated, a captured requestor stream is accepted and released without a fault."""
    rq = (CAPTURES / "storescu-storescp.rq.bin").read_bytes()
    outcome = feed(Connection(Role.ACCEPTOR), [rq], respond=True, close=True)
    assert not outcome.errors
    kinds = [type(e).__name__ for e in outcome.events]
    assert kinds == [
        "AssociateRequest",
        "PDataReceived",
        "PDataReceived",
        "ReleaseRequest",
        "ConnectionClosed",
    ]
    assert outcome.events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)


# -- the atheris harness and its corpus ------------------------------------------------------


def test_harness_replays_its_corpus() -> None:
    """fuzz/fuzz_receive.py runs every seed of fuzz/corpus without a finding (no atheris needed)."""
    seeds = sorted((ROOT / "fuzz" / "corpus").iterdir())
    assert len(seeds) >= 10
    run = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_receive.py"), "--replay", *map(str, seeds)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("no finding") == len(seeds)


# -- fuzzing a live peer ---------------------------------------------------------------------


@pytest.mark.interop
def test_fuzz_peer_smoke(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """examples/fuzz/fuzz_peer.py against DCMTK's storescp for a few seconds: it starts the
    peer, fuzzes it, stops it by PID and reports; DCMTK must survive and answer."""
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.fuzz.fuzz_peer",
            "--storescp",
            dcmtk.tool("storescp"),
            "--seconds",
            "5",
            "--seed",
            "1",
            "--timeout",
            "2",
            "--json",
            str(report_path),
        ],
        cwd=ROOT,
        env={**dcmtk.env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: it found something
    print(run.stdout)
    report = json.loads(report_path.read_text())
    assert report["connections"] >= 5
    assert report["peer_alive"] is True
    assert report["crashes"] == []
    assert report["answered"] > 0  # the peer answered: the fuzzer reached it


# -- regressions: what the fuzzers found ------------------------------------------------------


def test_policy_answer_to_a_garbage_transfer_syntax_is_sendable() -> None:
    """atheris, first minutes: an A-ASSOCIATE-RQ proposing an unsupported abstract syntax with a
    transfer syntax that is not a UID ("1.2.840.\\xf60008.1.2.2"). AcceptorPolicy answers the
    context "abstract syntax not supported" echoing that transfer syntax, and send() refused it
    with LocalProtocolError: received bytes made the acceptor unable to answer. Fixed in
    ``_pdu._encode_context_ac``: a rejected context's transfer syntax is not significant (PS3.8
    §9.3.3.2) and goes back byte-exact, as the request had it.
    """
    garbage = "1.2.840.\xf60008.1.2.2"
    request = AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        presentation_contexts=(
            PresentationContext(
                context_id=1, abstract_syntax="1.2.3", transfer_syntaxes=(garbage,)
            ),
            PresentationContext(
                context_id=3,
                abstract_syntax="1.2.840.10008.1.1",
                transfer_syntaxes=(garbage, "1.2.840.10008.1.2"),
            ),
        ),
    )
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(dul.encode(request, strict=False))
    received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    answer = AcceptorPolicy(contexts={"1.2.840.10008.1.1": ()}).evaluate(received)
    data = conn.send(answer)
    assert conn.state is State.ESTABLISHED
    accept = dul.decode(data)[0]
    assert isinstance(accept, dul.AssociateAccept)
    results = {c.context_id: (c.result, c.transfer_syntax) for c in accept.presentation_contexts}
    assert results == {  # not significant when refused (PS3.8 9.3.3.2): a valid UID stands in
        1: (ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, "1.2.840.10008.1.2"),
        3: (ContextResult.ACCEPTANCE, "1.2.840.10008.1.2"),
    }
    assert garbage.encode("latin-1") not in data


def test_accepted_context_still_needs_a_valid_transfer_syntax() -> None:
    """The fix above is for rejected contexts only: accepting a proposed non-UID is refused."""
    request = AssociateRequest(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        presentation_contexts=(
            PresentationContext(context_id=1, abstract_syntax="1.2.3", transfer_syntaxes=("1.x",)),
        ),
    )
    conn = Connection(Role.ACCEPTOR)
    conn.receive_data(dul.encode(request, strict=False))
    received = conn.next_event()
    assert isinstance(received, AssociateRequest)
    answer = received.accept((dul.PresentationContextAC(context_id=1, transfer_syntax="1.x"),))
    with pytest.raises(dul.LocalProtocolError, match="not a UID"):
        conn.send(answer)
    assert conn.state is State.AWAITING_LOCAL_ASSOCIATE_RESPONSE


def test_unexpected_pdu_then_invalid_pdu_in_sta13() -> None:
    """atheris, first minute (a wrong expectation of the harness, kept as a test): an A-RELEASE-RQ
    in Sta9 is unexpected (AA-8: A-ABORT, Sta13) but well framed, so framing goes on; the next
    PDU, of unknown type, is Evt19 in Sta13: AA-7 answers it with one more A-ABORT, silently."""
    conn = connection_in(Scenario(Role.REQUESTOR, State(9)))
    conn.receive_data(bytes.fromhex("05000000000400000000") + bytes(120))
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.reply == Abort(source=AbortSource.SERVICE_PROVIDER, reason=2)
    assert dul.decode(conn.data_to_send()) == [caught.value.reply]
    assert conn.next_event() is dul.NEED_DATA
    assert conn.state is State.AWAITING_TRANSPORT_CLOSE
    assert dul.decode(conn.data_to_send()) == [Abort(source=AbortSource.SERVICE_PROVIDER, reason=1)]
    assert conn.next_event() is dul.NEED_DATA
    assert conn.data_to_send() == b""  # framing is lost: the zeros after it are dropped


def test_fuzzers_use_only_the_public_testing_api() -> None:
    """Nothing under examples/, fuzz/ or benchmarks/ imports the modules behind dul.testing."""
    private = re.compile(
        r"^\s*(from|import)\s+dul\._(mutate|layers|streams)\b"
        r"|^\s*from\s+dul\s+import\s+.*\b_(mutate|layers|streams)\b",
        re.M,
    )
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("examples", "fuzz", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if private.search(path.read_text())
    ]
    assert offenders == []
    assert private.search("from dul import _mutate\n")  # the check can fail
