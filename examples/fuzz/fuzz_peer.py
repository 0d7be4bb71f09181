"""Fuzz a live DICOM peer (DCMTK's storescp by default) over loopback, for a bounded time.

Each connection sends one association's bytes: a captured requestor stream (examples/captures)
or one dul builds from a seeded random generator (a request with random contexts, user
information sub-items and AE titles, then C-ECHO and C-STORE requests, then A-RELEASE-RQ),
with 0 to 4 mutations from ``dul.testing`` (bit flips, length-field edits, truncation,
duplicated, dropped and reordered PDUs, splices), cut into random chunks. Half the time the
A-ASSOCIATE-RQ goes first and the rest only after the peer's answer. Then the fuzzer half-closes
and reads until the peer closes.

Reported:

* crashes: the peer process died (it is restarted, and the bytes that killed it are saved);
* hangs: the peer neither closed nor answered within ``--timeout`` after the fuzzer
  half-closed, or stopped reading what was sent;
* protocol violations: answers dul refuses to decode (any PDU), A-ABORTs with a reserved source
  or an undefined provider reason, A-ASSOCIATE-RJs out of range, an A-ASSOCIATE-AC that does
  not fit the request (checked by a ``dul.Connection`` whenever dul accepts the request sent),
  DIMSE command sets that do not decode, and unmutated, valid associations that did not end in
  A-RELEASE-RP.

Loopback only. The peer is started on a free port and stopped by its PID::

    python -m examples.fuzz.fuzz_peer --seconds 60            # DCMTK's storescp from PATH
    python -m examples.fuzz.fuzz_peer --storescp /usr/bin/storescp --seed 7 --json report.json

Exit status: 0 when nothing was found, 1 when something was, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs

import dul
from dul import dimse
from dul.testing import DataElement, chunk, encode_dataset, mutate, pdu_spans, random_pick

HOST = "127.0.0.1"
CAPTURES = Path(__file__).resolve().parent.parent / "captures"
PDU_NAMES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}
VERIFICATION = "1.2.840.10008.1.1"
STORAGE = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.1",  # CR
)
TRANSFER = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
)
OTHER = ("1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.1.9", "1.2.3.4.5.6.7.8.9")


# -- the peer ------------------------------------------------------------------------------


def find_dcmtk_storescp() -> str | None:
    """DCMTK's storescp on PATH: pynetdicom installs a script of the same name that may come
    first, so each candidate's ``--version`` must mention DCMTK."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "storescp"
        if not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in out.stdout.lower():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class Peer:
    """storescp on a free loopback port, started and stopped by PID."""

    program: str
    workdir: Path
    timeout: int
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    def start(self) -> None:
        self.port = free_port()
        log = (self.workdir / "storescp.log").open("ab")
        cmd = [
            self.program,
            "-aet",
            "STORESCP",
            "--promiscuous",
            "--ignore",
            "-ta",
            str(self.timeout),
            "-td",
            str(self.timeout),
            "-ts",
            str(self.timeout),
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"}
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 10
        while True:  # a probe connection: storescp logs it and goes on listening
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.program} did not start: see {self.workdir}"
                    ) from None
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop it by its PID; its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        text = (self.workdir / "storescp.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


# -- what to send ---------------------------------------------------------------------------


def _uid(rng: random.Random) -> str:
    return "1.2.826.0.1.3680043.9." + ".".join(str(rng.randint(1, 99999)) for _ in range(3))


def _ae(rng: random.Random) -> str:
    return (
        "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ -") for _ in range(rng.randint(1, 16))
        ).strip()
        or "A"
    )


