"""DIMSE over real sockets: dul's Session against DCMTK, pynetdicom, and itself.

Our side is :class:`dimse_peer.SocketPeer`, a minimal blocking loop (TCP_NODELAY, one
``sendmsg`` per message, ``recv_into`` a reused buffer). DCMTK is always run through the
``dcmtk`` fixture (pynetdicom installs console scripts with DCMTK's names), with TCP_NODELAY=1,
each server on a free loopback port and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import fnmatch
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

import dul
from dimse_peer import (
    IO_TIMEOUT,
    ServerThread,
    SocketPeer,
    dataset_offset,
    make_test_file,
)
from dul import AsyncOpsWindow, PresentationContext, UserInformation
from dul.dimse import (
    VERIFICATION_SOP_CLASS,
    AcceptorPolicy,
    CEchoRequest,
    CEchoResponse,
    CFindRequest,
    CFindResponse,
    CStoreRequest,
    CStoreResponse,
    DatasetChunk,
    MessageReceived,
    Request,
    Response,
    Session,
    operations_window,
)
from peers import HOST, Dcmtk, free_port, wait_listening

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def associate(
    port: int,
    called: str,
    contexts: tuple[tuple[str, str], ...],
    *,
    whole_datasets: bool = False,
    window: AsyncOpsWindow | None = None,
) -> SocketPeer:
    """Connect, propose ``contexts`` (abstract, transfer syntax) with IDs 1, 3, 5...; return
    the peer once the association is accepted."""
    request = dul.AssociateRequest(
        called_ae_title=called,
        calling_ae_title="DULSCU",
        presentation_contexts=tuple(
            PresentationContext(context_id=2 * i + 1, abstract_syntax=a, transfer_syntaxes=(t,))
            for i, (a, t) in enumerate(contexts)
        ),
        user_information=UserInformation(maximum_length=16384, async_ops_window=window),
    )
    session = Session(dul.Connection(dul.Role.REQUESTOR), whole_datasets=whole_datasets)
    peer = SocketPeer.connect(port, session)
    peer.send(request)
    accept = peer.until((dul.AssociateAccept, dul.AssociateReject))
    assert isinstance(accept, dul.AssociateAccept), accept
    assert all(c.accepted for c in accept.presentation_contexts), accept
    return peer


def response(peer: SocketPeer) -> MessageReceived:
    """The next message, which must be a response to an outstanding request."""
    event = peer.receive_message()
    assert isinstance(event.message, Response) and event.request is not None, event
    return event


def pydicom_bytes(ds: Dataset, transfer_syntax: str = IMPLICIT_LE) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(fp, ds)
    return fp.getvalue()


def pydicom_dataset(data: bytes, transfer_syntax: str = IMPLICIT_LE) -> Dataset:
    return read_dataset(
        DicomBytesIO(data),
        is_implicit_VR=transfer_syntax == IMPLICIT_LE,
        is_little_endian=True,
    )


# -- test files: CT images from examples/make_test_file.py -----------------------------------------


def write_ct(
    module: ModuleType, path: Path, index: int, *, patient: tuple[str, str], description: str
) -> tuple[str, bytes]:
    """Write a CT image (study ``index``) and return its SOP instance UID and its data set bytes
    (after the file meta, Explicit VR Little Endian, as the file holds them)."""
    ds = module.make_dataset()
    uid = f"2.25.{271828182845904523536 + index}"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.StudyInstanceUID = f"2.25.{314159265358979323846 + index}"
    ds.SeriesInstanceUID = f"2.25.{141421356237309504880 + index}"
    ds.PatientName, ds.PatientID = patient
    ds.StudyDescription = description
    ds.AccessionNumber = f"DUL{index:04d}"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    return uid, data[dataset_offset(data) :]


STUDIES = (  # (patient name, patient ID), study description
    (("Doe^Alice", "P1"), "head"),
    (("Doe^Alice", "P1"), "chest"),
    (("Roe^Bob", "P2"), "knee"),
)


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str, bytes]]:
    """Three CT images in three studies: (path, SOP instance UID, data set bytes)."""
    module = make_test_file()
    directory = tmp_path_factory.mktemp("ct")
    files = []
    for index, (patient, description) in enumerate(STUDIES, start=1):
        path = directory / f"ct{index}.dcm"
        uid, dataset = write_ct(module, path, index, patient=patient, description=description)
        files.append((path, uid, dataset))
    return files


# -- C-ECHO and C-STORE against storescp -----------------------------------------------------------


@pytest.mark.interop
def test_echo_and_store_against_storescp(
    dcmtk: Dcmtk, tmp_path: Path, ct_files: list[tuple[Path, str, bytes]]
) -> None:
    """storescp +B (bit preserving, PDUs of 4096 bytes at most): a C-ECHO, then two C-STOREs,
    one whole and one streamed in pieces; each stored file holds, after storescp's file meta,
    exactly the bytes we sent."""
    sent = {}
    with dcmtk.storescp(tmp_path, "+B", "--max-pdu", "4096") as port:
        peer = associate(
            port,
            "STORESCP",
            ((VERIFICATION_SOP_CLASS, IMPLICIT_LE), (CT_IMAGE_STORAGE, EXPLICIT_LE)),
        )
        assert peer.session.connection.max_send_length == 4096
        writes = peer.writes

        peer.send_message(CEchoRequest(message_id=1), context_id=1)
        echo = response(peer)
        assert echo.message == CEchoResponse(message_id_being_responded_to=1)

        (_, uid, dataset), (_, uid2, dataset2) = ct_files[:2]
        store = CStoreRequest(
            message_id=2, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid=uid
        )
        peer.send_message(store, context_id=3, dataset=dataset)
        stored = response(peer)
        assert stored.request == store
        assert stored.message == CStoreResponse(
            message_id_being_responded_to=2,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid=uid,
        )
        sent[uid] = dataset

        streamed = CStoreRequest(
            message_id=3, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid=uid2
        )
        peer.send_message(streamed, context_id=3, dataset_follows=True)
        pieces = [dataset2[i : i + 1000] for i in range(0, len(dataset2), 1000)]
        for i, piece in enumerate(pieces):
            peer.send_dataset(3, piece, is_last=i == len(pieces) - 1)
        assert response(peer).message.status == 0x0000  # type: ignore[attr-defined]
        sent[uid2] = dataset2
        assert peer.writes - writes == 3 + len(pieces)  # one gather-write per message or piece

        assert peer.release() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)

    received = {p.name: p.read_bytes() for p in (tmp_path / "received").iterdir()}
    assert sorted(received) == sorted(f"CT.{uid}" for uid in sent)
    for uid, dataset in sent.items():
        data = received[f"CT.{uid}"]
        assert data[dataset_offset(data) :] == dataset


@pytest.mark.interop
@pytest.mark.parametrize("piece", [1, 999, 4093], ids=["1-byte", "999", "4093"])
def test_odd_pieces_and_an_explicit_end_against_storescp(
    dcmtk: Dcmtk, tmp_path: Path, ct_files: list[tuple[Path, str, bytes]], piece: int
) -> None:
    """A data set streamed in odd pieces, then ended by end_dataset() alone: storescp (+B,
    4096-byte PDUs) stores exactly the bytes sent, and dcmdump reads the file."""
    _, uid, dataset = ct_files[0]
    with dcmtk.storescp(tmp_path, "+B", "--max-pdu", "4096") as port:
        peer = associate(port, "STORESCP", ((CT_IMAGE_STORAGE, EXPLICIT_LE),))
        store = CStoreRequest(
            message_id=1, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid=uid
        )
        peer.send_message(store, context_id=1, dataset_follows=True)
        for start in range(0, len(dataset), piece):
            peer.send_dataset(1, dataset[start : start + piece], is_last=False)
        peer.write(peer.session.end_dataset(1))
        assert response(peer).message.status == 0x0000  # type: ignore[attr-defined]
        assert peer.release() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    stored = tmp_path / "received" / f"CT.{uid}"
    data = stored.read_bytes()
    assert data[dataset_offset(data) :] == dataset
    dump = subprocess.run(
        ["dcmdump", str(stored)], capture_output=True, text=True, timeout=IO_TIMEOUT, check=True
    )
    assert uid in dump.stdout


# -- C-FIND against dcmqrscp -----------------------------------------------------------------------


@contextlib.contextmanager
def dcmqrscp(dcmtk: Dcmtk, workdir: Path, aet: str = "QRSCP") -> Iterator[int]:
    """Run DCMTK's dcmqrscp in single-process mode with one AE title storing into
    ``workdir/db``; yield its port; stop it by its PID.

    dcmqrscp 3.6.7 in single-process mode stops listening after one association, so each
    association gets a server of its own (the database stays).
    """
    port = free_port()
    (workdir / "db").mkdir(exist_ok=True)
    (workdir / "dcmqrscp.cfg").write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 4\n\n"
        "HostTable BEGIN\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
        f"AETable BEGIN\n{aet} db RW (9, 1024mb) ANY\nAETable END\n"
    )
    cmd = [dcmtk.tool("dcmqrscp"), "-s", "-c", "dcmqrscp.cfg", str(port)]
    with (workdir / "dcmqrscp.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=dcmtk.env
        )
        try:
            wait_listening(port)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def find_query(**keys: str) -> Dataset:
    """A Study Root C-FIND identifier at STUDY level: ``keys`` to match, and return keys."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.StudyDescription = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def c_find(peer: SocketPeer, message_id: int, query: Dataset) -> list[Dataset]:
    """One C-FIND on context 1: the identifiers of the Pending responses, until the final."""
    rq = CFindRequest(message_id=message_id, affected_sop_class_uid=STUDY_ROOT_FIND)
    peer.send_message(rq, context_id=1, dataset=pydicom_bytes(query))
    matches = []
    while True:
        event = response(peer)
        assert event.request == rq
        message = event.message
        assert isinstance(message, CFindResponse)
        if not message.is_pending:
            assert message.status == 0x0000 and not event.has_dataset
            assert peer.session.outstanding == {}
            return matches
        assert event.has_dataset and event.dataset is not None
        assert peer.session.outstanding == {message_id: rq}
        matches.append(pydicom_dataset(event.dataset))


