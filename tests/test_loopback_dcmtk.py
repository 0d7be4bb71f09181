"""dul.Connection against DCMTK over loopback TCP: association, C-ECHO, release, reject, abort.

Both roles run on plain blocking sockets driven by :class:`Driver`, a small loop of the kind an
application would write: our requestor talks to DCMTK's ``storescp`` (and ``dcmqrscp``, which
checks the called AE title), DCMTK's ``echoscu`` talks to our acceptor, served by a thread. The
C-ECHO command sets are built by hand (``echo_command``): the DIMSE layer does not exist yet, so
the first tests below check those builders against pydicom and against real captures.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

import dul
from echo_command import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    NO_DATASET,
    VERIFICATION_SOP_CLASS,
    EchoCommand,
    decode_echo,
    encode_echo_rq,
    encode_echo_rsp,
    parse_command,
)
from peers import HOST, Dcmtk, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

#: Bound on every blocking socket call and every DCMTK run: a broken peer fails a test, never
#: hangs it.
IO_TIMEOUT = 10.0
#: ARTIM for our side: short, but long enough for a DCMTK tool to start on a loaded machine.
ARTIM_TIMEOUT = 5.0

E = TypeVar("E", bound=dul.Event)


# -- the hand-built command sets, checked against pydicom and real captures ------------------


def pydicom_command(**elements: object) -> bytes:
    """Encode a command set with pydicom's implicit VR little endian writer."""
    ds = Dataset()
    ds.CommandGroupLength = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    ds.CommandGroupLength = len(fp.getvalue()) - 12  # the bytes after (0000,0000)'s 12
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


def pydicom_read(data: bytes) -> Dataset:
    return read_dataset(DicomBytesIO(data), is_implicit_VR=True, is_little_endian=True)


@given(message_id=st.integers(0, 0xFFFF))
def test_echo_rq_matches_pydicom(message_id: int) -> None:
    ours = encode_echo_rq(message_id)
    theirs = pydicom_command(
        AffectedSOPClassUID=VERIFICATION_SOP_CLASS,
        CommandField=C_ECHO_RQ,
        MessageID=message_id,
        CommandDataSetType=NO_DATASET,
    )

    assert ours == theirs
    ds = pydicom_read(ours)
    assert ds.CommandGroupLength == len(ours) - 12
    assert ds.AffectedSOPClassUID == VERIFICATION_SOP_CLASS
    assert (ds.CommandField, ds.MessageID, ds.CommandDataSetType) == (0x0030, message_id, 0x0101)
    assert decode_echo(theirs) == EchoCommand(
        command_field=C_ECHO_RQ,
        message_id=message_id,
        affected_sop_class_uid=VERIFICATION_SOP_CLASS,
        dataset_type=NO_DATASET,
    )


@given(message_id=st.integers(0, 0xFFFF), status=st.integers(0, 0xFFFF))
def test_echo_rsp_matches_pydicom(message_id: int, status: int) -> None:
    ours = encode_echo_rsp(message_id, status)
    theirs = pydicom_command(
        AffectedSOPClassUID=VERIFICATION_SOP_CLASS,
        CommandField=C_ECHO_RSP,
        MessageIDBeingRespondedTo=message_id,
        CommandDataSetType=NO_DATASET,
        Status=status,
    )

    assert ours == theirs
    ds = pydicom_read(ours)
    assert ds.CommandGroupLength == len(ours) - 12
    assert (ds.CommandField, ds.MessageIDBeingRespondedTo, ds.Status) == (
        0x8030,
        message_id,
        status,
    )
    decoded = decode_echo(theirs)
    assert (decoded.is_request, decoded.message_id, decoded.status) == (False, message_id, status)


@pytest.mark.parametrize("name", ["echoscu-storescp", "pynetdicom-echo"])
def test_echo_commands_match_captures(capture_dir: Path, name: str) -> None:
    """DCMTK's and pynetdicom's C-ECHO command sets are byte for byte the ones we build."""

    def command(direction: str) -> bytes:
        data = (capture_dir / f"{name}.{direction}.bin").read_bytes()
        pdatas = [e for e in dul.decode(data) if isinstance(e, dul.PDataReceived)]
        assert len(pdatas) == 1
        (pdv,) = pdatas[0].values
        assert (pdv.is_command, pdv.is_last) == (True, True)
        return bytes(pdv.data)

    rq, rsp = command("rq"), command("ac")
    assert decode_echo(rq).is_request
    assert rq == encode_echo_rq(decode_echo(rq).message_id)
    assert rsp == encode_echo_rsp(decode_echo(rq).message_id, 0x0000)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (encode_echo_rq(1)[:-1], "overruns"),
        (encode_echo_rq(1) + b"\0\0", "trailing"),
        (encode_echo_rq(1)[:8] + b"\x39" + encode_echo_rq(1)[9:], "Group Length says"),
        (encode_echo_rq(1)[12:], "no Command Group Length"),
        (b"\x08\0" + encode_echo_rq(1)[2:], "not in group 0000"),
    ],
)
def test_parse_command_refuses_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_command(data)


