"""User identity (PS3.7 D.3.3.7) and the asynchronous operations window (D.3.3.3) in the tools.

Written once in the services, so each cell runs on every driver: DCMTK's storescu and pynetdicom
with a user identity against dul's storescp ``--users``, dul's storescu with one against a
pynetdicom SCP that checks it, and 500 files through dul storescu ``--max-ops 8`` to dul storescp
``--max-ops 8``, each stored file checked.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from examples.tools import main
from examples.tools.cli import ExitCode
from examples.tools.sample_files import dataset_bytes, write_sample

from peers import HOST, Dcmtk, free_port

DRIVERS = ("sockets", "trio", "asyncio")
CT = "1.2.840.10008.5.1.4.1.1.2"


@contextmanager
def storescp(driver: str, *argv: str) -> Iterator[tuple[int, io.StringIO]]:
    """dul's storescp on ``driver`` in a thread, with -v: (port, its log)."""
    stream = io.StringIO()
    with main.server_in_thread("storescp", ["--driver", driver, "-v", *argv, "0"], stream) as s:
        yield s.port, stream


def storescu(driver: str, *argv: str) -> tuple[int, str]:
    stream = io.StringIO()
    return main.main("storescu", ["--driver", driver, *argv], stream=stream), stream.getvalue()


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    path.write_text("# name passcode\nalice s3cret\nbob hunter2\n")
    return path


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_dcmtk_storescu_user_identity_to_dul(
    driver: str, dcmtk: Dcmtk, users: Path, tmp_path: Path
) -> None:
    """DCMTK storescu --user/--password: stored when the pair is in --users; else RJ 1/1/1."""
    source = write_sample(tmp_path / "in" / "a.dcm", index=1)
    out = tmp_path / "out"
    out.mkdir()
    with storescp(driver, "--users", str(users), "-od", str(out)) as (port, log):
        good = dcmtk.run(
            "storescu", "--user", "alice", "--password", "s3cret", HOST, str(port), str(source)
        )
        bad = dcmtk.run(
            "storescu", "--user", "alice", "--password", "wrong", HOST, str(port), str(source)
        )
        none = dcmtk.run("storescu", HOST, str(port), str(source))
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0 and none.returncode != 0
    said = bad.stdout + bad.stderr
    assert "Association Rejected" in said, said
    assert "Rejected Permanent, Source: Service User" in said and "Reason: No Reason" in said
    assert "user identity 'alice' refused" in log.getvalue()
    assert [dataset_bytes(p) for p in out.iterdir()] == [dataset_bytes(source)]


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_pynetdicom_user_identity_to_dul(
    driver: str, pynetdicom: ModuleType, users: Path, tmp_path: Path
) -> None:
    """pynetdicom proposing a user identity (positive response requested): accepted and answered,
    a wrong passcode rejected with (1, 1, 1)."""
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    def identity(password: bytes) -> Any:
        item = UserIdentityNegotiation()
        item.user_identity_type = 2
        item.primary_field = b"bob"
        item.secondary_field = password
        item.positive_response_requested = True
        return item

    with storescp(driver, "--users", str(users), "--ignore") as (port, _):
        ae = pynetdicom.AE(ae_title="PYNETDICOM")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate(HOST, port, ae_title="STORESCP", ext_neg=[identity(b"hunter2")])
        assert assoc.is_established
        answers = [
            item
            for item in assoc.acceptor.user_information
            if type(item).__name__ == "UserIdentityNegotiation"
        ]
        assert answers, "no user identity response"
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        for _ in range(5):  # under load pynetdicom's threads may report an abort: ask again
            refused = ae.associate(HOST, port, ae_title="STORESCP", ext_neg=[identity(b"nope")])
            assert not refused.is_established, "a wrong passcode was accepted"
            if refused.is_rejected:
                break
            time.sleep(0.2)
        assert refused.is_rejected
        reject = refused.acceptor.primitive
        assert (reject.result, reject.result_source, reject.diagnostic) == (1, 1, 1)


