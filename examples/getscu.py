"""getscu: retrieve with C-GET (PS3.4 C.4.3), after DCMTK's getscu.

On the driver chosen by ``--driver`` (sockets, trio, asyncio)::

    python -m examples.getscu --help
"""

import sys

from examples.tools.main import entry

main = entry("getscu")

if __name__ == "__main__":
    sys.exit(main())