def test_decode_echo_refuses_other_commands() -> None:
    field = b"\x00\x00\x00\x01\x02\x00\x00\x00"  # (0000,0100), 2 bytes
    c_store_rq = encode_echo_rq(1).replace(field + b"\x30\x00", field + b"\x01\x00")
    assert c_store_rq != encode_echo_rq(1)
    with pytest.raises(ValueError, match="not C-ECHO"):
        decode_echo(c_store_rq)


# -- a blocking-socket driver ----------------------------------------------------------------


class Driver:
    """Run one Connection over a blocking socket: the loop an application would write.

    With ``rng``, every write is cut into random pieces (TCP_NODELAY sends each as its own
    segment) and every read asks for a random few bytes, so the peer and dul both see PDUs split
    anywhere. ARTIM is a deadline, reset whenever ``conn.artim_starts`` moves.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: dul.Connection,
        *,
        rng: random.Random | None = None,
        artim: float = ARTIM_TIMEOUT,
    ) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.conn = conn
        self.rng = rng
        self.artim = artim
        self.events: list[dul.Event] = []
        self._buffer = bytearray(65536)
        self._artim_starts = conn.artim_starts
        self._artim_deadline = time.monotonic() + artim

    def write(self, data: bytes | Sequence[bytes | memoryview]) -> None:
        payload = data if isinstance(data, bytes) else b"".join(data)
        if self.rng is None:
            self.sock.sendall(payload)
            return
        offset = 0
        while offset < len(payload):
            size = self.rng.randint(1, 64)
            self.sock.sendall(payload[offset : offset + size])
            offset += size

    def send(self, event: dul.Event) -> None:
        self.write(self.conn.send(event))

    def send_data(self, context_id: int, data: bytes, *, is_command: bool) -> None:
        self.write(self.conn.send_data(context_id, data, is_command=is_command))

    def next_event(self) -> dul.Event:
        """The next event; the socket is closed once it is ConnectionClosed."""
        try:
            while (event := self.conn.next_event()) is dul.NEED_DATA:
                self._receive()
        finally:
            self._flush()
        self.events.append(event)
        if isinstance(event, dul.ConnectionClosed):
            self.sock.close()
        return event

    def until(self, kind: type[E]) -> E:
        """Events until one of ``kind``; the connection must not end before (unless wanted)."""
        while not isinstance(event := self.next_event(), kind):
            if isinstance(event, dul.ConnectionClosed):
                raise AssertionError(f"connection ended before {kind.__name__}: {self.events}")
        return event

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            with contextlib.suppress(OSError):  # the peer may be gone already
                self.write(out)

    def _receive(self) -> None:
        timeout = IO_TIMEOUT
        if self.conn.artim_running:
            if self.conn.artim_starts != self._artim_starts:
                self._artim_starts = self.conn.artim_starts
                self._artim_deadline = time.monotonic() + self.artim
            timeout = max(self._artim_deadline - time.monotonic(), 0.001)
        self.sock.settimeout(timeout)
        size = self.rng.randint(1, 64) if self.rng else len(self._buffer)
        try:
            received = self.sock.recv_into(self._buffer, size)
        except TimeoutError:
            if not self.conn.artim_running:
                raise
            self.conn.artim_expired()  # Evt18
            return
        except ConnectionResetError:
            received = 0
        self.conn.receive_data(memoryview(self._buffer)[:received])


def verification_request(
    called: str, *, maximum_length: int = dul.DEFAULT_MAXIMUM_LENGTH
) -> dul.AssociateRequest:
    context = dul.PresentationContext(
        context_id=1,
        abstract_syntax=VERIFICATION_SOP_CLASS,
        transfer_syntaxes=(IMPLICIT_VR_LE, EXPLICIT_VR_LE),
    )
    return dul.AssociateRequest(
        called_ae_title=called,
        calling_ae_title="DULSCU",
        presentation_contexts=(context,),
        user_information=dul.UserInformation(maximum_length=maximum_length),
    )


def receive_command(driver: Driver) -> tuple[int, bytes]:
    """Collect one command set's PDVs (context ID, bytes); fail on anything but P-DATA."""
    command = bytearray()
    while True:
        event = driver.until(dul.PDataReceived)
        for pdv in event.values:
            assert pdv.is_command, "C-ECHO has no data set"
            command += pdv.data
            if pdv.is_last:
                return pdv.context_id, bytes(command)


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=IO_TIMEOUT)


