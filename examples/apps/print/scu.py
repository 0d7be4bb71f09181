"""A print SCU: Basic Grayscale Print Management (PS3.4 Annex H), as DCMTK's print client does it.

One association on the Basic Grayscale Print Management Meta SOP Class (and, offered beside it,
the Presentation LUT SOP Class). Each message names its own SOP class; the context is the meta
SOP class's::

    N-GET     Printer (well-known instance)      status of the printer
    N-CREATE  Presentation LUT                   if the printer accepted its context
    N-CREATE  Basic Film Session                 copies, medium, destination...
    per film:
      N-CREATE  Basic Film Box                   display format, orientation, film size;
                                                 the answer lists the image boxes
      N-SET     Basic Grayscale Image Box        one per image (pixels in a sequence)
      N-ACTION  Basic Film Box, type 1           print
      N-DELETE  Basic Film Box
    N-DELETE  Basic Film Session, Presentation LUT
    A-RELEASE

N-EVENT-REPORTs the printer sends meanwhile (printer status) are shown and answered.

Written once as a service (:class:`PrintSCU`'s methods are steps a driver runs); the command
line is ``python -m examples.printscu``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import dul
from dul import dimse
from examples.runtime import Association, Steps

from .common import (
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    PRESENTATION_LUT,
    PRINTER,
    PRINTER_INSTANCE,
    SOP_CLASS_NAMES,
    decode_dataset,
    encode_dataset,
    sop_class_of,
    status_text,
)
from .film import parse_display_format, printable_pixels

__all__ = [
    "FilmOptions",
    "PrintError",
    "PrintReport",
    "PrintSCU",
    "association_request",
    "load_images",
    "print_job",
]

_TRANSFER_SYNTAXES = (dimse.EXPLICIT_VR_LITTLE_ENDIAN, dimse.IMPLICIT_VR_LITTLE_ENDIAN)
#: Printer event types (PS3.4 H.4.11.1, Table H.4-13).
PRINTER_EVENTS = {1: "NORMAL", 2: "WARNING", 3: "FAILURE"}


class PrintError(Exception):
    """The printer answered a request with a failure status (or not at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FilmOptions:
    """What the film session and film boxes ask for; ``None`` leaves it to the printer."""

    display_format: str = "STANDARD\\1,1"
    orientation: str = "PORTRAIT"
    film_size: str = "8INX10IN"
    magnification: str | None = None
    border_density: str | None = None
    empty_image_density: str | None = None
    copies: int = 1
    medium_type: str | None = None
    film_destination: str | None = None
    label: str | None = None
    priority: str | None = None
    #: 8, or 12 when the printer supports 12-bit image boxes (PS3.3 C.13.5).
    bits: int = 8
    #: N-CREATE an IDENTITY Presentation LUT when the printer accepts that SOP class.
    presentation_lut: bool = True
    #: N-ACTION print on the film session once (collation) rather than on each film box.
    print_session: bool = False


@dataclass
class PrintReport:
    """What happened: the printer's status attributes, the films printed, warnings, events."""

    printer: Dataset = field(default_factory=Dataset)
    films: int = 0
    presentation_lut: str | None = None
    warnings: list[str] = field(default_factory=list)
    events: list[tuple[int, Dataset | None]] = field(default_factory=list)


def association_request(
    calling_ae_title: str,
    called_ae_title: str,
    *,
    presentation_lut: bool = True,
    user_identity: dul.UserIdentity | None = None,
) -> dul.AssociateRequest:
    """An A-ASSOCIATE-RQ for the grayscale meta SOP class (context 1), Presentation LUT (3)."""
    contexts = [
        dul.PresentationContext(
            context_id=1,
            abstract_syntax=BASIC_GRAYSCALE_PRINT_META,
            transfer_syntaxes=_TRANSFER_SYNTAXES,
        )
    ]
    if presentation_lut:
        contexts.append(
            dul.PresentationContext(
                context_id=3, abstract_syntax=PRESENTATION_LUT, transfer_syntaxes=_TRANSFER_SYNTAXES
            )
        )
    return dul.AssociateRequest(
        called_ae_title=called_ae_title,
        calling_ae_title=calling_ae_title,
        presentation_contexts=tuple(contexts),
        user_information=dul.UserInformation(user_identity=user_identity),
    )


def _referenced(sop_class_uid: str, sop_instance_uid: str) -> DicomSequence:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return DicomSequence([item])


class PrintSCU:
    """The print requests on one established association; ``say`` reports progress."""

    def __init__(self, assoc: Association, *, say: Callable[[str], None] = print) -> None:
        self.assoc = assoc
        self.say = say
        meta_context = assoc.context_for(BASIC_GRAYSCALE_PRINT_META)
        if meta_context is None:
            raise PrintError("the printer did not accept the Basic Grayscale Print Management")
        self.meta_context = meta_context
        self.lut_context = assoc.context_for(PRESENTATION_LUT)
        self.events: list[tuple[int, Dataset | None]] = []

    def _syntax(self, context_id: int) -> str:
        return self.assoc.session.contexts[context_id].transfer_syntax

    def request(
        self, message: dimse.Request, context_id: int, dataset: Dataset | None = None
    ) -> Steps[tuple[dimse.Response, Dataset | None]]:
        """Send ``message`` and wait for its response; a failure status raises PrintError."""
        # An empty data set goes as none (an N-CREATE with no attributes, as DCMTK sends it).
        data = encode_dataset(dataset, self._syntax(context_id)) if dataset else None
        yield from self.assoc.send(message, context_id=context_id, dataset=data)
        while True:
            event = yield from self.assoc.receive_message()
            received = event.message
            if isinstance(received, dimse.NEventReportRequest):
                yield from self._event_report(event, received)
                continue
            if not isinstance(received, dimse.Response):
                raise PrintError(f"unexpected {type(received).__name__} from the printer")
            answer = (
                (yield from self.assoc.dataset(event).read_all()) if event.has_dataset else None
            )
            decoded = decode_dataset(answer, self._syntax(event.context_id)) if answer else None
            name = type(message).__name__.removesuffix("Request")
            what = f"{name} {SOP_CLASS_NAMES.get(sop_class_of(message), sop_class_of(message))}"
            if received.category is dimse.StatusCategory.FAILURE:
                comment = f": {received.error_comment}" if received.error_comment else ""
                raise PrintError(
                    f"{what} failed: {status_text(received.status)}{comment}", received.status
                )
            if received.category is dimse.StatusCategory.WARNING:
                self.say(f"warning: {what}: {status_text(received.status)}")
            return received, decoded

    def _event_report(
        self, event: dimse.MessageReceived, message: dimse.NEventReportRequest
    ) -> Steps[None]:
        """Show an N-EVENT-REPORT (printer status, PS3.4 H.4.11.1) and answer it."""
        data = (yield from self.assoc.dataset(event).read_all()) if event.has_dataset else None
        info = decode_dataset(data, self._syntax(event.context_id)) if data else None
        self.events.append((message.event_type_id, info))
        kind = SOP_CLASS_NAMES.get(message.affected_sop_class_uid, message.affected_sop_class_uid)
        label = PRINTER_EVENTS.get(message.event_type_id, str(message.event_type_id))
        detail = ""
        if info is not None and "PrinterStatusInfo" in info:
            detail = f" ({info.PrinterStatusInfo})"
        self.say(f"event: {kind} {label}{detail}")
        yield from self.assoc.send(
            dimse.NEventReportResponse(
                message_id_being_responded_to=message.message_id,
                affected_sop_class_uid=message.affected_sop_class_uid,
                affected_sop_instance_uid=message.affected_sop_instance_uid,
                event_type_id=message.event_type_id,
            ),
            context_id=event.context_id,
        )

    def _next_id(self) -> int:
        return self.assoc.session.next_message_id()

    # -- the operations ----------------------------------------------------------------------

    def printer_status(self) -> Steps[Dataset]:
        """N-GET the Printer SOP Instance (all attributes)."""
        _, answer = yield from self.request(
            dimse.NGetRequest(
                message_id=self._next_id(),
                requested_sop_class_uid=PRINTER,
                requested_sop_instance_uid=PRINTER_INSTANCE,
            ),
            self.meta_context,
        )
        return answer if answer is not None else Dataset()

    def create(
        self, sop_class_uid: str, attributes: Dataset | None
    ) -> Steps[tuple[str, Dataset | None]]:
        """N-CREATE an instance (the printer assigns its UID): (UID, the answered attributes)."""
        context = self.lut_context if sop_class_uid == PRESENTATION_LUT else self.meta_context
        if context is None:
            raise PrintError("the printer did not accept the Presentation LUT SOP class")
        response, answer = yield from self.request(
            dimse.NCreateRequest(message_id=self._next_id(), affected_sop_class_uid=sop_class_uid),
            context,
            attributes,
        )
        assert isinstance(response, dimse.NCreateResponse)
        if not response.affected_sop_instance_uid:
            raise PrintError(f"N-CREATE {SOP_CLASS_NAMES[sop_class_uid]}: no instance UID answered")
        return response.affected_sop_instance_uid, answer

    def set_image_box(self, uid: str, position: int, pixels: np.ndarray, bits: int) -> Steps[None]:
        """N-SET one Basic Grayscale Image Box with ``pixels`` (PS3.4 H.4.3.1.2)."""
        image = Dataset()
        image.SamplesPerPixel = 1
        image.PhotometricInterpretation = "MONOCHROME2"
        image.Rows, image.Columns = (int(n) for n in pixels.shape)
        image.BitsAllocated = 8 if bits == 8 else 16
        image.BitsStored = bits
        image.HighBit = bits - 1
        image.PixelRepresentation = 0
        data = pixels.astype("<u2" if bits > 8 else "u1").tobytes()
        image.PixelData = data + b"\0" * (len(data) % 2)
        image["PixelData"].VR = "OW" if bits > 8 else "OB"
        box = Dataset()
        box.ImageBoxPosition = position
        box.BasicGrayscaleImageSequence = DicomSequence([image])
        yield from self.request(
            dimse.NSetRequest(
                message_id=self._next_id(),
                requested_sop_class_uid=BASIC_GRAYSCALE_IMAGE_BOX,
                requested_sop_instance_uid=uid,
            ),
            self.meta_context,
            box,
        )

    def action_print(self, sop_class_uid: str, uid: str) -> Steps[None]:
        """N-ACTION print (action type 1) on a film box or film session."""
        yield from self.request(
            dimse.NActionRequest(
                message_id=self._next_id(),
                requested_sop_class_uid=sop_class_uid,
                requested_sop_instance_uid=uid,
                action_type_id=1,
            ),
            self.meta_context,
        )

    def delete(self, sop_class_uid: str, uid: str) -> Steps[None]:
        """N-DELETE an instance."""
        context = self.lut_context if sop_class_uid == PRESENTATION_LUT else self.meta_context
        assert context is not None
        yield from self.request(
            dimse.NDeleteRequest(
                message_id=self._next_id(),
                requested_sop_class_uid=sop_class_uid,
                requested_sop_instance_uid=uid,
            ),
            context,
        )

    # -- the whole job -----------------------------------------------------------------------

    def print_images(
        self, images: Sequence[np.ndarray], options: FilmOptions
    ) -> Steps[PrintReport]:
        """Print ``images`` (MONOCHROME2, ``options.bits``) on as many films as they need."""
        report = PrintReport()
        cells = len(parse_display_format(options.display_format).cells)
        report.printer = yield from self.printer_status()
        status = report.printer.get("PrinterStatus", "(not given)")
        info = report.printer.get("PrinterStatusInfo", "")
        name = f" {report.printer.PrinterName}" if report.printer.get("PrinterName") else ""
        self.say(f"printer{name}: status {status}" + (f" ({info})" if info else ""))
        if status == "FAILURE":
            raise PrintError(f"the printer reports FAILURE ({info})")
        if options.presentation_lut and self.lut_context is not None:
            lut = Dataset()
            lut.PresentationLUTShape = "IDENTITY"
            report.presentation_lut, _ = yield from self.create(PRESENTATION_LUT, lut)
            self.say(f"created Presentation LUT {report.presentation_lut}")
        session_uid, _ = yield from self.create(
            BASIC_FILM_SESSION, self._session_attributes(options)
        )
        self.say(f"created Basic Film Session {session_uid}")
        films = [images[i : i + cells] for i in range(0, len(images), cells)] or [[]]
        boxes: list[str] = []
        for number, film in enumerate(films, start=1):
            box_uid, answer = yield from self.create(
                BASIC_FILM_BOX, self._film_box_attributes(options, session_uid, report)
            )
            image_boxes = self._image_boxes(answer)
            self.say(
                f"film {number}: Basic Film Box {box_uid}, {len(image_boxes)} image boxes "
                f"({options.display_format})"
            )
            if len(image_boxes) < len(film):
                raise PrintError(
                    f"the film box has {len(image_boxes)} image boxes, {len(film)} images to print"
                )
            for position, (pixels, box) in enumerate(zip(film, image_boxes, strict=False), start=1):
                yield from self.set_image_box(box, position, pixels, options.bits)
            if options.print_session:
                boxes.append(box_uid)
                continue
            yield from self.action_print(BASIC_FILM_BOX, box_uid)
            self.say(f"film {number}: printed")
            report.films += 1
            yield from self.delete(BASIC_FILM_BOX, box_uid)
        if options.print_session:
            yield from self.action_print(BASIC_FILM_SESSION, session_uid)
            self.say(f"film session printed ({len(boxes)} films)")
            report.films += len(boxes)
            for box_uid in boxes:
                yield from self.delete(BASIC_FILM_BOX, box_uid)
        yield from self.delete(BASIC_FILM_SESSION, session_uid)
        if report.presentation_lut is not None:
            yield from self.delete(PRESENTATION_LUT, report.presentation_lut)
        report.events = list(self.events)
        return report

    @staticmethod
    def _session_attributes(options: FilmOptions) -> Dataset:
        return _attributes(
            NumberOfCopies=options.copies,
            PrintPriority=options.priority,
            MediumType=options.medium_type,
            FilmDestination=options.film_destination,
            FilmSessionLabel=options.label,
        )

    @staticmethod
    def _film_box_attributes(
        options: FilmOptions, session_uid: str, report: PrintReport
    ) -> Dataset:
        box = _attributes(
            ImageDisplayFormat=options.display_format,
            FilmOrientation=options.orientation,
            FilmSizeID=options.film_size,
            MagnificationType=options.magnification,
            BorderDensity=options.border_density,
            EmptyImageDensity=options.empty_image_density,
        )
        box.ReferencedFilmSessionSequence = _referenced(BASIC_FILM_SESSION, session_uid)
        if report.presentation_lut is not None:
            box.ReferencedPresentationLUTSequence = _referenced(
                PRESENTATION_LUT, report.presentation_lut
            )
        return box

    @staticmethod
    def _image_boxes(answer: Dataset | None) -> list[str]:
        """The Image Box UIDs of a film box N-CREATE response, in image position order."""
        if answer is None or "ReferencedImageBoxSequence" not in answer:
            raise PrintError("the film box N-CREATE response lists no Referenced Image Box")
        return [str(item.ReferencedSOPInstanceUID) for item in answer.ReferencedImageBoxSequence]


def _attributes(**values: object) -> Dataset:
    """A data set of the attributes given a value (None and "" are left out)."""
    ds = Dataset()
    for keyword, value in values.items():
        if value is not None and value != "":
            setattr(ds, keyword, value)
    return ds


def load_images(paths: Iterable[Path], bits: int) -> list[np.ndarray]:
    """Read DICOM images and make them printable (see :func:`printable_pixels`)."""
    return [printable_pixels(pydicom.dcmread(path), bits) for path in paths]


def print_job(
    images: Sequence[np.ndarray],
    options: FilmOptions = FilmOptions(),
    *,
    calling_ae_title: str = "PRINTSCU",
    called_ae_title: str = "ANY-SCP",
    user_identity: dul.UserIdentity | None = None,
    say: Callable[[str], None] = print,
) -> Callable[[Association], Steps[PrintReport]]:
    """The service of one print job: associate, print ``images`` as ``options`` say, release."""
    request = association_request(
        calling_ae_title,
        called_ae_title,
        presentation_lut=options.presentation_lut,
        user_identity=user_identity,
    )

    def service(assoc: Association) -> Steps[PrintReport]:
        yield from assoc.associate(request)
        try:
            report = yield from PrintSCU(assoc, say=say).print_images(images, options)
        except BaseException:
            yield from assoc.abort()
            raise
        yield from assoc.release()
        return report

    return service
