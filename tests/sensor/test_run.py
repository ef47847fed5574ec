"""'flowlstm-sensor run': capture files in, EVE alerts out, with the bundled model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest

from ..conftest import ATTACKS, DATA, MAWI_PCAP

SCHEMA_JSON = json.loads((DATA / "suricata" / "schema.json").read_text())


def run(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "run", "--no-progress", *map(str, args)], capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_background_and_flood(tmp_path):
    eve = tmp_path / "eve.json"
    proc = run("--pcap", MAWI_PCAP, ATTACKS / "pkt.TCP.synflood.spoofed.pcap", "--eve", eve, "--host", "t1")
    summary = proc.stderr.strip().splitlines()[-1]
    m = re.search(r"(\d+) packets, (\d+) windows scored, (\d+) anomalous, (\d+) alerts", summary)
    packets, windows, anomalous, alerts = map(int, m.groups())
    assert packets == 91_762 + 37_841 and windows > 70_000
    events = [json.loads(x) for x in eve.read_text().splitlines()]
    recs = [e for e in events if e["event_type"] == "alert"]
    assert len(recs) == alerts and 1 <= alerts <= 200 < anomalous
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    for r in events:
        validator.validate(r)
        assert r["host"] == "t1"
    stats = events[-1]["stats"]  # one stats event closes the run
    assert events[-1]["event_type"] == "stats" and len(events) == alerts + 1
    assert stats["decoder"]["pkts"] == packets and stats["detect"]["alert"] == alerts
    assert stats["decoder"]["ipv4"] + stats["decoder"]["ipv6"] <= packets and stats["flow"]["total"] > 30_000
    # The flood's victim is alerted on.
    assert any(r["dest_ip"] == "10.10.10.10" for r in recs)


def test_appends_and_stdout(tmp_path):
    eve = tmp_path / "eve.json"
    eve.write_text('{"event_type":"stats"}\n')
    run("--pcap", ATTACKS / "amp.TCP.reflection.SYNACK.pcap", "--eve", eve)
    assert eve.read_text().startswith('{"event_type":"stats"}\n') and len(eve.read_text().splitlines()) > 1
    out = run("--pcap", ATTACKS / "amp.TCP.reflection.SYNACK.pcap", "--eve", "-").stdout
    kinds = [json.loads(line)["event_type"] for line in out.splitlines()]
    assert set(kinds[:-1]) == {"alert"} and kinds[-1] == "stats"


def test_bad_model_and_threshold_are_refused(tmp_path):
    proc = run("--pcap", MAWI_PCAP, "--eve", tmp_path / "e", "--model", tmp_path, check=False)
    assert proc.returncode == 78 and "metadata.json: missing" in proc.stderr
    proc = run("--pcap", MAWI_PCAP, "--eve", tmp_path / "e", "--threshold", "2", check=False)
    assert proc.returncode == 64 and "--threshold" in proc.stderr
    proc = run("--pcap", MAWI_PCAP, "--eve", tmp_path / "no" / "dir" / "e", check=False)
    assert proc.returncode == 73 and "cannot open for appending" in proc.stderr


@pytest.mark.slow
def test_realtime_replay_keeps_the_recorded_pace_and_the_results(tmp_path):
    import time

    import numpy as np

    from sensor.capture import read_packets
    from sensor.sources import Pacer

    pcap = ATTACKS / "amp.TCP.reflection.SYNACK.pcap"  # 8,000 packets recorded in 0.147 s
    packets = np.concatenate(list(read_packets(pcap)))
    span = (int(packets["ts"].max()) - int(packets["ts"].min())) / 1e9
    t = time.monotonic()
    parts = list(Pacer().slices(packets))
    elapsed = time.monotonic() - t
    assert np.array_equal(np.concatenate(parts), packets) and len(parts) >= 3
    assert span - Pacer.STEP / 1e9 <= elapsed < span + 0.5  # the last 50 ms slice goes out when it begins
    fast, slow = tmp_path / "fast.json", tmp_path / "slow.json"
    run("--pcap", pcap, "--eve", fast, "--threshold", "0", "--limit", "1000")
    run("--pcap", pcap, "--eve", slow, "--threshold", "0", "--limit", "1000", "--realtime")

    def alerts(f):
        return [x for x in f.read_text().splitlines() if json.loads(x)["event_type"] == "alert"]

    assert alerts(fast) == alerts(slow) and len(alerts(fast)) > 10


@pytest.mark.slow
def test_readme_first_command_runs_and_summarizes():
    """scripts/demo.sh, the README's first command, end to end; its setup step only checks here."""
    import os

    root = MAWI_PCAP.parents[3]
    proc = subprocess.run(
        [str(root / "scripts" / "demo.sh"), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
        env={**os.environ, "FLOWLSTM_SETUP": "check"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"out/eve.json: (\d+) alerts, (\d+) packets", proc.stdout)
    assert m and int(m.group(1)) > 0, proc.stdout
    packets = sum(
        int(re.search(r"(\d+)", x).group(1))
        for x in (
            subprocess.run(
                ["capinfos", "-c", "-M", str(p)], capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
            for p in (MAWI_PCAP, ATTACKS / "pkt.TCP.synflood.spoofed.pcap")
        )
    )
    assert int(m.group(2)) == packets  # every packet of both captures, by capinfos' count
