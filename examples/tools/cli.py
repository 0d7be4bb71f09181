"""The command-line front end of the example tools, shared by every driver.

Option names follow DCMTK's (``echoscu -aet ME -aec YOU host port``, ``-to/-ta/-td``,
``--max-pdu``, ``-od``, ``-v``) and so do the exit codes, so that a script written for DCMTK's
tools mostly runs with these. ``--driver`` picks the driver that runs the tool (blocking
sockets, trio, asyncio). Nothing here touches the network: :mod:`examples.tools.main` builds the
parser here, reads the parsed options through the helpers below, and runs the tool's service on
the driver chosen; the driver reports what is sent and received to a :class:`Tracer`.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

import attrs

import dul
from dul import (
    describe,  # the pretty-printer behind ``python -m dul decode``
    dimse,
)
from examples.apps.common import UID_NAMES, ExitCode, ToolError, message_name
from examples.runtime import Access, Allowed

__all__ = [
    "DRIVERS",
    "UID_NAMES",
    "ExitCode",
    "Parser",
    "Progress",
    "TimeoutValues",
    "ToolError",
    "Tracer",
    "client_ssl_context",
    "describe_foreign_elements",
    "describe_item",
    "describe_message",
    "echoscp_parser",
    "echoscu_parser",
    "server_ssl_context",
    "storescp_parser",
    "storescu_parser",
    "timeout_values",
    "tool_logger",
]

#: The drivers a tool can run on: packages under ``examples/``.
DRIVERS = ("sockets", "trio", "asyncio")
#: The classes of the upper-layer events (the PDUs, and ConnectionClosed).
_EVENT_TYPES = typing.get_args(dul.Event)


EXIT_CODES_HELP = "\n".join(
    [
        "exit status:",
        "  0   success",
        "  1   usage error",
        "  21  no input files (storescu)",
        "  22  an input file is not a readable DICOM file (storescu)",
        "  23  no DICOM file among the inputs (storescu)",
        "  40  the output directory cannot be written (storescp)",
        "  60  network set-up failed: cannot listen on the port, cannot read the TLS files",
        "  61  no association: connection refused, TLS handshake failed, rejected",
        "  62  a request failed (failure status, or no accepted presentation context)",
        "  70  the association was aborted, timed out or lost once established",
    ]
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with status 1, as DCMTK's tools do."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


# -- option values ----------------------------------------------------------------------------


def _seconds(text: str) -> float | None:
    """A timeout in seconds; 0 waits for ever."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a timeout cannot be negative")
    return value or None


