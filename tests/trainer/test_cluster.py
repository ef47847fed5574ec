"""The trainer on a real standalone Spark cluster: a master and two workers started from the
installed pyspark (no download), ``features`` and ``train`` with ``--master spark://…``.

The cluster's windows must be the local run's, bit for bit (the same sensor code in every
task), and both workers must have run tasks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.model import ModelBundle
from sensor.parquet import read_windows
from trainer.cli import main as train_main

pytestmark = pytest.mark.slow  # two JVMs and a Spark application

WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_state(ui: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, list[Path]]]:
    """``spark://127.0.0.1:PORT`` of a running master with two one-core workers; their work dirs."""
    import pyspark

    home = Path(pyspark.__file__).parent
    tmp = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(tmp))
    env["PYSPARK_PYTHON"] = sys.executable  # the executors' Python: this venv's
    spark_class = [str(home / "bin" / "spark-class")]
    port, ui = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    procs, logs, work = [], [], []

    def start(name: str, *args: str) -> None:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed after the process ends
        logs.append(log)
        procs.append(subprocess.Popen([*spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)),
        )
        for i in range(WORKERS):
            w = tmp / f"worker{i}"
            w.mkdir()
            work.append(w)
            start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                master,
                *("--host", "127.0.0.1", "--cores", "1", "--memory", "2g"),
                *("--webui-port", str(_free_port()), "--work-dir", str(w)),
            )
        end = time.monotonic() + 90
        while time.monotonic() < end:
            alive = [w for w in _master_state(ui).get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == WORKERS:
                break
            assert all(p.poll() is None for p in procs), (tmp / "master.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("the workers did not register: " + (tmp / "master.log").read_text()[-2000:])
        yield master, work
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _ran_tasks(work_dir: Path) -> int:
    """Tasks this worker's executors ran, from their own logs."""
    return sum(f.read_text(errors="replace").count("Running task") for f in work_dir.glob("app-*/*/stderr"))


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
    # Both workers' executors ran tasks: the training really was spread over the cluster.
    ran = [_ran_tasks(w) for w in work]
    assert all(n > 0 for n in ran), ran
