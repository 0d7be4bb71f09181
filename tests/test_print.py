"""Print management end to end: dul's printscu and virtual printer against DCMTK and each other.

* dul printscu → DCMTK dcmprscp: dcmprscp's database gains a Stored Print object and one
  Hardcopy Grayscale image per image box, holding exactly the pixels we sent;
* dul printscu → dul printscp (the virtual printer): the PNG has the film's aspect ratio and each
  cell the intensity of its image;
* DCMTK dcmpsprt (creates a print job in the spool) + dcmprscu (sends it) → dul printscp;
* the layout and pixel helpers, and the printer's refusals, on their own.

dcmprscp and dcmprscu read ``tests/data/dcmpstat.cfg`` with ports and folders filled in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from examples import printscp
from examples import runtime as runtime_errors
from examples.apps.print import common as _common
from examples.apps.print.film import (
    GUTTER,
    LayoutError,
    density_gray,
    film_pixels,
    parse_display_format,
    pattern_image,
    printable_pixels,
)
from examples.apps.print.scp import VirtualPrinter
from examples.apps.print.scu import (
    FilmOptions,
    PrintError,
    PrintSCU,
    association_request,
)
from examples.make_test_file import make_dataset
from examples.printscu import print_images
from examples.runtime import Association, Steps, Timeouts
from examples.sockets import driver as sockets_driver
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dul import dimse
from peers import HOST, Dcmtk, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TEMPLATE = ROOT / "tests" / "data" / "dcmpstat.cfg"
STORED_PRINT = "1.2.840.10008.5.1.1.27"
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"
#: Bound on every wait: a broken peer fails a test, never hangs it.
TIMEOUTS = Timeouts(connect=10.0, acse=10.0, dimse=30.0, artim=10.0)


# -- set-up ------------------------------------------------------------------------------------


def write_config(workdir: Path, *, dcmprscp: int = 0, dul: int = 0, proxy: int = 0) -> Path:
    """tests/data/dcmpstat.cfg with ``workdir`` and the ports filled in; its folders made."""
    for folder in ("log", "spool", "database", "lut"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    text = CONFIG_TEMPLATE.read_text()
    for name, value in (
        ("@WORKDIR@", workdir.as_posix()),
        ("@DCMPRSCP_PORT@", str(dcmprscp)),
        ("@DUL_PORT@", str(dul)),
        ("@PROXY_PORT@", str(proxy)),
    ):
        text = text.replace(name, value)
    path = workdir / "dcmpstat.cfg"
    path.write_text(text)
    return path


@contextmanager
def dcmprscp(dcmtk: Dcmtk, config: Path, port: int, log: Path) -> Iterator[None]:
    """Run DCMTK's print SCP (printer IHEFULL of ``config``) on ``port``; stop it by its PID."""
    cmd = [dcmtk.tool("dcmprscp"), "-c", str(config), "-p", "IHEFULL", "-v"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dcmtk.env)
        try:
            wait_listening(port)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[tuple[VirtualPrinter, int, list[str]]]:
    """dul's virtual printer (AE title DUL_PRINTER) on a free port: (printer, port, its log)."""
    log: list[str] = []
    printer = VirtualPrinter(tmp_path / "films", ae_title="DUL_PRINTER", say=log.append)
    with printscp.serving(printer, HOST, 0, timeouts=TIMEOUTS) as server:
        yield printer, server.port, log


