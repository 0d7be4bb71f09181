"""A virtual printer: a Print SCP (PS3.4 Annex H) that writes each printed film as a PNG.

It accepts the Basic Grayscale Print Management Meta SOP Class and the Presentation LUT SOP
Class, keeps the film session, film boxes and image boxes of each association, and answers:

* N-GET Printer: its status (always NORMAL: a virtual printer never runs out of film);
* N-CREATE Film Session, Film Box (the answer lists the image boxes it made, in position order),
  Presentation LUT;
* N-SET Image Box (the pixels), Film Session, Film Box;
* N-ACTION print (type 1) on a film box, or on the film session (every film box): each film is
  drawn as the film box asked (display format, orientation, film size's aspect ratio, border and
  empty image densities) and written to ``output_dir``; before answering, the printer reports its
  status in an N-EVENT-REPORT (PS3.4 H.4.11.1), as real printers do around a print;
* N-DELETE of what was created.

Written once as a service (:meth:`VirtualPrinter.service`, per association); the command line
is ``python -m examples.printscp``.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

import dul
from dul import dimse
from examples.runtime import Association, DatasetReader, DriverError, Handler, Steps, acceptor
from examples.runtime.acceptor import Negotiate
from examples.runtime.association import Service

from .common import (
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    META_MEMBERS,
    PRESENTATION_LUT,
    PRINTER,
    PRINTER_INSTANCE,
    SOP_CLASS_NAMES,
    Status,
    decode_dataset,
    encode_dataset,
    sop_class_of,
    status_text,
)
from .film import (
    FILM_SIZES_MM,
    MAGNIFICATIONS,
    ORIENTATIONS,
    Layout,
    LayoutError,
    PrintedImage,
    parse_display_format,
    render_film,
)

__all__ = ["PrintedFilm", "VirtualPrinter"]

#: What the handler frame runs: (status, response fields, response data set).
Operation = Callable[
    [Association, "PrintState", int, dimse.Request, "Dataset | None"],
    "tuple[int, dict[str, Any], Dataset | None]",
]


class _Refused(Exception):
    """A request the printer answers with a failure (or warning) status."""

    def __init__(self, status: int, comment: str, *offending: int) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment
        self.offending = tuple((tag >> 16, tag & 0xFFFF) for tag in offending) or None


@dataclass
class ImageBox:
    """A Basic Grayscale Image Box: its position on the film and, once N-SET, its image."""

    uid: str
    position: int
    image: PrintedImage | None = None


@dataclass
class FilmBox:
    """A Basic Film Box: its attributes, layout and image boxes."""

    uid: str
    attributes: Dataset
    layout: Layout
    image_boxes: list[ImageBox]


@dataclass(frozen=True)
class PrintedFilm:
    """A film the printer printed: the PNG, the film box's attributes, the images by position."""

    path: Path
    attributes: Dataset
    images: Mapping[int, PrintedImage]


@dataclass
class PrintState:
    """What one association created: at most one film session (PS3.4 H.4.1), its film boxes."""

    calling_ae_title: str
    session_uid: str | None = None
    session: Dataset = field(default_factory=Dataset)
    film_boxes: dict[str, FilmBox] = field(default_factory=dict)
    image_boxes: dict[str, tuple[FilmBox, ImageBox]] = field(default_factory=dict)
    luts: dict[str, Dataset] = field(default_factory=dict)


_SESSION_DEFAULTS = {
    "NumberOfCopies": 1,
    "PrintPriority": "MED",
    "MediumType": "PAPER",
    "FilmDestination": "MAGAZINE",
}
_FILM_BOX_DEFAULTS = {
    "FilmOrientation": "PORTRAIT",
    "FilmSizeID": "8INX10IN",
    "MagnificationType": "REPLICATE",
    "SmoothingType": "NONE",
    "BorderDensity": "BLACK",
    "EmptyImageDensity": "BLACK",
    "MinDensity": 20,
    "MaxDensity": 320,
    "Trim": "NO",
}


