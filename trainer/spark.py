"""Spark plumbing: one place that starts a SparkContext the way flowlstm needs it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
