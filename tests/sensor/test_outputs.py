"""EVE outputs (sensor/outputs.py): files that survive kill -9, logrotate and a full disk; unix sockets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from sensor.errors import OutputError
from sensor.outputs import EveFile, HoldingOutput

from ..conftest import ATTACKS
from .evecheck import SCHEMA_JSON, strict_loads

WRITER = """
import sys, time
from sensor.outputs import EveFile, HoldingOutput
line = b'{"event_type":"alert","pad":"' + b"x" * 300 + b'"}\\n'
w = EveFile(sys.argv[1])
print("ready", flush=True)
while True:
    w.write(line * 50)
    time.sleep(0.0005)
"""


@pytest.mark.parametrize("run", range(3))
def test_kill_9_never_leaves_a_half_line_behind(tmp_path, run):
    """Every complete line is whole JSON; an unterminated tail (a write cut between pages)
    is never followed by more data: the next open cuts it."""
    path = tmp_path / "eve.json"
    for _ in range(2):  # kill, restart, kill
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.07 * run)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    assert len(complete) > 100_000
    for line in complete.splitlines():
        json.loads(line)
    EveFile(str(path)).close()  # what a restart does
    repaired = path.read_bytes()
    assert repaired == complete


def test_logrotate_rename_then_reopen_loses_nothing(tmp_path):
    path = tmp_path / "eve.json"
    w = EveFile(str(path))
    w.write(b'{"n":1}\n')
    os.rename(path, tmp_path / "eve.json.1")
    w.write(b'{"n":2}\n')  # still the old file until reopened
    w.reopen()
    w.write(b'{"n":3}\n')
    w.close()
    assert (tmp_path / "eve.json.1").read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert path.read_bytes() == b'{"n":3}\n'


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); CI runs as root and runs this")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def test_full_disk_leaves_no_partial_line(tiny_fs):
    from sensor.errors import OutputError

    w = EveFile(str(tiny_fs / "eve.json"))
    with pytest.raises(OutputError, match="no partial line"):
        for _ in range(1000):
            w.write(b'{"event_type":"alert","pad":"' + b"y" * 1000 + b'"}\n')
    w.close()
    data = (tiny_fs / "eve.json").read_bytes()
    assert data.endswith(b"\n") and all(json.loads(x) for x in data.splitlines())


def fill(path) -> None:
    """Take every free byte of the file system that holds ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 1024):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("limit", [64 << 20, 3000])
def test_full_disk_delays_events_in_order(tiny_fs, caplog, limit):
    out = HoldingOutput(EveFile(str(tiny_fs / "eve.json")), limit=limit)
    try:
        out.write(b'{"n":-1}\n')
        fill(tiny_fs / "filler")
        batches = [
            b"".join(b'{"n":%d,"pad":"%s"}\n' % (n, b"y" * 80) for n in range(i, i + 10)) for i in range(0, 200, 10)
        ]
        with caplog.at_level("WARNING", logger="flowlstm.outputs"):
            for b in batches:
                out.write(b)  # never raises
            assert out.held_bytes > 0
            (tiny_fs / "filler").unlink()
            out.write(b'{"n":200}\n')
    finally:
        out.close()
    got = [json.loads(x)["n"] for x in (tiny_fs / "eve.json").read_bytes().splitlines()]
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]  # failure and recovery, once each
    if limit > 1 << 20:
        assert got == list(range(-1, 201)) and out.lost_lines == 0
    else:  # over the limit the oldest held lines went, whole, and were counted
        missing = sorted(set(range(-1, 201)) - set(got))
        assert got[0] == -1 and got[-1] == 200 and got == sorted(got)
        assert missing == list(range(missing[0], missing[-1] + 1))  # one run: the oldest held when it began
        assert out.lost_lines == len(missing) > 0


def test_open_cuts_an_unterminated_tail(tmp_path):
    path = tmp_path / "eve.json"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    w = EveFile(str(path))
    w.write(b'{"n":3}\n')
    w.close()
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