def _max_pdu(text: str) -> int:
    """A maximum PDU length (PS3.8 Annex D.1): 0 (no limit) or 256 to 16 MiB."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value != 0 and not 256 <= value <= 16 << 20:
        raise argparse.ArgumentTypeError("the maximum PDU length is 0 (no limit) or 256..16777216")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port number is 0..65535")
    return value


def _count(text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}")
    return value


def _ae_title(text: str) -> str:
    """An AE title as PS3.5 allows it: 1-16 characters, no backslash or control character."""
    if not 0 < len(text.strip(" ")) <= 16 or len(text) > 16:
        raise argparse.ArgumentTypeError("an AE title has 1 to 16 characters, not all spaces")
    if not text.isascii() or "\\" in text or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError("an AE title is ASCII, without backslash or control")
    return text


# -- parsers ----------------------------------------------------------------------------------


def _parser(prog: str, description: str, epilog: str = "") -> Parser:
    parser = Parser(
        prog=prog,
        description=description,
        epilog=f"{epilog}\n\n{EXIT_CODES_HELP}" if epilog else EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    general = parser.add_argument_group("general options")
    general.add_argument("-h", "--help", action="help", help="print this help text and exit")
    general.add_argument(
        "--driver",
        choices=DRIVERS,
        default="sockets",
        help="what runs the tool: blocking sockets (a thread per association), trio or asyncio "
        "(default: sockets)",
    )
    verbosity = general.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but the error that ends the tool"
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print processing details and a readable trace of every PDU and DIMSE message "
        "sent and received",
    )
    verbosity.add_argument(
        "-d",
        "--debug",
        action="store_true",
        help="as --verbose, and also every data set fragment received",
    )
    return parser


def _requestor_options(parser: Parser, aet: str) -> None:
    parser.add_argument("peer", help="host name or address of the peer (the acceptor)")
    parser.add_argument("port", type=_port, help="TCP port of the peer")
    group = parser.add_argument_group("network options")
    group.add_argument(
        "-aet",
        "--aetitle",
        default=aet,
        type=_ae_title,
        metavar="AETITLE",
        help=f"our own (calling) AE title (default: {aet})",
    )
    group.add_argument(
        "-aec",
        "--call",
        default="ANY-SCP",
        type=_ae_title,
        metavar="AETITLE",
        help="the called AE title: the peer's (default: ANY-SCP)",
    )
    group.add_argument(
        "-to",
        "--timeout",
        dest="connect_timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="timeout for the TCP connection, 0 for none (default: 30)",
    )
    _common_network_options(group)
    group.add_argument(
        "--abort",
        action="store_true",
        help="end with an A-ABORT instead of releasing the association",
    )
    identity_options(parser)


def identity_options(parser: argparse.ArgumentParser) -> None:
    """A requestor's user identity: --user [--password], --saml, --jwt, --request-response."""
    identity = parser.add_argument_group(
        "user identity options (PS3.7 D.3.3.7)", "Sent in the A-ASSOCIATE-RQ; one kind at most."
    )
    kind = identity.add_mutually_exclusive_group()
    kind.add_argument("--user", metavar="NAME", help="a user name (with --password: and passcode)")
    kind.add_argument("--saml", metavar="FILE", help="a SAML assertion, read from FILE")
    kind.add_argument("--jwt", metavar="FILE", help="a JSON web token, read from FILE")
    identity.add_argument("--password", metavar="PW", help="the passcode of --user")
    identity.add_argument(
        "--request-response",
        action="store_true",
        help="ask the acceptor for a positive response (its server response is logged)",
    )


def _acceptor_options(parser: Parser, aet: str) -> None:
    parser.add_argument(
        "port", type=_port, help="TCP port to listen on (0: any free port, printed at start)"
    )
    group = parser.add_argument_group("network options")
    group.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default: 127.0.0.1, loopback only; 0.0.0.0 for all IPv4)",
    )
    group.add_argument(
        "-aet",
        "--aetitle",
        default=aet,
        type=_ae_title,
        metavar="AETITLE",
        help=f"our own AE title (default: {aet})",
    )
    group.add_argument(
        "--require-called-aet",
        action="store_true",
        help="reject an association whose called AE title is not ours (A-ASSOCIATE-RJ "
        "1/1/7, 'called AE title not recognized'); by default any called AE title is accepted",
    )
    group.add_argument(
        "--max-associations",
        type=_count,
        default=32,
        metavar="N",
        help="serve at most N associations at once; more are rejected, transient (default: 32)",
    )
    group.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="serve from N worker processes sharing the listening socket, every core used (as "
        "DCMTK's storescp --fork); a worker that dies is replaced (default: 1, this process)",
    )
    _common_network_options(group)
    users_option(group)
    access_options(group)


def _allowed(text: str) -> Allowed:
    try:
        return Allowed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not AETITLE[@ADDRESS]: {exc}") from None


def access_options(group: argparse._ArgumentGroup) -> None:
    """An acceptor's access control: --allow, --allow-file, --max-per-peer."""
    group.add_argument(
        "--allow",
        action="append",
        type=_allowed,
        default=[],
        metavar="AETITLE[@ADDRESS]",
        help="let in only these calling AE titles, each from any address or from ADDRESS (an IP "
        "address or a network, 10.0.0.0/8); '*' is any title; repeatable. Others are rejected: "
        "A-ASSOCIATE-RJ 1/1/3 (default: everyone is let in)",
    )
    group.add_argument(
        "--allow-file",
        metavar="FILE",
        help="more --allow entries, one a line ('#' starts a comment)",
    )
    group.add_argument(
        "--max-per-peer",
        type=_count,
        metavar="N",
        help="serve at most N associations at once from one peer address; more are rejected, "
        "transient: A-ASSOCIATE-RJ 2/3/2 (default: no limit)",
    )


