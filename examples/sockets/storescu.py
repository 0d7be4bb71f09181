"""storescu: send DICOM files with C-STORE (PS3.7 9.1.1), after DCMTK's storescu.

On the blocking-sockets driver; the options, help and exit codes are
:mod:`examples.tools.cli`'s::

    python -m examples.sockets.storescu --help
"""

from __future__ import annotations

import sys

from examples.tools.blocking import storescu_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
