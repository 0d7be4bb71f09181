"""storescp: receive C-STORE data sets into DICOM files, after DCMTK's storescp.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.cli`'s::

    python -m examples.sockets.storescp --help
"""

from __future__ import annotations

import sys

from examples.tools.blocking import storescp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