def access_control(args: argparse.Namespace, log: logging.Logger) -> Access:
    """The access rules of ``args`` (:func:`access_options`)."""
    allow = list(getattr(args, "allow", None) or [])
    path = getattr(args, "allow_file", None)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ToolError(ExitCode.USAGE, f"--allow-file: {exc}") from exc
        for number, line in enumerate(lines, 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                try:
                    allow.append(Allowed(entry))
                except ValueError as exc:
                    raise ToolError(ExitCode.USAGE, f"{path}:{number}: {exc}") from exc
    return Access(allow, max_per_peer=getattr(args, "max_per_peer", None), log=log)


def users_option(group: argparse._ArgumentGroup) -> None:
    """An acceptor's --users FILE: the user identities it accepts."""
    group.add_argument(
        "--users",
        metavar="FILE",
        help="accept only the users of FILE (a name and a passcode per line; a user identity is "
        "then required, and a wrong or missing one is rejected: A-ASSOCIATE-RJ 1/1/1); by "
        "default any user identity, or none, is accepted",
    )


def _common_network_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "-ta",
        "--acse-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="timeout for association negotiation and release, 0 for none (default: 30)",
    )
    group.add_argument(
        "-td",
        "--dimse-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="timeout for each DIMSE message awaited, 0 for none (default: none)",
    )
    group.add_argument(
        "-pdu",
        "--max-pdu",
        type=_max_pdu,
        default=dul.DEFAULT_MAXIMUM_LENGTH,
        metavar="BYTES",
        help="the maximum length of the P-DATA-TF PDUs we receive, announced to the peer "
        f"(PS3.8 Annex D.1); 0 for no limit (default: {dul.DEFAULT_MAXIMUM_LENGTH})",
    )


def output_options(group: argparse._ArgumentGroup, what: str) -> None:
    """-od DIR and --ignore: where a tool writes the ``what`` it receives, or nowhere."""
    group.add_argument(
        "-od",
        "--output-directory",
        default=".",
        metavar="DIR",
        help=f"write the {what} received into DIR, which must exist (default: .)",
    )
    group.add_argument(
        "--ignore", action="store_true", help=f"receive {what} but discard them, writing nothing"
    )


def _tls_options(parser: argparse.ArgumentParser, *, requestor: bool) -> None:
    group = parser.add_argument_group(
        "TLS options (PS3.15 Annex B.1)",
        "Any --tls-* option implies --tls. Files are PEM.",
    )
    group.add_argument("--tls", action="store_true", help="run the association over TLS")
    if requestor:
        group.add_argument(
            "--tls-ca",
            metavar="FILE",
            help="verify the peer's certificate against these CA certificates (default: the "
            "system's trust store)",
        )
        group.add_argument(
            "--tls-cert", metavar="FILE", help="present this client certificate to the peer"
        )
        group.add_argument(
            "--tls-key", metavar="FILE", help="the private key of --tls-cert (default: in it)"
        )
        group.add_argument(
            "--tls-server-name",
            metavar="NAME",
            help="the name the peer's certificate must carry (default: the peer argument)",
        )
    else:
        group.add_argument(
            "--tls-cert", metavar="FILE", help="our certificate (required with --tls)"
        )
        group.add_argument(
            "--tls-key", metavar="FILE", help="the private key of --tls-cert (default: in it)"
        )
        group.add_argument(
            "--tls-ca",
            metavar="FILE",
            help="require a client certificate, verified against these CA certificates",
        )


def echoscu_parser(prog: str = "echoscu") -> Parser:
    """The options of echoscu: C-ECHO, the DICOM 'ping'."""
    parser = _parser(
        prog,
        "Verify DICOM connectivity: open an association with the peer, send C-ECHO requests "
        "(PS3.7 9.1.5) on the Verification SOP Class, release.",
        "example:\n  echoscu -aet ME -aec STORESCP 127.0.0.1 11112",
    )
    _requestor_options(parser, "ECHOSCU")
    parser.add_argument_group("network options").add_argument(
        "--repeat", type=_count, default=1, metavar="N", help="send N C-ECHO requests (default: 1)"
    )
    _tls_options(parser, requestor=True)
    return parser