def random_request(rng: random.Random) -> dul.AssociateRequest:
    """A valid A-ASSOCIATE-RQ: Verification and 0-20 more contexts with random odd IDs."""
    ids = rng.sample(range(1, 256, 2), rng.randint(1, 21))
    abstracts = [VERIFICATION] + [rng.choice(STORAGE + OTHER) for _ in ids[1:]]
    contexts = tuple(
        dul.PresentationContext(
            context_id=i,
            abstract_syntax=a,
            transfer_syntaxes=tuple(rng.sample(TRANSFER, rng.randint(1, len(TRANSFER)))),
        )
        for i, a in zip(ids, abstracts, strict=True)
    )
    info = dul.UserInformation(
        maximum_length=rng.choice([0, 4096, 16384, 65536, rng.randint(0, 1 << 20)]),
        async_ops_window=rng.choice(
            [None, dul.AsyncOpsWindow(invoked=rng.randint(0, 3), performed=1)]
        ),
        role_selections=tuple(
            dul.RoleSelection(sop_class_uid=a, scu_role=rng.random() < 0.5, scp_role=True)
            for a in {c.abstract_syntax for c in contexts}
            if rng.random() < 0.2
        ),
        extended_negotiations=tuple(
            dul.SOPClassExtendedNegotiation(sop_class_uid=a, application_information=b"\x01\x00")
            for a in {c.abstract_syntax for c in contexts}
            if rng.random() < 0.1
        ),
        user_identity=rng.choice(
            [
                None,
                dul.UserIdentity(
                    identity_type=1, primary=b"user", positive_response_requested=True
                ),
                dul.UserIdentity(identity_type=2, primary=b"user", secondary=b"secret"),
            ]
        ),
    )
    return dul.AssociateRequest(
        called_ae_title=rng.choice(["STORESCP", _ae(rng)]),
        calling_ae_title=_ae(rng),
        presentation_contexts=contexts,
        user_information=info,
    )


def _dataset(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """A tiny data set in ``transfer_syntax``: SOP class and instance UIDs, a patient name."""
    elements = (
        DataElement(0x0008_0016, "UI", sop_class),
        DataElement(0x0008_0018, "UI", sop_instance),
        DataElement(0x0010_0010, "PN", "FUZZ^PEER"),
    )
    return encode_dataset(elements, transfer_syntax)


def messages(
    rng: random.Random, request: dul.AssociateRequest, accepted: Mapping[int, str] | None
) -> bytes:
    """What follows the A-ASSOCIATE-RQ: a C-ECHO-RQ on each verification context, a C-STORE-RQ
    with a tiny data set on some storage contexts, then A-RELEASE-RQ. Only on the contexts
    ``accepted`` maps to their transfer syntax (all, in their first one, when it is None: the
    answer is not known)."""
    parts: list[bytes] = []
    message_id = 1
    for context in request.presentation_contexts:
        if accepted is not None and context.context_id not in accepted:
            continue
        ctx = context.context_id
        values: list[dul.PresentationDataValue] = []
        if context.abstract_syntax == VERIFICATION:
            command = dimse.encode_message(dimse.CEchoRequest(message_id=message_id), False)
            values.append(_pdv(ctx, True, command))
        elif context.abstract_syntax in STORAGE and rng.random() < 0.5:
            instance = _uid(rng)
            store = dimse.CStoreRequest(
                message_id=message_id,
                affected_sop_class_uid=context.abstract_syntax,
                affected_sop_instance_uid=instance,
            )
            values.append(_pdv(ctx, True, dimse.encode_message(store, True)))
            syntax = context.transfer_syntaxes[0] if accepted is None else accepted[ctx]
            values.append(_pdv(ctx, False, _dataset(context.abstract_syntax, instance, syntax)))
        # One PDV per P-DATA-TF, as most implementations send them.
        parts.extend(dul.encode(dul.PData(values=(value,))) for value in values)
        message_id += 1
    parts.append(dul.encode(dul.ReleaseRequest()))
    return b"".join(parts)


def _pdv(context_id: int, is_command: bool, data: bytes) -> dul.PresentationDataValue:
    return dul.PresentationDataValue(
        context_id=context_id, is_command=is_command, is_last=True, data=data
    )


def accepted_contexts(request: dul.AssociateRequest, answer: bytes) -> dict[int, str] | None:
    """The contexts an A-ASSOCIATE-AC at the start of ``answer`` accepts and their transfer
    syntaxes, as a dul requestor sees them; None when it is not a valid A-ASSOCIATE-AC."""
    conn = dul.Connection(dul.Role.REQUESTOR)
    try:
        conn.send(request)
        conn.receive_data(answer)
        event = conn.next_event()
    except dul.ProtocolError:
        return None
    if not isinstance(event, dul.AssociateAccept):
        return None
    return {i: c.transfer_syntax for i, c in conn.accepted_contexts.items()}


def captured_streams() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CAPTURES.glob("*.rq.bin"))]


