"""One run path: a capture fed through the live source gives the alert lines of ``run --pcap``.

The live source's capture thread, bounded queue, idle ticks and drain run here
on batches read from a real capture file, through the same ``Sensor`` that
``run --interface`` builds; the result must equal a file run byte for byte,
Zeek notice log included, with non-default thresholding.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from sensor.capture import read_packets
from sensor.capture.live import CaptureStats
from sensor.config import resolve, sensor_config
from sensor.daemon import Sensor
from sensor.sources import LiveSource

from ..conftest import ATTACKS, MAWI_PCAP


class FileFedCapture:
    """A capture handle over a real capture file; SIGTERMs the sensor when the file is read."""

    def __init__(self, paths):
        self._batches = (b for p in paths for b in read_packets(p))
        self.packets = 0
        self._done = threading.Event()

    def read(self, timeout=None):
        batch = next(self._batches, None)
        if batch is None:
            if not self._done.is_set():
                self._done.set()
                os.kill(os.getpid(), signal.SIGTERM)  # the sensor drains the queue and stops
            self._done.wait(0.05)
            return np.zeros(0, dtype=next(read_packets(MAWI_PCAP)).dtype)
        self.packets += len(batch)
        return batch

    def stats(self):
        return CaptureStats(self.packets, 0, 0)

    def quiesce(self):
        pass

    def close(self):
        pass


def _alerts(path):
    return [ln for ln in path.read_bytes().splitlines() if json.loads(ln)["event_type"] == "alert"]


def _notices(path):
    return [ln for ln in path.read_bytes().splitlines() if not ln.startswith((b"#open", b"#close"))]


@pytest.mark.parametrize(
    "options",
    [
        ["--threshold", "0", "--period", "7", "--limit", "3", "--max-alerts-per-second", "50", "--host", "t"],
        [],
    ],
    ids=["thresholded", "defaults"],
)
def test_live_path_fed_from_a_file_writes_the_lines_of_a_file_run(tmp_path, options):
    pcaps = [str(MAWI_PCAP), str(ATTACKS / "pkt.TCP.synflood.spoofed.pcap")]
    file_eve, file_notice = tmp_path / "file.json", tmp_path / "file.notice.log"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sensor.cli",
            "run",
            "--no-progress",
            "--pcap",
            *pcaps,
            "--eve",
            str(file_eve),
            "--zeek-notice",
            str(file_notice),
            *options,
        ],
        check=True,
        capture_output=True,
    )

    live_eve, live_notice = tmp_path / "live.json", tmp_path / "live.notice.log"
    given = {
        "outputs.eve.filename": str(live_eve),
        "outputs.zeek-notice.filename": str(live_notice),
        "capture.interface": "file-fed",
        "announce": False,
    }
    flags = dict(zip(options[::2], options[1::2], strict=True))
    names = {
        "--threshold": ("model.threshold", float),
        "--period": ("thresholding.period", int),
        "--limit": ("thresholding.limit", int),
        "--max-alerts-per-second": ("thresholding.max-per-second", int),
        "--host": ("sensor-name", str),
    }
    given.update({names[f][0]: names[f][1](v) for f, v in flags.items()})
    cfg = sensor_config(resolve(None, given))
    capture = FileFedCapture(pcaps)
    # The clock of a file-fed source never moves: seconds close by packet time, as in a file run.
    source = LiveSource("file-fed", lambda: capture, clock=lambda: 0, queue_batches=100_000, poll=0.01)
    summary = Sensor(cfg, source=source).run()

    assert summary.packets == capture.packets == 91_762 + 37_841
    assert source.dropped_packets == 0
    # A live alert names its interface (in_iface); the rest of every line is the file run's, byte for byte.
    live_alerts = [ln.replace(b'"in_iface":"file-fed",', b"", 1) for ln in _alerts(live_eve)]
    assert all(b'"in_iface":"file-fed",' in ln for ln in _alerts(live_eve))
    assert live_alerts == _alerts(file_eve) and len(live_alerts) >= 2
    assert _notices(live_notice) == _notices(file_notice)
    # Zeek's suppress_for is the thresholding period on both paths (it was 60 s live whatever --period said).
    period = flags.get("--period", "60")
    rows = [r.split(b"\t") for r in _notices(file_notice) if not r.startswith(b"#")]
    assert rows and {r[20] for r in rows} == {f"{float(period):.6f}".encode()}
    # The live run's stats events carry the kernel's counters; the file run's do not.
    stats = [json.loads(ln)["stats"] for ln in live_eve.read_bytes().splitlines() if b'"stats"' in ln]
    assert stats[-1]["capture"]["kernel_packets"] == summary.packets
