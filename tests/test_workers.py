"""The worker pool (examples/workers.py) on its own: fork, share the socket, restart, stop.

A child Python process runs ``run_workers`` over a tiny accept loop that answers each connection
with its worker's PID; the test kills a worker with SIGKILL and sees the survivors go on and a
new worker take its place, then stops the pool with SIGINT and sees every worker gone. The same
pool under dul's real servers is tested with the tools.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import HOST, wait_listening

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import logging, os, socket, sys
    from examples.workers import run_workers

    def serve(listener):
        while True:
            conn, _ = listener.accept()
            with conn:
                try:
                    conn.sendall(str(os.getpid()).encode())
                except OSError:  # the test's wait_listening() hangs up at once
                    pass

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    sys.exit(run_workers(listener, 2, serve, log=logging.getLogger("pool"), grace=5))
    """
)


def _ask(port: int) -> int | None:
    """The PID of the worker that answered; None when the connection died with its worker."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            return None
    return int(answer) if answer else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().split()[2] != "Z"


@pytest.fixture
def pool() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        wait_listening(port)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _workers(port: int, want: int) -> set[int]:
    """Ask until ``want`` distinct workers answered (the kernel picks which one accepts)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while len(seen) < want and time.monotonic() < deadline:
        if (pid := _ask(port)) is not None:
            seen.add(pid)
    return seen


def test_a_killed_worker_is_replaced_and_sigint_stops_all(
    pool: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = pool
    first = _workers(port, 1)
    victim = first.pop()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    seen: set[int] = set()
    lost = 0
    while time.monotonic() < deadline and len(seen - {victim}) < 2:
        # Served all along by the survivor, then by the new worker too; a connection the
        # victim had accepted as it was killed dies with it (at most one).
        if (pid := _ask(port)) is None:
            lost += 1
        else:
            seen.add(pid)
    assert lost <= 1
    assert victim not in seen
    assert len(seen) == 2
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"worker {victim} killed by SIGKILL; starting another" in err
    assert "stopping 2 worker(s)" in err
    assert not any(_alive(pid) for pid in seen)
