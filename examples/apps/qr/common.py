"""What findscu, getscu, movescu and qrscp share: identifiers from ``-k`` keys, the contexts
proposed, the output, exit statuses, files received, and what qrscp serves."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

import dul
from dul import dimse
from examples.apps import storage
from examples.apps.common import UID_NAMES, ExitCode, ToolError, message_name

from .archive import (
    Archive,
)
from .model import (
    _QR_LEVEL,
    EXIT_INTERRUPTED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    GET_STORAGE_TRANSFER_SYNTAXES,
    QUERY_TRANSFER_SYNTAXES,
    SUBOPERATIONS_WARNING,
    Model,
    QueryError,
    make_element,
    query_keys,
)
from .wire import (
    decode_identifier,
    encode_identifier,
    qrscp_policy,
)

# -- the SCU side: contexts, identifiers, output ------------------------------------------------


def parse_key(text: str) -> tuple[int, str, str | None]:
    """A ``-k`` option: ``gggg,eeee=value``, ``Keyword=value`` or just the key (empty value).

    Returns (tag, VR, value or None). The VR is the data dictionary's.
    """
    name, sep, value = text.partition("=")
    name = name.strip().strip("()")
    match = re.fullmatch(r"([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})", name)
    tag = int(match.group(1) + match.group(2), 16) if match else tag_for_keyword(name)
    if tag is None:
        raise ToolError(ExitCode.USAGE, f"-k {text}: unknown attribute {name!r}")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise ToolError(ExitCode.USAGE, f"-k {text}: {Tag(tag)} is not in the dictionary") from None
    if vr == "SQ" and value:
        raise ToolError(ExitCode.USAGE, f"-k {text}: a sequence takes no value here")
    if "or" in vr:  # US or SS, OB or OW: the first
        vr = vr.split(" or ")[0]
    return tag, vr, (value if sep else None)


def build_identifier(keys: Sequence[str], files: Sequence[str] = ()) -> Dataset:
    """The query identifier: the data set of the query files (the first), then the ``-k`` keys."""
    identifier = Dataset()
    for name in files[:1]:
        try:
            query = pydicom.dcmread(name, force=True)
        except Exception as exc:
            raise ToolError(ExitCode.USAGE, f"cannot read the query file {name}: {exc}") from exc
        for found in query_keys(query):  # rebuilt from raw values: a key may be no valid value
            if found.tag >> 16 != 0x0002:
                identifier.add(make_element(found.tag, found.vr, found.values))
    for key in keys:
        tag, vr, value = parse_key(key)
        values = [] if value is None else value.split("\\")
        try:
            identifier.add(make_element(tag, vr, values))
        except ValueError as exc:
            raise ToolError(ExitCode.USAGE, f"-k {key}: {exc}") from exc
    if _QR_LEVEL not in identifier:
        raise ToolError(ExitCode.USAGE, "no Query/Retrieve Level: -k QueryRetrieveLevel=STUDY")
    return identifier


def describe_identifier(identifier: Dataset) -> str:
    """An identifier, one attribute a line: ``(0010,0010) PN PatientName: DOE^JOHN``."""
    lines = []
    for key in query_keys(identifier):
        name = keyword_for_tag(key.tag) or "?"
        value = "\\".join(key.values) if key.vr != "SQ" else "(sequence)"
        lines.append(f"({key.tag >> 16:04X},{key.tag & 0xFFFF:04X}) {key.vr} {name}: {value}")
    return "\n".join(lines) if lines else "(empty)"


def request_contexts(sop_class_uid: str) -> tuple[dul.PresentationContext, ...]:
    """The one context findscu and movescu propose: the model's SOP class."""
    return (
        dul.PresentationContext(
            context_id=1,
            abstract_syntax=sop_class_uid,
            transfer_syntaxes=QUERY_TRANSFER_SYNTAXES,
        ),
    )


