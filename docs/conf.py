"""Sphinx configuration for dul's documentation (pages in Markdown through MyST)."""

from __future__ import annotations

import dul

project = "dul"
author = "dul contributors"
copyright = "dul contributors"
version = dul.__version__
release = dul.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False

myst_heading_anchors = 3

html_theme = "alabaster"
