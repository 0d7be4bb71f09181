"""qrscp: a Query/Retrieve SCP serving a folder of DICOM files (PS3.4 Annex C).

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.qr`'s::

    python -m examples.sockets.qrscp --help
"""

from __future__ import annotations

import sys

from examples.tools.qr_blocking import qrscp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
