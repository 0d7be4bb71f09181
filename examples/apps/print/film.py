"""Films on paper, without the paper: layout, pixel preparation and rendering to an image.

The SCU side turns a DICOM image into the printable pixels of a Basic Grayscale Image Box
(PS3.3 C.13.5: MONOCHROME2, 8 bits, or 12 bits stored in 16); the printer side lays the image
boxes out as the film box asks (Image Display Format, Film Orientation, Film Size ID: PS3.3
C.13.3) and draws the film with Pillow, so that a person can look at what was printed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "FILM_SIZES_MM",
    "Cell",
    "Layout",
    "PrintedImage",
    "film_pixels",
    "parse_display_format",
    "pattern_image",
    "printable_pixels",
    "render_film",
]

#: Film Size ID (PS3.3 C.13.3, defined terms) → (width, height) in millimetres, portrait.
FILM_SIZES_MM: dict[str, tuple[float, float]] = {
    "8INX10IN": (203.2, 254.0),
    "8_5INX11IN": (215.9, 279.4),
    "10INX12IN": (254.0, 304.8),
    "10INX14IN": (254.0, 355.6),
    "11INX14IN": (279.4, 355.6),
    "11INX17IN": (279.4, 431.8),
    "14INX14IN": (355.6, 355.6),
    "14INX17IN": (355.6, 431.8),
    "24CMX24CM": (240.0, 240.0),
    "24CMX30CM": (240.0, 300.0),
    "A4": (210.0, 297.0),
    "A3": (297.0, 420.0),
}
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
#: Magnification Type (PS3.3 C.13.5) → Pillow's resampling; NONE places the image 1:1.
MAGNIFICATIONS: dict[str, Image.Resampling | None] = {
    "REPLICATE": Image.Resampling.NEAREST,
    "BILINEAR": Image.Resampling.BILINEAR,
    "CUBIC": Image.Resampling.BICUBIC,
    "NONE": None,
}


#: The gap around each image box, as a fraction of the film's shorter side.
GUTTER = 0.01


class LayoutError(ValueError):
    """An Image Display Format this printer cannot lay out."""


@dataclass(frozen=True)
class Cell:
    """One image box's place on the film, as fractions (0-1) of the film's width and height."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Layout:
    """An Image Display Format: its cells in image box position order (position 1 first)."""

    display_format: str
    cells: tuple[Cell, ...]


