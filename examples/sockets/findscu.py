"""findscu: query a Q/R SCP with C-FIND (PS3.4 C.4.1), after DCMTK's findscu.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.qr`'s::

    python -m examples.sockets.findscu --help
"""

from __future__ import annotations

import sys

from examples.tools.qr_blocking import findscu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
