"""The systemd unit's sandbox, as systemd's own security review scores it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import confine

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "flowlstm-sensor@.service"

needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")


@needs_analyze
def test_exposure_score_at_most_2(tmp_path):
    unit = tmp_path / "flowlstm-sensor@eth0.service"  # a template is reviewed as one of its instances
    shutil.copy(UNIT, unit)
    # --threshold counts in tenths of the printed score (systemd 252: 2.0 is 20).
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    score = re.search(r"Overall exposure level for flowlstm-sensor@eth0\.service: (\d+\.\d+)", proc.stdout)
    assert score, proc.stdout + proc.stderr
    assert float(score.group(1)) <= 2.0, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Directives the review would score but that systemd 252 does not know are typos, not hardening.
    assert "Unknown key" not in proc.stderr and "Unknown lvalue" not in proc.stderr, proc.stderr


def test_the_unit_grants_net_raw_alone_to_its_own_user():
    svc = confine.service_section(str(UNIT))
    assert confine.capabilities(svc) == ["net_raw"]
    assert svc["User"] == ["flowlstm"] and svc["Group"] == ["flowlstm"]
    assert svc["ReadWritePaths"] == ["/var/log/flowlstm"] and svc["ProtectSystem"] == ["strict"]
    assert svc["UMask"] == ["0027"]


@needs_analyze
def test_the_system_call_filter_keeps_what_the_sensor_needs():
    svc = confine.service_section(str(UNIT))
    allow: set[str] = set()
    for value in svc["SystemCallFilter"]:
        names = confine.expand(value.removeprefix("~").split())
        allow = allow - names if value.startswith("~") else allow | names
    # The capture (AF_PACKET ring: setsockopt, mmap, poll), threads (LiteRT, zeroconf), the
    # notify socket, the reload path (execve of --check), signals and the EVE writes.
    needed = {"socket", "setsockopt", "bind", "mmap", "munmap", "poll", "ppoll", "select", "clone", "futex"}
    needed |= {"sendto", "recvfrom", "execve", "rt_sigaction", "write", "openat", "getrandom", "sched_getaffinity"}
    assert needed <= allow, sorted(needed - allow)
    assert not {"setuid", "capset", "setrlimit", "ptrace", "mount", "init_module"} & allow
