"""echoscp: answer C-ECHO requests (the Verification SOP Class) until interrupted.

On the trio driver; the options, help and exit codes are :mod:`examples.tools.cli`'s, the same
as the blocking-sockets tools' (:mod:`examples.sockets.echoscp`)::

    python -m examples.trio.echoscp --help
"""

from __future__ import annotations

import sys

from examples.tools.trio_tools import echoscp_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
