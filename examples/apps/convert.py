"""Re-encode a file's data set in another uncompressed or deflated transfer syntax (pydicom).

storescu needs it only when the peer refused a file's own transfer syntax and accepted a
fallback (:data:`examples.apps.storage.PROPOSALS`), so it imports this module, and pydicom,
only then. The data set is read whole, re-encoded and returned: memory bounded by the data set,
never by the other files. Compressed pixel data is never re-encoded (:data:`storage.CONVERTIBLE`).
"""

from __future__ import annotations

import zlib
from array import array

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset

from . import storage

__all__ = ["reencode"]

#: The VRs whose values are binary words of the given size: their bytes swap with the byte
#: order (PS3.5 §7.3); pydicom writes them as they are.
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_ARRAY_CODES = {2: "H", 4: "I" if array("I").itemsize == 4 else "L", 8: "Q"}


def _swap_words(dataset: pydicom.Dataset) -> None:
    """Swap the byte order of the binary word values of ``dataset``, its items included."""
    for element in dataset.iterall():
        size = _WORD_SIZES.get(str(element.VR))
        if size and isinstance(element.value, bytes) and len(element.value) % size == 0:
            words = array(_ARRAY_CODES[size], element.value)
            words.byteswap()
            element.value = words.tobytes()


def reencode(dicom: storage.DicomFile, transfer_syntax: str) -> bytes:
    """The data set of ``dicom`` encoded in ``transfer_syntax`` (both in ``CONVERTIBLE``)."""
    if not {dicom.transfer_syntax, transfer_syntax} <= storage.CONVERTIBLE:
        raise ValueError(f"cannot convert {dicom.transfer_syntax} to {transfer_syntax}")
    dataset = pydicom.dcmread(dicom.path)  # inflates a deflated data set
    implicit = transfer_syntax == storage.IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax != storage.EXPLICIT_VR_BIG_ENDIAN
    was_little = dicom.transfer_syntax != storage.EXPLICIT_VR_BIG_ENDIAN
    if little != was_little:
        correct_ambiguous_vr(dataset, was_little)  # "OB or OW" resolved before swapping
        _swap_words(dataset)
    out = DicomBytesIO()
    out.is_implicit_VR, out.is_little_endian = implicit, little
    write_dataset(out, dataset)
    data = out.getvalue()
    if transfer_syntax == storage.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:  # PS3.5 §A.5, raw deflate
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
        data += b"\0" * (len(data) % 2)
    return data
