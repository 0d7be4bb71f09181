"""qrscp: a Query/Retrieve SCP serving a folder of DICOM files (PS3.4 Annex C).

On the driver chosen by ``--driver`` (sockets, trio, asyncio)::

    python -m examples.qrscp --help
"""

import sys

from examples.tools.main import entry

main = entry("qrscp")

if __name__ == "__main__":
    sys.exit(main())
