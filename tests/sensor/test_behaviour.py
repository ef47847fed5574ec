"""The sensor's observable behaviour, pinned: a refactoring must not change it.

tests/data/fingerprint.txt holds scripts/fingerprint.py's hashes of the feature windows,
EVE alert lines and Zeek notice rows of every bundled capture under three option sets
(the score lines are left out here, and the scores are masked in the EVE and notice hashes:
XNNPACK picks its kernels by CPU, so a score's fourth place can differ from one CPU to
another; which alerts are written, and all else they say, is pinned).  A change meant to alter behaviour (new
features, a new model) regenerates the file in the same commit and says why:

    .venv/sensor/bin/python scripts/fingerprint.py | grep -v " scores " > tests/data/fingerprint.txt
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import DATA


@pytest.mark.slow
def test_windows_alerts_and_notices_are_those_pinned():
    root = DATA.parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "scripts" / "fingerprint.py")], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    got = [line for line in out.splitlines() if " scores " not in line]
    assert got == (DATA / "fingerprint.txt").read_text().splitlines()
