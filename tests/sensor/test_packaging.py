"""The .deb: built by packaging/build-deb.sh, inspected with dpkg-deb, its sensor run from the package tree."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ATTACKS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/usr/bin/python3").exists() or not shutil.which("dpkg-deb"),
                                reason="needs Debian's python3 and dpkg-deb")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run([str(ROOT / "packaging" / "build-deb.sh"), str(out)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_control_and_conffiles(deb):
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: flowlstm-sensor" in info and "Architecture: amd64" in info and "python3 (>= 3.11)" in info
    tree = deb.parent / "ctl"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(tree)], check=True)
    assert set((tree / "conffiles").read_text().split()) == {
        "/etc/flowlstm/sensor.yaml", "/etc/default/flowlstm-sensor", "/etc/logrotate.d/flowlstm"}


def test_package_tree_runs_the_sensor(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    venv = root / "opt" / "flowlstm" / "venv" / "sensor"
    assert (root / "lib/systemd/system/flowlstm-sensor@.service").read_text().count("Type=notify") == 1
    assert (root / "usr/bin/flowlstm-sensor").is_symlink()
    assert (venv / "bin" / "flowlstm-sensor").read_text().startswith("#!/opt/flowlstm/venv/sensor/bin/python")
    assert not any(str(tmp_path) in p.read_text(errors="ignore") for p in (venv / "bin").glob("*") if p.is_file())
    # The venv is relocatable for its interpreter: run the packaged sensor from the extracted tree.
    eve = tmp_path / "eve.json"
    subprocess.run([str(venv / "bin" / "python"), "-m", "sensor.cli", "run", "--no-progress", "--config",
                    str(root / "etc/flowlstm/sensor.yaml"), "--pcap", str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
                    "--eve", str(eve)], check=True, capture_output=True, cwd=tmp_path)
    events = [json.loads(x) for x in eve.read_text().splitlines()]
    assert events[-1]["event_type"] == "stats" and events[-1]["stats"]["decoder"]["pkts"] == 8000