def _run_to(spec: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sensor.cli",
            "run",
            "--no-progress",
            "--threshold",
            "0",
            "--limit",
            "1000",
            "--pcap",
            str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
            "--eve",
            spec,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


def test_unix_dgram_one_event_per_datagram(tmp_path):
    import socket as so

    path = str(tmp_path / "eve.sock")
    rx = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    rx.bind(path)
    rx.setsockopt(so.SOL_SOCKET, so.SO_RCVBUF, 8 << 20)
    rx.settimeout(10)
    proc = _run_to(f"unix_dgram:{path}")
    got = []
    try:
        while True:
            d = rx.recv(1 << 16)
            got.append(strict_loads(d.decode()))
            if got[-1]["event_type"] == "stats":
                break
    finally:
        proc.wait(timeout=60)
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    for ev in got:
        validator.validate(ev)
    alerts = [e for e in got if e["event_type"] == "alert"]
    assert len(alerts) == got[-1]["stats"]["detect"]["alert"] > 10


def test_unix_stream_newline_delimited(tmp_path):
    import socket as so

    path = str(tmp_path / "eve.sock")
    srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(30)
    proc = _run_to(f"unix_stream:{path}")
    conn, _ = srv.accept()
    time.sleep(1.0)  # a slow reader: the sensor must queue, not block or cut lines
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    assert proc.wait(timeout=60) == 0
    lines = data.decode().splitlines()
    assert data.endswith(b"\n") and json.loads(lines[-1])["event_type"] == "stats"
    assert all(strict_loads(x) for x in lines)
    assert len(lines) - 1 == json.loads(lines[-1])["stats"]["detect"]["alert"]


def test_socket_without_listener_drops_and_counts(tmp_path):
    from sensor.outputs import EveSocket

    s = EveSocket(str(tmp_path / "nobody.sock"), "dgram")
    s.write(b'{"a":1}\n{"a":2}\n')
    assert s.dropped == 2 and s.sent == 0
    s.close()


@pytest.mark.skipif(
    not shutil.which("fever"), reason="needs DCSO's fever (Debian package fever; scripts/setup.sh installs it)"
)
def test_fever_forwards_every_alert_from_the_unix_stream(tmp_path):
    """fever, a real EVE consumer, reads our unix_stream output and forwards every event unchanged.

    fever's legacy `-o` forwarder has an unbuffered channel and drops what arrives while it
    writes, so the consumer is configured the way its example config recommends, with a buffer.
    """
    import socket as so

    out_path, in_path = tmp_path / "out.sock", tmp_path / "in.sock"
    (tmp_path / "fever.yaml").write_text(
        f"multi-forward:\n  all:\n    socket: {out_path}\n    all: true\n    buffer-length: 100000\n"
    )
    srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srv.bind(str(out_path))
    srv.listen(1)
    srv.settimeout(30)
    fever = subprocess.Popen(
        [
            "fever",
            "run",
            "--config",
            str(tmp_path / "fever.yaml"),
            "--dummy",
            "-i",
            str(in_path),
            "--mgmt-socket",
            str(tmp_path / "mgmt.sock"),
            "--logfile",
            str(tmp_path / "fever.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn, _ = srv.accept()
        deadline = time.monotonic() + 30
        while not in_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc = _run_to(f"unix_stream:{in_path}")
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        conn.settimeout(30)
        data = b""
        while not data.endswith(b"\n") or b'"event_type":"stats"' not in data.rsplit(b"\n", 2)[-2]:
            chunk = conn.recv(1 << 16)
            assert chunk, "fever closed the connection early"
            data += chunk
    finally:
        fever.terminate()
        fever.wait(timeout=30)
    got = data.decode().splitlines()
    reference = tmp_path / "eve.json"
    assert _run_to(str(reference)).wait(timeout=60) == 0
    want = reference.read_text().splitlines()
    alerts = [x for x in got if json.loads(x)["event_type"] == "alert"]
    assert len(alerts) == json.loads(got[-1])["stats"]["detect"]["alert"] > 10
    assert alerts == [x for x in want if json.loads(x)["event_type"] == "alert"]
    assert "level=warn" not in (tmp_path / "fever.log").read_text()


# -- HoldingOutput on a real, small tmpfs: pieces that fit, losses counted by kind ----------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of the given size in KiB; unmounted at the end."""
    mounted = []

    def mount(kib: int):
        mnt = tmp_path / f"fs{len(mounted)}"
        mnt.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mnt)]).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root); CI runs as root and runs this")
        mounted.append(mnt)
        return mnt

    try:
        yield mount
    finally:
        for mnt in mounted:
            subprocess.run(["umount", str(mnt)])


def fill_free(mnt, chunk: int = 16 << 10) -> list:
    """Take every free byte of ``mnt`` in files of ``chunk`` bytes (the last one shorter)."""
    files = []
    while True:
        path = mnt / f"filler{len(files)}"
        files.append(path)
        with open(path, "wb") as f:
            try:
                f.write(b"x" * chunk)
                f.flush()
            except OSError:
                return files


def lines(first: int, n: int, kind: str = "alert", pad: int = 80) -> bytes:
    """EVE-like lines numbered ``first`` to ``first + n - 1``, about 110 bytes each."""
    return b"".join(
        b'{"n":%d,"kind":"%s","pad":"%s"}\n' % (i, kind.encode(), b"y" * pad) for i in range(first, first + n)
    )


def numbers(path) -> list[int]:
    data = path.read_bytes()
    assert data.endswith(b"\n") or not data  # never a partial line
    return [json.loads(line)["n"] for line in data.splitlines()]


