"""storescu: send DICOM files with C-STORE (PS3.7 9.1.1), after DCMTK's storescu.

On the asyncio driver; the options, help and exit codes are :mod:`examples.tools.cli`'s, the same
as the blocking-sockets tools' (:mod:`examples.sockets.storescu`)::

    python -m examples.asyncio.storescu --help
"""

from __future__ import annotations

import sys

from examples.tools.asyncio_tools import storescu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
