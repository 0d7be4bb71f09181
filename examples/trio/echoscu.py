"""echoscu: verify DICOM connectivity with C-ECHO (PS3.7 9.1.5), after DCMTK's echoscu.

On the trio driver; the options, help and exit codes are :mod:`examples.tools.cli`'s, the same
as the blocking-sockets tools' (:mod:`examples.sockets.echoscu`)::

    python -m examples.trio.echoscu --help
"""

from __future__ import annotations

import sys

from examples.tools.trio_tools import echoscu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