def echoscp_parser(prog: str = "echoscp") -> Parser:
    """The options of echoscp: answer C-ECHO requests."""
    parser = _parser(
        prog,
        "Answer C-ECHO requests (the Verification SOP Class) until interrupted (Ctrl-C or "
        "SIGTERM). Other requests are answered 0x0211, Unrecognized Operation.",
        "example:\n  echoscp -aet ECHOSCP 11112",
    )
    _acceptor_options(parser, "ECHOSCP")
    _tls_options(parser, requestor=False)
    return parser


def storescu_parser(prog: str = "storescu") -> Parser:
    """The options of storescu: send DICOM files with C-STORE."""
    parser = _parser(
        prog,
        "Send DICOM files (PS3.10) to a storage SCP with C-STORE (PS3.7 9.1.1). Directories "
        "are searched recursively; files in them that are not DICOM are skipped. For each SOP "
        "class of the files, a presentation context is proposed for each transfer syntax found "
        "in its files, and one more with the uncompressed syntaxes (see the proposal options); "
        "each file's data set is sent as it is in the file, streamed from disk, unless the peer "
        "accepted only the fallback: then an uncompressed or deflated data set is converted "
        "(with pydicom, one file at a time), and a compressed one is not sent.",
        "example:\n  storescu -aec STORESCP 127.0.0.1 11112 study/ extra.dcm",
    )
    _requestor_options(parser, "STORESCU")
    parser.add_argument("files", nargs="+", metavar="FILE|DIR", help="DICOM files or directories")
    proposal = parser.add_argument_group(
        "proposed transfer syntaxes (after DCMTK's storescu: the fallback context of each SOP "
        "class, for its uncompressed and deflated files)"
    ).add_mutually_exclusive_group()
    for flags, name, text in (
        (
            ("-x=", "--propose-uncompr"),
            "uncompressed",
            "all uncompressed, explicit VR with the local byte order first (default)",
        ),
        (
            ("-xe", "--propose-little"),
            "little",
            "all uncompressed, explicit VR little endian first",
        ),
        (("-xb", "--propose-big"), "big", "all uncompressed, explicit VR big endian first"),
        (("-xi", "--propose-implicit"), "implicit", "implicit VR little endian only"),
        (
            ("-xs", "--propose-file-only"),
            "file",
            "no fallback: each file's own transfer "
            "syntax only, never converted (DCMTK's -xs proposes JPEG lossless instead)",
        ),
    ):
        proposal.add_argument(
            *flags, dest="propose", action="store_const", const=name, help=f"propose {text}"
        )
    parser.set_defaults(propose="uncompressed")
    group = parser.add_argument_group("storage options")
    group.add_argument(
        "-R",
        "--required",
        action="store_true",
        help="propose only the SOP classes of the files sent (always so: accepted for DCMTK's "
        "users)",
    )
    group.add_argument(
        "--max-ops",
        type=_count,
        metavar="N",
        help="propose N outstanding operations (PS3.7 D.3.3.3) and keep as many C-STOREs in "
        "flight as the acceptor grants (default: one at a time, no proposal)",
    )
    group.add_argument(
        "-nh",
        "--no-halt",
        action="store_true",
        help="go on after a failed store (default: stop at the first failure)",
    )
    progress = group.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="show progress on standard error (default: when it is a terminal)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show progress"
    )
    _tls_options(parser, requestor=True)
    return parser


def storescp_parser(prog: str = "storescp") -> Parser:
    """The options of storescp: receive C-STORE requests and write DICOM files."""
    parser = _parser(
        prog,
        "Receive data sets with C-STORE and write each as a DICOM file (PS3.10) named "
        "<modality>.<SOP instance UID>, with a file meta group made from the C-STORE request and "
        "the presentation context. The data set is written to disk as it arrives, never held "
        "whole in memory, and bit for bit as received. C-ECHO is answered too. Runs until "
        "interrupted (Ctrl-C or SIGTERM).",
        "example:\n  storescp -aet STORESCP -od received/ 11112",
    )
    _acceptor_options(parser, "STORESCP")
    group = parser.add_argument_group("storage options")
    output_options(group, "data sets")
    group.add_argument(
        "--max-ops",
        type=_count,
        default=1,
        metavar="N",
        help="grant a requestor up to N outstanding operations (PS3.7 D.3.3.3; default: 1)",
    )
    group.add_argument(
        "--accept-all",
        action="store_true",
        help="accept any abstract syntax proposed, not only the common storage SOP classes",
    )
    abort = group.add_mutually_exclusive_group()
    abort.add_argument(
        "--abort-after",
        action="store_true",
        help="(for tests) abort the association after receiving a C-STORE data set, "
        "instead of answering",
    )
    abort.add_argument(
        "--abort-during",
        action="store_true",
        help="(for tests) abort the association while receiving a C-STORE data set",
    )
    _tls_options(parser, requestor=False)
    return parser


