"""printscu: print DICOM images (or test patterns) on a DICOM printer, as DCMTK's print client
does (Basic Grayscale Print Management, PS3.4 Annex H), on the driver ``--driver`` names::

    python -m examples.printscu -aet ME -aec PRINTER 127.0.0.1 10005 image.dcm \\
        --format 'STANDARD\\2,2' --orientation LANDSCAPE --film-size 14INX17IN

The print job itself is :mod:`examples.apps.print.scu`'s service.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import dul
from examples.apps.common import ToolError, user_identity
from examples.apps.print.film import parse_display_format, pattern_image
from examples.apps.print.scu import FilmOptions, PrintError, PrintReport, load_images, print_job
from examples.runtime import DriverError, Timeouts
from examples.tools import cli
from examples.tools.cli import DRIVERS
from examples.tools.main import driver as load_driver

__all__ = ["main", "print_images"]

#: DIMSE responses are awaited 60 s at most: a printer may take a while to print a film.
TIMEOUTS = Timeouts(dimse=60.0)


def print_images(
    host: str,
    port: int,
    images: Sequence[np.ndarray],
    options: FilmOptions | None = None,
    *,
    calling_ae_title: str = "PRINTSCU",
    called_ae_title: str = "ANY-SCP",
    timeouts: Timeouts = TIMEOUTS,
    say: Callable[[str], None] = print,
    driver: str = "sockets",
    ssl_context: ssl.SSLContext | None = None,
    user_identity: dul.UserIdentity | None = None,
) -> PrintReport:
    """Associate with the printer at ``host:port``, print ``images`` as ``options`` say, release."""
    service = print_job(
        images,
        options or FilmOptions(),
        calling_ae_title=calling_ae_title,
        called_ae_title=called_ae_title,
        user_identity=user_identity,
        say=say,
    )
    report: PrintReport = load_driver(driver).run_requestor(
        service, host, port, timeouts=timeouts, ssl_context=ssl_context
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: print files (or test patterns) and say what the printer answered."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.printscu",
        description="Print DICOM images on a DICOM printer (Basic Grayscale Print Management).",
    )
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("files", nargs="*", type=Path, help="DICOM images (none: test patterns)")
    parser.add_argument("-aet", "--aetitle", default="PRINTSCU", help="our AE title")
    parser.add_argument("-aec", "--call", default="ANY-SCP", help="the printer's AE title")
    parser.add_argument("--format", default="STANDARD\\1,1", help="image display format")
    parser.add_argument("--orientation", default="PORTRAIT", choices=("PORTRAIT", "LANDSCAPE"))
    parser.add_argument("--film-size", default="8INX10IN", help="film size ID, e.g. 14INX17IN")
    for option, meaning in (
        ("--magnification", "REPLICATE, BILINEAR, CUBIC or NONE"),
        ("--border", "border density: BLACK, WHITE or hundredths of OD"),
        ("--empty-image", "empty image density"),
        ("--medium-type", "PAPER, CLEAR FILM, BLUE FILM..."),
        ("--destination", "MAGAZINE, PROCESSOR..."),
        ("--label", "film session label"),
    ):
        parser.add_argument(option, help=meaning)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--priority", choices=("HIGH", "MED", "LOW"))
    parser.add_argument("--bits", type=int, default=8, choices=(8, 12), help="bits per pixel")
    parser.add_argument("--no-plut", action="store_true", help="never create a Presentation LUT")
    parser.add_argument("--session-print", action="store_true", help="print the film session")
    parser.add_argument("--patterns", type=int, default=4, help="test patterns without files")
    parser.add_argument("-td", "--dimse-timeout", type=float, default=60.0)
    parser.add_argument("--driver", choices=DRIVERS, default="sockets", help="what runs it")
    cli.identity_options(parser)
    cli._tls_options(parser, requestor=True)
    args = parser.parse_args(argv)

    options = FilmOptions(
        display_format=args.format,
        orientation=args.orientation,
        film_size=args.film_size,
        magnification=args.magnification,
        border_density=args.border,
        empty_image_density=args.empty_image,
        copies=args.copies,
        medium_type=args.medium_type,
        film_destination=args.destination,
        label=args.label,
        priority=args.priority,
        bits=args.bits,
        presentation_lut=not args.no_plut,
        print_session=args.session_print,
    )
    try:
        parse_display_format(options.display_format)
        if args.files:
            images = load_images(args.files, options.bits)
        else:
            images = [pattern_image(i, bits=options.bits) for i in range(args.patterns)]
        report = print_images(
            args.host,
            args.port,
            images,
            options,
            calling_ae_title=args.aetitle,
            called_ae_title=args.call,
            timeouts=Timeouts(dimse=args.dimse_timeout),
            driver=args.driver,
            ssl_context=cli.client_ssl_context(args),
            user_identity=user_identity(args),
        )
    except (PrintError, DriverError, TimeoutError, ValueError, OSError, ToolError) as exc:
        print(f"printscu: {exc}", file=sys.stderr)
        return 1
    print(f"printed {report.films} film(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
