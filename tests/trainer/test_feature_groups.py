"""scripts/feature-groups.py: the analysis that chose the features the models are trained
without, on the injected trace's windows and the shipped bundle."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.model import DEFAULT_BUNDLE

pytestmark = pytest.mark.slow  # the injected trace's windows come from Spark

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "feature-groups.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_groups_the_bundle_ignores_move_no_window(workdir):
    out = run(
        "--bundle", str(DEFAULT_BUNDLE), "--features", str(workdir / "feat"), "--benign", "mix", "--attacks", "mix"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    head = re.search(r": (\d+) of \d+ benign windows and (\d+) of \d+ attack windows", out.stdout)
    assert head, out.stdout[:500]
    hot_benign, hot_attack = int(head[1]), int(head[2])
    assert hot_attack > 0  # the scan and the flood score above the threshold
    rows = {c[0]: c[1:] for c in (line.strip("| ").split(" | ") for line in out.stdout.splitlines() if " | " in line)}
    # The shipped bundle is trained without the link's composition: setting it to its mean
    # changes no score, so no window crosses the threshold either way.
    assert rows["link composition"] == ["10", f"0/{hot_benign}", f"{hot_attack}/{hot_attack}"]
    # Groups it does use move attack windows below it: the analysis tells them apart.  Which
    # groups carry this trace's scan and flood depends on the bundle (the responder's, for
    # the one shipped at stop 33), so any used group will do.
    kept = [
        int(r[2].split("/")[0]) for g, r in rows.items() if len(r) == 3 and r[0].isdigit() and g != "link composition"
    ]
    assert len(kept) >= 10 and min(kept) < hot_attack
    # the threshold-free view: the trace's attack windows against its own benign flows
    assert [float(v) for v in rows["mix"]] == sorted(float(v) for v in rows["mix"]) and float(rows["mix"][-1]) > 0


def test_a_missing_trace_is_one_clear_line(workdir):
    out = run(
        "--bundle", str(DEFAULT_BUNDLE), "--features", str(workdir / "feat"), "--benign", "nope", "--attacks", "mix"
    )
    assert out.returncode == 1 and out.stderr.strip().endswith("no windows of trace 'nope'")
    assert "Traceback" not in out.stderr
