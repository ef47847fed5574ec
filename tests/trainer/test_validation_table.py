"""scripts/validation-table.py: the table over a validation run's seeds, read from the report
files the alert-level evaluation writes (trainer/fieldtest.Tally)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainer.fieldtest import Alert, Tally, TraceRun

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validation-table.py"
BENIGN = {"kind": "benign", "source": "iot", "seconds": 60.0, "attacks": []}


def _summary(false_alerts: int, detected: bool) -> dict:
    t = Tally()
    t.add(BENIGN, TraceRun("b", [Alert(1.0, "a", "b", 1)] * false_alerts, 5000))
    inst = {"family": "scan", "from_ns": 100 * 10**9, "to_ns": 110 * 10**9, "hosts": ["10.0.0.1"]}
    mix = {"kind": "mix", "source": "iot", "family": "scan", "attacks": [inst], "seconds": 60}
    t.add(mix, TraceRun("m", [Alert(101.0, "10.0.0.1", "x", 1)] if detected else [], 100))
    return t.summary()


def _write(root: Path, run: str, models: dict) -> Path:
    path = root / run / "alerts" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"models": models}))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_seeds_are_listed_and_summed_per_model(tmp_path):
    a = _write(tmp_path, "base-s1", {"shipped": _summary(3, True), "one-member": _summary(0, False)})
    b = _write(tmp_path, "base-s2", {"shipped": _summary(1, False)})
    out = run("--title", "base", str(a), str(b))
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0] == "### base"
    assert "| shipped | base-s1 | 1/1 | 1/1 (1) | 3 | 5000 | 6.0 | 0 |" in rows
    assert "| shipped | base-s2 | 0/1 | 0/1 (0) | 1 | 5000 | 2.0 | 0 |" in rows
    assert "| **shipped** | **sum of 2** |  | 1/2 (1) | 4 | 10000 | 4.0 | 0 |" in rows
    assert "| one-member | base-s2 | not evaluated | | | | | |" in rows
    assert "| **one-member** | **sum of 2** |  | 0/1 (0) | 0 | 5000 | 0.0 | 0 |" in rows


def test_a_file_that_is_no_report_is_named_without_a_traceback(tmp_path):
    bad = tmp_path / "x" / "alerts" / "report.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"traces": 3}')
    out = run(str(bad))
    assert out.returncode == 1
    assert "not an alert-level evaluation report" in out.stderr and "Traceback" not in out.stderr
