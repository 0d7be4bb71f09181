"""movescu: retrieve with C-MOVE (PS3.4 C.4.2), after DCMTK's movescu.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.qr`'s::

    python -m examples.sockets.movescu --help
"""

from __future__ import annotations

import sys

from examples.tools.qr_blocking import movescu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