# -- what the parsed options mean -------------------------------------------------------------


@dataclass(frozen=True)
class TimeoutValues:
    """The timeouts asked for, in seconds (``None``: wait for ever); drivers map them."""

    connect: float | None
    acse: float | None
    dimse: float | None


def timeout_values(args: argparse.Namespace) -> TimeoutValues:
    """The timeouts in ``args`` (an acceptor has no connect timeout)."""
    return TimeoutValues(
        connect=getattr(args, "connect_timeout", None),
        acse=args.acse_timeout,
        dimse=args.dimse_timeout,
    )


def _wants_tls(args: argparse.Namespace) -> bool:
    return bool(
        args.tls
        or args.tls_cert
        or args.tls_key
        or args.tls_ca
        or getattr(args, "tls_server_name", None)
    )


def client_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of a requestor, or None without TLS; verifies the peer's certificate."""
    if not _wants_tls(args):
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.tls_ca)
        if args.tls_cert:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ToolError(ExitCode.NETWORK_SETUP, f"cannot set up TLS: {exc}") from exc
    if args.tls_key and not args.tls_cert:
        raise ToolError(ExitCode.USAGE, "--tls-key needs --tls-cert")
    return context


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of an acceptor, or None; with --tls-ca it requires client certificates."""
    if not _wants_tls(args):
        return None
    if not args.tls_cert:
        raise ToolError(ExitCode.USAGE, "TLS needs our certificate: --tls-cert FILE")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.tls_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195 (PS3.15 B.9): 1.2 or later
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ToolError(ExitCode.NETWORK_SETUP, f"cannot set up TLS: {exc}") from exc
    if args.tls_ca:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Formatter(logging.Formatter):
    """``L: message``, L the level's initial as DCMTK prints them (F for fatal, not C)."""

    def format(self, record: logging.LogRecord) -> str:
        initial = "F" if record.levelno >= logging.CRITICAL else record.levelname[:1]
        return f"{initial}: {record.getMessage()}"


@contextmanager
def tool_logger(
    name: str, args: argparse.Namespace, stream: TextIO | None = None
) -> Iterator[logging.Logger]:
    """A logger for one run of a tool, printing ``L: message`` to ``stream`` (stderr).

    The level follows -q/-v/-d. The handler is removed afterwards, so that a test or a demo can
    run tools one after another in one process.
    """
    logger = logging.getLogger(f"dul.tools.{name}")
    if args.debug:
        level = logging.DEBUG
    elif args.verbose:
        level = logging.INFO
    elif args.quiet:
        level = logging.CRITICAL
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


# -- the trace --------------------------------------------------------------------------------

_ACRONYMS = {"sop": "SOP", "uid": "UID", "id": "ID", "aet": "AE title"}


def _field_label(name: str) -> str:
    return " ".join(_ACRONYMS.get(word, word) for word in name.split("_"))


def _value(name: str, value: object) -> str:
    if name == "status" and isinstance(value, int):
        category = dimse.status_category(value).value
        return f"0x{value:04X} ({category})"
    if name == "priority" and isinstance(value, int) and value in set(dimse.Priority):
        return f"{value} ({dimse.Priority(value).name.lower()})"
    if isinstance(value, str):
        known = UID_NAMES.get(value)
        return f"{value} ({known})" if known else value
    return str(value)


def describe_message(message: dimse.Message) -> str:
    """A DIMSE message: its name, then each field that is set, one per line."""
    lines = [message_name(message)]
    for field in attrs.fields(type(message)):
        value = getattr(message, field.name)
        if value is None or value == () or field.name == "foreign_elements":
            continue
        lines.append(f"  {_field_label(field.name)}: {_value(field.name, value)}")
    lines.extend(f"  {line}" for line in describe_foreign_elements(message))
    return "\n".join(lines)


