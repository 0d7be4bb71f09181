"""The command-line front end of dul's example tools: one per tool, the driver an option.

:mod:`~examples.tools.main` runs echoscu, echoscp, storescu and storescp (``python -m
examples.storescu --driver trio ...``): it parses the options (:mod:`~examples.tools.cli`:
parsers, help, logging, the trace), builds the tool's service (:mod:`examples.apps`) and has the
driver chosen run it. The Q/R tools (:mod:`~examples.tools.qr` and its per-driver modules) are
reached the same way (``python -m examples.findscu --driver asyncio ...``).
"""