def test_a_held_batch_bigger_than_the_free_space_goes_out_in_pieces(tmpfs):
    mnt = tmpfs(512)
    out = HoldingOutput(EveFile(str(mnt / "eve.json")))
    try:
        fillers = fill_free(mnt)
        big = lines(0, 2000)  # ~230 KB in one batch
        out.write(big)
        out.write(lines(2000, 10))
        assert out.written_lines == 0 and out.held_lines == 2010
        for f in fillers[:6]:  # ~96 KB back: less than the big batch
            f.unlink()
        out.write(lines(2010, 1))
        got = numbers(mnt / "eve.json")
        assert got == list(range(len(got))) and 500 < len(got) < 2000  # a prefix, whole lines, filling the space
        assert (out.written_lines, out.held_lines, out.lost_lines) == (len(got), 2011 - len(got), 0)
        for f in fillers[6:]:
            f.unlink()
        out.write(lines(2011, 1))
        assert numbers(mnt / "eve.json") == list(range(2012))
        assert (out.written_lines, out.held_lines, out.held_bytes, out.lost_lines) == (2012, 0, 0, 0)
    finally:
        out.close()


def test_a_batch_bigger_than_the_whole_disk_writes_what_fits_and_holds_the_rest(tmpfs):
    # Before, a batch that could never fit whole blocked every later event for good.
    mnt = tmpfs(64)
    out = HoldingOutput(EveFile(str(mnt / "eve.json")))
    try:
        out.write(lines(0, 1000))  # ~115 KB
        got = numbers(mnt / "eve.json")
        assert got == list(range(len(got))) and len(got) > 400 and out.held_lines == 1000 - len(got)
    finally:
        out.close()


def test_lines_beyond_the_memory_limit_are_lost_and_counted_exactly(tmpfs):
    mnt = tmpfs(256)
    limit = 20_000
    out = HoldingOutput(EveFile(str(mnt / "eve.json")), limit=limit)
    sent = {"alert": [], "stats": []}
    try:
        fillers = fill_free(mnt)
        for i in range(0, 1200, 12):
            kind = "stats" if i % 60 == 0 else "alert"
            out.write(lines(i, 12, kind), kind)
            sent[kind] += range(i, i + 12)
            assert out.held_bytes <= limit  # memory stays bounded while the disk is full
        assert out.lost_lines > 0
        for f in fillers:
            f.unlink()
        out.write(b"")
    finally:
        out.close()
    got = numbers(mnt / "eve.json")
    assert got == sorted(got)
    for kind, ns in sent.items():
        written = [n for n in got if n in set(ns)]
        assert out.written[kind] == len(written) and out.lost[kind] == len(ns) - len(written) and written, kind
    assert out.lost_lines == 1200 - len(got) == out.lost["alert"] + out.lost["stats"]
    assert out.written_lines == len(got) and out.held_lines == out.held_bytes == 0


def test_close_writes_what_fits_and_counts_the_rest_lost(tmpfs, caplog):
    mnt = tmpfs(256)
    out = HoldingOutput(EveFile(str(mnt / "eve.json")))
    fillers = fill_free(mnt)
    out.write(lines(0, 1500))  # ~170 KB, held
    for f in fillers[:4]:  # ~64 KB back
        f.unlink()
    with caplog.at_level("ERROR", logger="flowlstm.outputs"):
        out.close()
    got = numbers(mnt / "eve.json")
    assert got == list(range(len(got))) and len(got) > 300
    assert (out.written_lines, out.lost_lines, out.held_lines) == (len(got), 1500 - len(got), 0)
    assert f"{1500 - len(got)} held events could not be written before exit" in caplog.text


class Switch:
    """An output that takes writes while ``ok`` and fails them otherwise, counting the attempts."""

    path = "switch"

    def __init__(self, ok: bool = False):
        self.ok = ok
        self.attempts = 0
        self.data = b""

    def write(self, blob: bytes) -> None:
        self.attempts += 1
        if not self.ok:
            raise OutputError("switch: write failed (Input/output error)")
        self.data += blob


def test_a_failing_output_costs_few_attempts_per_write():
    out = HoldingOutput(Switch())
    out.write(lines(0, 1024))
    assert out.out.attempts == 11  # halved down to one line: 1024, 512, ..., 1
    out.write(lines(1024, 1024))
    assert out.out.attempts == 12  # the oldest line alone stays in front
    assert out.held_lines == 2048 and out.discard() == 2048 and out.lost_lines == 2048


def test_a_replacing_output_continues_the_counts():
    old = HoldingOutput(Switch(ok=True), limit=0)
    old.write(lines(0, 3), "alert")
    old.out.ok = False
    old.write(lines(3, 4), "alert")  # over the limit of 0 bytes at once
    new = HoldingOutput(Switch(ok=True))
    new.write(lines(7, 2), "stats")
    new.continue_counts(old)
    assert (new.written_lines, new.lost_lines) == (5, 4)
    assert new.written == {"alert": 3, "stats": 2} and new.lost == {"alert": 4}
