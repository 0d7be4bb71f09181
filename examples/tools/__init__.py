"""dul's example tools: echoscu, echoscp, storescu and storescp, after DCMTK's, on each driver.

:mod:`~examples.tools.cli` is the command-line front end every driver shares (options, help
texts, exit codes, logging and the trace of PDUs and messages); :mod:`~examples.tools.storage`
holds the storage logic that does no network I/O (files to send, the Part 10 file a received data
set is streamed into, the storage SOP classes accepted); :mod:`~examples.tools.common` the
tools' steps that do not wait (requests, exit codes, reports, what storescp does with a
C-STORE-RQ). :mod:`~examples.tools.blocking` runs the tools on the blocking-sockets driver
(``python -m examples.sockets.storescu ...``); :mod:`~examples.tools.async_tools` holds them once
for both async drivers, run by :mod:`~examples.tools.trio_tools` (``python -m
examples.trio.storescu ...``) and :mod:`~examples.tools.asyncio_tools` (``python -m
examples.asyncio.storescu ...``).
"""
