"""getscu: retrieve with C-GET (PS3.4 C.4.3), after DCMTK's getscu.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.qr`'s::

    python -m examples.sockets.getscu --help
"""

from __future__ import annotations

import sys

from examples.tools.qr_blocking import getscu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