class VirtualPrinter:
    """The printer: its policy, its handlers for :class:`Server`, and the films it printed.

    ``films`` lists the films printed (PNG path, film box attributes, images), in order.
    ``event_reports`` sends a printer status N-EVENT-REPORT before each N-ACTION response.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        ae_title: str | None = None,
        printer_name: str = "DUL_VIRTUAL_PRINTER",
        supports_12bit: bool = True,
        event_reports: bool = True,
        long_side: int = 1200,
        say: Callable[[str], None] = print,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.ae_title = ae_title
        self.printer_name = printer_name
        self.supports_12bit = supports_12bit
        self.event_reports = event_reports
        self.long_side = long_side
        self.say = say
        self.films: list[PrintedFilm] = []
        self._states: dict[int, PrintState] = {}
        self._lock = threading.Lock()
        self._films = itertools.count(1)

    # -- wiring ------------------------------------------------------------------------------

    def policy(self) -> dimse.AcceptorPolicy:
        """Accept the grayscale meta SOP class and the Presentation LUT SOP class."""
        return dimse.AcceptorPolicy(
            contexts={BASIC_GRAYSCALE_PRINT_META: (), PRESENTATION_LUT: ()}, ae_title=self.ae_title
        )

    def handlers(self) -> Mapping[type[dimse.Message], Handler]:
        """The DIMSE-N requests a printer answers."""
        return {
            dimse.NGetRequest: self._wrap(self._n_get),
            dimse.NCreateRequest: self._wrap(self._n_create),
            dimse.NSetRequest: self._wrap(self._n_set),
            dimse.NActionRequest: self._wrap(self._n_action),
            dimse.NDeleteRequest: self._wrap(self._n_delete),
        }

    def service(self, negotiate: Negotiate | None = None) -> Service[None]:
        """The per-association service of this printer (``negotiate``: instead of its policy)."""
        return acceptor(negotiate or self.policy().evaluate, self.handlers())

    def _state(self, assoc: Association) -> PrintState:
        with self._lock:
            state = self._states.get(id(assoc.session))
            if state is None:
                request = assoc.connection.request
                calling = request.calling_ae_title if request is not None else ""
                state = self._states[id(assoc.session)] = PrintState(calling_ae_title=calling)
            return state

    def forget(self, assoc: Any) -> None:
        """The association ended (a server's ``on_close``): what it created and did not delete
        goes too (PS3.4 H.4.1)."""
        with self._lock:
            self._states.pop(id(assoc.session), None)

    # -- the handler frame -------------------------------------------------------------------

    def _wrap(self, operation: Operation) -> Handler:
        """A handler: decode the data set, run ``operation``, answer with its status."""

        def handle(
            assoc: Association, event: dimse.MessageReceived, reader: DatasetReader
        ) -> Steps[None]:
            message = event.message
            assert isinstance(message, dimse.Request)
            syntax = assoc.contexts[event.context_id].transfer_syntax
            data = yield from reader.read_all()
            response_class = dimse.MESSAGE_CLASSES[message.COMMAND_FIELD | 0x8000]
            answer: Dataset | None = None
            try:
                dataset = decode_dataset(data, syntax) if data else None
                self._check_context(assoc, event.context_id, message)
                status, fields, answer = operation(
                    assoc, self._state(assoc), event.context_id, message, dataset
                )
                if self.event_reports and isinstance(message, dimse.NActionRequest):
                    yield from self._report_status(assoc, event.context_id)
                response = response_class(  # type: ignore[call-arg]
                    message_id_being_responded_to=message.message_id, status=status, **fields
                )
            except _Refused as refused:
                response = response_class(  # type: ignore[call-arg]
                    message_id_being_responded_to=message.message_id,
                    status=refused.status,
                    error_comment=refused.comment[:64],
                    offending_element=refused.offending,
                )
                self.say(
                    f"refused {type(message).__name__}: {status_text(refused.status)}: "
                    f"{refused.comment}"
                )
            except (DriverError, TimeoutError, dul.ProtocolError):
                raise  # the association itself failed (during an event report): the server ends it
            except Exception as exc:  # a data set pydicom cannot read, a bug: answer, go on
                response = response_class(  # type: ignore[call-arg]
                    message_id_being_responded_to=message.message_id,
                    status=Status.PROCESSING_FAILURE,
                    error_comment=str(exc)[:64],
                )
                self.say(f"failed {type(message).__name__}: {exc!r}")
            encoded = encode_dataset(answer, syntax) if answer else None
            yield from assoc.send(response, context_id=event.context_id, dataset=encoded)

        return handle

    @staticmethod
    def _check_context(assoc: Association, context_id: int, message: dimse.Request) -> None:
        """Each SOP class travels on its own context: the meta SOP class's, or the LUT's."""
        sop_class = sop_class_of(message)
        abstract = assoc.contexts[context_id].abstract_syntax
        if abstract == BASIC_GRAYSCALE_PRINT_META and sop_class in META_MEMBERS:
            return
        if abstract == PRESENTATION_LUT == sop_class:
            return
        raise _Refused(
            Status.NO_SUCH_SOP_CLASS, f"SOP class {sop_class} is not served on this context"
        )

    # -- N-GET -------------------------------------------------------------------------------

    def printer_attributes(self) -> Dataset:
        """The Printer SOP Instance's attributes (PS3.3 C.13.9)."""
        ds = Dataset()
        ds.Manufacturer = "dul"
        ds.ManufacturerModelName = "virtual printer"
        ds.SoftwareVersions = dul.__version__
        ds.PrinterStatus = "NORMAL"
        ds.PrinterStatusInfo = "NORMAL"
        ds.PrinterName = self.printer_name
        return ds

    def _n_get(
        self,
        assoc: Association,
        state: PrintState,
        context_id: int,
        message: dimse.Request,
        dataset: Dataset | None,
    ) -> tuple[int, dict[str, Any], Dataset | None]:
        assert isinstance(message, dimse.NGetRequest)
        if message.requested_sop_class_uid != PRINTER:
            raise _Refused(Status.UNRECOGNIZED_OPERATION, "N-GET is served for the Printer only")
        if message.requested_sop_instance_uid != PRINTER_INSTANCE:
            raise _Refused(Status.NO_SUCH_INSTANCE, "the Printer instance is the well-known one")
        attributes = self.printer_attributes()
        if message.attribute_identifier_list:
            wanted = {Tag(group, element) for group, element in message.attribute_identifier_list}
            answer = Dataset()
            for element in attributes:
                if element.tag in wanted:
                    answer.add(element)
            attributes = answer
        return (
            Status.SUCCESS,
            {"affected_sop_class_uid": PRINTER, "affected_sop_instance_uid": PRINTER_INSTANCE},
            attributes,
        )

    # -- N-CREATE ----------------------------------------------------------------------------

    def _n_create(
        self,
        assoc: Association,
        state: PrintState,
        context_id: int,
        message: dimse.Request,
        dataset: Dataset | None,
    ) -> tuple[int, dict[str, Any], Dataset | None]:
        assert isinstance(message, dimse.NCreateRequest)
        sop_class = message.affected_sop_class_uid
        uid = message.affected_sop_instance_uid or generate_uid(prefix=None)
        dataset = dataset if dataset is not None else Dataset()
        if uid in state.film_boxes or uid in state.image_boxes or uid in state.luts:
            raise _Refused(0x0111, f"instance {uid} exists")
        if sop_class == BASIC_FILM_SESSION:
            answer = self._create_session(state, uid, dataset)
        elif sop_class == BASIC_FILM_BOX:
            answer = self._create_film_box(state, uid, dataset)
        elif sop_class == PRESENTATION_LUT:
            answer = self._create_lut(state, uid, dataset)
        else:
            raise _Refused(Status.UNRECOGNIZED_OPERATION, f"no N-CREATE for {sop_class}")
        self.say(f"created {SOP_CLASS_NAMES[sop_class]} {uid}")
        fields = {"affected_sop_class_uid": sop_class, "affected_sop_instance_uid": uid}
        return Status.SUCCESS, fields, answer

    def _create_session(self, state: PrintState, uid: str, dataset: Dataset) -> Dataset:
        if state.session_uid is not None:
            raise _Refused(Status.RESOURCE_LIMITATION, "one film session per association")
        session = Dataset()
        for keyword, value in _SESSION_DEFAULTS.items():
            setattr(session, keyword, value)
        session.update(dataset)
        state.session_uid, state.session = uid, session
        return session

    def _create_film_box(self, state: PrintState, uid: str, dataset: Dataset) -> Dataset:
        if "ImageDisplayFormat" not in dataset:
            raise _Refused(Status.MISSING_ATTRIBUTE, "Image Display Format missing", 0x20100010)
        references = dataset.get("ReferencedFilmSessionSequence")
        if not references:
            raise _Refused(
                Status.MISSING_ATTRIBUTE, "Referenced Film Session Sequence missing", 0x20100500
            )
        if state.session_uid is None or references[0].ReferencedSOPInstanceUID != state.session_uid:
            raise _Refused(
                Status.INVALID_ATTRIBUTE_VALUE,
                "no such film session on this association",
                0x20100500,
            )
        box = Dataset()
        for keyword, value in _FILM_BOX_DEFAULTS.items():
            setattr(box, keyword, value)
        box.update(dataset)
        layout = self._check_film_box(state, box)
        image_boxes = [
            ImageBox(uid=generate_uid(prefix=None), position=n)
            for n in range(1, len(layout.cells) + 1)
        ]
        film_box = FilmBox(uid=uid, attributes=box, layout=layout, image_boxes=image_boxes)
        state.film_boxes[uid] = film_box
        for image_box in image_boxes:
            state.image_boxes[image_box.uid] = (film_box, image_box)
        answer = Dataset()
        answer.update(box)
        items = []
        for image_box in image_boxes:
            item = Dataset()
            item.ReferencedSOPClassUID = BASIC_GRAYSCALE_IMAGE_BOX
            item.ReferencedSOPInstanceUID = image_box.uid
            items.append(item)
        answer.ReferencedImageBoxSequence = DicomSequence(items)
        return answer

    def _check_film_box(self, state: PrintState, box: Dataset) -> Layout:
        """Validate what this printer lays out; the layout of the film box."""
        try:
            layout = parse_display_format(str(box.ImageDisplayFormat))
        except LayoutError as exc:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, str(exc), 0x20100010) from None
        if box.FilmOrientation not in ORIENTATIONS:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Film Orientation", 0x20100040)
        if box.FilmSizeID not in FILM_SIZES_MM:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Film Size ID", 0x20100050)
        if box.MagnificationType not in MAGNIFICATIONS:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Magnification Type", 0x20100060)
        luts = box.get("ReferencedPresentationLUTSequence")
        if luts and luts[0].ReferencedSOPInstanceUID not in state.luts:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "no such Presentation LUT", 0x20500500)
        return layout

    @staticmethod
    def _create_lut(state: PrintState, uid: str, dataset: Dataset) -> Dataset:
        shape = dataset.get("PresentationLUTShape")
        if shape is None and "PresentationLUTSequence" not in dataset:
            raise _Refused(Status.MISSING_ATTRIBUTE, "Presentation LUT Shape", 0x20500020)
        if shape is not None and shape not in ("IDENTITY", "LIN OD", "INVERSE"):
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Presentation LUT Shape", 0x20500020)
        state.luts[uid] = dataset
        return dataset

    # -- N-SET -------------------------------------------------------------------------------

    def _n_set(
        self,
        assoc: Association,
        state: PrintState,
        context_id: int,
        message: dimse.Request,
        dataset: Dataset | None,
    ) -> tuple[int, dict[str, Any], Dataset | None]:
        assert isinstance(message, dimse.NSetRequest)
        sop_class, uid = message.requested_sop_class_uid, message.requested_sop_instance_uid
        dataset = dataset if dataset is not None else Dataset()
        if sop_class == BASIC_GRAYSCALE_IMAGE_BOX:
            found = state.image_boxes.get(uid)
            if found is None:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no image box {uid}")
            film_box, image_box = found
            image_box.image = self._image(image_box, dataset, film_box)
        elif sop_class == BASIC_FILM_SESSION:
            if uid != state.session_uid:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film session {uid}")
            state.session.update(dataset)
        elif sop_class == BASIC_FILM_BOX:
            target = state.film_boxes.get(uid)
            if target is None:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film box {uid}")
            changed = Dataset()
            changed.update(target.attributes)
            changed.update(dataset)
            self._check_film_box(state, changed)
            if changed.ImageDisplayFormat != target.attributes.ImageDisplayFormat:
                raise _Refused(
                    Status.INVALID_ATTRIBUTE_VALUE, "Image Display Format is fixed", 0x20100010
                )
            target.attributes = changed
        else:
            raise _Refused(Status.UNRECOGNIZED_OPERATION, f"no N-SET for {sop_class}")
        return (
            Status.SUCCESS,
            {"affected_sop_class_uid": sop_class, "affected_sop_instance_uid": uid},
            None,
        )

    def _image(self, image_box: ImageBox, dataset: Dataset, film_box: FilmBox) -> PrintedImage:
        """The image of a Basic Grayscale Image Box N-SET (PS3.3 C.13.5, PS3.4 H.4.3.1.2)."""
        position = dataset.get("ImageBoxPosition")
        if position is not None and int(position) != image_box.position:
            raise _Refused(
                Status.INVALID_ATTRIBUTE_VALUE,
                f"image box {image_box.uid} is at position {image_box.position}",
                0x20200010,
            )
        sequence = dataset.get("BasicGrayscaleImageSequence")
        if not sequence:
            raise _Refused(Status.MISSING_ATTRIBUTE, "Basic Grayscale Image Sequence", 0x20200110)
        item = sequence[0]
        for keyword, tag in (
            ("Rows", 0x00280010),
            ("Columns", 0x00280011),
            ("BitsAllocated", 0x00280100),
            ("BitsStored", 0x00280101),
            ("PixelData", 0x7FE00010),
        ):
            if keyword not in item:
                raise _Refused(Status.MISSING_ATTRIBUTE, keyword, tag)
        rows, columns = int(item.Rows), int(item.Columns)
        allocated, stored = int(item.BitsAllocated), int(item.BitsStored)
        photometric = str(item.get("PhotometricInterpretation", "MONOCHROME2"))
        if (allocated, stored) not in ((8, 8), (16, 12)) or (
            stored == 12 and not self.supports_12bit
        ):
            raise _Refused(
                Status.INVALID_ATTRIBUTE_VALUE, f"{stored} bits in {allocated}", 0x00280101
            )
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, photometric, 0x00280004)
        if int(item.get("SamplesPerPixel", 1)) != 1 or int(item.get("PixelRepresentation", 0)):
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "grayscale, unsigned", 0x00280002)
        dtype = np.dtype("u1") if allocated == 8 else np.dtype("<u2")
        raw = bytes(item.PixelData)
        count = rows * columns
        if rows < 1 or columns < 1 or len(raw) < count * dtype.itemsize:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Pixel Data too short", 0x7FE00010)
        pixels = np.frombuffer(raw, dtype=dtype, count=count).reshape(rows, columns)
        if allocated == 16:
            pixels = np.bitwise_and(pixels, (1 << stored) - 1)
        magnification = dataset.get("MagnificationType")
        if magnification is not None and magnification not in MAGNIFICATIONS:
            raise _Refused(Status.INVALID_ATTRIBUTE_VALUE, "Magnification Type", 0x20100060)
        return PrintedImage(
            pixels=pixels.copy(),
            bits_stored=stored,
            monochrome1=photometric == "MONOCHROME1",
            reverse=str(dataset.get("Polarity", "NORMAL")) == "REVERSE",
            magnification=magnification,
        )

    # -- N-ACTION ----------------------------------------------------------------------------

    def _n_action(
        self,
        assoc: Association,
        state: PrintState,
        context_id: int,
        message: dimse.Request,
        dataset: Dataset | None,
    ) -> tuple[int, dict[str, Any], Dataset | None]:
        assert isinstance(message, dimse.NActionRequest)
        sop_class, uid = message.requested_sop_class_uid, message.requested_sop_instance_uid
        if message.action_type_id != 1:
            raise _Refused(Status.NO_SUCH_ACTION, f"action type {message.action_type_id}")
        if sop_class == BASIC_FILM_BOX:
            film_box = state.film_boxes.get(uid)
            if film_box is None:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film box {uid}")
            boxes = [film_box]
        elif sop_class == BASIC_FILM_SESSION:
            if uid != state.session_uid:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film session {uid}")
            boxes = list(state.film_boxes.values())
            if not boxes:
                raise _Refused(Status.FILM_SESSION_NO_FILM_BOX, "the film session has no film box")
        else:
            raise _Refused(Status.UNRECOGNIZED_OPERATION, f"no N-ACTION for {sop_class}")
        printed = [path for box in boxes if (path := self._print(state, box)) is not None]
        status = Status.SUCCESS
        if not printed:
            status = (
                Status.FILM_BOX_EMPTY_PAGE
                if sop_class == BASIC_FILM_BOX
                else Status.FILM_SESSION_EMPTY_PAGE
            )
        fields = {
            "affected_sop_class_uid": sop_class,
            "affected_sop_instance_uid": uid,
            "action_type_id": 1,
        }
        return status, fields, None

    def _print(self, state: PrintState, box: FilmBox) -> Path | None:
        """Render one film box to a PNG; ``None`` for an empty page (nothing to print)."""
        images = {b.position: b.image for b in box.image_boxes if b.image is not None}
        if not images:
            self.say(f"film box {box.uid} is empty: nothing printed")
            return None
        attributes = box.attributes
        film = render_film(
            box.layout,
            images,
            film_size_id=str(attributes.FilmSizeID),
            orientation=str(attributes.FilmOrientation),
            magnification=str(attributes.MagnificationType),
            border_density=str(attributes.BorderDensity),
            empty_image_density=str(attributes.EmptyImageDensity),
            long_side=self.long_side,
        )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        calling = re.sub(r"[^A-Za-z0-9_.-]", "_", state.calling_ae_title) or "anonymous"
        number = next(self._films)
        path = self.output_dir / f"film-{time.strftime('%Y%m%d-%H%M%S')}-{calling}-{number:04d}.png"
        film.save(path)
        with self._lock:
            self.films.append(PrintedFilm(path=path, attributes=attributes, images=images))
        self.say(
            f"printed {attributes.ImageDisplayFormat} {attributes.FilmOrientation} "
            f"{attributes.FilmSizeID}, {len(images)} image(s): {path}"
        )
        return path

    def _report_status(self, assoc: Association, context_id: int) -> Steps[None]:
        """N-EVENT-REPORT the printer's status (event 1, NORMAL) and wait for the answer."""
        info = Dataset()
        info.PrinterStatusInfo = "NORMAL"
        info.PrinterName = self.printer_name
        syntax = assoc.contexts[context_id].transfer_syntax
        yield from assoc.send(
            dimse.NEventReportRequest(
                message_id=assoc.session.next_message_id(),
                affected_sop_class_uid=PRINTER,
                affected_sop_instance_uid=PRINTER_INSTANCE,
                event_type_id=1,
            ),
            context_id=context_id,
            dataset=encode_dataset(info, syntax),
        )
        response, _ = yield from assoc.receive_response()
        if response.category is not dimse.StatusCategory.SUCCESS:
            self.say(f"the SCU answered the event report with {status_text(response.status)}")

    # -- N-DELETE ----------------------------------------------------------------------------

    def _n_delete(
        self,
        assoc: Association,
        state: PrintState,
        context_id: int,
        message: dimse.Request,
        dataset: Dataset | None,
    ) -> tuple[int, dict[str, Any], Dataset | None]:
        assert isinstance(message, dimse.NDeleteRequest)
        sop_class, uid = message.requested_sop_class_uid, message.requested_sop_instance_uid
        if sop_class == BASIC_FILM_SESSION:
            if uid != state.session_uid:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film session {uid}")
            for box_uid in list(state.film_boxes):
                self._delete_film_box(state, box_uid)
            state.session_uid, state.session = None, Dataset()
        elif sop_class == BASIC_FILM_BOX:
            if uid not in state.film_boxes:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no film box {uid}")
            self._delete_film_box(state, uid)
        elif sop_class == PRESENTATION_LUT:
            if state.luts.pop(uid, None) is None:
                raise _Refused(Status.NO_SUCH_INSTANCE, f"no Presentation LUT {uid}")
        else:
            raise _Refused(Status.UNRECOGNIZED_OPERATION, f"no N-DELETE for {sop_class}")
        self.say(f"deleted {SOP_CLASS_NAMES[sop_class]} {uid}")
        return (
            Status.SUCCESS,
            {"affected_sop_class_uid": sop_class, "affected_sop_instance_uid": uid},
            None,
        )

    @staticmethod
    def _delete_film_box(state: PrintState, uid: str) -> None:
        film_box = state.film_boxes.pop(uid)
        for image_box in film_box.image_boxes:
            state.image_boxes.pop(image_box.uid, None)
