"""HoldingOutput on a real, small tmpfs: held lines go out in pieces that fit, in order and
whole, as space returns; what the memory limit or the exit drops is counted lost, by kind."""
from __future__ import annotations

import json
import subprocess

import pytest

from sensor.errors import OutputError
from sensor.outputs import EveFile, HoldingOutput


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


def fill(mnt, chunk: int = 16 << 10) -> list:
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
    return b"".join(b'{"n":%d,"kind":"%s","pad":"%s"}\n' % (i, kind.encode(), b"y" * pad)
                    for i in range(first, first + n))


def numbers(path) -> list[int]:
    data = path.read_bytes()
    assert data.endswith(b"\n") or not data  # never a partial line
    return [json.loads(line)["n"] for line in data.splitlines()]


def test_a_held_batch_bigger_than_the_free_space_goes_out_in_pieces(tmpfs):
    mnt = tmpfs(512)
    out = HoldingOutput(EveFile(str(mnt / "eve.json")))
    try:
        fillers = fill(mnt)
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
        fillers = fill(mnt)
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
    fillers = fill(mnt)
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
