"""The example tools on each driver (blocking sockets, trio, asyncio), dul against dul.

The same tests run on the three drivers' tools (the ``tools`` fixture); storescu on each driver
also stores into storescp on each other driver. echoscu/echoscp and storescu/storescp run in
this process (``*_main(argv)`` returns the exit status; a server runs in a thread, with its own
event loop for trio and asyncio), except one test that runs each as ``python -m`` in a child
process. The peers' own evidence is checked: the files storescp wrote (read back with pydicom),
its log, and the exit statuses. Interoperability with DCMTK and pynetdicom is
``test_interop_storage.py``.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from examples.apps import storage
from examples.runtime import Association, Steps, acceptor
from examples.sockets import driver as sockets_driver
from examples.tools.cli import ExitCode, ToolError
from examples.tools.sample_files import TRANSFER_SYNTAX_NAMES, dataset_bytes, write_sample
from pydicom.uid import UID

import dul
from dul import dimse
from peers import HOST, Dcmtk, DulTools, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: The tools on each driver: ``python -m examples.<tool> --driver <driver>``, in this process.
TOOLS = {driver: DulTools(driver) for driver in ("sockets", "trio", "asyncio")}
DRIVERS = list(TOOLS)
MAINS = ["echoscu_main", "storescu_main", "echoscp_main", "storescp_main"]


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(params=DRIVERS)
def tools(request: pytest.FixtureRequest) -> DulTools:
    """The tools of one driver (the test runs once per driver)."""
    return TOOLS[request.param]


@contextmanager
def dul_server(tools: DulTools, kind: str, *argv: str) -> Iterator[tuple[int, io.StringIO]]:
    """Run our echoscp or storescp with ``argv`` in a thread on a free port: (port, its log)."""
    stream = io.StringIO()
    with tools.server_in_thread(kind, ["-v", *argv, "0"], stream) as server:
        yield server.port, stream


def run_tool(main: Callable[..., int], *argv: str) -> tuple[int, str]:
    """Run a tool's main in this process: (exit status, what it logged)."""
    stream = io.StringIO()
    code = main(list(argv), stream=stream)
    return code, stream.getvalue()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` (a server thread logs after its peer has gone)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.02)


def read_stored(path: Path) -> pydicom.FileDataset:
    """A stored file, read back by pydicom (which checks the preamble and the meta group)."""
    return pydicom.dcmread(path)


def meta_group_length(path: Path) -> tuple[int, int]:
    """(the value of (0002,0000), the byte count of the rest of group 0002) of a stored file."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    declared = int.from_bytes(data[140:144], "little")
    return declared, storage.read_dicom_file(path).offset - 144


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A directory tree of DICOM files in three transfer syntaxes, with a non-DICOM file."""
    root = tmp_path / "in"
    files = {
        "explicit": write_sample(root / "a.dcm", TRANSFER_SYNTAX_NAMES["explicit"], index=1),
        "implicit": write_sample(
            root / "sub" / "b.dcm", TRANSFER_SYNTAX_NAMES["implicit"], index=2
        ),
        "deflate": write_sample(
            root / "sub" / "deeper" / "c", TRANSFER_SYNTAX_NAMES["deflate"], index=3
        ),
    }
    (root / "sub" / "README.txt").write_text("not DICOM\n")
    return files


# -- the command line -------------------------------------------------------------------------

HELP_OPTIONS = {
    "echoscu_main": ["-aet", "-aec", "-to", "-ta", "-td", "--max-pdu", "--repeat"],
    "storescu_main": ["-aet", "-aec", "-to", "-ta", "-td", "--max-pdu", "--no-halt"],
    "echoscp_main": ["-aet", "--require-called-aet", "--bind", "--max-pdu"],
    "storescp_main": ["-od", "--ignore", "--accept-all", "--abort-after", "--max-pdu"],
}


@pytest.mark.parametrize("main", MAINS)
def test_help_says_what_each_option_does(
    tools: DulTools, main: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert getattr(tools, main)(["--help"]) == 0
    text = capsys.readouterr().out
    for option in [*HELP_OPTIONS[main], "-v", "--tls", "--tls-cert", "--tls-ca", "--tls-key"]:
        line = next((ln for ln in text.splitlines() if re.search(rf"{option}\b", ln)), None)
        assert line is not None, f"{option} missing from --help"
    assert "exit status:" in text
    assert "70  the association was aborted" in text
    # The usage names the module that runs this tool (on every driver), and --driver.
    assert f"python -m examples.{main.removesuffix('_main')}" in text.splitlines()[0]
    assert "--driver {sockets,trio,asyncio}" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-such-option", HOST, "104"],
        [HOST, "not-a-port"],
        ["-aet", "A" * 17, HOST, "104"],
        ["-pdu", "12", HOST, "104"],
        [HOST],
    ],
)
def test_usage_errors_exit_1(
    tools: DulTools, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """As DCMTK's tools: a command-line syntax error is exit status 1, with the usage."""
    assert tools.echoscu_main(argv) == ExitCode.USAGE
    assert "usage:" in capsys.readouterr().err


# -- echo -------------------------------------------------------------------------------------


def test_echo_with_trace(tools: DulTools) -> None:
    with dul_server(tools, "echoscp") as (port, server_log):
        code, log = run_tool(tools.echoscu_main, "-v", "--repeat", "3", HOST, str(port))
        assert code == ExitCode.OK
        wait_for(lambda: "ended: released" in server_log.getvalue())
    # The requestor's trace: every PDU and DIMSE message, in order.
    order = ["SCU ==> A-ASSOCIATE-RQ", "SCU <== A-ASSOCIATE-AC", "SCU ==> C-ECHO-RQ"]
    order += ["SCU <== C-ECHO-RSP", "SCU ==> A-RELEASE-RQ", "SCU <== A-RELEASE-RP"]
    positions = [log.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert log.count("C-ECHO response: status 0x0000 (success)") == 3
    # The acceptor's: the same exchange seen from the other side.
    text = server_log.getvalue()
    assert "SCP#1 <== A-ASSOCIATE-RQ" in text
    assert text.count("SCP#1 ==> C-ECHO-RSP") == 3
    assert "calling AE title: 'ECHOSCU'" in text


def test_simultaneous_associations_are_traced_apart(tools: DulTools) -> None:
    """Two echoscu at once: the server's trace numbers each association's lines as its own.

    Under trio and asyncio every association runs in the server's one thread: a label kept per
    thread would give the second association's number to the first one's later lines.
    """
    repeat = 40
    codes: list[int] = []
    with dul_server(tools, "echoscp") as (port, server_log):
        argv = ["--repeat", str(repeat), HOST, str(port)]
        threads = [
            threading.Thread(target=lambda: codes.append(run_tool(tools.echoscu_main, *argv)[0]))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wait_for(lambda: server_log.getvalue().count("ended: released") == 2)
    assert codes == [ExitCode.OK, ExitCode.OK]
    text = server_log.getvalue()
    for number in (1, 2):
        assert text.count(f"SCP#{number} <== A-ASSOCIATE-RQ") == 1
        assert text.count(f"SCP#{number} <== C-ECHO-RQ") == repeat
        assert text.count(f"SCP#{number} ==> C-ECHO-RSP") == repeat
        assert text.count(f"SCP#{number} ==> A-RELEASE-RP") == 1


def test_echo_connection_refused(tools: DulTools) -> None:
    code, log = run_tool(tools.echoscu_main, HOST, str(free_port()))
    assert code == ExitCode.ASSOCIATION_FAILED
    assert "cannot connect" in log


def test_echo_rejected_for_wrong_called_ae_title(tools: DulTools) -> None:
    with dul_server(tools, "echoscp", "-aet", "ECHOSCP", "--require-called-aet") as (
        port,
        server_log,
    ):
        code, log = run_tool(tools.echoscu_main, "-aec", "WRONG", HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
        assert "association rejected: result 1, source 1, reason 7" in log
        code, _ = run_tool(tools.echoscu_main, "-aec", "ECHOSCP", HOST, str(port))
        assert code == ExitCode.OK
        wait_for(lambda: "ended: released" in server_log.getvalue())
    assert "ended: rejected" in server_log.getvalue()


def test_echo_abort_instead_of_release(tools: DulTools) -> None:
    with dul_server(tools, "echoscp") as (port, server_log):
        code, log = run_tool(tools.echoscu_main, "-v", "--abort", HOST, str(port))
        assert code == ExitCode.OK
        assert "SCU ==> A-ABORT" in log
        wait_for(lambda: "ended: aborted by peer" in server_log.getvalue())


def test_timeouts(tools: DulTools) -> None:
    """-ta bounds the wait for the association's answer (61), -td the wait for a response (70)."""
    with socket.create_server((HOST, 0)) as silent:  # connects (the backlog), never answers
        started = time.monotonic()
        code, log = run_tool(tools.echoscu_main, "-ta", "0.5", HOST, str(silent.getsockname()[1]))
        assert time.monotonic() - started < 10
    assert code == ExitCode.ASSOCIATION_FAILED
    assert "timed out waiting for the association answer" in log

    def mute(assoc: Association, event: object, dataset: object) -> Steps[None]:
        yield from assoc.next_event(10)  # never responds: the requestor gives up first

    policy = dimse.AcceptorPolicy(contexts={dimse.VERIFICATION_SOP_CLASS: ()})
    service = acceptor(policy.evaluate, {dimse.CEchoRequest: mute})  # type: ignore[dict-item]
    with sockets_driver.serving(service, HOST, 0) as server:
        started = time.monotonic()
        code, log = run_tool(tools.echoscu_main, "-v", "-td", "0.5", HOST, str(server.port))
        assert time.monotonic() - started < 10
    assert code == ExitCode.ASSOCIATION_ABORTED
    assert "timed out waiting for the peer" in log
    assert "SCU ==> A-ABORT" in log


# -- store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", DRIVERS)
@pytest.mark.parametrize("client", DRIVERS)
def test_store_tree_recursively(
    client: str, server: str, tree: dict[str, Path], tmp_path: Path
) -> None:
    """Every file arrives as a valid Part 10 file whose data set is the sent bytes, unchanged.

    storescu on each driver, storescp on each driver.
    """
    out = tmp_path / "out"
    out.mkdir()
    with dul_server(TOOLS[server], "storescp", "-od", str(out)) as (port, server_log):
        code, log = run_tool(
            TOOLS[client].storescu_main, "-v", "-aet", "ME", HOST, str(port), str(tmp_path / "in")
        )
        assert code == ExitCode.OK, log
        wait_for(lambda: "ended: released" in server_log.getvalue())
    assert "skipped" in log and "README.txt" in log
    assert "3 of 3 files stored" in log
    stored = sorted(out.iterdir())
    assert [p.name for p in stored] == sorted(
        f"CT.{pydicom.dcmread(p).SOPInstanceUID}" for p in tree.values()
    )
    for source in tree.values():
        sent = pydicom.dcmread(source)
        path = out / f"CT.{sent.SOPInstanceUID}"
        received = read_stored(path)
        meta = received.file_meta
        assert meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
        assert meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
        assert meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert meta.ImplementationClassUID == dul.IMPLEMENTATION_CLASS_UID
        assert meta.ImplementationVersionName == dul.IMPLEMENTATION_VERSION_NAME
        assert meta.SourceApplicationEntityTitle == "ME"
        assert meta.FileMetaInformationVersion == b"\x00\x01"
        declared, actual = meta_group_length(path)
        assert declared == actual
        assert dataset_bytes(path) == dataset_bytes(source)
        assert received.PixelData == sent.PixelData
    # Four contexts were proposed, one per transfer syntax and the uncompressed fallback (for
    # big endian, which no file has), and each file used its own: nothing was converted.
    assert server_log.getvalue().count("abstract syntax: 1.2.840.10008.5.1.4.1.1.2 ") == 4
    assert "converting" not in log


def test_store_ignore_writes_nothing(
    tools: DulTools, tree: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with dul_server(tools, "storescp", "--ignore", "-od", str(out)) as (port, server_log):
        code, _ = run_tool(tools.storescu_main, HOST, str(port), *map(str, tree.values()))
        assert code == ExitCode.OK
        wait_for(lambda: "ended: released" in server_log.getvalue())
    assert list(out.iterdir()) == []
    assert server_log.getvalue().count("==> C-STORE-RSP") == 3


def test_store_input_errors(tools: DulTools, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("nothing")
    port = str(free_port())  # never contacted: the inputs are checked first
    code, log = run_tool(tools.storescu_main, HOST, port, str(text))
    assert (code, "notes.txt: not a DICOM Part 10 file" in log) == (
        ExitCode.INVALID_INPUT_FILE,
        True,
    )
    assert "force" not in log  # pydicom's advice (force=True) is no option of the tool
    code, log = run_tool(tools.storescu_main, HOST, port, str(tmp_path / "missing.dcm"))
    assert (code, "no such file" in log) == (ExitCode.INVALID_INPUT_FILE, True)
    code, log = run_tool(tools.storescu_main, "-v", HOST, port, str(empty))
    assert (code, "no DICOM file" in log) == (ExitCode.NO_VALID_INPUT_FILES, True)
    assert "skipped " in log and "x.txt: not a DICOM Part 10 file" in log and "force" not in log


@pytest.mark.parametrize(
    ("tool", "argv"),
    [
        ("echoscu", ["127.0.0.1", "9"]),
        ("storescu", ["127.0.0.1", "9", "x.dcm"]),
        ("findscu", ["-k", "QueryRetrieveLevel=STUDY", "127.0.0.1", "9"]),
    ],
)
def test_missing_trio_says_which_extra(tool: str, argv: list[str]) -> None:
    """Issue 16 item 5: without trio, ``--driver trio`` says in one line which extra brings it,
    no traceback (trio hidden from the child's imports)."""
    code = (
        "import runpy, sys; sys.modules['trio'] = None; "
        f"sys.argv = ['{tool}', '--driver', 'trio', *{argv!r}]; "
        f"runpy.run_module('examples.{tool}', run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert "the trio driver needs the trio package" in lines[0]
    assert "pip install -e '.[examples]'" in lines[0]


def test_examples_extra_brings_every_driver_dependency() -> None:
    """The extra the docs and scripts/demo.sh install for the tools: pydicom and trio (asyncio
    and the sockets driver need nothing more); read from dul's installed metadata."""
    from importlib.metadata import requires

    extra = {
        re.split(r"[<>=!~;\s\[]", requirement, maxsplit=1)[0].lower()
        for requirement in requires("dul") or []
        if re.search(r"""extra\s*==\s*["']examples["']""", requirement)
    }
    assert extra == {"pydicom", "trio"}


def test_store_unknown_sop_class(tools: DulTools, tmp_path: Path) -> None:
    """Refused unless --accept-all: the context is rejected, storescu says so and fails."""
    private = write_sample(tmp_path / "p.dcm", sop_class_uid="1.2.826.0.1.3680043.2.1143.99")
    out = tmp_path / "out"
    out.mkdir()
    with dul_server(tools, "storescp", "-od", str(out)) as (port, _):
        code, log = run_tool(tools.storescu_main, HOST, str(port), str(private))
    assert code == ExitCode.REQUEST_FAILED
    assert "accepted no presentation context" in log
    with dul_server(tools, "storescp", "--accept-all", "-od", str(out)) as (port, _):
        code, _ = run_tool(tools.storescu_main, HOST, str(port), str(private))
    assert code == ExitCode.OK
    assert [p.name.split(".")[0] for p in out.iterdir()] == ["UNKNOWN"]


def test_store_every_storage_sop_class(tools: DulTools, tmp_path: Path) -> None:
    """storescp accepts storage SOP classes beyond the common ones: new, rare and retired."""
    classes = {
        "1.2.840.10008.5.1.4.1.1.66.4": "SEG",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7": "UNKNOWN",  # Label Map Segmentation (2024)
        "1.2.840.10008.5.1.4.1.1.6": "UNKNOWN",  # Ultrasound Image Storage (retired)
        "1.2.840.10008.5.1.1.29": "UNKNOWN",  # Hardcopy Grayscale Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",  # RT Plan Storage
        "1.2.840.10008.5.1.4.1.1.77.1.5.8": "UNKNOWN",  # Ophthalmic OCT B-scan Volume Analysis
    }
    files = [
        str(write_sample(tmp_path / "in" / f"{i}.dcm", index=i, sop_class_uid=uid))
        for i, uid in enumerate(classes)
    ]
    out = tmp_path / "out"
    out.mkdir()
    with dul_server(tools, "storescp", "-od", str(out)) as (port, _):
        code, log = run_tool(tools.storescu_main, HOST, str(port), *files)
    assert code == ExitCode.OK, log
    stored = sorted(read_stored(p).file_meta.MediaStorageSOPClassUID for p in out.iterdir())
    assert stored == sorted(classes)
    assert sorted(p.name.split(".")[0] for p in out.iterdir()) == sorted(classes.values())


def test_store_failure_status_halts_unless_no_halt(tools: DulTools, tmp_path: Path) -> None:
    """A file the SCP cannot write gets 0xA700; storescu stops there, or goes on with -nh."""
    files = [write_sample(tmp_path / "in" / f"{i}.dcm", index=10 + i) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    # A directory where storescp's file for the first instance must go: it cannot store it.
    first = pydicom.dcmread(files[0]).SOPInstanceUID
    (out / f"CT.{first}").mkdir()
    with dul_server(tools, "storescp", "-od", str(out)) as (port, _):
        code, log = run_tool(tools.storescu_main, HOST, str(port), *map(str, files))
        assert code == ExitCode.REQUEST_FAILED
        assert "status 0xA700 (failure): cannot store the file" in log
        # Issue 16 item 5: halted after the first, none of the 3 is stored, and it says so.
        assert "E: 3 of 3 files not stored (2 not sent: halted at the first failure" in log
        assert [p.name for p in out.iterdir()] == [f"CT.{first}"]  # no partial file left
        code, log = run_tool(tools.storescu_main, "-nh", HOST, str(port), *map(str, files))
        assert code == ExitCode.REQUEST_FAILED
        assert "E: 1 of 3 files not stored\n" in log
        assert (
            "2 of 3 files stored"
            in run_tool(tools.storescu_main, "-v", "-nh", HOST, str(port), *map(str, files))[1]
        )
    assert sorted(p.is_file() for p in out.iterdir()) == [False, True, True]


def test_store_peer_aborts(tools: DulTools, tree: dict[str, Path], tmp_path: Path) -> None:
    for option in ("--abort-after", "--abort-during"):
        with dul_server(tools, "storescp", option, "-od", str(tmp_path)) as (port, server_log):
            code, log = run_tool(tools.storescu_main, HOST, str(port), str(tree["explicit"]))
            assert code == ExitCode.ASSOCIATION_ABORTED
            assert "association aborted" in log
            wait_for(lambda log=server_log: "ended: aborted locally" in log.getvalue())
        assert not list(tmp_path.glob("CT.*")) and not list(tmp_path.glob(".*.part"))


def test_store_progress(tools: DulTools, tree: dict[str, Path]) -> None:
    with dul_server(tools, "storescp", "--ignore") as (port, _):
        code, log = run_tool(
            tools.storescu_main, "--progress", HOST, str(port), str(tree["explicit"])
        )
    assert code == ExitCode.OK
    assert re.search(r"\r1/1 files, 0\.0/0\.0 MB, [\d.]+ MB/s", log)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CT image with a 24 MB data set."""
    return write_sample(tmp_path_factory.mktemp("big") / "big.dcm", size=24_000_000)


def test_store_streams_with_bounded_memory(tools: DulTools, big_file: Path, tmp_path: Path) -> None:
    """A 24 MB data set goes from file to file through a few MB of memory, both sides together."""
    out = tmp_path / "out"
    out.mkdir()
    with dul_server(tools, "storescp", "-od", str(out), "--max-pdu", "65536") as (port, _):
        tracemalloc.start()
        try:
            code, log = run_tool(tools.storescu_main, HOST, str(port), str(big_file))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code == ExitCode.OK, log
    stored = out / f"CT.{pydicom.dcmread(big_file, stop_before_pixels=True).SOPInstanceUID}"
    assert stored.stat().st_size - storage.read_dicom_file(stored).offset > 23_000_000
    assert dataset_bytes(stored) == dataset_bytes(big_file)
    # A third of the data set: both ends run in this process, and asyncio's transports hold up
    # to their high-water marks on each side (6 MB was seen to be crossed by 1%).
    assert peak < 8_000_000, f"peak {peak:,} bytes"


def test_server_setup_errors(tools: DulTools, tmp_path: Path) -> None:
    """A port in use is 60 (network set-up), a missing output directory 40, as DCMTK's."""
    with dul_server(tools, "echoscp") as (port, _):
        code, log = run_tool(tools.storescp_main, "--ignore", str(port))
        assert code == ExitCode.NETWORK_SETUP
        assert f"cannot listen on 127.0.0.1:{port}" in log
        with pytest.raises(ToolError) as raised, tools.server_in_thread("echoscp", [str(port)]):
            pass
        assert raised.value.code == ExitCode.NETWORK_SETUP
    code, log = run_tool(tools.storescp_main, "-od", str(tmp_path / "missing"), "0")
    assert code == ExitCode.CANNOT_WRITE_OUTPUT
    assert "output directory" in log


# -- TLS --------------------------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost) and its key, as PEM files."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import cryptography  # noqa: F401 - only asking whether it is installed
    except ImportError:
        subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
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
        return cert, key
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key): self-signed, for 127.0.0.1."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_tls_store(
    tools: DulTools, certificate: tuple[Path, Path], tree: dict[str, Path], tmp_path: Path
) -> None:
    """storescu over TLS to storescp over TLS, each side verifying the other's certificate."""
    cert, key = map(str, certificate)
    out = tmp_path / "out"
    out.mkdir()
    tls = ["--tls-cert", cert, "--tls-key", key, "--tls-ca", cert]
    with dul_server(tools, "storescp", *tls, "-od", str(out)) as (port, server_log):
        code, log = run_tool(tools.storescu_main, *tls, HOST, str(port), str(tree["explicit"]))
        assert code == ExitCode.OK, log
        # A client that does not trust the server's certificate gets no association.
        code, log = run_tool(tools.echoscu_main, "--tls", HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
        assert "TLS handshake" in log and "CERTIFICATE_VERIFY_FAILED" in log
        # Nor does one without a client certificate, the server requiring one.
        code, _ = run_tool(tools.echoscu_main, "--tls-ca", cert, HOST, str(port))
        assert code != ExitCode.OK
        # Plain TCP to a TLS server: no association either.
        code, _ = run_tool(tools.echoscu_main, "-ta", "5", HOST, str(port))
        assert code == ExitCode.ASSOCIATION_FAILED
    stored = out / f"CT.{pydicom.dcmread(tree['explicit']).SOPInstanceUID}"
    assert dataset_bytes(stored) == dataset_bytes(tree["explicit"])
    assert "SCP#1 <== A-ASSOCIATE-RQ" in server_log.getvalue()


def test_tls_files_missing(tools: DulTools, tmp_path: Path) -> None:
    code, log = run_tool(tools.echoscu_main, "--tls-ca", str(tmp_path / "no.pem"), HOST, "1")
    assert code == ExitCode.NETWORK_SETUP
    assert "cannot set up TLS" in log
    code, log = run_tool(tools.storescp_main, "--tls", "0")
    assert code == ExitCode.USAGE
    assert "--tls-cert" in log


# -- the modules, as a user runs them ---------------------------------------------------------


def python_m(module: str, *argv: str) -> list[str]:
    return [sys.executable, "-m", module, *argv]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("driver", DRIVERS)
def test_python_m_entry_points(driver: str, tree: dict[str, Path], tmp_path: Path) -> None:
    """``python -m examples.storescp --driver D`` serves (stopped by its PID); the SCUs exit 0."""
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    server = subprocess.Popen(
        python_m("examples.storescp", "--driver", driver, "-v", "-od", str(out), str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        wait_listening(port)
        echo = subprocess.run(
            python_m("examples.echoscu", "--driver", driver, HOST, str(port)),
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert echo.returncode == 0, echo.stderr
        store = subprocess.run(
            python_m(
                "examples.storescu", "--driver", driver, HOST, str(port), str(tmp_path / "in")
            ),
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert store.returncode == 0, store.stderr
    finally:
        server.terminate()  # SIGTERM: storescp stops as on Ctrl-C
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert b"storescp: interrupted, stopping" in output
    assert len(list(out.glob("CT.*"))) == 3


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.parametrize("driver", DRIVERS)
def test_storescp_workers(driver: str, tree: dict[str, Path], tmp_path: Path) -> None:
    """``--workers 2`` (issue 15): two processes serve one port; a worker killed with SIGKILL is
    replaced and the others go on; SIGTERM stops them all, and every file stored is whole."""
    out, inputs = tmp_path / "out", tmp_path / "in"  # the tree's three files, sent each time
    out.mkdir()
    port = free_port()
    server = subprocess.Popen(
        python_m("examples.storescp", "--driver", driver, "--workers", "2", "-od", str(out),
                 str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT,
    )  # fmt: skip

    def store() -> None:
        command = python_m("examples.storescu", "--driver", driver, HOST, str(port), str(inputs))
        result = subprocess.run(
            command, env=child_env(), cwd=ROOT, capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr

    try:
        wait_listening(port)
        wait_for(lambda: len(_children(server.pid)) == 2)
        workers = _children(server.pid)
        store()
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_children(server.pid) - {victim}) == 2)
        for _ in range(4):  # served by the survivor and the new worker, whichever accepts
            store()
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert f"worker {victim} killed by SIGKILL; starting another".encode() in output
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    stored = list(out.glob("CT.*"))  # the same three instances, stored five times over
    assert len(stored) == 3 and all(read_stored(p).PixelData for p in stored)


#: Run a driver's storescu in this child, then say whether pydicom was imported.
_STORESCU_WITHOUT_PYDICOM = """
import runpy, sys
sys.argv = ["storescu", *sys.argv[2:]]
try:
    runpy.run_module(MODULE, run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("pydicom imported:", "pydicom" in sys.modules)
sys.exit(code)
"""


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_storescu_sends_without_pydicom(
    driver: str, dcmtk: Dcmtk, tree: dict[str, Path], tmp_path: Path
) -> None:
    """Reading the files' meta groups is dul.part10's: storescu imports no pydicom at all."""
    module = "examples.storescu"
    script = _STORESCU_WITHOUT_PYDICOM.replace("MODULE", repr(module))
    with dcmtk.storescp(tmp_path, "+xa") as port:  # +xa: deflate too
        argv = [module, "--driver", driver, HOST, str(port), str(tmp_path / "in")]
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "pydicom imported: False" in result.stdout, result.stderr
    assert len(list((tmp_path / "received").iterdir())) == 3


# -- the storage logic ------------------------------------------------------------------------


def test_storage_sop_classes_are_pydicom_storage_uids() -> None:
    """The common list (file name prefixes, getscu's proposals): storage SOP classes by pydicom's
    dictionary; and storescp's policy accepts every storage SOP class of dul.uids."""
    for uid in storage.COMMON_STORAGE_SOP_CLASSES:
        assert UID(uid).type == "SOP Class", uid
        assert "Storage" in UID(uid).name, (uid, UID(uid).name)
        assert uid in storage.STORAGE_SOP_CLASSES
    assert storage.STORAGE_SOP_CLASSES is dul.uids.STORAGE_SOP_CLASSES
    policy = storage.storage_policy(ae_title=None, maximum_length=16384)
    assert set(storage.STORAGE_SOP_CLASSES) < set(policy.contexts)
    for syntax in storage.TRANSFER_SYNTAXES:
        assert UID(syntax).is_transfer_syntax, syntax


def test_file_meta_reads_back(tmp_path: Path) -> None:
    """The meta group we write is what pydicom reads, odd-length values padded."""
    path = tmp_path / "m.dcm"
    charset = b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100"  # (0008,0005), implicit VR
    path.write_bytes(storage.file_meta("1.2.3", "1.2.34", "1.2.840.10008.1.2", "ODD") + charset)
    meta = pydicom.filereader.read_file_meta_info(path)
    assert meta.MediaStorageSOPClassUID == "1.2.3"
    assert meta.MediaStorageSOPInstanceUID == "1.2.34"
    assert meta.SourceApplicationEntityTitle == "ODD"
    declared, actual = meta_group_length(path)
    assert declared == actual == len(path.read_bytes()) - 144 - len(charset)
    assert pydicom.dcmread(path).SpecificCharacterSet == "ISO_IR 100"


def test_file_names_are_safe() -> None:
    assert storage.file_name(CT_IMAGE_STORAGE, "1.2.3") == "CT.1.2.3"
    assert storage.file_name("1.2.3", "../../etc/passwd") == "UNKNOWN..._..___________"
    assert "/" not in storage.file_name("9", "/" * 100)


def test_plan_splits_beyond_128_contexts(tmp_path: Path) -> None:
    files = [
        storage.DicomFile(
            path=tmp_path / str(i),
            sop_class_uid=f"1.2.3.{i // 2}",
            sop_instance_uid=f"9.{i}",
            transfer_syntax=("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")[i % 2],
            offset=0,
            length=2,
        )
        for i in range(300)
    ]
    batches = storage.plan(files)
    assert [len(b.contexts) for b in batches] == [128, 128, 44]
    assert sum(len(b.files) for b in batches) == 300
    for batch in batches:
        assert [c.context_id for c in batch.contexts] == list(range(1, 2 * len(batch.contexts), 2))
        keys = {(c.abstract_syntax, c.transfer_syntaxes) for c in batch.contexts}
        assert all((f.sop_class_uid, (f.transfer_syntax,)) in keys for f in batch.files)


def test_read_chunks_even_and_whole(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "x.dcm", size=50_001)
    dicom = storage.read_dicom_file(path)
    with open(path, "rb") as fp:
        pieces = [bytes(c) for c in storage.read_chunks(fp, dicom, 4096)]
    assert all(len(p) == 4096 for p in pieces[:-1])
    assert b"".join(pieces) == dataset_bytes(path)
    with pytest.raises(ValueError):
        next(storage.read_chunks(io.BytesIO(), dicom, 4095))


# -- the demo ---------------------------------------------------------------------------------


def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples import demo

    assert demo.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for marker in ("SCU ==> A-ASSOCIATE-RQ", "SCP#1 <== A-ASSOCIATE-RQ", "SCU ==> C-ECHO-RQ"):
        assert marker in out
    assert "SCP#2 <== C-STORE-RQ" in out
    stored = re.search(r"stored as (\S+)", out)
    assert stored is not None, out
    assert Path(stored.group(1)).is_file()


# -- the documented command lines ---------------------------------------------------------------


@pytest.mark.parametrize("page", ["README.md", "docs/services.md", "docs/qr.md"])
def test_documented_tools_exist(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ``python -m examples.<tool>`` a page shows is a tool that answers --help."""
    from examples.tools import main

    tools = set(re.findall(r"python -m examples\.(\w+)", (ROOT / page).read_text()))
    tools -= {"demo", "print"}
    assert tools
    for tool in sorted(tools):
        module = __import__(f"examples.{tool}", fromlist=["main"])
        assert callable(module.main), tool
        code = main.main(tool, ["--help"])
        assert code == 0, tool
        assert f"python -m examples.{tool}" in capsys.readouterr().out


def test_plan_proposes_a_fallback_per_sop_class(tmp_path: Path) -> None:
    """The files' own syntaxes, then one fallback for the class (not for compressed only)."""
    ct, mr = CT_IMAGE_STORAGE, "1.2.840.10008.5.1.4.1.1.4"
    big, jpeg = TRANSFER_SYNTAX_NAMES["big"], "1.2.840.10008.1.2.4.50"
    files = [
        storage.DicomFile(tmp_path / n, sop, n, syntax, 0, 2)
        for n, sop, syntax in (("1", ct, big), ("2", ct, jpeg), ("3", mr, jpeg))
    ]
    fallback = storage.PROPOSALS["little"]
    (batch,) = storage.plan(files, fallback)
    assert [(c.abstract_syntax, c.transfer_syntaxes) for c in batch.contexts] == [
        (ct, (big,)),
        (ct, (jpeg,)),
        (ct, fallback),
        (mr, (jpeg,)),
    ]
    (batch,) = storage.plan(files, storage.PROPOSALS["file"])
    assert len(batch.contexts) == 3


@pytest.mark.parametrize(
    ("source", "target"),
    [("big", "implicit"), ("deflate", "implicit"), ("explicit", "big"), ("implicit", "deflate")],
)
def test_conversion_matches_dcmconv(dcmtk: Dcmtk, tmp_path: Path, source: str, target: str) -> None:
    """storescu's re-encoding gives the bytes DCMTK's dcmconv writes for the same conversion."""
    import zlib

    from examples.apps import convert

    path = write_sample(tmp_path / "in.dcm", TRANSFER_SYNTAX_NAMES[source], size=20_000)
    ours = convert.reencode(storage.read_dicom_file(path), TRANSFER_SYNTAX_NAMES[target])
    option = {"implicit": "+ti", "big": "+tb", "deflate": "+td"}[target]
    result = dcmtk.run("dcmconv", option, str(path), str(tmp_path / "out.dcm"))
    assert result.returncode == 0, result.stderr
    theirs = dataset_bytes(tmp_path / "out.dcm")
    if target == "deflate":  # compression levels may differ: compare what they inflate to
        ours, theirs = zlib.decompress(ours, -15), zlib.decompress(theirs, -15)
    assert ours == theirs
