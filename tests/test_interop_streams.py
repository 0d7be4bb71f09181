"""dul.testing's generated associations against DCMTK's storescp: how many it releases.

Each plan from ``association_plans()`` (unmutated) goes to a real storescp on 127.0.0.1 twice:
written in advance (``plan.stream()``, all at once) and played by the ``ScriptedRequestor``
(driven by storescp's A-ASSOCIATE-AC, one request at a time). The share carried through to
A-RELEASE-RP must be at least 90% for each, and the C-STOREs must succeed. ``DUL_STREAMS=N``
sets the number of plans (30 by default); run with ``-s`` to see the shares.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import dul
from dul import dimse
from dul.testing import (
    IMPLICIT_LE,
    AssociationPlan,
    DataElement,
    PlannedMessage,
    ScriptedRequestor,
    association_plans,
    default_request,
    pdu_spans,
)
from peers import HOST, Dcmtk
from test_streams import docs_examples

pytestmark = pytest.mark.interop

COUNT = int(os.environ.get("DUL_STREAMS", "30"))
TIMEOUT = 10.0
#: PDUs after which storescp has nothing more to say: A-ASSOCIATE-RJ, A-RELEASE-RP, A-ABORT.
FINAL = (3, 6, 7)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_stream(port: int, data: bytes) -> list[dul.Event]:
    """Write ``data`` at once; read the peer's PDUs until a final one, its close, or a timeout."""
    received = bytearray()
    with connect(port) as sock:
        sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            spans = pdu_spans(bytes(received))
            last = spans[-1] if spans else None
            if last and received[last[0]] in FINAL and last[1] - last[0] == 10:
                break
    return dul.decode(bytes(received[: pdu_spans(bytes(received))[-1][1]])) if received else []


def play(port: int, requestor: ScriptedRequestor) -> ScriptedRequestor:
    """Drive ``requestor`` over a socket until it is done (or the peer goes quiet)."""
    with connect(port) as sock:
        sock.sendall(requestor.start())
        while not requestor.done:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            out = requestor.receive_data(chunk)
            if out:
                sock.sendall(out)
    return requestor


def statuses(answers: list[dul.Event]) -> list[int]:
    """The status of each DIMSE response among ``answers`` (one command PDV each)."""
    out = []
    for event in answers:
        if isinstance(event, dul.PDataReceived):
            for value in event.values:
                if value.is_command and value.is_last:
                    message, _ = dimse.decode_message(bytes(value.data))
                    assert isinstance(message, dimse.Response)
                    out.append(message.status)
    return out


def for_plans(count: int, body: Callable[[AssociationPlan], None]) -> None:
    """Call ``body`` on ``count`` plans drawn by hypothesis (generation only: a share is
    measured, nothing is shrunk)."""

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(association_plans())
    def run(plan: AssociationPlan) -> None:
        body(plan)

    run()


def test_storescp_releases_generated_associations(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """At least 90% of generated associations go through to A-RELEASE-RP, both ways, and at
    least 90% of the C-STORE and C-ECHO requests succeed."""
    written: list[bool] = []
    scripted: list[bool] = []
    results: list[int] = []
    planned = 0

    def body(plan: AssociationPlan) -> None:
        nonlocal planned
        planned += 2 * len(plan.messages)
        answers = send_stream(port, plan.stream())
        kinds = [type(a) for a in answers]
        written.append(kinds[:1] == [dul.AssociateAccept] and kinds[-1:] == [dul.ReleaseResponse])
        results.extend(statuses(answers))
        player = play(port, plan.requestor())
        scripted.append(player.released and player.error is None)
        results.extend(r.status for r in player.responses)

    with dcmtk.storescp(tmp_path, "-ta", "10", "-td", "10") as port:
        for_plans(COUNT, body)
    share_written = sum(written) / len(written)
    share_scripted = sum(scripted) / len(scripted)
    success = results.count(0) / planned if planned else 1.0
    print(
        f"storescp released {sum(written)}/{len(written)} streams written at once "
        f"({share_written:.0%}), {sum(scripted)}/{len(scripted)} scripted ({share_scripted:.0%}); "
        f"{results.count(0)}/{planned} requests succeeded"
    )
    assert share_written >= 0.9
    assert share_scripted >= 0.9
    assert success >= 0.9


def test_scripted_requestor_skips_what_storescp_rejects(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """A plan that also proposes a SOP class storescp does not support (a private UID): the
    context is rejected, its message is never sent, the rest goes through and is released."""
    private = "1.2.826.0.1.3680043.9.7433.1"
    request = default_request(
        [(1, dimse.VERIFICATION_SOP_CLASS, (IMPLICIT_LE,)), (3, private, (IMPLICIT_LE,))]
    )
    plan = AssociationPlan(
        request,
        (
            PlannedMessage(3, dimse.CEchoRequest(message_id=1, affected_sop_class_uid=private)),
            PlannedMessage(1, dimse.CEchoRequest(message_id=2)),
        ),
    )
    with dcmtk.storescp(tmp_path) as port:
        player = play(port, plan.requestor())
        written = send_stream(port, plan.stream(player.events[0]))  # type: ignore[arg-type]
    assert dict(player.accepted) == {1: IMPLICIT_LE}
    assert [r.message_id_being_responded_to for r in player.responses] == [2]
    assert player.released
    # The stream written for that answer, at once, leaves the rejected context out too.
    assert statuses(written) == [0]
    assert isinstance(written[-1], dul.ReleaseResponse)


def test_docs_driver_loop_against_storescp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """docs/testing.md's ``play()``, as printed, takes a plan through storescp to release."""
    play_from_docs = docs_examples()["play"]
    request = default_request()
    store = dimse.CStoreRequest(
        message_id=2,
        affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        affected_sop_instance_uid="1.2.3.4",
    )
    elements = (
        DataElement(0x0008_0016, "UI", "1.2.840.10008.5.1.4.1.1.2"),
        DataElement(0x0008_0018, "UI", "1.2.3.4"),
        DataElement(0x0010_0010, "PN", "DOCS^EXAMPLE"),
    )
    plan = AssociationPlan(
        request,
        (PlannedMessage(1, dimse.CEchoRequest(message_id=1)), PlannedMessage(41, store, elements)),
    )
    with dcmtk.storescp(tmp_path) as port:
        requestor = play_from_docs(port, plan)
    assert requestor.released
    assert [r.status for r in requestor.responses] == [0, 0]
    assert list((tmp_path / "received").iterdir())  # storescp stored the data set
