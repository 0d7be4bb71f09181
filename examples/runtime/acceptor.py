"""The life of an accepted association, once for every driver and every SCP.

:func:`acceptor` makes the per-association service an acceptor driver runs for each
connection: wait for the A-ASSOCIATE-RQ (-ta), answer it with what ``negotiate`` decides, then
hand each DIMSE message to the handler registered for its class (a request without one is
answered 0x0211, Unrecognized Operation), answer A-RELEASE-RQ, and abort on a timeout, a
protocol error or a handler's failure. :func:`refuse` is what a driver runs instead when it
already serves as many associations as it may.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import dul
from dul import dimse

from .association import Association, DatasetReader
from .errors import DriverError
from .steps import Abort, Steps

__all__ = ["Handler", "Negotiate", "acceptor", "refuse", "unsupported"]

_LOG = logging.getLogger(__name__)

#: A handler answers one message: it reads the data set and sends its response(s).
Handler = Callable[[Association, dimse.MessageReceived, DatasetReader], Steps[None]]
#: What to answer an A-ASSOCIATE-RQ with (``AcceptorPolicy.evaluate``, or a stricter rule).
Negotiate = Callable[[dul.AssociateRequest], dul.AssociateAccept | dul.AssociateReject]


def acceptor(
    negotiate: Negotiate, handlers: Mapping[type[dimse.Message], Handler]
) -> Callable[[Association], Steps[None]]:
    """The service of one accepted association: negotiate, dispatch, release."""
    table = dict(handlers)

    def serve(assoc: Association) -> Steps[None]:
        try:
            if assoc.connection.state is dul.State.AWAITING_LOCAL_ASSOCIATE_RESPONSE:
                assert assoc.request is not None  # received already (by Access.guard)
                yield from assoc.send_pdu(negotiate(assoc.request))
            while assoc.closed is None:
                event = yield from assoc.next_event(_wait(assoc))
                if isinstance(event, dul.AssociateRequest):
                    yield from assoc.send_pdu(negotiate(event))
                elif isinstance(event, dul.ReleaseRequest):
                    yield from assoc.send_pdu(event.response())
                elif isinstance(event, dimse.MessageReceived):
                    dataset = assoc.dataset(event)
                    handler = table.get(type(event.message), unsupported)
                    yield from handler(assoc, event, dataset)
                    yield from dataset.drain()
        except (TimeoutError, DriverError, dul.RemoteProtocolError):
            yield Abort()
        except Exception:  # a handler's bug must not take the server down
            _LOG.exception("association aborted: a handler failed")
            yield Abort()

    return serve


def _wait(assoc: Association) -> float | None:
    """How long to wait for the next event: -ta while negotiating, -td once established."""
    state = assoc.connection.state
    if state is dul.State.AWAITING_LOCAL_ASSOCIATE_RESPONSE:
        return assoc.timeouts.acse
    if state is dul.State.ESTABLISHED:
        return assoc.timeouts.dimse
    return None  # ARTIM or the peer's close bounds the other states


def unsupported(
    assoc: Association, event: dimse.MessageReceived, dataset: DatasetReader
) -> Steps[None]:
    """Answer a request no handler takes: 0x0211 Unrecognized Operation (PS3.7 C.5.6)."""
    message = event.message
    yield from dataset.drain()
    if not isinstance(message, dimse.Request):
        return
    yield from assoc.send(message.refuse(0x0211), context_id=event.context_id)


def refuse(assoc: Association) -> Steps[None]:
    """Reject the A-ASSOCIATE-RQ (transient, local limit exceeded: RJ 2/3/2), then wait for
    the peer to close (ARTIM bounds it)."""
    try:
        event = yield from assoc.next_event(assoc.timeouts.acse)
        if isinstance(event, dul.AssociateRequest):
            yield from assoc.send_pdu(event.reject(result=2, source=3, reason=2))
            while assoc.closed is None:
                yield from assoc.next_event(assoc.timeouts.artim)
    except (DriverError, TimeoutError, dul.ProtocolError):
        pass
