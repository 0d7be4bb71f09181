"""The API reference documents every public name: one nitpicky Sphinx build, then objects.inv.

The modules are those ``docs/conf.py`` lists in ``dul_api_modules``; each name of each one's
``__all__`` must be an object of the built reference (docs/api.md). The build is the CI's,
``-n -W``: a reference that does not resolve, or a public name without a docstring, fails it.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def api_modules() -> list[str]:
    """``dul_api_modules`` as conf.py assigns it (read, not executed)."""
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "dul_api_modules" for t in node.targets
        ):
            modules = ast.literal_eval(node.value)
            assert isinstance(modules, list)
            return [str(m) for m in modules]
    raise AssertionError("docs/conf.py assigns no dul_api_modules")


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """objects.inv (Sphinx's version 2 format) as ``{name: (domain:role, uri)}``."""
    raw = path.read_bytes()
    header_end = 0
    for _ in range(4):  # "# Sphinx inventory version 2", project, version, compression note
        header_end = raw.index(b"\n", header_end) + 1
    assert raw.startswith(b"# Sphinx inventory version 2")
    objects: dict[str, tuple[str, str]] = {}
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        name, role, _priority, uri, _display = line.split(" ", 4)
        objects.setdefault(name, (role, uri))
    return objects


def missing_names(
    inventory: dict[str, tuple[str, str]], exported: dict[str, list[str]]
) -> list[str]:
    """``module.name`` for each exported name that is not a py object on the reference page."""
    return [
        f"{module}.{name}"
        for module, names in exported.items()
        for name in names
        if not (
            f"{module}.{name}" in inventory
            and inventory[f"{module}.{name}"][0].startswith("py:")
            and inventory[f"{module}.{name}"][1].startswith("api.html#")
        )
    ]


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Build the docs once per session, as the CI does, and read what they define."""
    out = tmp_path_factory.mktemp("docs-html")
    command = [sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-q", "-b", "html"]
    build = subprocess.run(
        [*command, "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, f"sphinx-build -n -W failed:\n{build.stderr}"
    return read_inventory(out / "objects.inv")


def test_reference_lists_every_public_name(inventory: dict[str, tuple[str, str]]) -> None:
    modules = api_modules()
    assert {"dul", "dul.dimse", "dul.testing"} <= set(modules)
    exported = {m: list(importlib.import_module(m).__all__) for m in modules}
    assert sum(map(len, exported.values())) > 100  # the check looked at something
    assert missing_names(inventory, exported) == []


def test_a_missing_name_is_reported(inventory: dict[str, tuple[str, str]]) -> None:
    exported = {"dul": ["Connection", "NoSuchName"], "dul.dimse": ["CStoreRequest"]}
    assert missing_names(inventory, exported) == ["dul.NoSuchName"]
    assert missing_names(inventory, {"dul.dimse": ["Connection"]}) == ["dul.dimse.Connection"]
