"""A peer that does not speak DICOM (issue 16, item 5): the error says so and shows its bytes.

echoscu pointed at an HTTP port used to end with "PDU of type 48H declares 1414541105 bytes,
above the maximum length of 262144". Here a real HTTP server (``http.server``, in a thread on
127.0.0.1) answers dul's echoscu, on each driver. The other cases (an HTTP request,
a TLS handshake, what arrives in pieces) are at the buffer's level, ``tests/test_buffer.py``.
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from examples.tools import main
from examples.tools.cli import ExitCode

from peers import HOST


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers what it cannot parse with "HTTP/1.1 400" (as HTTP/1.1 servers do)."""

    protocol_version = default_request_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def http_server() -> Iterator[int]:
    """An HTTP server on a free port of 127.0.0.1, stopped on exit: its port."""
    server = http.server.ThreadingHTTPServer((HOST, 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("driver", ["sockets", "trio", "asyncio"])
def test_echoscu_to_an_http_port(driver: str) -> None:
    """The association fails, and the message says the peer does not seem to speak DICOM and
    shows its first bytes. (http.server answers once it has read a line: a maximum length of
    2570, 0A0AH, puts a newline in the A-ASSOCIATE-RQ.)"""
    stream = io.StringIO()
    with http_server() as port:
        argv = ["--driver", driver, "--max-pdu", "2570", "-ta", "10", HOST, str(port)]
        code = main.main("echoscu", argv, stream=stream)
    log = stream.getvalue()
    assert code == ExitCode.ASSOCIATION_FAILED, log
    assert "the peer does not seem to speak DICOM (48H is no PDU type)" in log
    assert "it sent: \"HTTP/1.1 400 Bad request version ('\\\\x00" in log
    assert "maximum length" not in log
