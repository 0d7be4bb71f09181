"""Orthanc as a test peer: Debian's ``orthanc`` binary, a child process with a config we write.

Each :class:`Orthanc` gets its own storage and index folder, DICOM and HTTP ports on loopback,
the REST API closed to other hosts (``RemoteAccessAllowed`` false), every DIMSE service allowed
to any calling AE, and ``TCP_NODELAY=1`` in its environment (its DCMTK stack leaves Nagle on
otherwise). It is started and stopped by its PID, never through the service manager. The REST
API (urllib, no dependency) is how the tests load it, drive its SCU and read what it stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from peers import HOST, free_port

__all__ = ["Orthanc", "find_orthanc", "orthanc_version", "start_orthanc", "stop_orthancs"]

#: Where Debian's ``orthanc`` package puts the server (not on a normal user's PATH).
DEBIAN_BINARY = "/usr/sbin/Orthanc"


@cache
def find_orthanc() -> str | None:
    """The Orthanc server binary: ``Orthanc`` on PATH, else Debian's; None when neither is."""
    found = shutil.which("Orthanc")
    if found is None and os.access(DEBIAN_BINARY, os.X_OK):
        found = DEBIAN_BINARY
    return found


@cache
def orthanc_version() -> str | None:
    """The version ``Orthanc --version`` reports (``1.10.1``), or None without Orthanc."""
    binary = find_orthanc()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    words = (out.stdout.splitlines() or [""])[0].split()
    return words[-1] if words else None


class Orthanc:
    """A running Orthanc: its AE title, ports, folder, process; its REST API as methods."""

    def __init__(self, workdir: Path, proc: subprocess.Popen[bytes], config: dict[str, Any]):
        self.workdir = workdir
        self.proc = proc
        self.aet: str = config["DicomAet"]
        self.dicom_port: int = config["DicomPort"]
        self.http_port: int = config["HttpPort"]
        self.max_pdu: int = config["MaximumPduLength"]

    @property
    def log(self) -> str:
        """What Orthanc logged so far."""
        return (self.workdir / "orthanc.log").read_text(errors="replace")

    def request(self, method: str, path: str, body: object = None, timeout: float = 60.0) -> bytes:
        """One REST call; ``body`` is bytes as they are, else JSON. Raises on an HTTP error."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{HOST}:{self.http_port}{path}", data=data, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                content: bytes = response.read()
                return content
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise AssertionError(f"Orthanc {method} {path}: HTTP {exc.code}: {detail}") from exc

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post(self, path: str, body: object = None) -> Any:
        answer = self.request("POST", path, body)
        return json.loads(answer) if answer.strip() else None

    def put(self, path: str, body: object) -> None:
        self.request("PUT", path, body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def add_modality(self, name: str, aet: str, port: int) -> None:
        """Declare (or redeclare) the modality ``name``: an AE on 127.0.0.1:``port``."""
        self.put(f"/modalities/{name}", {"AET": aet, "Host": HOST, "Port": port})

    def upload(self, path: Path) -> str:
        """Store a file through the REST API (no DIMSE); its Orthanc instance ID."""
        answer = self.post("/instances", path.read_bytes())
        return str(answer["ID"])

    def instance_id(self, sop_instance_uid: str) -> str | None:
        """Orthanc's ID of the instance with that SOP Instance UID, or None."""
        found = self.post("/tools/lookup", sop_instance_uid.encode())
        ids = [item["ID"] for item in found if item["Type"] == "Instance"]
        return ids[0] if ids else None

    def clear(self) -> None:
        """Delete every patient (and so everything) Orthanc holds."""
        for patient in self.get("/patients"):
            self.delete(f"/patients/{patient}")


def start_orthanc(
    workdir: Path, *, aet: str = "ORTHANC", max_pdu: int = 16384, timeout: float = 30.0
) -> Orthanc:
    """Start Orthanc in ``workdir`` (its config, storage, log) and wait for its REST API."""
    binary = find_orthanc()
    assert binary is not None, "Orthanc is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": f"dul-test-{aet}",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "DicomAet": aet,
        "DicomPort": free_port(),
        "HttpPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {},
        "MaximumPduLength": max_pdu,
        # Close an SCU association at once, not 5 s after its last C-STORE.
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "Plugins": [],
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "MetricsEnabled": False,
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    with (workdir / "orthanc.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, str(path)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
    orthanc = Orthanc(workdir, proc, config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            orthanc.get("/system")
            return orthanc
        except (OSError, AssertionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_orthancs([orthanc])
                raise AssertionError(f"Orthanc did not start:\n{orthanc.log}") from None
            time.sleep(0.05)


def stop_orthancs(orthancs: Iterable[Orthanc]) -> None:
    """Stop each Orthanc by its PID: all are told first, then waited for (each takes seconds)."""
    running = list(orthancs)
    for orthanc in running:
        orthanc.proc.terminate()
    for orthanc in running:
        try:
            orthanc.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            orthanc.proc.kill()
            orthanc.proc.wait()
