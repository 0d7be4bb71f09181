"""Helpers for tests that talk to real peers: free ports, DCMTK's tools, a storescp server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from attrs import frozen

HOST = "127.0.0.1"


def in_ci() -> bool:
    """True when running under CI (CI=true), where a missing peer is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``.

    The probe connects and closes at once; storescp logs that and goes on listening.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@cache
def find_dcmtk() -> Path | None:
    """The directory of DCMTK's storescp on PATH, or None.

    pynetdicom installs console scripts named storescp, echoscu, storescu... and they may come
    first on PATH (pyenv shims do), so a name is not enough: ask for the version.
    """
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
            return candidate.parent
    return None


@frozen
class Dcmtk:
    """DCMTK's command-line tools, found in ``bindir``."""

    bindir: Path

    def tool(self, name: str) -> str:
        """The path of DCMTK's ``name`` (echoscu, storescu, storescp, ...)."""
        path = self.bindir / name
        if not os.access(path, os.X_OK):
            path_str = shutil.which(name, path=str(self.bindir))
            if path_str is None:
                raise FileNotFoundError(f"{name} is not in {self.bindir}")
            return path_str
        return str(path)

    @property
    def env(self) -> dict[str, str]:
        """The environment to run DCMTK tools in: TCP_NODELAY=1 disables Nagle on their sockets."""
        return {**os.environ, "TCP_NODELAY": "1"}

    def run(self, name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run DCMTK's ``name`` with ``args`` and return its result (not checked)."""
        return subprocess.run(
            [self.tool(name), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def storescp(self, workdir: Path, *options: str, aet: str = "STORESCP") -> Iterator[int]:
        """Run storescp on a free loopback port; yield the port; stop it by its PID.

        Received files go to ``workdir/received`` and its output to ``workdir/storescp.log``.
        """
        port = free_port()
        received = workdir / "received"
        received.mkdir(parents=True, exist_ok=True)
        cmd = [self.tool("storescp"), "-aet", aet, *options, "-od", str(received), str(port)]
        with (workdir / "storescp.log").open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
            try:
                wait_listening(port)
                yield port
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def split_pdus(data: bytes) -> list[tuple[int, bytes]]:
    """Split a stream of whole PDUs by their 6-byte headers into (type, variable field)."""
    pdus = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 6:
            raise ValueError(f"{len(data) - offset} trailing bytes: not a PDU header")
        pdu_type = data[offset]
        length = int.from_bytes(data[offset + 2 : offset + 6], "big")
        end = offset + 6 + length
        if end > len(data):
            raise ValueError(f"PDU at {offset} declares {length} bytes, {len(data) - offset} left")
        pdus.append((pdu_type, data[offset + 6 : end]))
        offset = end
    return pdus


@frozen
class DulTools:
    """dul's echoscu, storescu, echoscp and storescp on one driver, run in this process.

    ``tools.storescu_main(argv, stream=...)`` is ``python -m examples.storescu --driver D argv``;
    ``tools.server_in_thread("storescp", argv, stream)`` runs a server in a thread.
    """

    driver: str

    def _main(self, tool: str, argv: list[str] | None, stream: object) -> int:
        from examples.tools import main

        return main.main(tool, ["--driver", self.driver, *(argv or [])], stream=stream)  # type: ignore[arg-type]

    def echoscu_main(self, argv: list[str] | None = None, *, stream: object = None) -> int:
        return self._main("echoscu", argv, stream)

    def storescu_main(self, argv: list[str] | None = None, *, stream: object = None) -> int:
        return self._main("storescu", argv, stream)

    def echoscp_main(self, argv: list[str] | None = None, *, stream: object = None) -> int:
        return self._main("echoscp", argv, stream)

    def storescp_main(self, argv: list[str] | None = None, *, stream: object = None) -> int:
        return self._main("storescp", argv, stream)

    def server_in_thread(
        self, tool: str, argv: list[str], stream: object = None, *, handler: object = None
    ) -> object:
        from examples.tools import main

        return main.server_in_thread(
            tool,
            ["--driver", self.driver, *argv],
            stream,  # type: ignore[arg-type]
            handler=handler,  # type: ignore[arg-type]
        )
