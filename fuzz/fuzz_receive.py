#!/usr/bin/env python3
"""Coverage-guided fuzzing of dul's receive path with atheris (libFuzzer for Python).

Each input picks a connection (role and PS3.8 state), how its bytes are cut into chunks, and
what the driver does around them; the rest of the input is the bytes received. The checks are
dul.testing.feed()'s: only RemoteProtocolError escapes receive_data()/next_event(), whatever dul
queues in data_to_send() is a valid A-ABORT or A-ASSOCIATE-RJ, the state moves only along PS3.8
Table 9-10, and the receive buffer never holds more than its cap plus one chunk.

Input layout (see ``parse``)::

    byte 0      scenario: index into SCENARIOS (modulo its length)
    byte 1      flags: bits 0-3 number of explicit chunk sizes k (15: feed byte by byte),
                bit 4 close the transport at the end (Evt17), bit 5 then expire ARTIM (Evt18),
                bit 6 answer as an application would (accept/reject requests, answer releases),
                bit 7 small caps (pdu_length_limit=1024, associate_length_limit=4096)
    k bytes     the first k chunk sizes, each byte + 1; the rest goes in one more chunk
    the rest    the bytes received

Run (from the repository root; see fuzz/README.md)::

    python fuzz/fuzz_receive.py --make-corpus /tmp/corpus     # seeds from examples/captures
    python fuzz/fuzz_receive.py /tmp/corpus -max_total_time=3600 -rss_limit_mb=2048
    python fuzz/fuzz_receive.py --replay crash-1234...         # one input, with a traceback
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for real by _import_dul(), under instrumentation when fuzzing
    import dul
    from dul import testing
    from dul.testing import Scenario

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SMALL_CAPS = {"pdu_length_limit": 1024, "associate_length_limit": 4096}
CAPTURES = ROOT / "examples" / "captures"
CAPTURE_NAMES = (
    "echoscu-storescp",
    "storescu-storescp",
    "storescu-storescp-pdu4096",
    "pynetdicom-echo",
)


def _import_dul(instrument: bool) -> None:
    """Import dul (and its helpers) under atheris's coverage instrumentation when fuzzing.

    The checker (dul.testing and the modules behind it) is left uninstrumented: its branches
    are not dul's, and coverage of them would only mislead the fuzzer."""
    global dul, testing
    if instrument:
        import atheris

        checker = ["dul.testing", "dul._mutate", "dul._layers", "dul._streams"]
        with atheris.instrument_imports(include=["dul"], exclude=checker):
            import dul
            import dul.dimse  # the negotiation helper that answers requests
            import dul.testing as testing
    else:
        import dul
        import dul.testing as testing


def _scenarios() -> list[tuple[Scenario, dul.AssociateRequest | None]]:
    """(Scenario, request) pairs: every receiving state with the default request, then a
    requestor awaiting the answer to each captured A-ASSOCIATE-RQ (so that the captured
    A-ASSOCIATE-AC fits it)."""
    out: list[tuple[Scenario, dul.AssociateRequest | None]] = [
        (s, None) for s in testing.RECEIVING_SCENARIOS
    ]
    sta5 = testing.Scenario(dul.Role.REQUESTOR, dul.State(5))
    seen: set[dul.AssociateRequest] = set()
    for name in CAPTURE_NAMES:
        rq = (CAPTURES / f"{name}.rq.bin").read_bytes()
        request = dul.decode(rq[: 6 + int.from_bytes(rq[2:6], "big")])[0]
        assert isinstance(request, dul.AssociateRequest)
        if request not in seen:
            seen.add(request)
            out.append((sta5, request))
    return out


def parse(data: bytes) -> tuple[int, int, list[bytes]]:
    """(scenario byte, flags, chunks) from a fuzzer input; see the module docstring."""
    if len(data) < 2:
        return 0, 0, []
    scenario, flags = data[0], data[1]
    k = flags & 0x0F
    pos = 2
    if k == 15:
        payload = data[pos:]
        return scenario, flags, [payload[i : i + 1] for i in range(len(payload))]
    sizes = data[pos : pos + k]
    pos += len(sizes)
    chunks = []
    for size in sizes:
        piece = data[pos : pos + size + 1]
        if piece:
            chunks.append(piece)
        pos += len(piece)
    if pos < len(data):
        chunks.append(data[pos:])
    return scenario, flags, chunks


SCENARIOS: list[tuple[Scenario, dul.AssociateRequest | None]] = []


def one_input(data: bytes) -> None:
    """Run one fuzzer input; any exception (or InvariantError) is a finding."""
    scenario_byte, flags, chunks = parse(data)
    scenario, request = SCENARIOS[scenario_byte % len(SCENARIOS)]
    limits = SMALL_CAPS if flags & 0x80 else {}
    conn = testing.connection_in(scenario, request, None, **limits)
    testing.feed(
        conn,
        chunks,
        close=bool(flags & 0x10),
        artim=bool(flags & 0x20),
        respond=bool(flags & 0x40),
    )


def seed(scenario_index: int, flags: int, payload: bytes) -> bytes:
    """A corpus entry: scenario byte, flags with no explicit chunk sizes, payload."""
    return bytes((scenario_index, flags & 0xF0)) + payload