def write_image(path: Path, value: int, *, rows: int = 40, columns: int = 50) -> None:
    """A flat 16-bit MONOCHROME2 image of ``value``, with a window showing 0-255 as is."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256  # maps stored value v to v/255 of full scale
    ds.PixelData = np.full((rows, columns), value, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def cell_mean(png: Image.Image, columns: int, rows: int, position: int) -> float:
    """The mean gray of the middle of image box ``position`` (STANDARD\\C,R, 1-based).

    Samples a square of a fifth of the cell's smaller side around the cell's centre: inside the
    image whatever its aspect ratio, as the printer centres each image in its cell.
    """
    width, height = png.size
    column, row = (position - 1) % columns, (position - 1) // columns
    cx, cy = (column + 0.5) * width / columns, (row + 0.5) * height / rows
    half = min(width / columns, height / rows) / 10
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return float(np.asarray(png.crop(box), dtype=np.float64).mean())


# -- the helpers on their own -----------------------------------------------------------------


def test_display_formats_number_positions_as_ps33_says() -> None:
    standard = parse_display_format("STANDARD\\3,2")
    assert len(standard.cells) == 6
    # left to right, then top to bottom
    assert [(c.left, c.top) for c in standard.cells[:4]] == [
        (0, 0),
        (1 / 3, 0),
        (2 / 3, 0),
        (0, 0.5),
    ]
    row = parse_display_format("ROW\\2,1")
    assert [(c.left, c.top, c.width) for c in row.cells] == [
        (0, 0, 0.5),
        (0.5, 0, 0.5),
        (0, 0.5, 1),
    ]
    col = parse_display_format("COL\\1,2")
    assert [(c.left, c.top, c.height) for c in col.cells] == [
        (0, 0, 1),
        (0.5, 0, 0.5),
        (0.5, 0.5, 0.5),
    ]
    for bad in ("SLIDE", "STANDARD\\2", "STANDARD\\0,1", "ROW\\a", "CUSTOM\\1"):
        with pytest.raises(LayoutError):
            parse_display_format(bad)


def test_film_size_and_orientation_give_the_aspect_ratio() -> None:
    assert film_pixels("8INX10IN", "PORTRAIT", 1000) == (800, 1000)
    assert film_pixels("8INX10IN", "LANDSCAPE", 1000) == (1000, 800)
    assert film_pixels("14INX17IN", "LANDSCAPE", 1200) == (1200, 988)
    assert film_pixels("A4", "PORTRAIT", 297) == (210, 297)
    with pytest.raises(LayoutError):
        film_pixels("35MM", "PORTRAIT", 1000)
    assert (density_gray("BLACK"), density_gray("WHITE"), density_gray("150")) == (0, 255, 128)


def test_printable_pixels_apply_rescale_window_and_monochrome1() -> None:
    ds = make_dataset()  # air -1024 HU, water 0-15 HU; window 40/400 (HU -160 to 240)
    eight = printable_pixels(ds, 8)
    assert eight.dtype == np.uint8 and eight.shape == (64, 64)
    assert eight[0, 0] == 0 and 100 <= eight[32, 32] <= 113
    del ds.WindowCenter, ds.WindowWidth  # no window: the full range of values
    assert printable_pixels(ds, 8).max() == 255
    ds.WindowCenter, ds.WindowWidth = 0, 100  # HU -50..50: water (0-15 HU) is mid-gray
    windowed = printable_pixels(ds, 12)
    assert windowed.dtype == np.uint16
    assert windowed[0, 0] == 0 and 2000 < windowed[32, 32] < 2800
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert printable_pixels(ds, 12)[0, 0] == 4095
    pattern = pattern_image(2, size=64)
    assert pattern[4, 4] == round(5 / 8 * 255) and pattern[-1, 0] == 0 and pattern[-1, -1] == 255


# -- dul printscu → DCMTK dcmprscp ----------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("bits", [8, 12])
def test_printscu_prints_on_dcmprscp(dcmtk: Dcmtk, tmp_path: Path, bits: int) -> None:
    port = free_port()
    config = write_config(tmp_path, dcmprscp=port)
    images = [printable_pixels(make_dataset(), bits), pattern_image(1, size=96, bits=bits)]
    options = FilmOptions(
        display_format="STANDARD\\2,1",
        orientation="LANDSCAPE",
        film_size="14INX17IN",
        bits=bits,
        label="dul test",
    )
    said: list[str] = []
    with dcmprscp(dcmtk, config, port, tmp_path / "dcmprscp.log"):
        report = print_images(
            HOST,
            port,
            images,
            options,
            calling_ae_title="DUL_PRINTSCU",
            called_ae_title="IHEFULL",
            timeouts=TIMEOUTS,
            say=said.append,
        )
    assert report.films == 1
    assert report.printer.PrinterStatus == "NORMAL"
    assert report.presentation_lut is not None  # dcmprscp accepts the Presentation LUT class

    stored = [pydicom.dcmread(path) for path in sorted((tmp_path / "database").glob("*.dcm"))]
    prints = [ds for ds in stored if ds.SOPClassUID == STORED_PRINT]
    hardcopies = {ds.SOPInstanceUID: ds for ds in stored if ds.SOPClassUID == HARDCOPY_GRAYSCALE}
    assert len(prints) == 1, said
    assert len(hardcopies) == 2
    stored_print = prints[0]
    film_box = stored_print.FilmBoxContentSequence[0]
    assert film_box.ImageDisplayFormat == "STANDARD\\2,1"
    assert film_box.FilmOrientation == "LANDSCAPE"
    assert film_box.FilmSizeID == "14INX17IN"
    lut = stored_print.PresentationLUTContentSequence[0]
    assert lut.PresentationLUTShape == "IDENTITY"
    assert lut.SOPInstanceUID == report.presentation_lut
    boxes = sorted(stored_print.ImageBoxContentSequence, key=lambda box: box.ImageBoxPosition)
    assert [box.ImageBoxPosition for box in boxes] == [1, 2]
    for box, sent in zip(boxes, images, strict=True):
        hardcopy = hardcopies[box.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        assert (hardcopy.Rows, hardcopy.Columns, hardcopy.BitsStored) == (*sent.shape, bits)
        assert np.array_equal(hardcopy.pixel_array, sent)


# -- dul printscu → dul printscp ------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 12])
def test_virtual_printer_draws_the_film_box_layout(
    printer: tuple[VirtualPrinter, int, list[str]], bits: int
) -> None:
    virtual, port, log = printer
    levels = (30, 90, 150)  # display levels 0-255; the fourth cell stays empty
    top = (1 << bits) - 1
    images = [
        np.full((48, 64), round(level / 255 * top), np.uint8 if bits == 8 else np.uint16)
        for level in levels
    ]
    options = FilmOptions(
        display_format="STANDARD\\2,2",
        orientation="LANDSCAPE",
        film_size="14INX17IN",
        border_density="BLACK",
        empty_image_density="WHITE",
        bits=bits,
    )
    said: list[str] = []
    report = print_images(
        HOST,
        port,
        images,
        options,
        called_ae_title="DUL_PRINTER",
        timeouts=TIMEOUTS,
        say=said.append,
    )
    assert report.films == 1
    assert report.printer.PrinterName == "DUL_VIRTUAL_PRINTER"
    assert [event_type for event_type, _ in report.events] == [1]  # printer status NORMAL
    assert "event: Printer NORMAL (NORMAL)" in said

    [film] = virtual.films
    assert film.path.exists() and film.path.suffix == ".png"
    for position, sent in enumerate(images, start=1):
        assert np.array_equal(film.images[position].pixels, sent)
    png = Image.open(film.path)
    assert png.mode == "L"
    assert png.size == (1200, 988)  # 17 x 14 inches, landscape
    for position, level in enumerate(levels, start=1):
        assert cell_mean(png, 2, 2, position) == pytest.approx(level, abs=1)
    assert cell_mean(png, 2, 2, 4) == 255  # empty image density WHITE
    gutter = round(988 * GUTTER)
    assert png.getpixel((gutter // 2, gutter // 2)) == 0  # border density BLACK
    assert any("printed STANDARD\\2,2 LANDSCAPE 14INX17IN, 3 image(s)" in line for line in log)


def test_printscu_command_line_prints_files(
    printer: tuple[VirtualPrinter, int, list[str]], tmp_path: Path
) -> None:
    virtual, port, _ = printer
    levels = (40, 100, 160, 220)
    files = []
    for n, level in enumerate(levels):
        files.append(tmp_path / f"image{n}.dcm")
        write_image(files[-1], level)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.printscu",
            "-aet",
            "CLI_SCU",
            "-aec",
            "DUL_PRINTER",
            HOST,
            str(port),
            *map(str, files),
            "--format",
            "STANDARD\\2,2",
            "--film-size",
            "10INX12IN",
            "--bits",
            "12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "printed 1 film(s)" in result.stdout
    [film] = virtual.films
    assert "CLI_SCU" in film.path.name
    png = Image.open(film.path)
    assert png.size == (1000, 1200)  # 10 x 12 inches, portrait
    for position, level in enumerate(levels, start=1):
        assert cell_mean(png, 2, 2, position) == pytest.approx(level, abs=1)


def test_session_print_prints_every_film_box(
    printer: tuple[VirtualPrinter, int, list[str]],
) -> None:
    virtual, port, _ = printer
    images = [pattern_image(n, size=32) for n in range(3)]
    options = FilmOptions(
        display_format="STANDARD\\1,1", print_session=True, presentation_lut=False
    )
    report = print_images(
        HOST, port, images, options, called_ae_title="DUL_PRINTER", timeouts=TIMEOUTS, say=str
    )
    assert report.films == 3 and report.presentation_lut is None
    assert len(virtual.films) == 3
    for film, image in zip(virtual.films, images, strict=True):
        assert np.array_equal(film.images[1].pixels, image)


def test_virtual_printer_refuses_what_it_cannot_print(
    printer: tuple[VirtualPrinter, int, list[str]],
) -> None:
    virtual, port, _ = printer
    request = association_request("DUL_PRINTSCU", "DUL_PRINTER")

    def refusals(assoc: Association) -> Steps[None]:
        yield from assoc.associate(request)
        scu = PrintSCU(assoc, say=str)
        session, _ = yield from scu.create(_common.BASIC_FILM_SESSION, Dataset())
        box = Dataset()
        box.ImageDisplayFormat = "SLIDE"
        box.ReferencedFilmSessionSequence = [Dataset()]
        box.ReferencedFilmSessionSequence[0].ReferencedSOPClassUID = _common.BASIC_FILM_SESSION
        box.ReferencedFilmSessionSequence[0].ReferencedSOPInstanceUID = session
        with pytest.raises(PrintError) as refused:
            yield from scu.create(_common.BASIC_FILM_BOX, box)
        assert refused.value.status == 0x0106
        with pytest.raises(PrintError) as refused:
            yield from scu.set_image_box("2.25.1", 1, pattern_image(0, size=8), 8)
        assert refused.value.status == 0x0112  # no such image box
        box.ImageDisplayFormat = "STANDARD\\1,1"
        box_uid, answer = yield from scu.create(_common.BASIC_FILM_BOX, box)
        assert answer is not None and len(answer.ReferencedImageBoxSequence) == 1
        yield from scu.action_print(_common.BASIC_FILM_BOX, box_uid)  # empty page: no film
        with pytest.raises(PrintError) as refused:
            yield from scu.request(
                dimse.NActionRequest(
                    message_id=assoc.session.next_message_id(),
                    requested_sop_class_uid=_common.BASIC_FILM_BOX,
                    requested_sop_instance_uid=box_uid,
                    action_type_id=7,
                ),
                scu.meta_context,
            )
        assert refused.value.status == 0x0123  # no such action
        yield from scu.delete(_common.BASIC_FILM_SESSION, session)
        with pytest.raises(PrintError) as refused:
            yield from scu.delete(_common.BASIC_FILM_BOX, box_uid)  # went with its film session
        assert refused.value.status == 0x0112
        yield from assoc.release()

    sockets_driver.run_requestor(refusals, HOST, port, timeouts=TIMEOUTS)
    assert virtual.films == []


# -- DCMTK dcmpsprt + dcmprscu → dul printscp ----------------------------------------------------


@pytest.mark.interop
def test_dcmprscu_prints_on_virtual_printer(
    dcmtk: Dcmtk, tmp_path: Path, printer: tuple[VirtualPrinter, int, list[str]]
) -> None:
    virtual, port, log = printer
    config = write_config(tmp_path, dul=port)
    image = tmp_path / "ct.dcm"
    make_dataset().save_as(image, enforce_file_format=True)
    # dcmpsprt renders the image into a hardcopy and spools a print job for DUL_PRINTER (it also
    # tries to start the spooler itself, and fails: we run dcmprscu below instead).
    created = dcmtk.run(
        "dcmpsprt", "-c", str(config), "-p", "DUL_PRINTER", "--spool", "--layout", "2", "2",
        str(image), str(image),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    jobs = sorted((tmp_path / "spool").glob("*_DUL_PRINTER_*.job"))
    assert jobs, created.stdout + created.stderr
    prefix = jobs[0].name.split("_DUL_PRINTER_")[0]
    sent = dcmtk.run(
        "dcmprscu", "-c", str(config), "-p", "DUL_PRINTER", "--spool", prefix, "--sleep", "1",
        "-v",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "E:" not in sent.stderr, sent.stderr

    assert len(virtual.films) == 1, log
    film = virtual.films[0]
    assert film.attributes.ImageDisplayFormat == "STANDARD\\2,2"
    assert sorted(film.images) == [1, 2]
    for printed in film.images.values():
        assert printed.pixels.shape == (64, 64) and printed.bits_stored == 12
        disc, air = printed.pixels[32, 32], printed.pixels[0, 0]
        assert disc > air  # the CT's water disc is brighter than the air around it
    png = Image.open(film.path)
    assert png.size == (960, 1200)  # 8 x 10 inches (the printer's default), portrait
    assert cell_mean(png, 2, 2, 1) > cell_mean(png, 2, 2, 3)  # an image, an empty cell
    assert cell_mean(png, 2, 2, 3) == cell_mean(png, 2, 2, 4)


@pytest.mark.parametrize("driver", ["sockets", "trio", "asyncio"])
def test_print_on_every_driver(driver: str, tmp_path: Path) -> None:
    """The print SCU and the virtual printer are services: any driver runs them."""
    log: list[str] = []
    virtual = VirtualPrinter(tmp_path / "films", ae_title="DUL_PRINTER", say=log.append)
    with printscp.serving(virtual, HOST, 0, timeouts=TIMEOUTS, driver=driver) as server:
        report = print_images(
            HOST,
            server.port,
            [pattern_image(0, size=32), pattern_image(1, size=32)],
            FilmOptions(display_format="STANDARD\\2,1"),
            called_ae_title="DUL_PRINTER",
            timeouts=TIMEOUTS,
            say=log.append,
            driver=driver,
        )
    assert report.films == 1
    assert len(virtual.films) == 1 and virtual.films[0].path.is_file()
    assert any(line.startswith("event: ") for line in log)  # the N-EVENT-REPORT, answered


@pytest.mark.parametrize("driver", ["sockets", "trio", "asyncio"])
def test_print_over_tls_with_user_identity(driver: str, tmp_path: Path) -> None:
    """TLS and user identity are the drivers' and the runtime's: the print tools have them."""
    import argparse
    import logging
    import ssl

    from examples.apps.common import negotiation

    import dul
    from test_tools import make_certificate

    cert, key = make_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    users = tmp_path / "users.txt"
    users.write_text("alice pw\n")
    args = argparse.Namespace(users=str(users), max_ops=1)
    virtual = VirtualPrinter(tmp_path / "films", say=str)
    negotiate = negotiation(virtual.policy(), args, logging.getLogger("test"))
    with printscp.serving(
        virtual, HOST, 0, driver=driver, ssl_context=server_context, negotiate=negotiate
    ) as server:

        def job(password: bytes) -> object:
            identity = dul.UserIdentity(identity_type=2, primary=b"alice", secondary=password)
            return print_images(
                HOST,
                server.port,
                [pattern_image(0, size=16)],
                timeouts=TIMEOUTS,
                say=str,
                driver=driver,
                ssl_context=client_context,
                user_identity=identity,
            )

        assert job(b"pw").films == 1  # type: ignore[attr-defined]
        with pytest.raises(runtime_errors.AssociationRejected):
            job(b"wrong")
    assert len(virtual.films) == 1
