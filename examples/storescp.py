"""storescp, after DCMTK's, on the driver chosen by ``--driver`` (sockets, trio, asyncio)::

python -m examples.storescp --help
"""

import sys

from examples.tools.main import entry

main = entry("storescp")

if __name__ == "__main__":
    sys.exit(main())
