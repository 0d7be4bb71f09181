"""``python -m dul``: command-line tools. ``decode`` pretty-prints a stream of PDUs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._dump import dump_stream

_DECODE_HELP = """\
Decode a byte stream of whole DICOM Upper Layer PDUs (PS3.8 §9.3), back to back, as a relay or
a packet capture records one direction of an association, and print every field of every PDU
and item: PDU type, length and offset; AE titles (with the raw bytes when they were not
canonical); application context; presentation contexts with their syntaxes and results; every
user-information sub-item; PDV headers; reject and abort sources and reasons.

On the first malformed PDU it prints what is wrong, the A-ABORT reason (PS3.8 Table 9-26) a
dul.Connection would send, and the absolute byte offset of the fault, then stops. Each PDU is
checked on its own, by the codec's rules: whether it was expected where it stands (the state
machine) or answers what was proposed is a Connection's business, not checked here.

Exit status: 0 when the whole stream decoded, 1 on a malformed or truncated stream, 2 on a usage
error or a file that cannot be read.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dul",
        description="Tools of dul, a sans-I/O DICOM Upper Layer (PS3.8) library.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    decode = commands.add_parser(
        "decode",
        help="pretty-print a file of PDUs",
        description=_DECODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("file", metavar="FILE", help="the file to decode, or - for stdin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as exc:
            print(f"python -m dul decode: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        return dump_stream(data, sys.stdout)
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
