"""inject → features on Spark → train (Elephas) → evaluate → export → load in LiteRT, on local[2].

Small enough for CI: one mixed trace, one epoch.  The parity test compares the
trainer's windows (Spark task, trainer venv, NumPy 1.26) with the sensor's
``features`` command run in the sensor's own venv (NumPy 2), bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sensor.features import LINK_COMPOSITION, SCHEMA
from sensor.model import ModelBundle
from sensor.parquet import read_windows
from trainer.cli import main as train_main
from trainer.manifest import run_manifest

ROOT = Path(__file__).resolve().parents[2]
SENSOR_PY = ROOT / ".venv" / "sensor" / "bin" / "python"


pytestmark = pytest.mark.slow  # Spark local[2] and a TensorFlow training epoch


def test_features_partitioned_by_trace_and_labelled(workdir):
    part = workdir / "feat" / "trace=mix" / "part-0.parquet"
    t = pq.ParquetFile(part).read()
    labels = t.column("label").to_numpy()
    assert labels.sum() > 1000 and (labels == 0).sum() > 30000
    tax = set(t.column("taxonomy").to_pylist())
    assert {"ntscSYN", "DDoSSYN", ""} <= tax


@pytest.mark.skipif(not SENSOR_PY.exists(), reason="needs the sensor venv (scripts/setup.sh sensor)")
def test_parity_with_the_sensor_bit_for_bit(workdir):
    out = workdir / "sensor.parquet"
    subprocess.run(
        [
            str(SENSOR_PY),
            "-m",
            "sensor.cli",
            "features",
            "--pcap",
            str(workdir / "mix.pcap"),
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        cwd=ROOT,
    )
    ours = read_windows(str(workdir / "feat" / "trace=mix" / "part-0.parquet"))
    theirs = read_windows(str(out))
    assert ours.x.shape == theirs.x.shape and ours.x.shape[0] > 50_000
    assert ours.x.tobytes() == theirs.x.tobytes()
    for col in theirs.table.column_names:
        assert ours.table.column(col).equals(theirs.table.column(col)), col


def test_train_evaluate_export_and_load(workdir):
    run = workdir / "run"
    assert (
        train_main(
            [
                "train",
                "--features",
                str(workdir / "feat"),
                "--out",
                str(run),
                "--epochs",
                "1",
                "--no-family-holdout",
                "--master",
                "local[2]",
                "--name",
                "e2e",
            ]
        )
        == 0
    )
    report = json.loads((run / "report.json").read_text())
    models = report["splits"]["held out"]
    assert set(models) == {"lstm", "normal", "combined", "lstm (no context)", "linear svm"}
    for m in models.values():
        assert 0 <= m["fpr"] <= 1 and 0 <= m["detection_rate"] <= 1 and m["roc_auc"] > 0.5
    for png in ("roc.png", "pr.png", "scores.png"):
        assert (run / png).stat().st_size > 10_000
    assert "| lstm |" in (run / "report.md").read_text()

    q = report["quantization"]
    assert q["agreement"] >= 0.99 and 10_000 < q["bytes"] < 200_000

    # the run's manifest: the capture and labels by content, the settings, the versions; the
    # bundle carries the same one
    m = report["manifest"]
    sha = {f: hashlib.sha256((workdir / f).read_bytes()).hexdigest() for f in ("mix.pcap", "mix.xml")}
    assert m["traces"]["mix"]["capture"] == sha["mix.pcap"] and m["traces"]["mix"]["labels"] == [sha["mix.xml"]]
    assert m["unrecorded"] == [] and m["settings"]["seed"] == 7 and m["spark"]["master"] == "local[2]"
    assert m["versions"]["tensorflow-cpu"] and m["versions"]["pyspark"] and m["versions"]["elephas"]
    assert json.loads((run / "bundle" / "metadata.json").read_text())["training"]["manifest"] == m
    assert f"Run {m['id'][:16]}" in (run / "report.md").read_text()
    again = run_manifest(
        workdir / "feat", {"mix"}, m["settings"], "spark://elsewhere:7077", 8, m["versions"]["flowlstm"]
    )
    assert again["id"] == m["id"]  # where it ran is recorded, not part of what it was trained from
    assert run_manifest(workdir / "feat", {"mix"}, {**m["settings"], "seed": 1}, "local", 1, "x")["id"] != m["id"]

    # readable by a sensor running as its own user (the export starts in a private temp dir)
    umask = os.umask(0)
    os.umask(umask)
    assert (run / "bundle").stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in (run / "bundle").iterdir())
    bundle = ModelBundle(run / "bundle")
    assert bundle.name == "e2e" and 0 < bundle.threshold < 1
    # trained without the link's composition by default: the bundle says so, every head and
    # baseline sees those features as 0
    assert bundle.normalization.ignored == tuple(SCHEMA.names.index(n) for n in LINK_COMPOSITION)
    assert "Trained without ctx_hn_src" in (run / "report.md").read_text()
    assert bundle.head_names == ("supervised", "normal") and np.all((bundle.thresholds > 0) & (bundle.thresholds < 1))
    w = read_windows(str(workdir / "feat" / "trace=mix" / "part-0.parquet"))
    scores = bundle.score_all(w.x)
    # each head alone and the baselines, as bundles the sensor runs side by side with the combined one
    alone = {
        name: ModelBundle(run / "baselines" / name) for name in ("supervised", "normal", "no-context", "linear-svm")
    }
    for name, b in alone.items():
        assert b.head_names == (name,) and b.name == f"e2e-{name}"
        assert b.normalization.ignored == bundle.normalization.ignored
    for i, name in enumerate(("supervised", "normal")):  # the combined sensor's heads, at its thresholds
        assert alone[name].threshold == pytest.approx(float(bundle.thresholds[i]))
        assert np.abs(alone[name].score_all(w.x[:500])[:, 0] - scores[:500, i]).max() < 1e-6
    for name in ("no-context", "linear-svm"):
        q = alone[name].score_all(w.x[:2000])[:, 0]
        assert np.all((q >= 0) & (q <= 1)) and np.ptp(q) > 0
    assert scores.shape == (len(w.x), 2) and np.all((scores >= 0) & (scores <= 1))
    # the normal head's threshold, set for the false-alert budget on benign training flows,
    # leaves the benign windows of its own training trace (nearly) all quiet
    y = w.table.column("label").to_numpy() == 1
    assert y.any() and (~y).any()
    assert np.mean(scores[~y, 1] >= bundle.thresholds[1]) < 0.01

    assert (
        train_main(
            [
                "evaluate",
                "--model",
                str(run / "bundle"),
                "--features",
                str(workdir / "feat"),
                "--out",
                str(workdir / "eval"),
            ]
        )
        == 0
    )
    ev = json.loads((workdir / "eval" / "report.json").read_text())
    assert ev["model"]["sha256"] == bundle.sha256


def test_features_again_skips_what_is_extracted_and_redoes_what_changed(workdir, tmp_path, capsys):
    feat = tmp_path / "feat"
    shutil.copytree(workdir / "feat", feat)
    part = feat / "trace=mix" / "part-0.parquet"
    before = part.read_bytes()
    args = ["features", "--pcap", str(workdir / "mix.pcap"), "--out", str(feat), "--master", "local[2]"]
    assert train_main([*args, "--labels", str(workdir / "mix.xml")]) == 0
    assert "skipped" in capsys.readouterr().out
    assert part.read_bytes() == before
    # The same labels with one more newline hash differently: the trace is extracted again.
    labels = tmp_path / "mix.xml"
    labels.write_bytes((workdir / "mix.xml").read_bytes() + b"\n")
    part.write_bytes(b"not parquet")
    assert train_main([*args, "--labels", str(labels)]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert part.read_bytes() == before  # the windows and labels as extracted the first time
    assert json.loads((part.parent / "_SUCCESS.json").read_text())["summary"]["windows"] > 50_000


def test_a_trace_cut_into_time_ranges_gives_the_uncut_windows(workdir, tmp_path, capsys):
    uncut = read_windows(str(workdir / "feat" / "trace=mix" / "part-0.parquet"))
    feat = tmp_path / "feat"
    args = ["features", "--pcap", str(workdir / "mix.pcap"), "--labels", str(workdir / "mix.xml")]
    args += ["--out", str(feat), "--master", "local[2]"]
    # The 78 s trace in four ranges, four tasks, each warmed up from the trace's start.
    assert train_main([*args, "--split", "20", "--warm-up", "100"]) == 0
    assert "[features] extracting 4 parts of 1 traces: 4/4 tasks in" in capsys.readouterr().err
    part = feat / "trace=mix"
    parts = sorted(part.glob("part-*.parquet"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(parts) == 4
    got = [read_windows(str(p)) for p in parts]
    assert np.concatenate([g.x for g in got]).tobytes() == uncut.x.tobytes()
    for col in uncut.table.column_names:
        joined = np.concatenate([g.table.column(col).to_numpy(zero_copy_only=False) for g in got])
        assert np.array_equal(joined, uncut.table.column(col).to_numpy(zero_copy_only=False)), col
    marker = json.loads((part / "_SUCCESS.json").read_text())
    assert marker["inputs"]["warm_up"] == 100 and len(marker["inputs"]["ranges"]) == 4
    assert marker["summary"]["windows"] == len(uncut.x)
    capsys.readouterr()
    assert train_main([*args, "--split", "20", "--warm-up", "100"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert train_main([*args, "--split", "20", "--warm-up", "50"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert len(list(part.glob("part-*.parquet"))) == 4
    # Another cut is another extraction: no part of the old one is left to be read twice.
    assert train_main([*args, "--split", "0"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert [p.name for p in part.glob("part-*.parquet")] == ["part-0.parquet"]
    assert read_windows(str(part / "part-0.parquet")).x.tobytes() == uncut.x.tobytes()
    # A trace extracted whole is exact: it is not cut again.
    assert train_main([*args, "--split", "20", "--warm-up", "100"]) == 0
    assert "skipped" in capsys.readouterr().out
