"""Record the captures in examples/captures/ again: real associations through the capture relay.

Needs DCMTK (storescp, echoscu, storescu) and pynetdicom. Every peer listens on 127.0.0.1; the
servers' logs and received files stay in a temporary directory::

    python examples/record_captures.py [OUTDIR]

Each capture is ``NAME.rq.bin`` (what the requestor sent), ``NAME.ac.bin`` (what the acceptor
sent) and ``NAME.bin`` (both, requestor first): see capture.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from capture import Capture, listen, relay_one, write_capture
from make_test_file import write as write_test_file

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SCP_AET = "STORESCP"
VERIFICATION = "1.2.840.10008.1.1"


def dcmtk_tool(name: str) -> str:
    """Path of DCMTK's ``name`` on PATH (pynetdicom installs look-alikes of the same names)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, name)
        if not os.access(path, os.X_OK):
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        if "dcmtk" in out.stdout.lower():
            return path
    raise SystemExit(f"DCMTK's {name} is not on PATH (apt-get install dcmtk)")


def dcmtk_env() -> dict[str, str]:
    """The environment for DCMTK tools: TCP_NODELAY=1 disables Nagle on their sockets."""
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on ``HOST:port`` (a connection that closes at once)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def storescp(workdir: Path, *options: str) -> Iterator[int]:
    """Run DCMTK's storescp on a free port; yield the port, then stop it by its PID."""
    port = free_port()
    store = workdir / "received"
    store.mkdir(exist_ok=True)
    cmd = [dcmtk_tool("storescp"), "-aet", SCP_AET, *options, "+B", "-od", str(store), str(port)]
    log = (workdir / "storescp.log").open("a")
    with log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dcmtk_env())
        try:
            wait_listening(port)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def record(name: str, scp_port: int, outdir: Path, requestor: Callable[[int], None]) -> Capture:
    """Relay one association from ``requestor(relay_port)`` to the SCP and save it as ``name``."""
    result: list[Capture] = []
    with listen(0, HOST) as listener:
        relay_port = listener.getsockname()[1]
        thread = threading.Thread(
            daemon=True,
            target=lambda: result.append(relay_one(listener, (HOST, scp_port), timeout=30.0)),
        )
        thread.start()
        requestor(relay_port)
        thread.join(timeout=30.0)
    if not result:
        raise RuntimeError(f"{name}: the relay did not finish")
    for path in write_capture(result[0], outdir / name):
        print(f"  wrote {path} ({path.stat().st_size} bytes)")
    return result[0]


def run_dcmtk(tool: str, *options: str, files: Sequence[Path] = ()) -> Callable[[int], None]:
    """A requestor that runs ``tool OPTIONS HOST PORT FILES`` against the relay's port."""

    def run(port: int) -> None:
        cmd = [dcmtk_tool(tool), *options, HOST, str(port), *map(str, files)]
        subprocess.run(cmd, check=True, env=dcmtk_env(), capture_output=True, timeout=60)

    return run


def pynetdicom_echo(port: int) -> None:
    """A pynetdicom AE (default settings) sends one C-ECHO and releases."""
    from pynetdicom import AE

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(HOST, port, ae_title=SCP_AET)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom: association not established")
    status = assoc.send_c_echo()
    assoc.release()
    if status.Status != 0:
        raise RuntimeError(f"pynetdicom: C-ECHO status {status.Status:#06x}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=HERE / "captures")
    args = parser.parse_args(argv)
    outdir: Path = args.outdir

    with tempfile.TemporaryDirectory(prefix="dul-captures-") as tmp:
        work = Path(tmp)
        ct = work / "ct-64x64.dcm"
        write_test_file(ct)

        print("echoscu-storescp")
        with storescp(work) as scp:
            echo = run_dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AET)
            record("echoscu-storescp", scp, outdir, echo)

        store = run_dcmtk(
            "storescu", "-aet", "STORESCU", "-aec", SCP_AET, "--max-pdu", "16384", files=[ct]
        )

        print("storescu-storescp")
        with storescp(work) as scp:
            record("storescu-storescp", scp, outdir, store)

        print("storescu-storescp-pdu4096")
        with storescp(work, "--max-pdu", "4096") as scp:
            record("storescu-storescp-pdu4096", scp, outdir, store)

        print("pynetdicom-echo")
        with storescp(work) as scp:
            record("pynetdicom-echo", scp, outdir, pynetdicom_echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
