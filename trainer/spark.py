"""Spark plumbing: one place that starts a SparkContext the way flowlstm needs it, and the
progress of a long stage as tasks done of total."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark import SparkContext


@contextmanager
def spark_context(master: str = "local[*]", app: str = "flowlstm-train") -> Iterator[SparkContext]:
    """A SparkContext whose Python workers run this interpreter (the trainer venv).

    ``master`` is any Spark master URL: ``local[*]``, ``spark://host:7077``,
    ``yarn``, ``k8s://…``.  On a cluster the executors need the same venv at the
    same path (or set PYSPARK_PYTHON yourself).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        # Spark otherwise binds the first non-loopback address, which may not exist.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext

    conf = (
        SparkConf()
        .setMaster(master)
        .setAppName(app)
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.ui.enabled", "false")
        .set("spark.driver.memory", os.environ.get("FLOWLSTM_SPARK_DRIVER_MEMORY", "4g"))
        .set("spark.python.worker.reuse", "true")
    )
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    try:
        yield sc
    finally:
        sc.stop()


PROGRESS_EVERY = 10.0  # seconds between progress lines of a running stage
_GROUPS = itertools.count(1)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


@dataclass
class Stage:
    """What a running ``stage`` covers: set ``windows`` once known, for the windows/s at its end."""

    windows: int = 0


@contextmanager
def stage(
    sc: SparkContext,
    what: str,
    windows: int = 0,
    say: Callable[[str], None] = _stderr,
    every: float = PROGRESS_EVERY,
) -> Iterator[Stage]:
    """Run the block's Spark jobs as one job group named ``what``; while it runs, say every
    ``every`` seconds how many of its tasks are done, and at the end how long it took (and, given
    the windows it covers, how many a second).  Spark's own console bar is off: it names
    stages by call site and prints a line per stage of every job."""
    group = f"flowlstm-{next(_GROUPS)}"
    sc.setJobGroup(group, what)
    tracker = sc.statusTracker()

    def tasks() -> tuple[int, int, int]:
        done = total = running = 0
        for job in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(job)
            for sid in info.stageIds if info else ():
                st = tracker.getStageInfo(sid)
                if st is not None and (st.numCompletedTasks or st.numActiveTasks or info.status == "RUNNING"):
                    done, total, running = done + st.numCompletedTasks, total + st.numTasks, running + st.numActiveTasks
        return done, total, running

    stop = threading.Event()
    t0 = time.monotonic()

    def watch() -> None:
        last = None
        while not stop.wait(every):
            now = tasks()
            if now[1] and now != last:
                say(f"{what}: {now[0]}/{now[1]} tasks done, {now[2]} running ({_clock(time.monotonic() - t0)})")
                last = now

    thread = threading.Thread(target=watch, name="flowlstm-progress", daemon=True)
    thread.start()
    covered = Stage(windows)
    try:
        yield covered
    finally:
        stop.set()
        thread.join()
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    took = time.monotonic() - t0
    pace = f", {covered.windows:,} windows, {covered.windows / took:,.0f}/s" if covered.windows and took > 0 else ""
    done, total, _ = tasks()
    say(f"{what}: {done}/{total} tasks in {_clock(took)}{pace}")
