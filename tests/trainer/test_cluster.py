"""The trainer on a real standalone Spark cluster: a master and two workers started from the
installed pyspark (no download), ``features`` and ``train`` with ``--master spark://…``.

The cluster's windows must be the local run's, bit for bit (the same sensor code in every
task), and both workers must have run tasks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sensor.model import ModelBundle
from sensor.parquet import read_windows
from trainer.cli import main as train_main
from trainer.manifest import trace_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from standalone import ran_tasks, standalone_cluster  # noqa: E402

pytestmark = pytest.mark.slow  # two JVMs and a Spark application

WORKERS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, list[Path]]]:
    """``spark://127.0.0.1:PORT`` of a running master with two one-core workers; their work dirs."""
    with standalone_cluster(WORKERS, tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_features_and_train_on_a_standalone_cluster(cluster, workdir, tmp_path, monkeypatch):
    master, work = cluster
    monkeypatch.setenv("FLOWLSTM_SPARK_DRIVER_MEMORY", "1g")
    feat = tmp_path / "feat"
    args = ["--pcap", str(workdir / "mix.pcap"), "--labels", str(workdir / "mix.xml")]
    assert train_main(["features", *args, "--out", str(feat), "--master", master]) == 0
    ours = read_windows(str(feat / "trace=mix" / "part-0.parquet"))
    local = read_windows(str(workdir / "feat" / "trace=mix" / "part-0.parquet"))
    assert ours.x.shape == local.x.shape and ours.x.tobytes() == local.x.tobytes()
    for col in local.table.column_names:
        assert ours.table.column(col).equals(local.table.column(col)), col

    run = tmp_path / "run"
    train = ["train", "--features", str(feat), "--out", str(run), "--epochs", "1", "--no-family-holdout"]
    assert train_main([*train, "--master", master, "--partitions", str(2 * WORKERS)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert set(report["splits"]["held out"]) == {"lstm", "normal", "combined", "lstm (no context)", "linear svm"}
    assert len(ModelBundle(run / "bundle").heads) == 2
    # trained from the same inputs as the local run's features (by content), on the cluster
    assert report["manifest"]["traces"] == trace_inputs(workdir / "feat")
    assert report["manifest"]["spark"]["master"] == master
    # Both workers' executors ran tasks: the training really was spread over the cluster.
    ran = [ran_tasks(w) for w in work]
    assert all(n > 0 for n in ran), ran

    # The same seed and inputs on local[2] (the same four partitions, dealt by the seed) give
    # the same model: every partition's fit is seeded where it runs, and the driver averages
    # the updates in partition order.  (The .tflite files differ in tensor names: Keras numbers
    # layers per process, and this one has built models before.)
    here = tmp_path / "local"
    assert train_main([*train[:3], "--out", str(here), *train[5:], "--master", "local[2]", "--partitions", "4"]) == 0
    mine, theirs = (json.loads((r / "bundle" / "metadata.json").read_text()) for r in (here, run))
    assert mine["normalization"] == theirs["normalization"]
    assert mine["threshold"] == theirs["threshold"]
    assert [h["threshold"] for h in mine["heads"]] == [h["threshold"] for h in theirs["heads"]]
    windows = local.x[:: max(1, len(local.x) // 4096)]
    scores = [ModelBundle(r / "bundle").score_all(windows) for r in (here, run)]
    assert np.array_equal(scores[0], scores[1])
