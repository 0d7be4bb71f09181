"""A trio driver for dul: see :mod:`examples.trio.driver` (trio comes with the examples extra)."""
