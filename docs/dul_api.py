"""Sphinx extension: the API reference, rendered and checked from each public module's ``__all__``.

``conf.py`` lists the public modules in ``dul_api_modules``. In a page (inside ``{eval-rst}``):

``.. api-summary:: dul.dimse``
    A table of every name in ``dul.dimse.__all__`` with the first paragraph of its docstring,
    each linked to its entry.
``.. api-rest:: dul.dimse``
    An autodoc entry for every name of ``__all__`` that no earlier directive documented, so
    hand-grouped entries keep their prose and a name added to ``__all__`` appears by itself.
    ``:match: REGEX`` limits it to the names REGEX finds.
``.. api-modules::``
    A section (module docstring, summary, entries) for each listed module that no ``api-rest``
    covered above it: adding a module to the reference is one line in ``conf.py``.

So that the nitpicky build (``-n``) links what the docstrings and type hints name, a reference
to a public object's private home (``dul.dimse._messages.Message``, as type hints spell it) or
to a bare name that exactly one listed module exports (``RemoteProtocolError`` in a
``dul.dimse`` docstring) resolves to the public entry. A constant, which has no docstring of its
own, gets the ``#:`` comment at its definition instead of its type's docstring. A public name
without any docstring is a warning (an error under ``-W``).
"""

from __future__ import annotations

import ast
import enum
import functools
import importlib
import importlib.util
import inspect
import re
from types import ModuleType
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

_LONG_VALUE = 60  # a constant whose repr is longer is shown without its value


def public_names(module: str) -> list[str]:
    """The names ``module.__all__`` exports, in its order."""
    return list(importlib.import_module(module).__all__)


def _defining_modules(module: ModuleType) -> dict[str, str]:
    """Where each name ``from .x import name`` in ``module``'s source comes from."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    package = module.__name__ if hasattr(module, "__path__") else module.__package__ or ""
    origins: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            source = importlib.util.resolve_name("." * node.level + node.module, package)
            for alias in node.names:
                origins[alias.asname or alias.name] = source
    return origins


def _comment_doc(module: str, name: str) -> list[str]:
    """The ``#:`` comment above ``name`` in ``module``, or where ``module`` imports it from.

    An alias of an enum member (``NEED_DATA = Sentinel.NEED_DATA``) has the member's comment.
    """
    mod = importlib.import_module(module)
    obj = getattr(mod, name)
    keys = [("", name)]
    if isinstance(obj, enum.Enum):
        keys.append((type(obj).__qualname__, obj.name))
    sources = (module, _defining_modules(mod).get(name), type(obj).__module__)
    for source in sources:
        if source is None or not source.startswith(module.partition(".")[0]):
            continue  # a builtin's type has no source to read
        docs = ModuleAnalyzer.for_module(source).find_attr_docs()
        for key in keys:
            if docs.get(key):
                return [line for line in docs[key] if line]
    return []


def _has_own_doc(obj: object) -> bool:
    """False for a constant, whose ``__doc__`` is its type's (an enum member's is its class's)."""
    doc = getattr(obj, "__doc__", None)
    return bool(doc) and (inspect.isclass(obj) or doc != getattr(type(obj), "__doc__", None))


def docstring(module: str, name: str) -> list[str]:
    """The docstring lines of ``module.name``: its own, or the comment at its definition."""
    obj = getattr(importlib.import_module(module), name)
    if _has_own_doc(obj):  # obj.__doc__, not inspect.getdoc: a class does not inherit its purpose
        return inspect.cleandoc(obj.__doc__ or "").splitlines()
    return _comment_doc(module, name)


def summary(module: str, name: str) -> str:
    """The first paragraph of ``module.name``'s docstring, on one line."""
    first: list[str] = []
    for line in docstring(module, name):
        if not line.strip():
            break
        first.append(line.strip())
    return " ".join(first)


def _entry(module: str, name: str, modules: tuple[str, ...]) -> list[str]:
    """The autodoc directive that documents ``module.name``.

    A class or function that a module earlier in ``modules`` exports too gets a short entry
    that links to the full one.
    """
    target = f"{module}.{name}"
    obj = getattr(importlib.import_module(module), name)
    first = _homes(modules).get(
        f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    )
    if first is not None and first != target:
        kind = "function" if inspect.isfunction(obj) else "class"
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            kind = "exception"
        return [
            f".. py:{kind}:: {name}",
            f"   :module: {module}",
            "",
            f"   The same as :py:obj:`{first}`.",
        ]
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return [f".. autoexception:: {target}", "   :show-inheritance:"]
    if inspect.isclass(obj):
        lines = [f".. autoclass:: {target}", "   :members:"]
        if obj.__bases__ != (object,):
            lines.append("   :show-inheritance:")
        if issubclass(obj, enum.Enum):
            lines.append("   :undoc-members:")
        return lines
    if inspect.isfunction(obj):
        return [f".. autofunction:: {target}"]
    lines = [f".. autodata:: {target}"]
    if len(repr(obj)) > _LONG_VALUE:
        lines.append("   :no-value:")
    return lines


def _documented(env: BuildEnvironment, target: str) -> bool:
    return target in env.get_domain("py").objects  # type: ignore[attr-defined]


