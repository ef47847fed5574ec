"""The .deb: built by packaging/build-deb.sh, inspected with dpkg-deb, its sensor run from the package tree."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ATTACKS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/bin/python3").exists() or not shutil.which("dpkg-deb"),
        reason="needs Debian's python3 and dpkg-deb",
    ),
]


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        [str(ROOT / "packaging" / "build-deb.sh"), str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_control_and_conffiles(deb):
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: flowlstm-sensor" in info and "Architecture: amd64" in info and "python3 (>= 3.11)" in info
    tree = deb.parent / "ctl"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(tree)], check=True)
    assert set((tree / "conffiles").read_text().split()) == {
        "/etc/flowlstm/sensor.yaml",
        "/etc/default/flowlstm-sensor",
        "/etc/logrotate.d/flowlstm",
    }


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
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "sensor.cli",
            "run",
            "--no-progress",
            "--config",
            str(root / "etc/flowlstm/sensor.yaml"),
            "--pcap",
            str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
            "--eve",
            str(eve),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    events = [json.loads(x) for x in eve.read_text().splitlines()]
    assert events[-1]["event_type"] == "stats" and events[-1]["stats"]["decoder"]["pkts"] == 8000


def test_manual_pages(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    for page in ("man8/flowlstm-sensor.8", "man5/sensor.yaml.5"):
        packed = (root / "usr/share/man" / f"{page}.gz").read_bytes()
        # gzip -n: no file name (FLG bit 3) and a zero time stamp, for a reproducible build.
        assert packed[3] & 0x08 == 0 and packed[4:8] == bytes(4)
        assert gzip.decompress(packed) == (ROOT / "docs" / "man" / page.split("/")[1]).read_bytes()


def installed(package: str) -> bool:
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True)
    return q.returncode == 0 and q.stdout.endswith(" installed")


@pytest.mark.skipif(os.geteuid() != 0, reason="installs the package: needs root")
@pytest.mark.skipif(installed("flowlstm-sensor"), reason="flowlstm-sensor is installed here; not touching it")
def test_dpkg_installs_runs_and_purges(deb, tmp_path):
    try:
        inst = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True)
        assert inst.returncode == 0, inst.stderr
        assert Path("/var/log/flowlstm").is_dir()  # made by postinst
        version = subprocess.run(["flowlstm-sensor", "--version"], capture_output=True, text=True, check=True)
        assert version.stdout.startswith("flowlstm-sensor ")
        # systemd's own checker on the installed unit (paths, directives, the instance's interface).
        verify = subprocess.run(
            ["systemd-analyze", "verify", "flowlstm-sensor@eth0.service"], capture_output=True, text=True
        )
        assert verify.returncode == 0 and "flowlstm" not in verify.stderr, verify.stderr
        eve = tmp_path / "eve.json"
        subprocess.run(
            [
                "flowlstm-sensor",
                "run",
                "--no-progress",
                "--config",
                "/etc/flowlstm/sensor.yaml",
                "--pcap",
                str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
                "--eve",
                str(eve),
            ],
            check=True,
            capture_output=True,
        )
        assert json.loads(eve.read_text().splitlines()[-1])["stats"]["decoder"]["pkts"] == 8000
    finally:
        purge = subprocess.run(["dpkg", "--purge", "flowlstm-sensor"], capture_output=True, text=True)
    assert purge.returncode == 0, purge.stderr
    assert not installed("flowlstm-sensor")
    assert not any(
        Path(p).exists()
        for p in (
            "/opt/flowlstm",
            "/etc/flowlstm",
            "/usr/bin/flowlstm-sensor",
            "/lib/systemd/system/flowlstm-sensor@.service",
            "/var/log/flowlstm",
        )
    )