def get_contexts(
    sop_class_uid: str,
) -> tuple[tuple[dul.PresentationContext, ...], tuple[dul.RoleSelection, ...]]:
    """getscu's contexts and role selections: the C-GET SOP class, then each storage SOP class
    with the SCP role proposed, so that the C-STOREs come back on this association
    (PS3.7 D.3.3.4; PS3.4 C.4.3)."""
    classes = list(storage.COMMON_STORAGE_SOP_CLASSES)[: storage.MAX_CONTEXTS - 1]
    contexts = [request_contexts(sop_class_uid)[0]]
    for n, uid in enumerate(classes, start=1):
        contexts.append(
            dul.PresentationContext(
                context_id=2 * n + 1,
                abstract_syntax=uid,
                transfer_syntaxes=GET_STORAGE_TRANSFER_SYNTAXES,
            )
        )
    roles = tuple(
        dul.RoleSelection(sop_class_uid=uid, scu_role=False, scp_role=True) for uid in classes
    )
    return tuple(contexts), roles


def model_from_args(args: argparse.Namespace) -> Model:
    """The information model -P/-S chose."""
    return Model.STUDY_ROOT if args.study_root else Model.PATIENT_ROOT


def counters_text(response: dimse.Response) -> str:
    """``remaining 3, completed 5, failed 0, warning 0`` of a C-GET/C-MOVE response."""
    names = ("remaining", "completed", "failed", "warning")
    parts = []
    for name in names:
        value = getattr(response, f"{name}_suboperations", None)
        if value is not None:
            parts.append(f"{name} {value}")
    done = [getattr(response, f"{name}_suboperations", None) for name in names[1:]]
    if not response.is_pending and done == [0, 0, 0]:
        parts.append("no instance matched: nothing was retrieved")
    return ", ".join(parts) or "no counters"


def status_text(status: int) -> str:
    """``0xFE00 (cancel)``."""
    return f"0x{status:04X} ({dimse.status_category(status).value})"


class FindOutput:
    """What findscu does with each match: print it to ``out``, and extract it to a file (-X)."""

    def __init__(self, args: argparse.Namespace, out: TextIO | None) -> None:
        self.out = out if out is not None else sys.stdout
        self.extract = args.extract
        self.directory = Path(args.output_directory)
        self.count = 0
        if self.extract and not self.directory.is_dir():
            raise ToolError(ExitCode.CANNOT_WRITE_OUTPUT, f"no output directory {self.directory}")

    def match(self, identifier: Dataset | None) -> None:
        self.count += 1
        self.out.write(f"# Find response {self.count} (pending)\n")
        if identifier is None:
            self.out.write("(no identifier)\n\n")
            return
        self.out.write(describe_identifier(identifier) + "\n\n")
        self.out.flush()
        if self.extract:
            path = self.directory / f"rsp{self.count:04d}.dcm"
            path.write_bytes(encode_identifier(identifier, EXPLICIT_VR_LITTLE_ENDIAN))


def find_exit_code(status: int, *, interrupted: bool) -> int:
    """findscu/getscu/movescu's exit status: 0 for Success, Cancel (asked with --cancel) and
    warnings, but 62 for failed sub-operations (0xB000) and failures; 130 after Ctrl-C."""
    if interrupted:
        return EXIT_INTERRUPTED
    if status == SUBOPERATIONS_WARNING or dimse.status_category(status) in (
        dimse.StatusCategory.FAILURE,
        dimse.StatusCategory.PENDING,
    ):
        return ExitCode.REQUEST_FAILED
    return ExitCode.OK


def open_writer(
    directory: Path | None,
    message: dimse.CStoreRequest,
    transfer_syntax: str,
    source_ae_title: str | None,
    log: logging.Logger,
) -> storage.Part10Writer | None:
    """A Part 10 file for a C-STORE data set received (None with ``--ignore`` or on error)."""
    if directory is None:
        return None
    meta = storage.file_meta(
        message.affected_sop_class_uid,
        message.affected_sop_instance_uid,
        transfer_syntax,
        source_ae_title,
    )
    name = storage.file_name(message.affected_sop_class_uid, message.affected_sop_instance_uid)
    try:
        return storage.Part10Writer(directory, name, meta)
    except OSError as exc:
        log.error("cannot create %s: %s", directory / name, exc)
        return None


