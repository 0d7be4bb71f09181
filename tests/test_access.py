"""Who is let in (issue 17): --allow / --allow-file, --max-per-peer and --max-associations.

Written once (``examples.runtime.Access`` and the drivers' refusal), so each case runs on
every driver: dul's and DCMTK's echoscu and dul's storescu against dul's echoscp/storescp. An
association is held open with a raw :class:`dul.Connection` over a socket.
"""

from __future__ import annotations

import functools
import io
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from examples.runtime import Allowed
from examples.tools import main
from examples.tools.cli import ExitCode
from examples.tools.sample_files import dataset_bytes, write_sample

import dul
from helpers import make_request
from peers import HOST, Dcmtk

DRIVERS = ("sockets", "trio", "asyncio")


@contextmanager
def server(tool: str, driver: str, *argv: str) -> Iterator[tuple[int, io.StringIO]]:
    """dul's ``tool`` on ``driver`` in a thread: (port, its log)."""
    stream = io.StringIO()
    with main.server_in_thread(tool, ["--driver", driver, *argv, "0"], stream) as s:
        yield s.port, stream


def echoscu(driver: str, port: int, aet: str) -> tuple[int, str]:
    stream = io.StringIO()
    code = main.main("echoscu", ["--driver", driver, "-aet", aet, HOST, str(port)], stream=stream)
    return code, stream.getvalue()


@contextmanager
def held(port: int, calling: str = "HOLDER") -> Iterator[dul.AssociateAccept]:
    """An association held open by a raw dul Connection over a socket (released on exit)."""
    conn = dul.Connection(dul.Role.REQUESTOR)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(conn.send(make_request(calling=calling)))
        event = _next(conn, sock)
        assert isinstance(event, dul.AssociateAccept), event
        try:
            yield event
        finally:
            sock.sendall(conn.send(dul.ReleaseRequest()))
            while not isinstance(_next(conn, sock), dul.ConnectionClosed):
                pass


def _next(conn: dul.Connection, sock: socket.socket) -> object:
    while (event := conn.next_event()) is dul.NEED_DATA:
        conn.receive_data(sock.recv(65536))
    return event


def _served_soon(driver: str, port: int) -> tuple[int, str]:
    """echoscu, retried for a few seconds: the server frees the slot of an association just
    after its socket closes, so the first try may still find it taken."""
    deadline = time.monotonic() + 10
    while True:
        code, said = echoscu(driver, port, "THIRD")
        if code == ExitCode.OK or time.monotonic() > deadline:
            return code, said
        time.sleep(0.05)


def test_allowed_entries() -> None:
    """AETITLE, AETITLE@ADDRESS, AETITLE@NETWORK and '*'."""
    assert Allowed("A").admits("A", "10.1.2.3") and Allowed("A").admits("A", None)
    assert not Allowed("A").admits("B", "10.1.2.3")
    assert Allowed("A@10.0.0.0/8").admits("A", "10.1.2.3")
    assert not Allowed("A@10.0.0.0/8").admits("A", "11.1.2.3")
    assert not Allowed("A@10.0.0.1").admits("A", None)
    assert Allowed("*@127.0.0.1").admits("ANYONE", "127.0.0.1")
    with pytest.raises(ValueError):
        Allowed("A@not-an-address")


@pytest.mark.parametrize("driver", DRIVERS)
def test_allow_list_dul_echoscu(driver: str, tmp_path: Path) -> None:
    """Allowed by --allow or --allow-file: served; else RJ 1/1/3, one log line; the server goes
    on serving. An entry bound to another address does not let its title in from here."""
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("# who\nFROMFILE@127.0.0.0/8\n\nELSEWHERE@192.0.2.1  # not us\n")
    argv = ("--allow", f"GOOD@{HOST}", "--allow", "ANYWHERE", "--allow-file", str(allow_file))
    with server("echoscp", driver, *argv) as (port, log):
        results = {aet: echoscu(driver, port, aet) for aet in ("GOOD", "ANYWHERE", "FROMFILE")}
        bad = echoscu(driver, port, "BAD")
        elsewhere = echoscu(driver, port, "ELSEWHERE")
        again = echoscu(driver, port, "GOOD")
    for code, said in (*results.values(), again):
        assert code == ExitCode.OK, said
    for code, said in (bad, elsewhere):
        assert code == ExitCode.ASSOCIATION_FAILED, said
        assert "result 1, source 1, reason 3 (calling-ae-title-not-recognized)" in said, said
    lines = [line for line in log.getvalue().splitlines() if "rejected" in line]
    assert len(lines) == 2, log.getvalue()
    assert "'BAD' at 127.0.0.1 rejected: calling AE title not allowed" in lines[0]
    assert "'ELSEWHERE' at 127.0.0.1" in lines[1]


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_allow_list_dcmtk_echoscu(driver: str, dcmtk: Dcmtk) -> None:
    """DCMTK echoscu -aet: allowed passes; not allowed is told "Calling AE Title Not
    Recognized"; the server keeps serving."""
    with server("echoscp", driver, "--allow", "DCMTK") as (port, log):
        good = dcmtk.run("echoscu", "-aet", "DCMTK", HOST, str(port))
        bad = dcmtk.run("echoscu", "-aet", "INTRUDER", HOST, str(port))
        again = dcmtk.run("echoscu", "-aet", "DCMTK", HOST, str(port))
    assert good.returncode == 0 and again.returncode == 0, good.stdout + good.stderr
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "Rejected Permanent, Source: Service User" in said, said
    assert "Reason: Calling AE Title Not Recognized" in said, said
    assert "'INTRUDER' at 127.0.0.1 rejected: calling AE title not allowed" in log.getvalue()


