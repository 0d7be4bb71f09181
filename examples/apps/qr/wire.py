"""Identifiers on the wire and the SCP side of a retrieval.

:func:`encode_identifier`, :func:`decode_identifier` (pydicom), :func:`transcode` between the
little endian uncompressed syntaxes; :class:`SubOperations` counts C-GET and C-MOVE
sub-operations and makes their pending and final responses (PS3.4 C.4.2.1.3, C.4.3.1.3); the
contexts a sub-operation proposes or uses; what qrscp accepts."""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

import dul
from dul import dimse
from examples.apps import storage

from .archive import (
    Archive,
    Instance,
)
from .model import (
    _ENCODINGS,
    _FAILED_SOP_INSTANCE_UID_LIST,
    CANCEL,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PENDING,
    QR_SOP_CLASSES,
    QUERY_TRANSFER_SYNTAXES,
    SUBOPERATIONS_WARNING,
    SUCCESS,
    UNABLE_TO_PERFORM_SUBOPERATIONS,
    UNABLE_TO_PROCESS,
    QueryError,
)

# -- identifiers on the wire ------------------------------------------------------------------


def _encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    try:
        return _ENCODINGS[transfer_syntax]
    except KeyError:
        raise QueryError(
            UNABLE_TO_PROCESS, f"cannot encode an identifier in transfer syntax {transfer_syntax}"
        ) from None


def decode_identifier(data: bytes | bytearray | memoryview, transfer_syntax: str) -> Dataset:
    """The data set ``data``, encoded in ``transfer_syntax`` (an uncompressed one or deflate)."""
    implicit, little, deflated = _encoding(transfer_syntax)
    raw = bytes(data)
    try:
        if deflated:
            raw = zlib.decompress(raw, -15)
        return read_dataset(io.BytesIO(raw), implicit, little)
    except Exception as exc:
        raise QueryError(UNABLE_TO_PROCESS, f"cannot decode the identifier: {exc}") from exc


def encode_identifier(dataset: Dataset, transfer_syntax: str) -> bytes:
    """``dataset`` encoded in ``transfer_syntax`` (an uncompressed one or deflate)."""
    implicit, little, deflated = _encoding(transfer_syntax)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, dataset)
    data = fp.getvalue()
    if deflated:
        packer = zlib.compressobj(wbits=-15)
        data = packer.compress(data) + packer.flush()
        data += b"\0" * (len(data) % 2)
    return bytes(data)


#: The syntaxes :func:`transcode` converts between: pixel data bytes stay as they are.
TRANSCODABLE = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)


def transcode(data: bytes, source: str, target: str) -> bytes:
    """A data set re-encoded from ``source`` to ``target``, both in :data:`TRANSCODABLE`."""
    if source == target:
        return data
    if source not in TRANSCODABLE or target not in TRANSCODABLE:
        raise ValueError(f"cannot transcode from {source} to {target}")
    return encode_identifier(decode_identifier(data, source), target)


# -- the SCP side of a retrieval ---------------------------------------------------------------


