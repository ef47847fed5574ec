"""The Detector (sensor/detector.py): the scoring threads write what one thread writes, in order,
and a failure on them is the run's failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sensor import settings
from sensor.capture import read_packets
from sensor.config import sensor_config
from sensor.detector import Detector, Scoring
from sensor.errors import OutputError
from sensor.model import ModelBundle

from ..conftest import ATTACKS, MAWI_PCAP


def _run(tmp_path, threads: int, *extra: str) -> list[dict]:
    eve = tmp_path / f"eve-{threads}.json"
    cmd = [sys.executable, "-m", "sensor.cli", "run", "--no-progress", "--eve", str(eve)]
    cmd += ["--scoring-threads", str(threads), *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    events = [json.loads(x) for x in eve.read_text().splitlines()]
    for e in events:
        if e["event_type"] == "stats":  # the clock's, not the packets'
            del e["timestamp"], e["stats"]["uptime"]
    return events


@pytest.mark.parametrize(
    "extra",
    [
        # the MAWI background with a flood after it: thousands of seconds of windows queued
        ("--pcap", str(MAWI_PCAP), str(ATTACKS / "pkt.TCP.synflood.spoofed.pcap")),
        # every window an alert candidate, thresholding off: the most alert lines
        ("--pcap", str(ATTACKS / "hping3.pcapng"), "--threshold", "0", "--limit", "1000000", "--corroborate", "0"),
    ],
    ids=["background-and-flood", "every-window"],
)
def test_the_scoring_threads_write_the_same_lines_as_one_thread(tmp_path, extra):
    one = _run(tmp_path, 0, *extra)
    assert sum(e["event_type"] == "alert" for e in one) > 0
    assert _run(tmp_path, 1, *extra) == one
    assert _run(tmp_path, 2, *extra) == one  # the two heads on two threads


class _FailingEve:
    """An output that takes ``n`` writes, then fails as a full disk does."""

    def __init__(self, n: int):
        self.n, self.lines = n, []

    def write(self, blob: bytes, kind: str = "event") -> None:
        if self.n == 0:
            raise OutputError("eve.json: write failed (No space left on device); no partial line was left")
        self.n -= 1
        self.lines.append(blob)


def _detector(eve: _FailingEve, threads: int = 1) -> Detector:
    values = settings.validate(
        {**settings.defaults(), "pcap": [str(ATTACKS / "hping3.pcapng")], "outputs.eve.filename": "x"}
    )
    cfg = sensor_config(values)
    scoring = Scoring(ModelBundle(cfg.model_path), 0.0, cfg.alerts, cfg.thresholder())
    return Detector(cfg.pipeline, scoring, eve, scoring_threads=threads)


def test_a_failure_on_the_scoring_thread_is_raised_in_the_feeding_thread_once():
    eve = _FailingEve(2)
    d = _detector(eve)
    with pytest.raises(OutputError, match="No space left"):
        for batch in read_packets(ATTACKS / "hping3.pcapng"):
            d.process(batch)
        d.finish()
    assert len(eve.lines) == 2
    d.finish()  # raised once: the way out (drain, close) does not raise it again
    d.close()
    assert not d._scorer._thread.is_alive()  # type: ignore[union-attr]


def test_a_stats_event_follows_the_alerts_of_the_windows_before_it():
    eve = _FailingEve(10**6)
    d = _detector(eve)
    batches = list(read_packets(MAWI_PCAP))
    for batch in batches[: len(batches) // 2]:
        d.process(batch)
    d.write_stats()
    d.finish()
    d.close()
    kinds = [json.loads(line)["event_type"] for blob in eve.lines for line in blob.splitlines()]
    i = kinds.index("stats")
    stats = json.loads([line for blob in eve.lines for line in blob.splitlines()][i])["stats"]
    assert stats["detect"]["alert"] == kinds[:i].count("alert") > 0
    inline = _detector(_FailingEve(10**6), threads=0)
    for batch in batches[: len(batches) // 2]:
        inline.process(batch)
    assert inline.alerts == kinds[:i].count("alert")  # every window before it, none after
    assert stats["decoder"]["pkts"] == sum(len(b) for b in batches[: len(batches) // 2])


def test_a_failure_scoring_the_second_head_on_its_thread_is_the_runs_failure(monkeypatch):
    d = _detector(_FailingEve(10**6), threads=2)
    normal = d.scoring.bundle.heads[1]

    def broken(buf):
        raise RuntimeError("invoke failed")

    monkeypatch.setattr(normal, "run", broken)
    with pytest.raises(RuntimeError, match="invoke failed"):
        for batch in read_packets(ATTACKS / "hping3.pcapng"):
            d.process(batch)
        d.finish()
    d.close()
    assert d.alerts == 0  # no window's alerts were written on one head's scores
