"""The timeouts a driver applies and the errors it raises, the same on every driver."""

from __future__ import annotations

from dataclasses import dataclass

import dul

__all__ = ["AssociationAborted", "AssociationRejected", "DriverError", "Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait, like DCMTK's options; ``None`` waits for ever.

    ``connect`` (-to) bounds the TCP connect; ``acse`` (-ta) association negotiation and release;
    ``dimse`` (-td) each wait for a DIMSE message; ``artim`` is PS3.8's ARTIM timer (waiting for
    an A-ASSOCIATE-RQ, or for the peer to close after a release, reject or abort). ARTIM does not
    oversee negotiation or release (PS3.8 §9.1.4 Note 2): the others do.
    """

    connect: float | None = 30.0
    acse: float | None = 30.0
    dimse: float | None = None
    artim: float = 30.0


class DriverError(Exception):
    """The association could not go on: timeout, transport loss, rejection, abort."""


class AssociationRejected(DriverError):
    """The acceptor answered with an A-ASSOCIATE-RJ."""

    def __init__(self, reject: dul.AssociateReject) -> None:
        super().__init__(
            f"association rejected: result {reject.result}, source {reject.source}, "
            f"reason {reject.reason} ({reject.reason_name})"
        )
        self.reject = reject


class AssociationAborted(DriverError):
    """The association ended without a release: an A-ABORT, or the transport closed."""

    def __init__(self, message: str, cause: dul.CloseCause | None = None) -> None:
        super().__init__(message)
        self.cause = cause
