"""storescp: receive C-STORE data sets into DICOM files, after DCMTK's storescp.

On the asyncio driver; the options, help and exit codes are :mod:`examples.tools.cli`'s, the same
as the blocking-sockets tools' (:mod:`examples.sockets.storescp`)::

    python -m examples.asyncio.storescp --help
"""

from __future__ import annotations

import sys

from examples.tools.asyncio_tools import storescp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