@dataclass
class SubOperations:
    """The C-STORE sub-operations of a C-GET or C-MOVE and their counters (PS3.4 C.4.2.1.3)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, status: int | None, sop_instance_uid: str) -> None:
        """Count one sub-operation done: its C-STORE status, or None when it could not run."""
        self.remaining -= 1
        category = None if status is None else dimse.status_category(status)
        if category is dimse.StatusCategory.SUCCESS:
            self.completed += 1
        elif category is dimse.StatusCategory.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def _response(
        self, cls: type[dimse.Response], request: dimse.Request, status: int, remaining: int | None
    ) -> dimse.Response:
        return cls(  # type: ignore[call-arg]
            message_id_being_responded_to=request.message_id,
            affected_sop_class_uid=getattr(request, "affected_sop_class_uid", None),
            status=status,
            remaining_suboperations=remaining,
            completed_suboperations=self.completed,
            failed_suboperations=self.failed,
            warning_suboperations=self.warning,
        )

    def pending(self, cls: type[dimse.Response], request: dimse.Request) -> dimse.Response:
        """A Pending response with the counters (PS3.7 9.3.3.2, 9.3.4.2)."""
        return self._response(cls, request, PENDING, self.remaining)

    def final(
        self, cls: type[dimse.Response], request: dimse.Request, *, cancelled: bool = False
    ) -> tuple[dimse.Response, Dataset | None]:
        """The final response and its identifier (the Failed SOP Instance UID List, if any).

        Cancel (0xFE00) keeps the remaining count (PS3.7 9.3.3.2); failures or warnings give
        0xB000; nothing could be sent at all gives 0xA702.
        """
        remaining: int | None = None
        if cancelled:
            status, remaining = CANCEL, self.remaining
        elif self.failed and not self.completed and not self.warning:
            status = UNABLE_TO_PERFORM_SUBOPERATIONS
        elif self.failed or self.warning:
            status = SUBOPERATIONS_WARNING
        else:
            status = SUCCESS
        identifier = None
        if self.failed_uids and status != SUCCESS:
            identifier = Dataset()
            identifier.add(DataElement(_FAILED_SOP_INSTANCE_UID_LIST, "UI", self.failed_uids))
        return self._response(cls, request, status, remaining), identifier


def storage_context(
    contexts: Mapping[int, dimse.NegotiatedContext], instance: Instance, *, acceptor: bool
) -> tuple[int, str] | None:
    """An accepted context to C-STORE ``instance`` on, and its transfer syntax, or None.

    ``acceptor``: we are the association acceptor sending C-STOREs (C-GET), so the context must
    give us the SCU role (the requestor took the SCP role, PS3.7 D.3.3.4). The file's own
    transfer syntax is preferred; another little endian uncompressed one will be transcoded to.
    """
    usable = [
        c
        for c in contexts.values()
        if c.abstract_syntax == instance.sop_class_uid
        and (c.acceptor_is_scu if acceptor else c.requestor_is_scu)
    ]
    for context in usable:
        if context.transfer_syntax == instance.transfer_syntax:
            return context.context_id, context.transfer_syntax
    if instance.transfer_syntax in TRANSCODABLE:
        for context in usable:
            if context.transfer_syntax in TRANSCODABLE:
                return context.context_id, context.transfer_syntax
    return None


def instance_data(instance: Instance, transfer_syntax: str) -> bytes:
    """The data set of ``instance`` in ``transfer_syntax`` (transcoded when it differs)."""
    return transcode(instance.read(), instance.transfer_syntax, transfer_syntax)


def move_batches(
    instances: Sequence[Instance],
) -> list[tuple[tuple[dul.PresentationContext, ...], list[Instance]]]:
    """The sub-associations of a C-MOVE: the contexts of each (128 at most) and its instances.

    For each SOP class and transfer syntax of the files, a context offering that syntax alone,
    so that an SCP accepting it receives the files bit for bit as stored; then, for a file that
    can be transcoded, a second context offering the other syntaxes, the fallback for an SCP
    that refuses the first (issue 16 item 4). :func:`storage_context` prefers the first. The two
    contexts of a file never fall in different batches, nor does a file.
    """
    groups: dict[tuple[str, str], list[Instance]] = {}
    for instance in instances:
        groups.setdefault((instance.sop_class_uid, instance.transfer_syntax), []).append(instance)
    batches: list[tuple[list[tuple[str, tuple[str, ...]]], list[Instance]]] = []
    for (sop_class, syntax), members in groups.items():
        proposals = [(sop_class, (syntax,))]
        if syntax in TRANSCODABLE:
            proposals.append((sop_class, tuple(s for s in TRANSCODABLE[:2] if s != syntax)))
        if not batches or len(batches[-1][0]) + len(proposals) > storage.MAX_CONTEXTS:
            batches.append(([], []))
        batches[-1][0].extend(proposals)
        batches[-1][1].extend(members)
    return [
        (
            tuple(
                dul.PresentationContext(
                    context_id=2 * n + 1, abstract_syntax=sop_class, transfer_syntaxes=syntaxes
                )
                for n, (sop_class, syntaxes) in enumerate(proposals)
            ),
            members,
        )
        for proposals, members in batches
    ]


def qrscp_policy(
    *, ae_title: str | None, maximum_length: int, archive: Archive
) -> dimse.AcceptorPolicy:
    """What qrscp accepts: the Q/R SOP classes, Verification, and the storage SOP classes.

    The storage SOP classes are there for C-GET: the requestor may take the SCP role on them
    (PS3.7 D.3.3.4), so that we send it C-STORE sub-operations on the same association.
    """
    storage_classes = set(storage.STORAGE_SOP_CLASSES) | archive.sop_classes
    syntaxes: tuple[str, ...] = (
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    )
    contexts: dict[str, Sequence[str]] = dict.fromkeys(QR_SOP_CLASSES, syntaxes)
    contexts[dimse.VERIFICATION_SOP_CLASS] = QUERY_TRANSFER_SYNTAXES
    contexts.update(dict.fromkeys(sorted(storage_classes), storage.TRANSFER_SYNTAXES))
    return dimse.AcceptorPolicy(
        contexts=contexts,
        ae_title=ae_title,
        maximum_length=maximum_length,
        scp_roles=frozenset(storage_classes),  # type: ignore[arg-type]
    )
