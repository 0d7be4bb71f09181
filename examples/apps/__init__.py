"""The applications, written once over :class:`examples.runtime.Association`: no I/O here.

Each is a service (a generator of :mod:`~examples.runtime.steps`) that a driver runs:
:mod:`~examples.apps.echo` (echoscu, and the C-ECHO handler of every SCP),
:mod:`~examples.apps.store` (storescu, storescp), with :mod:`~examples.apps.storage` (the files:
finding, planning, reading, writing Part 10) and :mod:`~examples.apps.common` (exit codes, the
request the options describe, which failure ends a tool how). See ``docs/services.md``.
"""
