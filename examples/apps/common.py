"""What every application shares: exit codes, the association request, how failures end a tool.

Exit codes follow DCMTK's (``ofexit.h``, ``storescu``), so that a script written for DCMTK's
tools mostly runs with these.
"""

from __future__ import annotations

import argparse
import enum
import logging
import re
from collections.abc import Callable
from typing import TypeVar

import dul
from dul import dimse
from dul.uids import UID_NAMES
from examples.runtime import (
    Abort,
    Association,
    AssociationAborted,
    AssociationRejected,
    DriverError,
    Service,
    Steps,
)

__all__ = [
    "BROKEN",
    "UID_NAMES",
    "ExitCode",
    "ToolError",
    "association_failed",
    "association_request",
    "broken",
    "message_name",
    "release_failed",
    "requestor",
]

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """Exit statuses, numbered as DCMTK's ``ofexit.h`` and ``storescu`` number theirs."""

    OK = 0
    #: A usage error: unknown option, missing argument, bad value.
    USAGE = 1
    #: storescu: no input file was given.
    NO_INPUT_FILES = 21
    #: storescu: an input file named on the command line cannot be read as a DICOM file.
    INVALID_INPUT_FILE = 22
    #: storescu: the files and directories given hold no DICOM file.
    NO_VALID_INPUT_FILES = 23
    #: storescp: the output directory cannot be written.
    CANNOT_WRITE_OUTPUT = 40
    #: The network could not be set up: the port cannot be bound, the TLS files cannot be read.
    NETWORK_SETUP = 60
    #: No association: connection refused, TLS handshake failed, request rejected or aborted.
    ASSOCIATION_FAILED = 61
    #: A request failed: a failure status, or no accepted presentation context for a file.
    REQUEST_FAILED = 62
    #: The association broke after it was established: aborted, timed out, transport lost.
    ASSOCIATION_ABORTED = 70


class ToolError(Exception):
    """A failure that ends a tool with ``code``; its message is what the user reads."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


#: What ends an association attempt or an established association, as exceptions: every driver
#: raises these (its own transport errors become :class:`DriverError` or ``OSError``).
BROKEN = (DriverError, TimeoutError, dul.ProtocolError, OSError)


def association_request(
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    roles: tuple[dul.RoleSelection, ...] = (),
) -> dul.AssociateRequest:
    """The A-ASSOCIATE-RQ of a requestor's options, proposing ``contexts`` (and ``roles``)."""
    return dul.AssociateRequest(
        called_ae_title=args.call,
        calling_ae_title=args.aetitle,
        presentation_contexts=contexts,
        user_information=dul.UserInformation(maximum_length=args.max_pdu, role_selections=roles),
    )


def association_failed(exc: BaseException) -> ToolError:
    """Why no association was made (one of :data:`BROKEN`): ASSOCIATION_FAILED (61)."""
    if isinstance(exc, AssociationRejected):
        return ToolError(ExitCode.ASSOCIATION_FAILED, str(exc))
    if isinstance(exc, TimeoutError):
        return ToolError(
            ExitCode.ASSOCIATION_FAILED, "timed out waiting for the association answer"
        )
    return ToolError(ExitCode.ASSOCIATION_FAILED, f"no association: {exc}")


def release_failed(exc: BaseException) -> ToolError:
    """Why the release did not complete: ASSOCIATION_ABORTED (70)."""
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the release")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"release failed: {exc}")


def broken(exc: BaseException) -> ToolError:
    """What ended an established association, as the error the user reads (70)."""
    if isinstance(exc, AssociationAborted):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association aborted: {exc}")
    if isinstance(exc, TimeoutError):
        return ToolError(ExitCode.ASSOCIATION_ABORTED, "timed out waiting for the peer")
    return ToolError(ExitCode.ASSOCIATION_ABORTED, f"association failed: {exc}")


def requestor(
    args: argparse.Namespace,
    log: logging.Logger,
    contexts: tuple[dul.PresentationContext, ...],
    work: Callable[[Association], Steps[T]],
    *,
    roles: tuple[dul.RoleSelection, ...] = (),
) -> Service[T]:
    """An SCU's service: associate (proposing ``contexts``), do ``work``, release.

    With ``--abort`` it ends with an A-ABORT instead. Each failure becomes the
    :class:`ToolError` of its phase: no association (61), broken association or failed
    release (70).
    """

    def service(assoc: Association) -> Steps[T]:
        try:
            yield from assoc.associate(association_request(args, contexts, roles))
        except BROKEN as exc:
            raise association_failed(exc) from exc
        try:
            result = yield from work(assoc)
        except BROKEN as exc:
            yield Abort()
            raise broken(exc) from exc
        if args.abort:
            log.info("aborting the association, as --abort asks")
            yield Abort()
            return result
        try:
            yield from assoc.release()
        except BROKEN as exc:
            raise release_failed(exc) from exc
        return result

    return service


def message_name(message: dimse.Message) -> str:
    """PS3.7's name of a message: ``CStoreRequest`` is C-STORE-RQ."""
    name = type(message).__name__
    kind = "RQ" if name.endswith("Request") else "RSP"
    words = re.findall(r"[A-Z][a-z]+", name[1:].removesuffix("Request").removesuffix("Response"))
    return f"{name[0]}-{'-'.join(w.upper() for w in words)}-{kind}"
