"""A Spark standalone cluster on 127.0.0.1, started from the installed pyspark (no download).

``standalone_cluster(n)`` starts a master and ``n`` one-core workers on free ports, waits
until every worker has registered, yields the master URL and the workers' work directories
(their executors' logs are there), and stops them all.  The cluster test
(tests/trainer/test_cluster.py) and the scaling bench (bench/cluster.py) share it.
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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_state(ui: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
            state: dict[str, Any] = json.loads(r.read())
            return state
    except (OSError, ValueError):
        return {}


@contextmanager
def standalone_cluster(
    workers: int, tmp: Path, cores: int = 1, memory: str = "2g", timeout: float = 90.0
) -> Iterator[tuple[str, list[Path]]]:
    """``(spark://127.0.0.1:PORT, [work dir of each worker])`` of a running cluster."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(tmp))
    env["PYSPARK_PYTHON"] = sys.executable  # the executors' Python: this venv's
    port, ui = free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    work: list[Path] = []
    with ExitStack() as stack:

        def start(name: str, *args: str) -> None:
            log = stack.enter_context(open(tmp / f"{name}.log", "wb"))
            cmd = [str(home / "bin" / "spark-class"), *args]
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))

        def stop() -> None:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

        stack.callback(stop)  # runs before the logs close
        master_args = ("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
        start("master", "org.apache.spark.deploy.master.Master", *master_args)
        for i in range(workers):
            w = tmp / f"worker{i}"
            w.mkdir(exist_ok=True)
            work.append(w)
            start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                master,
                *("--host", "127.0.0.1", "--cores", str(cores), "--memory", memory),
                *("--webui-port", str(free_port()), "--work-dir", str(w)),
            )
        end = time.monotonic() + timeout
        while True:
            alive = [w for w in _master_state(ui).get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == workers:
                break
            if time.monotonic() > end or any(p.poll() is not None for p in procs):
                raise RuntimeError("the cluster did not start: " + (tmp / "master.log").read_text()[-2000:])
            time.sleep(0.5)
        yield master, work


def ran_tasks(work_dir: Path) -> int:
    """Tasks a worker's executors ran, from their own logs."""
    return sum(f.read_text(errors="replace").count("Running task") for f in work_dir.glob("app-*/*/stderr"))
