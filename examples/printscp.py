"""printscp: a virtual DICOM printer (a Print SCP, PS3.4 Annex H) that writes each film it
prints as a PNG, on the driver ``--driver`` names::

    python -m examples.printscp -aet PRINTER --output films 10005

The printer itself is :mod:`examples.apps.print.scp`'s service.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from examples.apps.common import ToolError, negotiation
from examples.apps.print.scp import VirtualPrinter
from examples.runtime import Timeouts
from examples.runtime.acceptor import Negotiate
from examples.tools import cli
from examples.tools.cli import DRIVERS
from examples.tools.main import driver as load_driver

__all__ = ["main", "serving"]

#: Timeouts of the printer's associations: DIMSE waits are bounded (a print job is interactive).
TIMEOUTS = Timeouts(dimse=300.0)


@contextmanager
def serving(
    printer: VirtualPrinter,
    host: str,
    port: int,
    *,
    timeouts: Timeouts = TIMEOUTS,
    driver: str = "sockets",
    ssl_context: ssl.SSLContext | None = None,
    negotiate: Negotiate | None = None,
) -> Iterator[Any]:
    """Run ``printer`` on ``host:port`` (0: a free port, see ``.port``) in a thread until the
    block ends: for tests and the demo. ``negotiate`` replaces the printer's policy."""
    service = printer.service(negotiate)
    with load_driver(driver).serving(
        service, host, port, timeouts=timeouts, ssl_context=ssl_context, on_close=printer.forget
    ) as server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run the virtual printer until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.printscp",
        description="A virtual DICOM printer: every film printed becomes a PNG.",
    )
    parser.add_argument("port", type=int)
    parser.add_argument(
        "-aet", "--aetitle", help="the only called AE title accepted (default: any)"
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--output", "-od", type=Path, default=Path("films"), help="PNG folder")
    parser.add_argument("--name", default="DUL_VIRTUAL_PRINTER", help="printer name")
    parser.add_argument("--long-side", type=int, default=1200, help="film's long side in pixels")
    parser.add_argument("--no-12bit", action="store_true", help="accept 8-bit images only")
    parser.add_argument("--no-event-reports", action="store_true", help="send no N-EVENT-REPORT")
    parser.add_argument("--driver", choices=DRIVERS, default="sockets", help="what runs it")
    group = parser.add_argument_group("network options")
    cli.users_option(group)
    cli.access_options(group)
    cli._tls_options(parser, requestor=False)
    args = parser.parse_args(argv)

    printer = VirtualPrinter(
        args.output,
        ae_title=args.aetitle,
        printer_name=args.name,
        supports_12bit=not args.no_12bit,
        event_reports=not args.no_event_reports,
        long_side=args.long_side,
        say=lambda line: print(line, flush=True),
    )

    def listening(port: int) -> None:
        print(f"printscp: listening on {args.bind}:{port}, films go to {args.output}", flush=True)

    log = logging.getLogger("dul.tools.printscp")
    try:
        access = cli.access_control(args, log)
        load_driver(args.driver).serve(
            access.guard(printer.service(negotiation(printer.policy(), args, log))),
            args.bind,
            args.port,
            on_listening=listening,
            timeouts=TIMEOUTS,
            ssl_context=cli.server_ssl_context(args),
            on_close=printer.forget,
        )
    except ToolError as exc:
        print(f"printscp: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