@pytest.mark.parametrize("driver", DRIVERS)
def test_allow_list_storescu(driver: str, tmp_path: Path) -> None:
    """dul's storescu: stored when allowed, nothing stored when not."""
    source = write_sample(tmp_path / "in" / "a.dcm", index=1)
    out = tmp_path / "out"
    out.mkdir()
    with server("storescp", driver, "--allow", "SENDER", "-od", str(out)) as (port, _):
        codes = []
        for aet in ("INTRUDER", "SENDER"):
            stream = io.StringIO()
            argv = ["--driver", driver, "-aet", aet, HOST, str(port), str(source)]
            codes.append(main.main("storescu", argv, stream=stream))
    assert codes == [ExitCode.ASSOCIATION_FAILED, ExitCode.OK]
    assert [dataset_bytes(p) for p in out.iterdir()] == [dataset_bytes(source)]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("option", ["--max-per-peer", "--max-associations"])
def test_limits(driver: str, option: str) -> None:
    """With one association held, the limit 1 rejects the next: RJ 2/3/2, said by dul's
    echoscu; once released, the next is served."""
    with server("echoscp", driver, option, "1") as (port, log):
        with held(port):
            code, said = echoscu(driver, port, "SECOND")
        after, said_after = _served_soon(driver, port)
    assert code == ExitCode.ASSOCIATION_FAILED, said
    assert "result 2, source 3, reason 2" in said, said
    assert after == ExitCode.OK, said_after
    if option == "--max-per-peer":
        assert "association from 127.0.0.1 rejected: 1 associations already" in log.getvalue()


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_per_peer_limit_dcmtk(driver: str, dcmtk: Dcmtk) -> None:
    """DCMTK echoscu beyond --max-per-peer: "Rejected Transient ... Local Limit Exceeded"."""
    with server("echoscp", driver, "--max-per-peer", "1") as (port, _), held(port):
        bad = dcmtk.run("echoscu", "-aet", "DCMTK", HOST, str(port))
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "Rejected Transient, Source: Service Provider (Presentation Related)" in said, said
    assert "Local Limit Exceeded" in said, said


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certificate, key): self-signed, for 127.0.0.1."""
    from test_tools import make_certificate

    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


def _tls_hello(port: int, context: ssl.SSLContext) -> str | None:
    """Open TLS to ``port`` with ``context``: None if the handshake succeeds, else the error."""
    try:
        with (
            socket.create_connection((HOST, port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=HOST),
        ):
            return None
    except (ssl.SSLError, OSError) as exc:
        return str(exc)


def _unverified(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context speaking only TLS ``version``, checking no certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.1 at level 0 only
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    return context


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_refusals(driver: str, certificate: tuple[str, str]) -> None:
    """On a TLS port: TLS 1.1 is refused (BCP 195: 1.2 minimum) and plain DICOM gets no
    association; a TLS 1.2 client is served after both."""
    cert, key = certificate
    with server("echoscp", driver, "--tls-cert", cert, "--tls-key", key) as (port, _):
        refused = _tls_hello(port, _unverified(ssl.TLSVersion.TLSv1_1))
        accepted = _tls_hello(port, _unverified(ssl.TLSVersion.TLSv1_2))
        plain, said = echoscu(driver, port, "PLAIN")
        stream = io.StringIO()
        argv = ["--driver", driver, "--tls-ca", cert, "-ta", "10", HOST, str(port)]
        tls12 = main.main("echoscu", argv, stream=stream)
    assert refused is not None and accepted is None, accepted  # only the version differs
    assert plain == ExitCode.ASSOCIATION_FAILED, said
    assert tls12 == ExitCode.OK, stream.getvalue()


def _self_signed(directory: Path, stem: str, san: str) -> tuple[str, str]:
    """A self-signed certificate (a CA of its own) for ``san``, by openssl: (cert, key)."""
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    subject = ["-subj", f"/CN={stem}", "-addext", f"subjectAltName={san}"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


_CA_CONFIG = """[ca]
default_ca = this
[this]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
"""


def _expired(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 valid only on 1 January 2020: (cert, key)."""
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("01\n")
    (directory / "ca.cnf").write_text(_CA_CONFIG)
    key, request, cert = (str(directory / name) for name in ("old.key", "old.csr", "old.pem"))
    subject = ["-subj", "/CN=expired", "-addext", "subjectAltName=IP:127.0.0.1"]
    run = functools.partial(subprocess.run, check=True, capture_output=True, cwd=directory)
    run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            *subject,
            "-keyout",
            key,
            "-out",
            request,
        ]
    )
    dates = ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]
    files = ["-keyfile", key, "-in", request, "-out", cert]
    run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", *dates, *files])
    return cert, key


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_wrong_peers(driver: str, tmp_path: Path) -> None:
    """Refused cleanly, the server serving a good client after each: a client certificate of
    another CA (the server requires one of its CA), a server certificate for another name, and
    an expired server certificate, TLS to a plaintext port."""
    cert, key = _self_signed(tmp_path, "server", "IP:127.0.0.1")
    stranger = _self_signed(tmp_path, "stranger", "IP:127.0.0.1")
    other_name = _self_signed(tmp_path, "elsewhere", "DNS:elsewhere.example")

    def echo(port: int, *tls: str) -> tuple[int, str]:
        stream = io.StringIO()
        argv = ["--driver", driver, "-ta", "10", *tls, HOST, str(port)]
        return main.main("echoscu", argv, stream=stream), stream.getvalue()

    good = ("--tls-ca", cert, "--tls-cert", cert, "--tls-key", key)
    server_tls = ("--tls-cert", cert, "--tls-key", key, "--tls-ca", cert)
    with server("echoscp", driver, *server_tls) as (port, _):
        wrong_ca = echo(port, "--tls-ca", cert, "--tls-cert", stranger[0], "--tls-key", stranger[1])
        after_wrong_ca = echo(port, *good)
    with server("echoscp", driver, "--tls-cert", other_name[0], "--tls-key", other_name[1]) as (
        port,
        _,
    ):
        wrong_name = echo(port, "--tls-ca", other_name[0])
    old = _expired(tmp_path)
    with server("echoscp", driver, "--tls-cert", old[0], "--tls-key", old[1]) as (port, _):
        expired = echo(port, "--tls-ca", old[0])
    assert expired[0] == ExitCode.ASSOCIATION_FAILED, expired[1]
    assert "certificate has expired" in expired[1], expired[1]
    with server("echoscp", driver) as (port, _):
        tls_to_plain = echo(port, "--tls-ca", cert)
        after_plain = echo(port)
    assert wrong_ca[0] == ExitCode.ASSOCIATION_FAILED, wrong_ca[1]
    assert wrong_name[0] == ExitCode.ASSOCIATION_FAILED, wrong_name[1]
    assert "TLS handshake" in wrong_name[1] and "IP address mismatch" in wrong_name[1], wrong_name
    assert tls_to_plain[0] == ExitCode.ASSOCIATION_FAILED, tls_to_plain[1]
    assert after_wrong_ca[0] == ExitCode.OK, after_wrong_ca[1]
    assert after_plain[0] == ExitCode.OK, after_plain[1]


@pytest.mark.parametrize("tool", ["storescp", "qrscp"])
def test_allow_list_other_scps(tool: str, tmp_path: Path) -> None:
    """The same rules on the other SCPs (the printer's command line wraps its service alike)."""
    folder = ["-od", str(tmp_path)] if tool == "storescp" else [str(tmp_path)]
    stream = io.StringIO()
    with main.server_in_thread(tool, ["--allow", "GOOD", "0", *folder], stream) as s:
        good = echoscu("sockets", s.port, "GOOD")
        bad = echoscu("sockets", s.port, "BAD")
    assert good[0] == ExitCode.OK, good[1]
    assert bad[0] == ExitCode.ASSOCIATION_FAILED, bad[1]
    assert "'BAD' at 127.0.0.1 rejected" in stream.getvalue()
