"""movescu: retrieve with C-MOVE (PS3.4 C.4.2), after DCMTK's movescu.

On the driver chosen by ``--driver`` (sockets, trio, asyncio)::

    python -m examples.movescu --help
"""

import sys

from examples.tools.main import entry

main = entry("movescu")

if __name__ == "__main__":
    sys.exit(main())
