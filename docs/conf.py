"""Sphinx configuration for dul's documentation (pages in Markdown through MyST).

Build: ``sphinx-build -n -W --keep-going -b html docs docs/_build/html``. The docs import ``dul``
from ``src/`` (no install needed) and draw the state table from ``dul._state`` at each build.
The build is nitpicky: every cross-reference must resolve (the exceptions are listed below).
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent / "src"), str(DOCS)]  # before the imports below

import state_diagram  # noqa: E402

import dul  # noqa: E402
from dul._connection import (  # noqa: E402
    DEFAULT_ASSOCIATE_LENGTH_LIMIT,
    DEFAULT_PDU_LENGTH_LIMIT,
    UNLIMITED_FRAGMENT,
)
from dul.dimse._assembler import MAX_COMMAND_LENGTH  # noqa: E402

project = "dul"
author = "dul contributors"
copyright = "dul contributors"
version = dul.__version__
release = dul.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "dul_api",  # docs/dul_api.py: the reference rendered and checked from each __all__
]

# The public modules whose __all__ the API reference renders (api.md) and
# tests/test_docs_reference.py checks; adding a module to the reference is one line here.
dul_api_modules = [
    "dul",
    "dul.dimse",
    "dul.testing",
    "dul.part10",
    "dul.uids",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# _generated holds Markdown included by other pages, not pages of its own.
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = True
# What the nitpicky build cannot resolve, each for a stated reason. Standard library and
# hypothesis types appear in type hints; linking them needs intersphinx, which fetches inventories
# over the network at build time, and the docs must build offline.
nitpick_ignore_regex = [
    ("py:.*", r"(collections\.abc|random|enum)\.\w+"),
    ("py:.*", r"(hypothesis\.strategies|st)\.SearchStrategy"),  # `st` is how testing.py imports it
]
nitpick_ignore = [
    # A private type alias that public signatures use (encode_command's values): documenting it
    # would make it public.
    ("py:class", "CommandValue"),
]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "substitution"]
# Facts the pages state, taken from the code so that they cannot drift: {{name}} in a page.
myst_substitutions = {
    "implementation_class_uid": dul.IMPLEMENTATION_CLASS_UID,
    "implementation_version_name": dul.IMPLEMENTATION_VERSION_NAME,
    "application_context": dul.DICOM_APPLICATION_CONTEXT,
    "default_maximum_length": f"{dul.DEFAULT_MAXIMUM_LENGTH:,}",
    "pdu_length_limit": f"{DEFAULT_PDU_LENGTH_LIMIT:,}",
    "associate_length_limit": f"{DEFAULT_ASSOCIATE_LENGTH_LIMIT:,}",
    "unlimited_fragment": f"{UNLIMITED_FRAGMENT:,}",
    "max_unknown_items": f"{dul.MAX_UNKNOWN_ITEMS:,}",
    "max_command_length": f"{MAX_COMMAND_LENGTH:,}",
}

html_theme = "alabaster"
html_theme_options = {"description": "A sans-I/O DICOM Upper Layer", "fixed_sidebar": True}


def _generate(app: Sphinx) -> None:
    """Write the state table and diagram from the code before any page is read."""
    state_diagram.write(Path(app.srcdir) / "_generated" / "state-table.md")


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _generate)