def describe_foreign_elements(message: dimse.Message) -> list[str]:
    """One line per element outside group 0000 the peer put in its command set (kept aside)."""
    lines = []
    for tag, raw in message.foreign_elements:
        text = raw[:-1] if raw[-1:] in (b"\0", b" ") else raw  # one pad byte (PS3.5 7.1.1)
        printable = text.isascii() and text.decode().isprintable()
        shown = repr(text.decode()) if text and printable else raw.hex()
        lines.append(
            f"foreign element ({tag >> 16:04X},{tag & 0xFFFF:04X}), {len(raw)} bytes: {shown} "
            "(not group 0000: kept aside)"
        )
    return lines


def describe_item(item: object) -> str:
    """What a driver reports: a PDU event, a DIMSE message, a data set fragment."""
    if isinstance(item, dimse.MessageReceived):
        extra = ", data set follows" if item.has_dataset else ""
        text = describe_message(item.message)
        first, _, rest = text.partition("\n")
        return f"{first} (context {item.context_id}{extra})" + (f"\n{rest}" if rest else "")
    if isinstance(item, dimse.Message):
        return describe_message(item)
    if isinstance(item, dimse.DatasetChunk):
        last = ", last" if item.is_last else ""
        return f"data set fragment: {len(item.data)} bytes (context {item.context_id}{last})"
    if isinstance(item, _EVENT_TYPES):
        return describe(item)
    return repr(item)


class Tracer:
    """Logs, at INFO, each PDU and DIMSE message a driver reports as ``(direction, item)``.

    Data set fragments are summed into one line per data set (each is logged at DEBUG). With
    ``per_association``, associations are numbered in the label (SCP#1, SCP#2), one thread each.
    """

    def __init__(self, logger: logging.Logger, label: str, *, per_association: bool = False):
        self.logger = logger
        self.label = label
        self.per_association = per_association
        self._local = threading.local()
        self._lock = threading.Lock()
        self._count = 0

    def _prefix(self, item: object) -> str:
        if not self.per_association:
            return self.label
        if isinstance(item, dul.AssociateRequest) or not hasattr(self._local, "number"):
            with self._lock:
                self._count += 1
                self._local.number = self._count
        return f"{self.label}#{self._local.number}"

    def __call__(self, direction: str, item: object) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        prefix = self._prefix(item)
        arrow = "==>" if direction == "sent" else "<=="
        if isinstance(item, dimse.DatasetChunk):
            size, count = getattr(self._local, "dataset", (0, 0))
            size, count = size + len(item.data), count + 1
            self._local.dataset = (size, count)
            self.logger.debug("%s %s %s", prefix, arrow, describe_item(item))
            if item.is_last:
                del self._local.dataset
                self.logger.info(
                    "%s %s data set: %d bytes in %d fragment%s",
                    prefix,
                    arrow,
                    size,
                    count,
                    "" if count == 1 else "s",
                )
            return
        text = describe_item(item).replace("\n", "\n" + " " * (len(prefix) + 5))
        self.logger.info("%s %s %s", prefix, arrow, text)


class Progress:
    """Progress of a long transfer on a terminal: files, megabytes, rate; at most twice a second."""

    def __init__(
        self, total_files: int, total_bytes: int, stream: TextIO, *, enabled: bool
    ) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.stream = stream
        self.enabled = enabled
        self.files = 0
        self.bytes = 0
        self._start = time.monotonic()
        self._shown = 0.0

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more sent."""
        self.bytes += nbytes
        self._show()

    def file_done(self) -> None:
        """Count one more file done (sent or failed)."""
        self.files += 1
        self._show()

    def _show(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.5:
            return
        self._shown = now
        elapsed = max(now - self._start, 1e-9)
        self.stream.write(
            f"\r{self.files}/{self.total_files} files, {self.bytes / 1e6:.1f}/"
            f"{self.total_bytes / 1e6:.1f} MB, {self.bytes / 1e6 / elapsed:.1f} MB/s "
        )
        self.stream.flush()

    def finish(self) -> None:
        """The last line, then a new line."""
        if self.enabled:
            self._show(force=True)
            self.stream.write("\n")
            self.stream.flush()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self._start
