"""The arrows between examples' layers point down: tools → services → runtime ← drivers.

Read from the source with ``ast`` (nothing is imported): a service (``examples/apps``) imports
no driver and no front end; a driver (``examples/sockets``, ``examples/trio``,
``examples/asyncio``) imports no service and no front end; the shared runtime imports neither.
And the modules of ``examples/`` import one another without a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DRIVERS = ("examples.sockets", "examples.trio", "examples.asyncio")
SERVICES = ("examples.apps",)
RUNTIME = ("examples.runtime",)
FRONT_END = ("examples.tools",)
#: What each layer must not import.
FORBIDDEN = {
    SERVICES: DRIVERS + FRONT_END,
    DRIVERS: SERVICES + FRONT_END,
    RUNTIME: DRIVERS + SERVICES + FRONT_END,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(EXAMPLES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The ``examples`` modules ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n == "examples" or n.startswith("examples.")}


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


SOURCES = sorted(EXAMPLES.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_layers_import_downwards(path: Path) -> None:
    name = module_name(path)
    for layer, forbidden in FORBIDDEN.items():
        if within(name, layer):
            wrong = sorted(n for n in imports(path) if within(n, forbidden))
            assert not wrong, f"{name} imports {wrong}: against the layering"


def test_the_layers_exist() -> None:
    """The test would pass on an empty tree: make sure each layer has modules."""
    names = [module_name(p) for p in SOURCES]
    for layer in (*FORBIDDEN, FRONT_END):
        assert any(within(n, layer) for n in names), layer


def test_no_import_circle() -> None:
    """The modules of examples/ form no import circle (imports inside functions count too)."""
    modules = {module_name(p): p for p in SOURCES}
    graph = {
        name: {n for n in imports(path) if n in modules and n != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a circle worth refusing.
    for name in graph:
        graph[name] = {n for n in graph[name] if not name.startswith(n + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
