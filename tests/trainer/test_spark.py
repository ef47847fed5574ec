"""Progress of a Spark stage: tasks done of total while it runs, its time and pace at the end."""

from __future__ import annotations

import re
import time

import pytest

from trainer.spark import spark_context, stage

pytestmark = pytest.mark.slow  # starts Spark


def test_a_stage_reports_tasks_done_while_it_runs_and_its_pace_at_the_end():
    lines: list[str] = []
    with spark_context("local[2]") as sc:
        rdd = sc.parallelize(range(8), 8).map(lambda x: (time.sleep(0.5), x)[1])
        with stage(sc, "[test] eight tasks", say=lines.append, every=0.2) as st:
            assert rdd.count() == 8
            st.windows = 8000
        with stage(sc, "[test] the next", say=lines.append, every=0.2):
            rdd.collect()
    first = [line for line in lines if line.startswith("[test] eight tasks")]
    running = [re.match(r".*: (\d+)/8 tasks done, \d+ running", line) for line in first[:-1]]
    assert running and all(running)
    done = [int(m.group(1)) for m in running if m]
    assert done == sorted(done) and done[0] < 8  # seen while it ran, and never going back
    assert re.fullmatch(r"\[test\] eight tasks: 8/8 tasks in 0:00:\d\d, 8,000 windows, [\d,]+/s", first[-1])
    # Each stage counts its own jobs' tasks only.
    assert re.fullmatch(r"\[test\] the next: 8/8 tasks in 0:00:\d\d", lines[-1])