def echo(driver: Driver, message_id: int) -> EchoCommand:
    """Send a C-ECHO-RQ on context 1 and return the decoded C-ECHO-RSP."""
    driver.send_data(1, encode_echo_rq(message_id), is_command=True)
    context_id, command = receive_command(driver)
    assert context_id == 1
    return decode_echo(command)


# -- our requestor against storescp ----------------------------------------------------------


def fragments(events: Sequence[dul.Event]) -> list[int]:
    """The sizes of the PDVs received, in order."""
    return [len(pdv.data) for e in events if isinstance(e, dul.PDataReceived) for pdv in e.values]


@pytest.mark.interop
@pytest.mark.parametrize(
    ("seed", "maximum_length"),
    [(None, dul.DEFAULT_MAXIMUM_LENGTH), (1, 0), (2, 16), (3, 32), (4, 64)],
    ids=["whole", "chunked-unlimited", "chunked-max16", "chunked-max32", "chunked-max64"],
)
def test_requestor_echo_against_storescp(
    dcmtk: Dcmtk, tmp_path: Path, seed: int | None, maximum_length: int
) -> None:
    """Associate, C-ECHO and release, with writes and reads split anywhere and small PDUs."""
    rng = None if seed is None else random.Random(seed)
    with dcmtk.storescp(tmp_path) as port:
        driver = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR), rng=rng)
        driver.send(verification_request("STORESCP", maximum_length=maximum_length))
        accept = driver.until(dul.AssociateAccept)
        assert accept.presentation_contexts[0].accepted
        assert driver.conn.state is dul.State.ESTABLISHED

        response = echo(driver, message_id=7)
        assert response == EchoCommand(
            command_field=C_ECHO_RSP,
            message_id=7,
            affected_sop_class_uid=VERIFICATION_SOP_CLASS,
            dataset_type=NO_DATASET,
            status=0x0000,
        )

        driver.send(dul.ReleaseRequest())
        assert isinstance(driver.next_event(), dul.ReleaseResponse)
        assert driver.next_event() == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    sizes = fragments(driver.events)
    assert sum(sizes) == len(encode_echo_rsp(7))
    if maximum_length:  # storescp fragments to fit what we announced (PDV header: 6 bytes)
        assert max(sizes) <= maximum_length - 6


@pytest.mark.interop
def test_requestor_abort_leaves_storescp_serving(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """Our A-ABORT ends the association; storescp goes on and serves the next one."""
    with dcmtk.storescp(tmp_path, "-v") as port:
        first = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR))
        first.send(verification_request("STORESCP"))
        first.until(dul.AssociateAccept)
        first.send(dul.Abort())
        assert first.conn.state is dul.State.AWAITING_TRANSPORT_CLOSE
        assert first.next_event() == dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_LOCALLY)

        second = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR))
        second.send(verification_request("STORESCP"))
        second.until(dul.AssociateAccept)
        assert echo(second, message_id=2).status == 0x0000
        second.send(dul.ReleaseRequest())
        second.until(dul.ConnectionClosed)
        assert second.events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)
    log = (tmp_path / "storescp.log").read_text().splitlines()
    endings = [line.split(" (")[0] for line in log if line.startswith("I: Association A")]
    assert endings == [
        "I: Association Acknowledged",
        "I: Association Aborted",
        "I: Association Acknowledged",
    ]
    assert "I: Received Echo Request (MsgID 2)" in log


@pytest.mark.interop
def test_requestor_refused_by_storescp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """storescp --refuse: A-ASSOCIATE-RJ (permanent, service user, no reason given).

    storescp 3.6.7 accepts any called AE title (it has no option to require its own), hence
    ``--refuse`` here and dcmqrscp below for a wrong called AE title.
    """
    with dcmtk.storescp(tmp_path, "--refuse") as port:
        driver = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR))
        driver.send(verification_request("STORESCP"))
        assert driver.next_event() == dul.AssociateReject(result=1, source=1, reason=1)
        assert driver.next_event() == dul.ConnectionClosed(cause=dul.CloseCause.REJECTED)
        assert driver.conn.must_close