# -- one connection -------------------------------------------------------------------------


@attrs.define
class Exchange:
    answers: bytes = b""
    eof: bool = False
    reset: bool = False
    hang: str = ""
    seconds: float = 0.0


def exchange(
    port: int, first: bytes, rest_for: Callable[[bytes], list[bytes]], timeout: float
) -> tuple[Exchange, list[bytes]]:
    """Send ``first`` and wait for an answer (if ``first`` is not empty), then send what
    ``rest_for(answer)`` says; half-close; read until the peer closes or ``timeout`` passes
    without a byte. Returns the exchange and the chunks sent after ``first``."""
    result = Exchange()
    start = time.monotonic()
    received = bytearray()
    rest: list[bytes] = []
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def read_some() -> bool:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                result.hang = "no answer and no close"
                return False
            except ConnectionResetError:
                result.reset = True
                return False
            if not data:
                result.eof = True
                return False
            received.extend(data)
            return True

        try:
            if first:
                sock.sendall(first)
                if len(first) >= 6 and int.from_bytes(first[2:6], "big") == len(first) - 6:
                    read_some()  # one whole PDU: the peer must answer, or close
                # else the peer rightly waits for the rest of a PDU: send it
            if not (result.eof or result.reset or result.hang):
                rest = rest_for(bytes(received))
                for piece in rest:
                    sock.sendall(piece)
                sock.shutdown(socket.SHUT_WR)
                while read_some():
                    pass
        except TimeoutError:
            result.hang = "stopped reading"
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: the peer closed or reset first
            result.reset = True
            while not result.hang and read_some():  # what it said before, if anything
                pass
    result.answers = bytes(received)
    result.seconds = time.monotonic() - start
    return result, rest