def studies(matches: list[Dataset]) -> list[tuple[str, str, str]]:
    return sorted((m.PatientID, m.StudyDescription, m.StudyInstanceUID) for m in matches)


EXPECTED = [
    ("P1", "chest", "2.25.314159265358979323848"),
    ("P1", "head", "2.25.314159265358979323847"),
    ("P2", "knee", "2.25.314159265358979323849"),
]


@pytest.mark.interop
def test_find_against_dcmqrscp(
    dcmtk: Dcmtk, tmp_path: Path, ct_files: list[tuple[Path, str, bytes]]
) -> None:
    """DCMTK's storescu loads three studies into dcmqrscp; our C-FINDs at STUDY level (Study
    Root) find the two of patient P1, then all three."""
    with dcmqrscp(dcmtk, tmp_path) as port:
        loaded = dcmtk.run(
            "storescu", "-aet", "LOADER", "-aec", "QRSCP", "-to", "5", "-ta", "5", "-td", "5",
            HOST, str(port), *(str(path) for path, _, _ in ct_files), timeout=IO_TIMEOUT * 2,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr

    with dcmqrscp(dcmtk, tmp_path) as port:
        peer = associate(port, "QRSCP", ((STUDY_ROOT_FIND, IMPLICIT_LE),), whole_datasets=True)
        matches = c_find(peer, 1, find_query(PatientID="P1"))
        assert studies(matches) == EXPECTED[:2]
        assert all(
            m.PatientName == "Doe^Alice" and m.QueryRetrieveLevel == "STUDY" for m in matches
        )
        assert studies(c_find(peer, 2, find_query())) == EXPECTED
        assert c_find(peer, 3, find_query(PatientID="NOBODY")) == []
        assert peer.release() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)


