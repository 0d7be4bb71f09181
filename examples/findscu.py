"""findscu: query a Q/R SCP with C-FIND (PS3.4 C.4.1), after DCMTK's findscu.

On the driver chosen by ``--driver`` (sockets, trio, asyncio)::

    python -m examples.findscu --help
"""

import sys

from examples.tools.main import entry

main = entry("findscu")

if __name__ == "__main__":
    sys.exit(main())
