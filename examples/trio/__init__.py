"""A trio driver for dul: see :mod:`examples.trio.driver`.

trio comes with the ``examples`` extra; without it, every tool of this package says so in one
line and exits, instead of a traceback.
"""

try:
    import trio as _trio  # noqa: F401
except ModuleNotFoundError:
    raise SystemExit(
        "the trio driver needs the trio package, which is not installed: "
        "pip install -e '.[examples]' (the extra with every driver's dependency)"
    ) from None