@contextlib.contextmanager
def dcmqrscp(dcmtk: Dcmtk, workdir: Path, aet: str = "QRSCP") -> Iterator[int]:
    """Run DCMTK's dcmqrscp (single process) with one AE title; yield its port; stop it by PID.

    Unlike storescp it checks the called AE title, and rejects an unknown one with reason 7.
    """
    port = free_port()
    (workdir / "db").mkdir()
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


@pytest.mark.interop
def test_requestor_rejected_for_wrong_called_ae_title(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """dcmqrscp rejects a called AE title it does not know: source 1, reason 7."""
    with dcmqrscp(dcmtk, tmp_path) as port:
        driver = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR))
        driver.send(verification_request("WRONG"))
        reject = driver.next_event()
        assert reject == dul.AssociateReject(result=1, source=1, reason=7)
        assert isinstance(reject, dul.AssociateReject)
        assert reject.reason_name == "called-ae-title-not-recognized"
        assert driver.next_event() == dul.ConnectionClosed(cause=dul.CloseCause.REJECTED)

        # The right AE title, for contrast: the same server accepts and echoes.
        driver = Driver(connect(port), dul.Connection(dul.Role.REQUESTOR))
        driver.send(verification_request("QRSCP"))
        driver.until(dul.AssociateAccept)
        assert echo(driver, message_id=3).status == 0x0000
        driver.send(dul.ReleaseRequest())
        assert driver.until(dul.ConnectionClosed).cause is dul.CloseCause.RELEASED


# -- DCMTK's echoscu against our acceptor ------------------------------------------------------


class Acceptor(threading.Thread):
    """Our acceptor on a loopback port, serving one connection in a thread.

    It accepts Verification with the first transfer syntax proposed (and rejects other abstract
    syntaxes), answers each C-ECHO-RQ with status 0000H, answers A-RELEASE-RQ, and rejects a
    called AE title other than its own (source 1, reason 7).
    """

    def __init__(self, ae_title: str = "DULSCP", artim: float = ARTIM_TIMEOUT) -> None:
        super().__init__(daemon=True)
        self.ae_title = ae_title
        self.artim = artim
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.events: list[dul.Event] = []
        self.echoes: list[EchoCommand] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.listener:
                sock, _ = self.listener.accept()
            with sock:
                driver = Driver(sock, dul.Connection(dul.Role.ACCEPTOR), artim=self.artim)
                self.events = driver.events  # shared: the test reads them after join()
                self.serve(driver)
        except BaseException as exc:  # reported by result()
            self.error = exc

    def serve(self, driver: Driver) -> None:
        command = bytearray()
        while True:
            event = driver.next_event()
            if isinstance(event, dul.AssociateRequest):
                if event.called_ae_title != self.ae_title:
                    driver.send(
                        event.reject(reason=dul.RejectReasonUser.CALLED_AE_TITLE_NOT_RECOGNIZED)
                    )
                else:
                    driver.send(event.accept(tuple(map(negotiate, event.presentation_contexts))))
            elif isinstance(event, dul.PDataReceived):
                for pdv in event.values:
                    command += pdv.data
                    if pdv.is_command and pdv.is_last:
                        request = decode_echo(command)
                        self.echoes.append(request)
                        response = encode_echo_rsp(request.message_id, 0x0000)
                        driver.send_data(pdv.context_id, response, is_command=True)
                        command.clear()
            elif isinstance(event, dul.ReleaseRequest):
                driver.send(event.response())
            elif isinstance(event, dul.ConnectionClosed):
                return

    def result(self) -> list[dul.Event]:
        """The events our side saw, once the connection is over; re-raises the thread's error."""
        self.join(timeout=IO_TIMEOUT + self.artim)
        assert not self.is_alive(), f"acceptor still running; events so far: {self.events}"
        if self.error is not None:
            raise self.error
        return self.events


def negotiate(context: dul.PresentationContext) -> dul.PresentationContextAC:
    """Accept Verification with the first transfer syntax proposed; refuse anything else."""
    if context.abstract_syntax != VERIFICATION_SOP_CLASS:
        return dul.PresentationContextAC(
            context_id=context.context_id,
            result=dul.ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED,
        )
    return dul.PresentationContextAC(
        context_id=context.context_id, transfer_syntax=context.transfer_syntaxes[0]
    )


@contextlib.contextmanager
def acceptor(artim: float = ARTIM_TIMEOUT) -> Iterator[Acceptor]:
    """An :class:`Acceptor` thread, started; on the way out, stopped if the peer never came."""
    server = Acceptor(artim=artim)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError):  # already closed once accept() returned
            server.listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept() on Linux
        server.join(timeout=IO_TIMEOUT + server.artim)


