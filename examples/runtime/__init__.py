"""What every driver and every service shares, and nothing that waits.

:mod:`~examples.runtime.steps` defines what a service asks of its driver (:class:`Send`,
:class:`Receive`, :class:`Poll`, :class:`Abort`, :class:`Close`, :class:`Sleep`,
:class:`Connect`) and the trampolines that answer it;
:mod:`~examples.runtime.association` the association a service holds (a
:class:`dul.dimse.Session` and the steps built on it); :mod:`~examples.runtime.acceptor` the
life of an accepted association (negotiate, dispatch each message to its handler, release);
:mod:`~examples.runtime.errors` the timeouts and the errors every driver raises. See
``docs/services.md``.
"""

from .acceptor import Handler, acceptor, refuse
from .access import Access, Allowed, peer_of
from .association import Association, DatasetReader, Service
from .errors import AssociationAborted, AssociationRejected, DriverError, Timeouts
from .steps import (
    Abort,
    AsyncDriver,
    Close,
    Connect,
    Driver,
    Interrupted,
    Poll,
    Receive,
    Send,
    Sleep,
    Step,
    Steps,
    drive,
    drive_async,
)

__all__ = [
    "Abort",
    "Access",
    "Allowed",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "AsyncDriver",
    "Close",
    "Connect",
    "DatasetReader",
    "Driver",
    "DriverError",
    "Handler",
    "Interrupted",
    "Poll",
    "Receive",
    "Send",
    "Service",
    "Sleep",
    "Step",
    "Steps",
    "Timeouts",
    "acceptor",
    "drive",
    "drive_async",
    "peer_of",
    "refuse",
]