class ApiSummary(SphinxDirective):
    """``.. api-summary:: MODULE``: a table of the module's public names and their purpose."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        rows = [".. list-table::", "   :widths: 1 3", ""]
        for name in public_names(module):
            text = summary(module, name)
            if not text:
                logger.warning("%s.%s has no docstring", module, name, location=self.get_location())
            rows += [f"   * - :py:obj:`~{module}.{name}`", f"     - {text}"]
        return self.parse_text_to_nodes("\n".join(rows))


class ApiRest(SphinxDirective):
    """``.. api-rest:: MODULE``: entries for the public names not documented yet."""

    required_arguments = 1
    option_spec = {"match": directives.unchanged_required}  # noqa: RUF012 (docutils' API)

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        pattern = re.compile(self.options.get("match", ""))
        done = self.env.temp_data.setdefault("dul_api_done", set())
        done.add(module)
        names = [
            name
            for name in public_names(module)
            if pattern.search(name) and not _documented(self.env, f"{module}.{name}")
        ]
        lines: list[str] = []
        if names and "match" not in self.options:
            lines += [f".. rubric:: More of ``{module}``", ""]
        modules = tuple(self.config.dul_api_modules)
        for name in names:
            lines += [*_entry(module, name, modules), ""]
        return self.parse_text_to_nodes("\n".join(lines))


class ApiModules(SphinxDirective):
    """``.. api-modules::``: a section for each listed module not covered earlier on the page."""

    def run(self) -> list[nodes.Node]:
        done = self.env.temp_data.setdefault("dul_api_done", set())
        sections: list[nodes.Node] = []
        for module in self.config.dul_api_modules:
            if module in done:
                continue
            section = nodes.section(ids=[nodes.make_id(f"api {module}")], dul_api_lift=True)
            section += nodes.title("", "", nodes.literal(module, module))
            body = [
                f".. automodule:: {module}",
                "   :no-members:",
                "",
                f".. api-summary:: {module}",
                "",
                f".. api-rest:: {module}",
                "   :match: .",  # every name, without a rubric: the whole section is the module
            ]
            nested_parse_with_titles(
                self.state, StringList(body, self.get_source_info()[0]), section
            )
            sections.append(section)
        return sections


def _lift_sections(app: Sphinx, doctree: nodes.document) -> None:
    """Make each generated module section a sibling of the section it was written in."""
    after: dict[int, nodes.Element] = {}  # id(enclosing section) → the last section put after it
    for section in [s for s in doctree.findall(nodes.section) if s.get("dul_api_lift")]:
        del section["dul_api_lift"]
        enclosing = section.parent
        while enclosing is not None and not isinstance(enclosing, nodes.section):
            enclosing = enclosing.parent
        if enclosing is None or enclosing.parent is None:
            continue
        section.parent.remove(section)
        anchor = after.get(id(enclosing), enclosing)
        enclosing.parent.insert(enclosing.parent.index(anchor) + 1, section)
        after[id(enclosing)] = section


@functools.cache
def _homes(modules: tuple[str, ...]) -> dict[str, str]:
    """``private.home.Name`` → ``public.module.Name`` for the listed modules' public names."""
    homes: dict[str, str] = {}
    for module in modules:
        for name in public_names(module):
            obj = getattr(importlib.import_module(module), name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                homes.setdefault(f"{obj.__module__}.{obj.__qualname__}", f"{module}.{name}")
            homes.setdefault(f"{module}.{name}", f"{module}.{name}")
    return homes


@functools.cache
def _bare_names(modules: tuple[str, ...]) -> dict[str, str]:
    """A bare name → its public target, for names exactly one listed module exports."""
    owners: dict[str, list[str]] = {}
    for module in modules:
        for name in public_names(module):
            owners.setdefault(name, []).append(f"{module}.{name}")
    return {name: targets[0] for name, targets in owners.items() if len(targets) == 1}


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """Point a py reference at the public entry of what it names (see the module docstring)."""
    if node.get("refdomain") != "py":
        return None
    target: str = node["reftarget"]
    modules = tuple(app.config.dul_api_modules)
    homes = _homes(modules)
    public = homes.get(target)
    if public is None:
        head, _, member = target.rpartition(".")
        if head in homes:
            public = f"{homes[head]}.{member}"
        elif "." not in target:
            public = _bare_names(modules).get(target)
    if public is None or public == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(  # type: ignore[no-any-return]
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    ) or domain.resolve_xref(env, node["refdoc"], app.builder, "obj", public, node, contnode)


def _constant_docs(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """A constant's ``#:`` comment in place of its type's docstring (``int([x]) -> integer``)."""
    if what not in ("data", "attribute") or _has_own_doc(obj):
        return
    module, _, attr = name.rpartition(".")
    if module not in app.config.dul_api_modules:
        return
    lines[:] = _comment_doc(module, attr)


def _public_bases(app: Sphinx, name: str, obj: object, options: Any, bases: list[type]) -> None:
    """Show a private base class (``_SubOperations``) as the public bases it stands for."""
    index = 0
    while index < len(bases):
        base = bases[index]
        if base.__name__.startswith("_") and base is not object:
            bases[index : index + 1] = list(base.__bases__)
        else:
            index += 1


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("dul_api_modules", [], "env", types=[list])
    app.add_directive("api-summary", ApiSummary)
    app.add_directive("api-rest", ApiRest)
    app.add_directive("api-modules", ApiModules)
    app.connect("doctree-read", _lift_sections, priority=100)
    app.connect("missing-reference", _resolve)
    app.connect("autodoc-process-docstring", _constant_docs)
    app.connect("autodoc-process-bases", _public_bases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
