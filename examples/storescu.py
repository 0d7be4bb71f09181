"""storescu, after DCMTK's, on the driver chosen by ``--driver`` (sockets, trio, asyncio)::

python -m examples.storescu --help
"""

import sys

from examples.tools.main import entry

main = entry("storescu")

if __name__ == "__main__":
    sys.exit(main())
