"""Shared test set-up: hypothesis profiles, the captures, and the interop peers."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from hypothesis import settings

from orthanc import find_orthanc
from peers import Dcmtk, find_dcmtk, free_port, in_ci

__all__ = ["free_port"]

# dev: quick local runs. ci: more examples, no deadline (shared machines are slow), and a blob to
# reproduce a failure. fuzz: long runs on demand (HYPOTHESIS_PROFILE=fuzz).
settings.register_profile("dev", max_examples=100)
settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))

ROOT = Path(__file__).resolve().parent.parent


def _missing(what: str) -> NoReturn:
    """Skip a test whose peer is missing; under CI, fail it: CI must run every interop test."""
    if in_ci():
        pytest.fail(f"{what} is missing, and CI must run the interop tests", pytrace=False)
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def capture_dir() -> Path:
    """examples/captures: associations recorded between real peers (see its README)."""
    return ROOT / "examples" / "captures"


@pytest.fixture(scope="session")
def dcmtk() -> Dcmtk:
    """DCMTK's tools; skips the test when DCMTK is missing, except under CI, where it fails."""
    bindir = find_dcmtk()
    if bindir is None:
        _missing("DCMTK (storescp)")
    return Dcmtk(bindir)


@pytest.fixture(scope="session")
def pynetdicom() -> ModuleType:
    """The pynetdicom module; skips the test when it is missing, except under CI, where it fails."""
    try:
        import pynetdicom
    except ImportError:
        _missing("pynetdicom")
    return pynetdicom


@pytest.fixture(scope="session")
def orthanc_binary() -> str:
    """Orthanc's server binary; skips the test when it is missing, except under CI, where it
    fails (CI installs Debian's orthanc package, as scripts/test.sh does)."""
    binary = find_orthanc()
    if binary is None:
        _missing("Orthanc (Debian's orthanc package)")
    return binary