def run_echoscu(dcmtk: Dcmtk, port: int, *options: str) -> subprocess.CompletedProcess[str]:
    """DCMTK's echoscu (never pynetdicom's script of that name), with its own timeouts."""
    timeouts = ["-to", "5", "-ta", "5", "-td", "5"]  # connect, ACSE and DIMSE, in seconds
    args = ["-aet", "ECHOSCU", *timeouts, *options, HOST, str(port)]
    return dcmtk.run("echoscu", *args, timeout=IO_TIMEOUT * 2)


def kinds(events: Sequence[dul.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.interop
@pytest.mark.parametrize("repeat", [1, 3])
def test_echoscu_against_acceptor(dcmtk: Dcmtk, repeat: int) -> None:
    """echoscu associates, echoes (``--repeat`` times) and releases; both sides agree."""
    with acceptor() as server:
        result = run_echoscu(dcmtk, server.port, "-aec", "DULSCP", "--repeat", str(repeat))
        events = server.result()

    assert result.returncode == 0, result.stdout + result.stderr
    assert kinds(events) == [
        "AssociateRequest",
        *["PDataReceived"] * repeat,
        "ReleaseRequest",
        "ConnectionClosed",
    ]
    request = events[0]
    assert isinstance(request, dul.AssociateRequest)
    assert (request.called_ae_title, request.calling_ae_title) == ("DULSCP", "ECHOSCU")
    assert [c.abstract_syntax for c in request.presentation_contexts] == [VERIFICATION_SOP_CLASS]
    assert [e.message_id for e in server.echoes] == list(range(1, repeat + 1))
    assert all(e.is_request and e.dataset_type == NO_DATASET for e in server.echoes)
    assert events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.RELEASED)


@pytest.mark.interop
def test_acceptor_rejects_wrong_called_ae_title(dcmtk: Dcmtk) -> None:
    with acceptor() as server:
        result = run_echoscu(dcmtk, server.port, "-aec", "WRONG")
        events = server.result()

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Association Rejected" in output
    assert "Called AE Title Not Recognized" in output
    assert kinds(events) == ["AssociateRequest", "ConnectionClosed"]
    assert events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.REJECTED)


@pytest.mark.interop
def test_echoscu_abort_against_acceptor(dcmtk: Dcmtk) -> None:
    """``echoscu --abort`` echoes, then sends an A-ABORT instead of releasing."""
    with acceptor() as server:
        result = run_echoscu(dcmtk, server.port, "-aec", "DULSCP", "--abort")
        events = server.result()

    assert result.returncode == 0, result.stdout + result.stderr
    assert kinds(events) == ["AssociateRequest", "PDataReceived", "Abort", "ConnectionClosed"]
    assert events[-2] == dul.Abort(source=dul.AbortSource.SERVICE_USER, reason=0)
    assert events[-1] == dul.ConnectionClosed(cause=dul.CloseCause.ABORTED_BY_PEER)


def test_acceptor_artim_expires_on_a_silent_peer() -> None:
    """A peer that connects and sends nothing: ARTIM expires in Sta2 and we close (AA-2)."""
    with acceptor(artim=0.2) as server, connect(server.port) as sock:
        start = time.monotonic()
        sock.settimeout(IO_TIMEOUT)
        assert sock.recv(1) == b""  # we closed without a word
        elapsed = time.monotonic() - start
        events = server.result()

    assert events == [dul.ConnectionClosed(cause=dul.CloseCause.ARTIM_EXPIRED)]
    assert 0.15 < elapsed < IO_TIMEOUT


# -- the tutorial ----------------------------------------------------------------------------


def run_tutorial(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run examples/tutorial_echoscu.py as a user would, with the dul these tests import."""
    dul_dir = str(Path(dul.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([dul_dir, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tutorial_echoscu.py"), HOST, str(port), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT * 3,
        check=False,
    )


@pytest.mark.interop
def test_tutorial_echoscu_against_storescp(dcmtk: Dcmtk, tmp_path: Path) -> None:
    with dcmtk.storescp(tmp_path) as port:
        result = run_tutorial(port, "--aec", "STORESCP")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["C-ECHO status 0x0000", "association released"]


@pytest.mark.interop
def test_tutorial_echoscu_refused(dcmtk: Dcmtk, tmp_path: Path) -> None:
    with dcmtk.storescp(tmp_path, "--refuse") as port:
        result = run_tutorial(port, "--aec", "STORESCP")

    assert result.returncode == 1
    assert "association failed: AssociateReject" in result.stderr
