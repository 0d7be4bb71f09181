"""What the print SCU and the virtual printer share: UIDs, status codes, the data set codec.

The Basic Grayscale Print Management Meta SOP Class (PS3.4 H.3.1) is negotiated as one
presentation context; each message on it names its own SOP class (film session, film box, image
box, printer). The Presentation LUT SOP Class is negotiated on a context of its own.
"""

from __future__ import annotations

import io

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dul import dimse

__all__ = [
    "BASIC_FILM_BOX",
    "BASIC_FILM_SESSION",
    "BASIC_GRAYSCALE_IMAGE_BOX",
    "BASIC_GRAYSCALE_PRINT_META",
    "META_MEMBERS",
    "PRESENTATION_LUT",
    "PRINTER",
    "PRINTER_INSTANCE",
    "SOP_CLASS_NAMES",
    "Status",
    "decode_dataset",
    "encode_dataset",
    "sop_class_of",
    "status_text",
]

#: Basic Grayscale Print Management Meta SOP Class (PS3.4 H.3.1).
BASIC_GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
BASIC_FILM_SESSION = "1.2.840.10008.5.1.1.1"
BASIC_FILM_BOX = "1.2.840.10008.5.1.1.2"
BASIC_GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
PRINTER = "1.2.840.10008.5.1.1.16"
#: The Printer SOP Instance is well known (PS3.4 H.4.11; PS3.6 Annex A).
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"

#: The SOP classes a context for the grayscale meta SOP class carries.
META_MEMBERS = frozenset({BASIC_FILM_SESSION, BASIC_FILM_BOX, BASIC_GRAYSCALE_IMAGE_BOX, PRINTER})

SOP_CLASS_NAMES = {
    BASIC_GRAYSCALE_PRINT_META: "Basic Grayscale Print Management Meta",
    BASIC_FILM_SESSION: "Basic Film Session",
    BASIC_FILM_BOX: "Basic Film Box",
    BASIC_GRAYSCALE_IMAGE_BOX: "Basic Grayscale Image Box",
    PRINTER: "Printer",
    PRESENTATION_LUT: "Presentation LUT",
}


class Status:
    """DIMSE-N status codes (PS3.7 Annex C) and the print-specific ones (PS3.4 H.4)."""

    SUCCESS = 0x0000
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_INSTANCE = 0x0112
    NO_SUCH_SOP_CLASS = 0x0118
    MISSING_ATTRIBUTE = 0x0120
    NO_SUCH_ACTION = 0x0123
    UNRECOGNIZED_OPERATION = 0x0211
    RESOURCE_LIMITATION = 0x0213
    FILM_SESSION_EMPTY_PAGE = 0xB602  # warning: N-ACTION on a session without film boxes' images
    FILM_BOX_EMPTY_PAGE = 0xB603  # warning: N-ACTION on a film box without any image
    FILM_SESSION_NO_FILM_BOX = 0xC600  # failure: N-ACTION on a session without film boxes
    IMAGE_TOO_LARGE = 0xC603  # failure: the image does not fit its image box


_STATUS_TEXT = {
    0x0000: "Success",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0107: "Attribute list error",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP instance",
    0x0112: "No such SOP instance",
    0x0116: "Attribute value out of range",
    0x0118: "No such SOP class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "SOP class not supported",
    0x0123: "No such action",
    0x0211: "Unrecognized operation",
    0x0213: "Resource limitation",
    0xB600: "Film session: memory allocation not supported",
    0xB601: "Film session printing (collation) is not supported",
    0xB602: "Film session contains no image boxes with images (empty page)",
    0xB603: "Film box contains no image boxes with images (empty page)",
    0xB604: "Image demagnified to fit its image box",
    0xB605: "Min or max density outside the printer's range",
    0xB609: "Image cropped to fit its image box",
    0xB60A: "Image decimated to fit its image box",
    0xC600: "Film session contains no film boxes",
    0xC601: "Unable to create a print job: print queue full (film session)",
    0xC602: "Unable to create a print job: print queue full (film box)",
    0xC603: "Image larger than its image box",
    0xC605: "Insufficient memory in the printer to store the image",
    0xC613: "Combined print image larger than its image box",
    0xC616: "An existing film box has not been printed",
}


def status_text(status: int) -> str:
    """``0xC603 (Image larger than its image box)``: a status for people."""
    text = _STATUS_TEXT.get(status, dimse.status_category(status).value)
    return f"{status:#06x} ({text})"


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``ds`` in implicit or explicit VR little endian, as the context agreed."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = transfer_syntax == dimse.IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(fp, ds)
    return fp.getvalue()


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    """Decode a data set received on a context with ``transfer_syntax``."""
    implicit = transfer_syntax == dimse.IMPLICIT_VR_LITTLE_ENDIAN
    return read_dataset(io.BytesIO(data), implicit, True)


def sop_class_of(message: dimse.Request) -> str:
    """The SOP class a request is about (affected or requested), or ""."""
    for name in ("affected_sop_class_uid", "requested_sop_class_uid"):
        value = getattr(message, name, None)
        if value:
            return str(value)
    return ""