def make_corpus(out: Path) -> int:
    """Write seeds cut from the captures: each PDU and each whole direction, for the
    scenarios in which they make sense (and a few where they do not)."""
    out.mkdir(parents=True, exist_ok=True)
    index = {(str(s), r): i for i, (s, r) in enumerate(SCENARIOS)}
    acceptor_sta2 = index[("acceptor in Sta2", None)]
    seeds: set[bytes] = set()
    for name in CAPTURE_NAMES:
        rq = (CAPTURES / f"{name}.rq.bin").read_bytes()
        ac = (CAPTURES / f"{name}.ac.bin").read_bytes()
        request = dul.decode(rq[: 6 + int.from_bytes(rq[2:6], "big")])[0]
        sta5 = next(i for i, (_, r) in enumerate(SCENARIOS) if r == request)
        # Whole directions: an acceptor reads the requestor's bytes, a requestor the acceptor's.
        for flags in (0x00, 0x10, 0x40, 0x50):
            seeds.add(seed(acceptor_sta2, flags, rq))
            seeds.add(seed(sta5, flags, ac))
        # Each PDU, in every scenario that receives from that side (and the other, for fun).
        for stream, receiver in ((rq, dul.Role.ACCEPTOR), (ac, dul.Role.REQUESTOR)):
            for start, end in testing.pdu_spans(stream):
                pdu = stream[start:end]
                big = len(pdu) > 2048
                for i, (scenario, req) in enumerate(SCENARIOS):
                    if req is not None and i != sta5:
                        continue
                    if big and scenario.role is not receiver:
                        continue
                    seeds.add(seed(i, 0x40 if scenario.role is receiver else 0, pdu))
    # Split points inside a header: the classic framing bug.
    seeds.add(
        bytes((acceptor_sta2, 0x03, 0, 2, 5)) + (CAPTURES / "echoscu-storescp.rq.bin").read_bytes()
    )
    # What the captures lack, built by dul: every user information sub-item, rejects, aborts,
    # a P-DATA-TF of several PDVs, for the scenarios with the default request.
    for i, pdus in _synthetic(index).items():
        for pdu in pdus:
            seeds.add(seed(i, 0x40, pdu))
    for entry in seeds:
        (out / f"seed-{_digest(entry)}").write_bytes(entry)
    return len(seeds)


def _synthetic(index: dict[tuple[str, object], int]) -> dict[int, list[bytes]]:
    """Seeds dul builds: the sub-items, PDUs and codes no capture holds, by scenario index."""
    request = testing.default_request()
    info = dul.UserInformation(
        maximum_length=0,
        async_ops_window=dul.AsyncOpsWindow(invoked=2, performed=3),
        role_selections=(
            dul.RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=True),
        ),
        extended_negotiations=(
            dul.SOPClassExtendedNegotiation(
                sop_class_uid=CT_IMAGE_STORAGE, application_information=b"\x01\x00"
            ),
        ),
        common_extended_negotiations=(
            dul.SOPClassCommonExtendedNegotiation(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2.1",
                service_class_uid="1.2.840.10008.4.2",
                related_general_sop_classes=(CT_IMAGE_STORAGE,),
            ),
        ),
        user_identity=dul.UserIdentity(
            identity_type=2, primary=b"user", secondary=b"secret", positive_response_requested=True
        ),
        unknown_items=(dul.UnknownItem(item_type=0x5F, data=b"??"),),
    )
    full_request = dul.encode(
        dul.AssociateRequest(
            called_ae_title="STORESCP",
            calling_ae_title="STORESCU",
            presentation_contexts=request.presentation_contexts,
            user_information=info,
        )
    )
    accept = testing.default_accept(request)
    full_accept = dul.encode(
        dul.AssociateAccept(
            called_ae_title=accept.called_ae_title,
            calling_ae_title=accept.calling_ae_title,
            presentation_contexts=accept.presentation_contexts,
            user_information=dul.UserInformation(
                maximum_length=4096,
                async_ops_window=dul.AsyncOpsWindow(invoked=1, performed=1),
                role_selections=info.role_selections,
                user_identity=dul.UserIdentityAC(server_response=b"token"),
            ),
        )
    )
    ends = [
        dul.encode(dul.AssociateReject(result=1, source=1, reason=7)),
        dul.encode(dul.AssociateReject(result=2, source=3, reason=1)),
        dul.encode(dul.Abort(source=0, reason=0)),
        dul.encode(dul.Abort(source=2, reason=6)),
    ]
    pdata = dul.encode(
        dul.PData(
            values=tuple(
                dul.PresentationDataValue(
                    context_id=c, is_command=c == 1, is_last=True, data=b"\x00" * 8
                )
                for c in (1, 3, 41)
            )
        )
    )
    by_name = {name: i for (name, request_), i in index.items() if request_ is None}
    return {
        by_name["acceptor in Sta2"]: [full_request],
        by_name["requestor in Sta5"]: [full_accept, *ends],
        by_name["requestor in Sta6"]: [pdata, *ends],
        by_name["acceptor in Sta6"]: [pdata],
        by_name["requestor in Sta7"]: [pdata, *ends],
        by_name["acceptor in Sta13 via reject"]: [full_request, *ends],
    }


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()[:16]


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[1] in ("--make-corpus", "--replay"):
        _import_dul(instrument=False)
        SCENARIOS.extend(_scenarios())
        if argv[1] == "--make-corpus":
            print(f"{make_corpus(Path(argv[2]))} seeds written to {argv[2]}")
        else:
            for name in argv[2:]:
                data = Path(name).read_bytes()
                scenario_byte, flags, chunks = parse(data)
                scenario, _ = SCENARIOS[scenario_byte % len(SCENARIOS)]
                print(f"{name}: {scenario}, flags {flags:#04x}, {len(chunks)} chunks")
                one_input(data)
                print("  no finding")
        return
    import atheris

    _import_dul(instrument=True)
    SCENARIOS.extend(_scenarios())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