# -- C-FIND against pynetdicom ---------------------------------------------------------------------


@pytest.mark.interop
def test_find_against_pynetdicom(pynetdicom: ModuleType) -> None:
    """A pynetdicom Query/Retrieve SCP whose C-FIND handler yields matches from a list."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    records = []
    for index, ((name, patient_id), description) in enumerate(STUDIES, start=1):
        record = find_query(PatientName=name, PatientID=patient_id, StudyDescription=description)
        record.StudyInstanceUID = f"2.25.{314159265358979323846 + index}"
        records.append(record)
    queries: list[Dataset] = []

    def handle_find(event: object) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier  # type: ignore[attr-defined]
        queries.append(query)
        for record in records:
            wanted = str(query.PatientID or "*")
            if fnmatch.fnmatchcase(record.PatientID, wanted):
                yield 0xFF00, record

    ae = AE(ae_title="PYQRSCP")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind, IMPLICIT_LE)
    port = free_port()
    server = ae.start_server(
        (HOST, port), block=False, evt_handlers=[(evt.EVT_C_FIND, handle_find)]
    )
    try:
        peer = associate(port, "PYQRSCP", ((STUDY_ROOT_FIND, IMPLICIT_LE),), whole_datasets=True)
        assert studies(c_find(peer, 1, find_query(PatientID="P1"))) == EXPECTED[:2]
        assert studies(c_find(peer, 2, find_query(PatientID="P*"))) == EXPECTED
        assert peer.release() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    finally:
        server.shutdown()
    assert [q.PatientID for q in queries] == ["P1", "P*"]
    assert all(q.QueryRetrieveLevel == "STUDY" for q in queries)


# -- the asynchronous operations window, against a dul SCP that answers out of order ---------------


def test_async_window_against_a_reordering_scp() -> None:
    """A dul acceptor that collects a window's worth of requests, then answers them in reverse
    order, pausing before each answer. The SCU keeps the window full, never more: the N+1th
    request is refused locally; every response reaches its own request."""
    n, total = 4, 12
    seen: dict[str, int] = {"max_outstanding": 0, "requests": 0}

    def serve(scp: SocketPeer) -> None:
        request = scp.until(dul.AssociateRequest)
        assert isinstance(request, dul.AssociateRequest)
        policy = AcceptorPolicy(
            contexts={VERIFICATION_SOP_CLASS: (), CT_IMAGE_STORAGE: ()},
            async_ops_window=AsyncOpsWindow(invoked=n, performed=1),
        )
        accept = policy.evaluate(request)
        assert isinstance(accept, dul.AssociateAccept)
        scp.send(accept)
        window = operations_window(request, accept).invoked
        batch: list[MessageReceived] = []
        while True:
            event = scp.next_event()
            if isinstance(event, MessageReceived):
                assert isinstance(event.message, Request)
                batch.append(event)
                seen["requests"] += 1
                seen["max_outstanding"] = max(seen["max_outstanding"], len(batch))
            elif isinstance(event, DatasetChunk):
                continue
            elif isinstance(event, dul.ReleaseRequest):
                assert batch == []
                scp.send(event.response())
            elif isinstance(event, dul.ConnectionClosed):
                return
            if len(batch) == window or (batch and seen["requests"] == total):
                for received in reversed(batch):
                    time.sleep(0.02)
                    message = received.message
                    assert isinstance(message, Request)
                    answer = (
                        CEchoResponse(message_id_being_responded_to=message.message_id)
                        if isinstance(message, CEchoRequest)
                        else CStoreResponse(message_id_being_responded_to=message.message_id)
                    )
                    scp.send_message(answer, context_id=received.context_id)
                batch.clear()

    server = ServerThread(serve, session_options={})
    server.start()
    try:
        scu = associate(
            server.port,
            "DULSCP",
            ((VERIFICATION_SOP_CLASS, IMPLICIT_LE), (CT_IMAGE_STORAGE, EXPLICIT_LE)),
            window=AsyncOpsWindow(invoked=n, performed=1),
        )
        session = scu.session
        sent: dict[int, Request] = {}
        answered: list[int] = []
        refused = 0
        while len(answered) < total:
            while len(sent) < total and session.can_invoke:
                message_id = session.next_message_id()
                if message_id % 2:
                    rq: Request = CEchoRequest(message_id=message_id)
                    scu.send_message(rq, context_id=1)
                else:
                    rq = CStoreRequest(
                        message_id=message_id,
                        affected_sop_class_uid=CT_IMAGE_STORAGE,
                        affected_sop_instance_uid=f"1.2.3.{message_id}",
                    )
                    scu.send_message(rq, context_id=3, dataset=b"pixels" * 100)
                sent[message_id] = rq
                assert len(session.outstanding) <= n
            if len(sent) < total:
                with pytest.raises(dul.LocalProtocolError, match="window"):
                    session.send_message(CEchoRequest(message_id=999), context_id=1)
                refused += 1
            event = response(scu)
            assert isinstance(event.message, Response)
            assert event.request is sent[event.message.message_id_being_responded_to]
            answered.append(event.message.message_id_being_responded_to)
        assert scu.release() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    finally:
        server.listener.close()
        server.result()

    assert sorted(answered) == sorted(sent) == list(range(1, total + 1))
    assert answered[:n] == list(range(n, 0, -1))  # the first window, answered in reverse
    assert answered != sorted(answered)
    assert seen == {"max_outstanding": n, "requests": total}
    assert refused > 0
