"""The command lines of findscu, getscu, movescu and qrscp, after DCMTK's (the same general,
network and TLS options as the other tools: :mod:`examples.tools.cli`)."""

from __future__ import annotations

import argparse
import functools

from . import cli

__all__ = ["findscu_parser", "getscu_parser", "movescu_parser", "qrscp_parser"]


def _qr_options(parser: cli.Parser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("query/retrieve options")
    model = group.add_mutually_exclusive_group()
    model.add_argument(
        "-P",
        "--patient",
        dest="study_root",
        action="store_false",
        default=False,
        help="use the Patient Root information model (default)",
    )
    model.add_argument(
        "-S",
        "--study",
        dest="study_root",
        action="store_true",
        help="use the Study Root information model",
    )
    group.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help='a key of the identifier: gggg,eeee="value" or Keyword="value" (wildcards * and ?, '
        "ranges 20200101-20201231, UID lists a\\b); no value asks for the attribute "
        "(repeatable; overrides the query file)",
    )
    group.add_argument(
        "--cancel",
        type=functools.partial(cli._count, minimum=0),
        default=None,
        metavar="N",
        help="send a C-CANCEL after N pending responses (Ctrl-C sends one too)",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="dcmfile-in",
        help="a DICOM file holding the query identifier (the -k keys override it)",
    )
    return group


_EPILOG = (
    "Ctrl-C while responses are pending sends a C-CANCEL (exit status 130); a second Ctrl-C "
    "aborts the association."
)


def findscu_parser(prog: str = "findscu") -> cli.Parser:
    """The options of findscu: query with C-FIND."""
    parser = cli._parser(
        prog,
        "Query a Q/R SCP with C-FIND (PS3.4 C.4.1) and print each match.",
        f"example:\n  findscu -S -k QueryRetrieveLevel=STUDY -k PatientName='DOE*' "
        f"-k StudyDate=20200101- -k StudyInstanceUID -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    cli._requestor_options(parser, "FINDSCU")
    group = _qr_options(parser)
    group.add_argument(
        "-X",
        "--extract",
        action="store_true",
        help="also write each match to rsp0001.dcm, rsp0002.dcm... (explicit VR little endian "
        "data sets) in the output directory",
    )
    group.add_argument(
        "-od",
        "--output-directory",
        default=".",
        metavar="DIR",
        help="where -X writes (default: .)",
    )
    cli._tls_options(parser, requestor=True)
    return parser


def getscu_parser(prog: str = "getscu") -> cli.Parser:
    """The options of getscu: retrieve with C-GET."""
    parser = cli._parser(
        prog,
        "Retrieve with C-GET (PS3.4 C.4.3): the SCP sends the matching instances back on the "
        "same association with C-STORE; we propose the SCP role for the storage SOP classes "
        "(PS3.7 D.3.3.4) and write each one as a file.",
        "example:\n  getscu -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=1.2.3 "
        f"-od received/ -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    cli._requestor_options(parser, "GETSCU")
    group = _qr_options(parser)
    cli.output_options(group, "instances")
    cli._tls_options(parser, requestor=True)
    return parser


def movescu_parser(prog: str = "movescu") -> cli.Parser:
    """The options of movescu: retrieve with C-MOVE."""
    parser = cli._parser(
        prog,
        "Retrieve with C-MOVE (PS3.4 C.4.2): the SCP sends the matching instances to the move "
        "destination over an association of its own. With +P PORT, we are the destination: "
        "a storage SCP listens on PORT meanwhile and writes each instance as a file.",
        "example:\n  movescu -S -k QueryRetrieveLevel=SERIES -k SeriesInstanceUID=1.2.3 "
        f"-aem MOVESCU +P 11113 -od received/ -aec QRSCP 127.0.0.1 11112\n\n{_EPILOG}",
    )
    parser.prefix_chars = "-+"  # +P, as DCMTK spells it (groups made from now on accept '+')
    cli._requestor_options(parser, "MOVESCU")
    group = _qr_options(parser)
    group.add_argument(
        "-aem",
        "--move",
        default=None,
        metavar="AETITLE",
        type=cli._ae_title,
        help="the move destination's AE title (default: our own, -aet)",
    )
    group.add_argument(
        "+P",
        "--port",
        dest="listen_port",
        type=cli._port,
        default=None,
        metavar="PORT",
        help="listen on PORT for the C-STORE sub-operations while the C-MOVE runs",
    )
    group.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address +P listens on (default: 127.0.0.1)",
    )
    cli.output_options(group, "instances")
    cli._tls_options(parser, requestor=True)
    return parser


def qrscp_parser(prog: str = "qrscp") -> cli.Parser:
    """The options of qrscp: a Q/R SCP serving a folder of DICOM files."""
    parser = cli._parser(
        prog,
        "A Query/Retrieve SCP (PS3.4 Annex C) serving the DICOM files of a folder, indexed at "
        "start: C-FIND (Patient Root and Study Root), C-GET (C-STOREs on the same association, "
        "to a requestor that took the SCP role for the storage SOP classes), C-MOVE (C-STOREs "
        "over a new association to a destination of the --move table), C-CANCEL, C-ECHO.",
        "example:\n  qrscp -aet QRSCP --move STORESCP 127.0.0.1:11113 11112 archive/",
    )
    cli._acceptor_options(parser, "QRSCP")
    parser.add_argument("directory", help="the folder of DICOM files to serve")
    group = parser.add_argument_group("query/retrieve options")
    group.add_argument(
        "--move",
        nargs=2,
        action="append",
        metavar=("AETITLE", "HOST:PORT"),
        help="a C-MOVE destination: its AE title and address (repeatable)",
    )
    group.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="(for tests) wait this long before each pending response or sub-operation",
    )
    cli._tls_options(parser, requestor=False)
    return parser
