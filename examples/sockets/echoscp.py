"""echoscp: answer C-ECHO requests, after DCMTK's echoscp.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.cli`'s::

    python -m examples.sockets.echoscp --help
"""

from __future__ import annotations

import sys

from examples.tools.blocking import echoscp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