def _counts(text: str, what: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise LayoutError(f"{what} {text!r}: expected comma-separated numbers") from None
    if not counts or any(n < 1 or n > 32 for n in counts):
        raise LayoutError(f"{what} {text!r}: each count must be 1-32")
    return counts


def parse_display_format(text: str) -> Layout:
    """Lay out ``STANDARD\\C,R``, ``ROW\\a,b,...`` or ``COL\\a,b,...`` (PS3.3 C.13.5.1).

    STANDARD: C columns and R rows of equal cells, numbered left to right, then top to bottom.
    ROW: rows of equal height, row 1 at the top, holding a, b... images. COL: columns of equal
    width, column 1 at the left, numbered top to bottom within a column.
    """
    kind, _, values = text.strip().partition("\\")
    kind = kind.upper()
    if kind == "STANDARD":
        counts = _counts(values, "STANDARD")
        if len(counts) != 2:
            raise LayoutError(f"STANDARD\\{values}: expected columns,rows")
        columns, rows = counts
        cells = tuple(
            Cell(c / columns, r / rows, 1 / columns, 1 / rows)
            for r in range(rows)
            for c in range(columns)
        )
    elif kind == "ROW":
        counts = _counts(values, "ROW")
        rows = len(counts)
        cells = tuple(
            Cell(c / n, r / rows, 1 / n, 1 / rows) for r, n in enumerate(counts) for c in range(n)
        )
    elif kind == "COL":
        counts = _counts(values, "COL")
        columns = len(counts)
        cells = tuple(
            Cell(c / columns, r / n, 1 / columns, 1 / n)
            for c, n in enumerate(counts)
            for r in range(n)
        )
    else:
        raise LayoutError(f"image display format {text!r} is not supported (STANDARD, ROW, COL)")
    return Layout(display_format=text, cells=cells)


def film_pixels(film_size_id: str, orientation: str, long_side: int) -> tuple[int, int]:
    """The film's (width, height) in pixels, its longer side ``long_side`` pixels."""
    if film_size_id not in FILM_SIZES_MM:
        raise LayoutError(f"film size {film_size_id!r} is not supported")
    if orientation not in ORIENTATIONS:
        raise LayoutError(f"film orientation {orientation!r} is not PORTRAIT or LANDSCAPE")
    width_mm, height_mm = FILM_SIZES_MM[film_size_id]
    if orientation == "LANDSCAPE":
        width_mm, height_mm = height_mm, width_mm
    scale = long_side / max(width_mm, height_mm)
    return round(width_mm * scale), round(height_mm * scale)


# -- densities -----------------------------------------------------------------------------


def density_gray(value: str, default: int = 0) -> int:
    """A Border or Empty Image Density (BLACK, WHITE, or hundredths of optical density) as gray.

    Film is seen in transmission: density 0 lets all light through (white), 3.00 OD is black.
    """
    value = value.strip().upper()
    if value == "BLACK":
        return 0
    if value == "WHITE":
        return 255
    try:
        od = int(value) / 100
    except ValueError:
        return default
    return round(255 * (1 - min(max(od, 0.0), 3.0) / 3.0))


# -- the SCU side: DICOM image → printable pixels ------------------------------------------


def printable_pixels(ds: Dataset, bits: int = 8) -> np.ndarray:
    """The pixels of a DICOM image as a printer takes them: MONOCHROME2, ``bits`` (8 or 12).

    Applies the Modality LUT (rescale slope and intercept), then the first VOI window if the file
    has one (PS3.3 C.11.2.1.2, linear), else the full range of values; inverts MONOCHROME1;
    takes the first frame of a multi-frame image and the luminance of a color one.
    """
    if bits not in (8, 12):
        raise ValueError("a grayscale image box holds 8 or 12 bits (PS3.3 C.13.5)")
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 3:
        pixels = pixels @ np.array([0.299, 0.587, 0.114])
    pixels = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    low, high = float(pixels.min()), float(pixels.max())
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first(ds.WindowCenter)
        width = max(_first(ds.WindowWidth), 1.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    top = (1 << bits) - 1
    span = high - low if high > low else 1.0
    scaled = np.clip((pixels - low) / span, 0.0, 1.0) * top
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        scaled = top - scaled
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def _first(value: object) -> float:
    """The first value of a multi-valued element (a VOI window may list several)."""
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def pattern_image(index: int, size: int = 256, bits: int = 8) -> np.ndarray:
    """A test image: a flat field whose level depends on ``index``, a step wedge, a marker.

    The flat field (the top three quarters, but for a centred square) is at level
    ``(index % 4 * 2 + 1) / 8`` of full scale, so each cell of a 2x2 film is told apart; the
    bottom quarter is an 8-step wedge from black to white; the centred square is white with a
    black centre, to show orientation and scaling at a glance.
    """
    top = (1 << bits) - 1
    level = (index % 4 * 2 + 1) / 8
    image = np.full((size, size), level, dtype=np.float64)
    wedge_top = size * 3 // 4
    steps = np.minimum(np.arange(size) * 8 // size, 7) / 7
    image[wedge_top:, :] = steps[np.newaxis, :]
    q = size // 8
    middle = size * 3 // 8
    image[middle - q : middle + q, size // 2 - q : size // 2 + q] = 1.0
    image[middle - q // 2 : middle + q // 2, size // 2 - q // 2 : size // 2 + q // 2] = 0.0
    return np.rint(image * top).astype(np.uint8 if bits == 8 else np.uint16)


# -- the printer side: image boxes → a film ---------------------------------------------------


@dataclass(frozen=True)
class PrintedImage:
    """One image box's content as the printer renders it."""

    pixels: np.ndarray  # 2-D, uint8 (8 bits) or uint16 (12 bits stored)
    bits_stored: int = 8
    monochrome1: bool = False
    reverse: bool = False  # Polarity REVERSE (PS3.3 C.13.5)
    magnification: str | None = None

    def gray(self) -> np.ndarray:
        """The image as 8-bit gray, white meaning no density: what lands on the film."""
        values = self.pixels.astype(np.float64) / ((1 << self.bits_stored) - 1)
        if self.monochrome1 != self.reverse:
            values = 1.0 - values
        return np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def render_film(
    layout: Layout,
    images: Mapping[int, PrintedImage],
    *,
    film_size_id: str = "8INX10IN",
    orientation: str = "PORTRAIT",
    magnification: str = "REPLICATE",
    border_density: str = "BLACK",
    empty_image_density: str = "BLACK",
    long_side: int = 1200,
) -> Image.Image:
    """Draw a film: each image fitted into its cell (aspect kept, centred), 8-bit gray.

    Cells are inset by a gutter of :data:`GUTTER` of the film's shorter side, so that images
    side by side stay apart, as on a real film.

    ``images`` maps image box positions (1-based) to their content; a cell without an image is
    drawn at the empty image density, the rest of the film at the border density.
    """
    width, height = film_pixels(film_size_id, orientation, long_side)
    film = Image.new("L", (width, height), density_gray(border_density, 0))
    empty = density_gray(empty_image_density, 0)
    gutter = max(1, round(min(width, height) * GUTTER))
    for position, cell in enumerate(layout.cells, start=1):
        left = round(cell.left * width) + gutter
        top = round(cell.top * height) + gutter
        right = round((cell.left + cell.width) * width) - gutter
        bottom = round((cell.top + cell.height) * height) - gutter
        box_w, box_h = right - left, bottom - top
        image = images.get(position)
        if image is None:
            film.paste(empty, (left, top, right, bottom))
            continue
        picture = Image.fromarray(image.gray(), mode="L")
        resample = MAGNIFICATIONS.get(image.magnification or magnification)
        if resample is not None or picture.width > box_w or picture.height > box_h:
            scale = min(box_w / picture.width, box_h / picture.height)
            size = (
                max(1, math.floor(picture.width * scale)),
                max(1, math.floor(picture.height * scale)),
            )
            picture = picture.resize(size, resample or Image.Resampling.BILINEAR)
        x = left + (box_w - picture.width) // 2
        y = top + (box_h - picture.height) // 2
        film.paste(picture, (x, y))
    return film