def store_response(
    message: dimse.CStoreRequest, status: int, comment: str | None = None
) -> dimse.CStoreResponse:
    """The C-STORE-RSP answering ``message``."""
    return dimse.CStoreResponse(
        message_id_being_responded_to=message.message_id,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
        status=status,
        error_comment=comment,
    )


def parse_destinations(pairs: Sequence[Sequence[str]] | None) -> dict[str, tuple[str, int]]:
    """qrscp's ``--move AETITLE HOST:PORT`` options as a table."""
    table = {}
    for ae_title, address in pairs or ():
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ToolError(ExitCode.USAGE, f"--move {ae_title} {address}: not HOST:PORT")
        table[ae_title] = (host, int(port))
    return table


def output_directory(args: argparse.Namespace) -> Path | None:
    """Where received instances go (None with --ignore); ToolError when it is not a folder."""
    if args.ignore:
        return None
    directory = Path(args.output_directory)
    if not directory.is_dir():
        raise ToolError(ExitCode.CANNOT_WRITE_OUTPUT, f"no output directory {directory}")
    return directory


# -- what every driver's tools share ------------------------------------------------------------


def log_final(log: logging.Logger, response: dimse.Response, extra: str = "") -> None:
    """The final response of an SCU's request, as the user reads it."""
    name = message_name(response).removesuffix("-RSP")
    text = f"{name} final response: status {status_text(response.status)}{extra}"
    if response.error_comment:
        text += f": {response.error_comment}"
    if response.category in (dimse.StatusCategory.SUCCESS, dimse.StatusCategory.CANCEL):
        log.info("%s", text)
    else:
        log.warning("%s", text)


def decode_or_none(data: bytes | None, syntax: str, log: logging.Logger) -> Dataset | None:
    """A response's identifier, or None (none sent, or undecodable: logged)."""
    if not data:
        return None
    try:
        return decode_identifier(data, syntax)
    except QueryError as exc:
        log.error("%s", exc)
        return None


def refused(sop_class_uid: str) -> ToolError:
    """The error of an SCU whose Q/R SOP class the peer did not accept."""
    name = UID_NAMES.get(sop_class_uid, sop_class_uid)
    return ToolError(ExitCode.ASSOCIATION_FAILED, f"the peer refused {name}")


def cancel_due(interrupted: bool, after: int | None, responses: int) -> str | None:
    """Why to send the C-CANCEL now (Ctrl-C, or ``--cancel N`` responses received), or None."""
    if interrupted:
        return "interrupted: sending C-CANCEL (Ctrl-C again aborts)"
    if after is not None and responses >= after:
        return f"sending C-CANCEL after {responses} responses, as --cancel asks"
    return None


def failure_response(
    request: dimse.Request, response_class: type[dimse.Response], exc: QueryError
) -> dimse.Response:
    """The final response of a request the SCP cannot answer."""
    return response_class(  # type: ignore[call-arg]
        message_id_being_responded_to=request.message_id,
        affected_sop_class_uid=getattr(request, "affected_sop_class_uid", None),
        status=exc.status,
        error_comment=exc.comment[:64],
    )


def peer_ae_title(connection: dul.Connection) -> str | None:
    """The AE title of the other side of an association (for the file meta group)."""
    request = connection.request
    if request is None:
        return None
    if connection.role is dul.Role.REQUESTOR:
        return request.called_ae_title
    return request.calling_ae_title


def qrscp_setup(
    args: argparse.Namespace, log: logging.Logger
) -> tuple[Archive, dict[str, tuple[str, int]], dimse.AcceptorPolicy]:
    """What qrscp serves, on any driver: the archive, the move destinations, the policy."""
    if not Path(args.directory).is_dir():
        raise ToolError(ExitCode.USAGE, f"{args.directory} is not a folder")
    archive = Archive.from_directory(args.directory, log)
    log.info("serving %d instance(s) from %s", len(archive), args.directory)
    destinations = parse_destinations(args.move)
    policy = qrscp_policy(
        ae_title=args.aetitle if args.require_called_aet else None,
        maximum_length=args.max_pdu,
        archive=archive,
    )
    return archive, destinations, policy
