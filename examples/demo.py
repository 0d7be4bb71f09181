"""A tour of dul on real sockets: a storage SCP and an SCU talk over loopback, traced.

Starts dul's storescp in this process on a free loopback port, then runs echoscu and storescu
against it (sending a CT image made by ``examples/make_test_file.py``), queries what was stored
with findscu against dul's Q/R SCP, and prints the stored image on dul's virtual printer (Basic
Grayscale Print Management), which writes the film as a PNG. Every PDU and DIMSE message is
printed as each side sends or receives it (``SCU`` is the requestor, ``SCP#n`` the acceptor's
n-th association), then where the files landed. No outside server is needed::

    python -m examples.demo [--output DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from examples.make_test_file import write
from examples.tools import main as tools

__all__ = ["demo_find", "main"]

HOST = "127.0.0.1"


class _Ended(logging.Handler):
    """Counts the associations the server has finished, so that the steps print in order."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("association ") and " ended: " in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count >= count, timeout)


def _step(title: str) -> None:
    print(f"\n===== {title} =====\n", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when the echo and the store both succeeded."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument(
        "--output", type=Path, help="where storescp writes (default: a new temporary directory)"
    )
    options = parser.parse_args(argv)
    output = options.output or Path(tempfile.mkdtemp(prefix="dul-demo-"))
    output.mkdir(parents=True, exist_ok=True)
    source = output / "source" / "ct-64x64.dcm"
    source.parent.mkdir(exist_ok=True)
    write(source)
    received = output / "received"
    received.mkdir(exist_ok=True)

    ended = _Ended()
    argv = ["-v", "-aet", "STORESCP", "-od", str(received), "0"]
    with tools.server_in_thread("storescp", argv, sys.stdout, handler=ended) as server:
        port = str(server.port)
        _step(f"dul storescp is listening on {HOST}:{port}; echoscu sends C-ECHO")
        echo = tools.main("echoscu", ["-v", "-aec", "STORESCP", HOST, port], stream=sys.stdout)
        ended.wait(1)
        _step(f"storescu sends {source}")
        store = tools.main(
            "storescu", ["-v", "-aec", "STORESCP", HOST, port, str(source)], stream=sys.stdout
        )
        ended.wait(2)

    stored = sorted(received.iterdir())
    _step(f"qrscp serves {received}; findscu asks it for studies (C-FIND, Study Root)")
    found = demo_find(received, stream=sys.stdout)
    films = _print_film(stored[0] if stored else source, output / "films")

    _step("result")
    print(f"echoscu exit status {echo}, storescu exit status {store}, findscu exit status {found}")
    for path in stored:
        print(f"{source.name} was stored as {path}")
    for film in films:
        print(f"the virtual printer wrote the film {film}")
    return 0 if echo == store == found == 0 and films else 1


def demo_find(
    archive: Path,
    keys: Sequence[str] = (
        "QueryRetrieveLevel=STUDY",
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyInstanceUID",
        "NumberOfStudyRelatedInstances",
    ),
    *,
    stream: TextIO | None = None,
) -> int:
    """Serve ``archive`` with dul's qrscp (blocking sockets) on a free loopback port and query
    it with dul's findscu (-v, Study Root): the trace and the matches go to ``stream``
    (stdout). Returns findscu's exit status."""
    out = stream if stream is not None else sys.stdout
    with tools.server_in_thread("qrscp", ["-v", "-aet", "QRSCP", "0", str(archive)], out) as server:
        argv = ["-v", "-S", "-aec", "QRSCP"]
        for key in keys:
            argv += ["-k", key]
        argv += ["127.0.0.1", str(server.port)]
        return tools.main("findscu", argv, stream=out, out=out)


def _print_film(image: Path, films: Path) -> list[Path]:
    """Print ``image`` on dul's virtual printer (PS3.4 Annex H), traced; the PNGs it wrote."""
    from examples import printscp, printscu
    from examples.apps.print.scp import VirtualPrinter
    from examples.apps.print.scu import FilmOptions, load_images

    printer = VirtualPrinter(films, say=lambda line: print(f"I: printer: {line}", flush=True))
    with printscp.serving(printer, HOST, 0) as server:
        _step(f"printscu prints {image.name} on the virtual printer at {HOST}:{server.port}")
        options = FilmOptions(display_format="STANDARD\\2,1", orientation="LANDSCAPE")
        report = printscu.print_images(
            HOST,
            server.port,
            load_images([image, image], bits=8),
            options,
            called_ae_title="PRINTSCP",
            say=lambda line: print(f"I: printscu: {line}", flush=True),
        )
        print(f"I: printscu: {report.films} film(s) printed", flush=True)
    return [film.path for film in printer.films]


if __name__ == "__main__":
    sys.exit(main())
