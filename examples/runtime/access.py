"""Who is let in: allow-lists of calling AE titles and a limit per peer address, once for
every driver and every SCP.

:class:`Access` wraps an acceptor's service (:meth:`Access.guard`). Before the service runs,
a peer address already holding ``max_per_peer`` associations is rejected (transient, local
limit exceeded: A-ASSOCIATE-RJ 2/3/2, as the drivers answer beyond ``max_associations``); with
an allow-list, an A-ASSOCIATE-RQ whose calling AE title (at that address) is not on it is
rejected (permanent, service user, calling AE title not recognized: RJ 1/1/3, PS3.8 §9.3.4).
Each refusal is logged in one line. The counts are per process (per ``--workers`` worker).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

import dul

from .acceptor import refuse
from .association import Association, Service
from .errors import DriverError
from .steps import Abort, Steps

__all__ = ["Access", "Allowed", "peer_of"]

_LOG = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowed:
    """One entry of an allow-list: ``AETITLE``, ``AETITLE@ADDRESS`` or ``AETITLE@NETWORK``
    (``10.0.0.0/8``); ``*`` as the AE title lets any title in from that address."""

    def __init__(self, entry: str) -> None:
        title, sep, address = entry.strip().partition("@")
        if not title.strip():
            raise ValueError(f"{entry!r}: no AE title")
        self.ae_title = title.strip()
        self.network: Network | None = None
        if sep:
            self.network = ipaddress.ip_network(address.strip(), strict=False)

    def admits(self, ae_title: str, peer: str | None) -> bool:
        """Whether ``ae_title`` calling from ``peer`` is this entry."""
        if self.ae_title not in ("*", ae_title.strip()):
            return False
        if self.network is None:
            return True
        if peer is None:
            return False
        try:
            return ipaddress.ip_address(peer) in self.network
        except ValueError:
            return False

    def __repr__(self) -> str:
        where = f"@{self.network}" if self.network is not None else ""
        return f"Allowed('{self.ae_title}{where}')"


class Access:
    """The access rules of an SCP: ``allow`` (empty: everyone) and ``max_per_peer`` (None: no
    limit). :meth:`guard` applies them to a service."""

    def __init__(
        self,
        allow: Iterable[Allowed] = (),
        *,
        max_per_peer: int | None = None,
        log: logging.Logger = _LOG,
    ) -> None:
        self.allow = tuple(allow)
        self.max_per_peer = max_per_peer
        self.log = log
        self._held: Counter[str | None] = Counter()
        self._lock = threading.Lock()  # the sockets driver runs associations in threads

    def admits(self, request: dul.AssociateRequest, peer: str | None) -> bool:
        """Whether the allow-list lets ``request`` in from ``peer``."""
        if not self.allow:
            return True
        return any(entry.admits(request.calling_ae_title, peer) for entry in self.allow)

    def guard(self, service: Service[None]) -> Service[None]:
        """``service``, behind these rules."""

        def guarded(assoc: Association) -> Steps[None]:
            peer = assoc.peer
            with self._lock:
                self._held[peer] += 1
                held = self._held[peer]
            try:
                if self.max_per_peer is not None and held > self.max_per_peer:
                    self.log.warning(
                        "association from %s rejected: %d associations already from that "
                        "address, the limit (A-ASSOCIATE-RJ 2/3/2)",
                        peer,
                        self.max_per_peer,
                    )
                    yield from refuse(assoc)
                    return
                if self.allow and not (yield from self._admitted(assoc)):
                    return
                yield from service(assoc)
            finally:
                with self._lock:
                    self._held[peer] -= 1
                    if not self._held[peer]:
                        del self._held[peer]

        return guarded

    def _admitted(self, assoc: Association) -> Steps[bool]:
        """Receive the A-ASSOCIATE-RQ; reject it unless allowed (the service answers it then)."""
        try:
            event = yield from assoc.next_event(assoc.timeouts.acse)
            if not isinstance(event, dul.AssociateRequest):
                return False  # the peer closed, or aborted, before asking
            if self.admits(event, assoc.peer):
                return True
            self.log.warning(
                "association from %r at %s rejected: calling AE title not allowed "
                "(A-ASSOCIATE-RJ 1/1/3)",
                event.calling_ae_title,
                assoc.peer,
            )
            yield from assoc.send_pdu(event.reject(result=1, source=1, reason=3))
            while assoc.closed is None:
                yield from assoc.next_event(assoc.timeouts.artim)
        except (TimeoutError, DriverError, dul.ProtocolError):
            yield Abort()
        return False


class _Socket(Protocol):
    def getpeername(self) -> Any: ...


def peer_of(sock: _Socket) -> str | None:
    """The IP address of the peer of a connected socket, stdlib's or trio's (None if it is
    gone already)."""
    try:
        address = sock.getpeername()
    except OSError:
        return None
    return str(address[0]) if isinstance(address, tuple) else None
