"""A trio driver for dul: see :mod:`examples.trio.driver`."""
