"""An asyncio driver for dul: see :mod:`examples.asyncio.driver`.

The package is ``examples.asyncio``; it never shadows the standard library's ``asyncio``, which
is a top-level name (nothing puts ``examples/`` itself on ``sys.path``).
"""
