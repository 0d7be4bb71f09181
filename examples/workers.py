"""Worker processes serving one listening socket: every core, as DCMTK's ``storescp --fork``.

The parent binds the socket, then forks ``count`` workers that each run a driver's server on
it; the kernel hands each accepted connection to one of them. A worker that dies takes only
the associations it was serving with it: the parent logs it and starts another. SIGINT or
SIGTERM to the parent stops every worker (SIGTERM, then SIGKILL after a grace period).

Why one shared socket rather than ``SO_REUSEPORT``: with reuse-port every worker has an accept
queue of its own, so connections queued at a worker that dies are reset, and the kernel's hash
changes as workers come and go. One shared queue is drained by the survivors. Workers are forked
before any thread or event loop exists in the parent, so each starts clean (POSIX only).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["run_workers"]

#: A worker that dies sooner than this after its start counts as a crash loop: back off.
_QUICK_DEATH = 1.0
#: The longest back-off between restarts of a worker that keeps dying at once.
_MAX_BACKOFF = 5.0
_PR_SET_PDEATHSIG = 1


class _Stop(Exception):
    """Raised in the parent by SIGINT or SIGTERM."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _die_with_parent() -> None:
    """Linux: the kernel sends the worker SIGTERM if the parent dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _child(listener: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    """In the forked worker: default signal handling, then the driver's server; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # a clean stop, like Ctrl-C
        _die_with_parent()
        serve(listener)
    except KeyboardInterrupt:
        pass
    except BaseException:  # the parent logs the exit status; the traceback is the child's to say
        logging.getLogger(__name__).exception("worker %d failed", os.getpid())
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def run_workers(
    listener: socket.socket,
    count: int,
    serve: Callable[[socket.socket], None],
    *,
    log: logging.Logger,
    grace: float = 10.0,
) -> int:
    """Serve ``listener`` from ``count`` forked workers until SIGINT/SIGTERM; returns 0.

    ``serve(listener)`` runs in each worker (a driver's accept loop on the shared socket) and
    returns or raises ``KeyboardInterrupt`` when the worker is told to stop.
    """
    if count < 1:
        raise ValueError("at least one worker")
    workers: dict[int, float] = {}  # pid -> start time
    backoff = 0.0

    def start() -> None:
        pid = os.fork()
        if pid == 0:
            _child(listener, serve)
        workers[pid] = time.monotonic()
        log.info("worker %d started", pid)

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(count):
            start()
        while True:
            pid, status = os.wait()
            started = workers.pop(pid, None)
            if started is None:
                continue
            log.warning("worker %d %s; starting another", pid, _describe(status))
            quick = time.monotonic() - started < _QUICK_DEATH
            backoff = min(_MAX_BACKOFF, backoff * 2 or 0.1) if quick else 0.0
            time.sleep(backoff)
            start()
    except _Stop as stop:
        log.info("%s: stopping %d worker(s)", stop, len(workers))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(workers, grace, log)
        listener.close()
    return 0


def _stop_all(workers: dict[int, float], grace: float, log: logging.Logger) -> None:
    """SIGTERM every worker, wait ``grace`` seconds for them, then SIGKILL the rest."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while workers:
        for pid in list(workers):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            del workers[pid]
        if workers and time.monotonic() > deadline:
            for pid in workers:
                log.warning("worker %d did not stop in %.0f s: killing it", pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        if workers:
            time.sleep(0.05)