@pytest.mark.interop
@pytest.mark.parametrize("driver", DRIVERS)
def test_dul_storescu_user_identity_to_pynetdicom(
    driver: str, pynetdicom: ModuleType, tmp_path: Path
) -> None:
    """dul storescu --user/--password --request-response against a pynetdicom SCP that checks
    the identity and answers it; a wrong passcode gets no association."""
    from pynetdicom import evt

    seen: list[tuple[int, bytes, bytes]] = []
    token = b"eyJhbGciOiJub25lIn0.e30."

    def check(event: Any) -> tuple[bool, bytes | None]:
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        if event.user_id_type == 5:  # a JWT: pynetdicom answers these types only
            return event.primary_field == token, b"welcome"
        return event.secondary_field == b"pw", None

    def store(event: Any) -> int:
        return 0x0000

    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.add_supported_context(CT, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    port = free_port()
    handlers = [(evt.EVT_USER_ID, check), (evt.EVT_C_STORE, store)]
    server = ae.start_server((HOST, port), block=False, evt_handlers=handlers)
    jwt = tmp_path / "token.jwt"
    jwt.write_bytes(token)
    try:
        source = write_sample(tmp_path / "a.dcm", index=2)
        peer = ["-aec", "PYNETDICOM", HOST, str(port), str(source)]
        code, log = storescu(driver, "--user", "carol", "--password", "pw", *peer)
        assert code == ExitCode.OK, log
        code, log = storescu(driver, "-v", "--jwt", str(jwt), "--request-response", *peer)
        assert code == ExitCode.OK, log
        assert "user identity response: 7 bytes" in log
        code, log = storescu(driver, "--user", "carol", "--password", "bad", *peer)
        assert code == ExitCode.ASSOCIATION_FAILED, log
    finally:
        server.shutdown()
    assert seen == [(2, b"carol", b"pw"), (5, token, b""), (2, b"carol", b"bad")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_max_ops_keeps_eight_stores_in_flight(driver: str, tmp_path: Path) -> None:
    """storescu --max-ops 8 against storescp --max-ops 8: 500 small files, each stored intact;
    the requestor sends 8 C-STORE-RQs before it waits for the first response."""
    sources = [write_sample(tmp_path / "in" / f"{i}.dcm", index=i, size=2_000) for i in range(500)]
    out = tmp_path / "out"
    out.mkdir()
    with storescp(driver, "--max-ops", "8", "-od", str(out)) as (port, _):
        code, log = storescu(driver, "-v", "--max-ops", "8", HOST, str(port), str(tmp_path / "in"))
    assert code == ExitCode.OK, log[-2000:]
    trace = [line for line in log.splitlines() if "C-STORE-R" in line]
    assert all("==> C-STORE-RQ" in line for line in trace[:8]), trace[:9]
    assert "<== C-STORE-RSP" in trace[8]
    stored = {p.name: dataset_bytes(p) for p in out.iterdir()}
    assert len(stored) == 500
    expected = {path: dataset_bytes(path) for path in sources}
    assert sorted(stored.values()) == sorted(expected.values())


def test_max_ops_one_by_default(tmp_path: Path) -> None:
    """Without --max-ops, storescu proposes no window and waits for each response."""
    for i in range(3):
        write_sample(tmp_path / "in" / f"{i}.dcm", index=i, size=2_000)
    with storescp("sockets", "--max-ops", "8", "--ignore") as (port, _):
        code, log = storescu("sockets", "-v", HOST, str(port), str(tmp_path / "in"))
    assert code == ExitCode.OK, log
    trace = [line.split("SCU ")[-1][:15] for line in log.splitlines() if "C-STORE-R" in line]
    assert trace == ["==> C-STORE-RQ", "<== C-STORE-RSP"] * 3