def _split(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole PDUs as (type, body), and the bytes of an incomplete last one."""
    pdus, pos = [], 0
    while len(data) - pos >= 6:
        pdu_type, length = struct.unpack_from(">BxL", data, pos)
        if pos + 6 + length > len(data):
            break
        pdus.append((pdu_type, data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return pdus, data[pos:]


def check_answers(sent: bytes, result: Exchange, valid: bool) -> tuple[list[str], list[str]]:
    """Protocol violations in the peer's answers, and the PDU names it sent."""
    problems: list[str] = []
    pdus, tail = _split(result.answers)
    names = [PDU_NAMES.get(t, f"type {t:02X}H") for t, _ in pdus]
    if tail and result.eof:
        problems.append(f"peer closed in the middle of a PDU ({len(tail)} bytes)")
    requestor = None
    spans = pdu_spans(sent)
    if spans and sent[0] == 1:
        try:
            request = dul.decode(sent[spans[0][0] : spans[0][1]])[0]
            requestor = dul.Connection(dul.Role.REQUESTOR)
            requestor.send(request)
        except dul.ProtocolError:  # dul refuses what we sent: nothing to check the AC against
            requestor = None
    for index, (pdu_type, body) in enumerate(pdus):
        name = names[index]
        try:
            (event,) = dul.decode(bytes((pdu_type, 0)) + struct.pack(">L", len(body)) + body)
        except dul.RemoteProtocolError as exc:
            problems.append(f"{name} dul refuses: {exc}")
            continue
        if isinstance(event, dul.Abort):
            if event.source not in (0, 2):
                problems.append(f"A-ABORT with reserved source {event.source}")
            elif event.source == 2 and event.reason not in (0, 1, 2, 4, 5, 6):
                problems.append(f"provider A-ABORT with undefined reason {event.reason}")
        elif isinstance(event, dul.AssociateReject):
            if event.result not in (1, 2) or event.source not in (1, 2, 3):
                problems.append(f"A-ASSOCIATE-RJ out of range: {event}")
        elif isinstance(event, dul.PDataReceived):
            for value in event.values:
                if value.is_command and value.is_last:
                    try:
                        dimse.decode_message(value.data)
                    except dul.ProtocolError as exc:
                        problems.append(f"DIMSE command set dul refuses: {exc}")
        if index == 0 and requestor is not None and pdu_type in (2, 3):
            requestor.receive_data(bytes((pdu_type, 0)) + struct.pack(">L", len(body)) + body)
            try:
                requestor.next_event()
            except dul.RemoteProtocolError as exc:
                problems.append(f"{name} does not fit the request: {exc}")
    if valid and names and names[0] == "A-ASSOCIATE-AC" and names[-1] != "A-RELEASE-RP":
        problems.append(f"valid association did not end in A-RELEASE-RP: {' '.join(names)}")
    return problems, names


# -- one case: what to send, and how ----------------------------------------------------------


@attrs.define
class Case:
    """One connection's input: ``first`` goes alone and is answered before ``rest_for`` builds
    the rest (interactive), or ``first`` is empty and everything goes at once (blast)."""

    rng: random.Random
    first: bytes
    after: bytes  # what follows first, before it is adapted to the answer and mutated
    request: dul.AssociateRequest | None  # dul-built: messages follow the peer's answer
    later: int  # mutations left for the rest
    other: bytes  # a stream to splice from
    valid: bool  # unmutated, and adapted to the answer: the peer must release it

    @classmethod
    def draw(cls, rng: random.Random, captured: list[bytes]) -> Case:
        pick = random_pick(rng)
        mutations = rng.choice([0, 0, 1, 1, 2, 3, 4])
        other = rng.choice(captured) if captured else b""
        request = None
        if captured and rng.random() < 0.3:  # a captured stream: storescp accepts all of it
            stream = rng.choice(captured)
        else:  # dul-built: its messages go on the contexts the peer accepts
            request = random_request(rng)
            stream = dul.encode(request)
        if rng.random() < 0.5:  # interactive: each mutation hits the request or what follows
            end = pdu_spans(stream)[0][1]
            first, after = stream[:end], stream[end:]
            to_first = sum(rng.random() < 0.5 for _ in range(mutations))
            for _ in range(to_first):
                first = mutate(first, pick, other)
            return cls(rng, first, after, request, mutations - to_first, other, mutations == 0)
        # Blast: one stream, mutated as a whole (PDUs may move before the A-ASSOCIATE-RQ); the
        # messages cannot follow an answer not yet read, so only a captured one is "valid".
        valid = request is None and mutations == 0
        if request is not None:
            stream += messages(rng, request, None)
        for _ in range(mutations):
            stream = mutate(stream, pick, other)
        return cls(rng, b"", stream, None, 0, other, valid)

    def rest_for(self, answer: bytes) -> list[bytes]:
        after = self.after
        if self.request is not None:
            after = messages(self.rng, self.request, accepted_contexts(self.request, answer))
        pick = random_pick(self.rng)
        for _ in range(self.later):
            after = mutate(after, pick, self.other)
        return chunk(after, pick) if after else []


# -- the run --------------------------------------------------------------------------------


@attrs.define
class Report:
    peer: str
    seed: int
    seconds: float = 0.0
    connections: int = 0
    answered: int = 0
    resets: int = 0
    peer_alive: bool = True
    peer_starts: int = 0
    answers: dict[str, int] = attrs.field(factory=dict)
    crashes: list[dict[str, object]] = attrs.field(factory=list)
    hangs: list[dict[str, object]] = attrs.field(factory=list)
    violations: dict[str, dict[str, object]] = attrs.field(factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.crashes or self.hangs or self.violations)


def _save(out: Path, kind: str, n: int, chunks: list[bytes]) -> str:
    path = out / f"{kind}-{n:05d}.bin"
    path.write_bytes(b"".join(chunks))
    return str(path)


@contextmanager
def running(peer: Peer) -> Iterator[Peer]:
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def fuzz(
    peer: Peer, seconds: float, max_connections: int, seed: int, timeout: float, out: Path
) -> Report:
    rng = random.Random(seed)
    captured = captured_streams()
    report = Report(peer=peer.program, seed=seed)
    counts: collections.Counter[str] = collections.Counter()
    start = time.monotonic()
    with running(peer):
        while time.monotonic() - start < seconds and report.connections < max_connections:
            n = report.connections
            case = Case.draw(rng, captured)
            result, rest = exchange(peer.port, case.first, case.rest_for, timeout)
            sent = [case.first, *rest]
            data = b"".join(sent)
            report.connections += 1
            report.resets += result.reset
            problems, names = check_answers(data, result, valid=case.valid)
            report.answered += bool(names)
            counts.update(names)
            for problem in problems:
                entry = report.violations.setdefault(problem, {"count": 0})
                entry["count"] = int(entry["count"]) + 1  # type: ignore[call-overload]
                entry.setdefault("sample", _save(out, "violation", n, sent))
            if not peer.alive():
                report.crashes.append(
                    {
                        "connection": n,
                        "exit": peer.proc.returncode if peer.proc else None,
                        "input": _save(out, "crash", n, sent),
                        "log": peer.log_tail(),
                    }
                )
                peer.start()
            elif result.hang:
                report.hangs.append(
                    {
                        "connection": n,
                        "what": result.hang,
                        "input": _save(out, "hang", n, sent),
                        "log": peer.log_tail(1),
                    }
                )
        report.peer_alive = peer.alive()
    report.peer_starts = peer.starts
    report.seconds = round(time.monotonic() - start, 1)
    report.answers = dict(counts)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storescp", help="DCMTK's storescp (default: the one on PATH)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (60)")
    parser.add_argument("--max-connections", type=int, default=5000, help="at most (5000)")
    parser.add_argument("--seed", type=int, default=None, help="for the random generator")
    parser.add_argument("--timeout", type=float, default=5.0, help="hang after this (5 s)")
    parser.add_argument("--peer-timeout", type=int, default=5, help="storescp -ta/-td/-ts (5)")
    parser.add_argument("--out", type=Path, help="where inputs of findings go (a temp dir)")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    program = args.storescp or find_dcmtk_storescp()
    if program is None:
        parser.error("DCMTK's storescp is not on PATH: give --storescp")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    out = args.out or Path(tempfile.mkdtemp(prefix="fuzz_peer-"))
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz_peer-storescp-"))
    try:
        peer = Peer(program=program, workdir=workdir, timeout=args.peer_timeout)
        report = fuzz(peer, args.seconds, args.max_connections, seed, args.timeout, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = attrs.asdict(report)
    print(
        f"{report.connections} connections in {report.seconds} s against {program} (seed {seed}): "
        f"{report.answered} answered, {report.resets} resets, {len(report.crashes)} crashes, "
        f"{len(report.hangs)} hangs, {len(report.violations)} kinds of protocol violation"
    )
    print("answers: " + ", ".join(f"{k} {v}" for k, v in sorted(report.answers.items())))
    for crash in report.crashes:
        print(
            f"CRASH at connection {crash['connection']}: exit {crash['exit']}, "
            f"input {crash['input']}"
        )
    hangs: dict[tuple[str, str], list[dict[str, object]]] = collections.defaultdict(list)
    for hang in report.hangs:  # grouped by the peer's last log line, numbers left out
        cause = re.sub(r"\d+", "N", str(hang["log"])).split(". ")[0]
        hangs[str(hang["what"]), cause].append(hang)
    for (what, cause), group in sorted(hangs.items(), key=lambda kv: -len(kv[1])):
        print(f"HANG x{len(group)}: {what}; the peer's log: {cause!r} (e.g. {group[0]['input']})")
    for problem, entry in report.violations.items():
        print(f"VIOLATION x{entry['count']}: {problem} (e.g. {entry['sample']})")
    if report.found:
        print(f"inputs saved in {out}")
    elif args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if report.found else 0


if __name__ == "__main__":
    sys.exit(main())
