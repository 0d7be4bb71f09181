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

import attrs

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
    "identity_verifier",
    "message_name",
    "negotiation",
    "release_failed",
    "requestor",
    "user_identity",
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
    """The A-ASSOCIATE-RQ of a requestor's options, proposing ``contexts`` (and ``roles``), with
    the user identity and the operations window (``--max-ops``) they ask for."""
    max_ops = getattr(args, "max_ops", None)
    window = dul.AsyncOpsWindow(invoked=max_ops, performed=1) if max_ops else None
    return dul.AssociateRequest(
        called_ae_title=args.call,
        calling_ae_title=args.aetitle,
        presentation_contexts=contexts,
        user_information=dul.UserInformation(
            maximum_length=args.max_pdu,
            role_selections=roles,
            async_ops_window=window,
            user_identity=user_identity(args),
        ),
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fp:
            return fp.read()
    except OSError as exc:
        raise ToolError(ExitCode.USAGE, f"cannot read {path}: {exc.strerror or exc}") from exc


def user_identity(args: argparse.Namespace) -> dul.UserIdentity | None:
    """The user identity of ``--user [--password]``, ``--saml FILE`` or ``--jwt FILE`` (PS3.7
    D.3.3.7: types 1, 2, 4, 5), or None."""
    asked = getattr(args, "request_response", False)
    kind = dul.UserIdentityType
    if getattr(args, "user", None):
        if args.password is None:
            identity_type, secondary = kind.USERNAME, b""
        else:
            identity_type, secondary = kind.USERNAME_AND_PASSCODE, args.password.encode()
        return dul.UserIdentity(
            identity_type=identity_type,
            primary=args.user.encode(),
            secondary=secondary,
            positive_response_requested=asked,
        )
    if getattr(args, "password", None):
        raise ToolError(ExitCode.USAGE, "--password needs --user")
    for option, identity_type in (("saml", kind.SAML), ("jwt", kind.JWT)):
        path = getattr(args, option, None)
        if path:
            return dul.UserIdentity(
                identity_type=identity_type, primary=_read(path), positive_response_requested=asked
            )
    return None


def identity_verifier(
    args: argparse.Namespace, log: logging.Logger
) -> Callable[[dul.UserIdentity], bytes | None] | None:
    """An SCP's check of the requestor's user identity, from ``--users FILE``.

    Without the option, any identity is accepted (and answered, when a response is asked for).
    With it, a name and passcode of the file are required: anything else is rejected.
    """
    path = getattr(args, "users", None)
    if not path:
        return lambda identity: b""
    users: dict[bytes, bytes] = {}
    for line in _read(path).decode("utf-8", "replace").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            users[fields[0].encode()] = fields[1].encode() if len(fields) > 1 else b""

    def verify(identity: dul.UserIdentity) -> bytes | None:
        kind = identity.identity_type
        secondary = (
            identity.secondary if kind == dul.UserIdentityType.USERNAME_AND_PASSCODE else b""
        )
        ok = kind in (1, 2) and users.get(identity.primary) == secondary
        who = identity.primary.decode("utf-8", "replace")
        log.info("user identity %r %s", who, "accepted" if ok else "refused")
        return b"" if ok else None

    return verify


def negotiation(
    policy: dimse.AcceptorPolicy, args: argparse.Namespace, log: logging.Logger
) -> Callable[[dul.AssociateRequest], dul.AssociateAccept | dul.AssociateReject]:
    """What an SCP answers an A-ASSOCIATE-RQ with: ``policy``, with the user identity check
    (``--users``: RJ 1/1/1 without a good one) and the operations window (``--max-ops``)."""
    verify = identity_verifier(args, log)
    max_ops = getattr(args, "max_ops", 1) or 1
    policy = attrs.evolve(
        policy,
        user_identity=verify,
        async_ops_window=dul.AsyncOpsWindow(invoked=max_ops, performed=max_ops),
    )
    required = bool(getattr(args, "users", None))

    def negotiate(request: dul.AssociateRequest) -> dul.AssociateAccept | dul.AssociateReject:
        if required and not isinstance(request.user_information.user_identity, dul.UserIdentity):
            log.info("no user identity: rejected, as --users requires one")
            return request.reject(reason=1)
        return policy.evaluate(request)

    return negotiate


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
            accept = yield from assoc.associate(association_request(args, contexts, roles))
        except BROKEN as exc:
            raise association_failed(exc) from exc
        if getattr(args, "request_response", False):
            answer = accept.user_information.user_identity
            if answer is None:
                log.warning("the acceptor sent no user identity response")
            else:
                log.info("user identity response: %d bytes", len(answer.server_response))
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
