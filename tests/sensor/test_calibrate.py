"""Site calibration: thresholds from a site's own flows, and the bundle copy that carries them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sensor import calibrate as cal_mod
from sensor.calibrate import FlowTops, calibrate, threshold_for_flow_budget
from sensor.model import DEFAULT_BUNDLE, ModelBundle
from sensor.pipeline import run_files

from ..conftest import MAWI_PCAP


def cli(*args):
    return subprocess.run([sys.executable, "-m", "sensor.cli", *map(str, args)], capture_output=True, text=True)


def error_lines(proc) -> list[str]:
    # LiteRT announces its XNNPACK delegate on stderr by itself when a model loads
    return [ln for ln in proc.stderr.splitlines() if not ln.startswith("INFO: Created TensorFlow Lite")]


def test_the_flow_budget_threshold_leaves_just_the_allowed_flows_above_it():
    ranked = [0.9, 0.8, 0.7, 0.1]
    assert threshold_for_flow_budget(0, [], 1.0) == 0.5  # no benign flow: an uninformed middle
    # 20,000 flows at 1 in 10k: two may alert, the third-highest must not
    thr = threshold_for_flow_budget(20_000, ranked[:3], 1.0)
    assert 0.7 < thr <= np.nextafter(np.float32(0.7), np.float32(1))
    assert threshold_for_flow_budget(4, ranked, 1e4) == 0.1  # every flow may alert: the lowest


def test_flow_tops_are_each_flows_highest_score_however_the_windows_were_folded(monkeypatch):
    monkeypatch.setattr(cal_mod, "_MERGE_AT", 50)  # fold many times along the way
    rng = np.random.default_rng(3)
    tops = FlowTops(2)
    want: dict[int, np.ndarray] = {}
    added = 0
    for _ in range(40):
        ids = rng.integers(0, 300, size=int(rng.integers(0, 30))).astype(np.uint64)
        scores = rng.random((len(ids), 2), dtype=np.float32)
        tops.add(ids, scores)
        added += len(ids)
        for i, s in zip(ids.tolist(), scores, strict=True):
            want[i] = np.maximum(want.get(i, s), s)
    got = tops.tops()
    assert got.shape == (len(want), 2)
    assert np.array_equal(got, np.stack([want[k] for k in sorted(want)]))
    assert tops.windows == added


def test_calibration_splits_the_budget_between_heads_and_only_raises():
    rng = np.random.default_rng(0)
    tops = rng.random((40_000, 2), dtype=np.float32)
    # head 0's bundle threshold is below what the site asks for, head 1's above it
    cal = calibrate(tops, 99_000, ("supervised", "normal"), np.array([0.5, 0.99999]), budget=1.0)
    assert cal.flows == 40_000 and cal.windows == 99_000 and cal.budget == 1.0
    sup, normal = cal.heads
    assert sup.site > 0.5 and sup.threshold == sup.site
    assert int((tops[:, 0] >= sup.threshold).sum()) == sup.above_threshold <= 2  # 0.5 per 10k of 40,000
    assert int((tops[:, 0] >= np.sort(tops[:, 0])[-3]).sum()) == 3  # and no lower threshold would do
    assert sup.site <= np.nextafter(np.sort(tops[:, 0])[-3], np.float32(1))
    assert normal.threshold == 0.99999 and normal.site < normal.threshold  # never lowered
    assert cal.alerting_before >= cal.alerting_after == int((tops >= cal.thresholds).any(axis=1).sum())
    assert cal.allowed == 2 and cal.saturated == ()


def test_flows_scored_at_the_top_of_the_scale_are_reported_not_hidden():
    """float32 scores saturate at 1.0; a threshold cannot exceed 1 - 1e-6, so flows of an unseen
    network scored 1.0 alert whatever the calibration (fold B's nDPI traces, stop 38)."""
    tops = np.full((5_000, 2), 0.2, np.float32)
    tops[:3, 0] = 1.0
    cal = calibrate(tops, 5_000, ("supervised", "normal"), np.array([0.9, 0.5]), budget=1.0)
    sup, normal = cal.heads
    assert cal.allowed == 0 and sup.threshold == pytest.approx(1 - 1e-6) and sup.above_threshold == 3
    assert cal.saturated == (sup,) and normal.above_threshold == 0


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "site-bundle"
    proc = cli("calibrate", "--no-progress", "--pcap", MAWI_PCAP, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _flow_tops(bundle: ModelBundle) -> tuple[np.ndarray, int]:
    tops = FlowTops(len(bundle.heads))
    for res in run_files([str(MAWI_PCAP)]):
        for w in res.windows:
            tops.add(w.keys["flow_id"], bundle.score_all(w.x))
    return tops.tops(), tops.windows


def test_the_calibrated_copy_keeps_its_own_capture_within_the_budget(calibrated):
    out, proc = calibrated
    default, site = ModelBundle(DEFAULT_BUNDLE), ModelBundle(out)
    tops, windows = _flow_tops(default)
    n = len(tops)
    before = int((tops >= default.thresholds).any(axis=1).sum())
    after = (tops >= site.thresholds).sum(axis=0)
    # the MAWI excerpt has flows the default bundle alerts on; the copy lets each head alert on
    # at most its half of 1 in 10,000 of them
    assert before > 2 and all(a <= int(np.floor(n * 0.5 / 1e4)) for a in after)
    assert np.all(site.thresholds >= default.thresholds) and np.any(site.thresholds > default.thresholds)
    meta = json.loads((out / "metadata.json").read_text())
    rec = meta["site_calibration"]
    assert rec["flows"] == n and rec["windows"] == windows and rec["captures"] == [MAWI_PCAP.name]
    assert [h["threshold"] for h in rec["heads"]] == site.thresholds.tolist()
    assert site.name == "flowlstm-default+site" and site.sha256 == default.sha256  # the model files are the bundle's
    assert re.search(rf"{n:,} flows, {windows:,} windows", proc.stderr)
    assert re.search(rf"any head\s+{before} → {int((tops >= site.thresholds).any(axis=1).sum())}", proc.stderr)


def test_the_sensor_counts_the_flows_and_windows_calibration_saw(calibrated, tmp_path):
    """The flow count is the sensor's own (its EVE stats), the windows those it scores."""
    out, _ = calibrated
    eve = tmp_path / "eve.json"
    run = cli("run", "--no-progress", "--no-announce", "--pcap", MAWI_PCAP, "--model", out, "--eve", eve)
    assert run.returncode == 0, run.stderr
    stats = [json.loads(x)["stats"] for x in eve.read_text().splitlines() if '"event_type":"stats"' in x][-1]
    rec = json.loads((out / "metadata.json").read_text())["site_calibration"]
    assert stats["flow"]["total"] == rec["flows"]
    assert re.search(rf"{rec['windows']} windows scored", run.stderr) and "flowlstm-default+site" in run.stderr


def test_calibrating_again_replaces_the_copy(calibrated, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(calibrated[0], out)
    (out / "stale.tflite").write_bytes(b"x")
    proc = cli("calibrate", "--no-progress", "--pcap", MAWI_PCAP, "--out", out, "--false-alert-budget", "10000")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "stale.tflite").exists()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["site_calibration"]["false_alert_budget"] == 10000
    # every flow may alert: the site asks for less than the bundle, which is kept
    assert meta["threshold"] == ModelBundle(DEFAULT_BUNDLE).threshold
    assert not list(tmp_path.glob(".again-*"))


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(MAWI_PCAP.read_bytes()[:100_001])
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_BUNDLE, broken)
    (broken / "metadata.json").write_text("{")
    cases = [
        (("--pcap", MAWI_PCAP, "--out", notes), 73, r"notes: exists and is not a model bundle"),
        (("--pcap", cut, "--out", tmp_path / "a"), 65, r"cut\.pcap: .* at byte offset \d+"),
        (("--pcap", MAWI_PCAP, "--out", tmp_path / "b", "--model", broken), 78, r"unreadable metadata"),
        (("--pcap", MAWI_PCAP), 64, r"the following arguments are required: --out"),
        (("--pcap", MAWI_PCAP, "--out", DEFAULT_BUNDLE, "--model", DEFAULT_BUNDLE), 73, r"is the bundle being"),
    ]
    for args, code, pattern in cases:
        proc = cli("calibrate", "--no-progress", *args)
        err = error_lines(proc)
        assert proc.returncode == code and len(err) == 1, (args, proc.stderr)
        assert err[0].startswith("flowlstm-sensor: error: ") and re.search(pattern, err[0]), err
    assert (notes / "keep.txt").read_text() == "mine" and sorted(p.name for p in notes.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
