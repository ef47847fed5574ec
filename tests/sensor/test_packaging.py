"""The .deb: built by packaging/build-deb.sh (dpkg-buildpackage on debian/), inspected with dpkg-deb and
lintian, its sensor run from the package tree, installed, run confined as the unit runs it, and purged."""

from __future__ import annotations

import gzip
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sensor.capture import read_packets

from ..conftest import ATTACKS, DATA
from . import confine
from .conftest import NotifySocket

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/bin/python3").exists() or not shutil.which("dpkg-deb"),
        reason="needs Debian's python3 and dpkg-deb",
    ),
]


def test_control_and_conffiles(deb, tmp_path):
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: flowlstm-sensor" in info and "Architecture: amd64" in info and "python3 (>= 3.11)" in info
    tree = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(tree)], check=True)
    assert set((tree / "conffiles").read_text().split()) == {
        "/etc/flowlstm/sensor.yaml",
        "/etc/default/flowlstm-sensor",
        "/etc/logrotate.d/flowlstm",
    }
    # The template unit is installed, never enabled or started (it has no instance); the
    # user comes from sysusers.d before postinst makes the log directory for it.
    postinst = (tree / "postinst").read_text()
    code = [x for x in postinst.splitlines() if not x.lstrip().startswith("#")]
    assert not [x for x in code if "enable" in x or re.search(r"\bstart\b", x)], postinst
    assert postinst.index("systemd-sysusers") < postinst.index("install -d -m 0750 -o flowlstm")
    assert "rm -rf /var/log/flowlstm" in (tree / "postrm").read_text()


@pytest.mark.skipif(not shutil.which("lintian"), reason="needs lintian (scripts/setup.sh installs it)")
def test_lintian_finds_no_errors_or_warnings(deb):
    proc = subprocess.run(["lintian", "--no-cfg", "--tag-display-limit", "0", str(deb)], capture_output=True, text=True)
    tags = [x for x in proc.stdout.splitlines() if x[:2] in ("E:", "W:")]
    assert not tags, "\n".join(tags[:40])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_package_tree_runs_the_sensor(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    venv = root / "opt" / "flowlstm" / "venv" / "sensor"
    assert (root / "lib/systemd/system/flowlstm-sensor@.service").read_text().count("Type=notify") == 1
    assert (root / "usr/lib/sysusers.d/flowlstm-sensor.conf").read_text().splitlines()[-1].startswith("u flowlstm ")
    assert sorted(p.name for p in (venv / "bin").iterdir()) == ["flowlstm-sensor", "python", "python3", "python3.11"]
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


def promiscuity(ns: str, dev: str) -> int:
    link = subprocess.run(["ip", "-n", ns, "-d", "link", "show", dev], capture_output=True, text=True, check=True)
    return int(re.search(r"promiscuity (\d+)", link.stdout).group(1))


def confined_capture(unit: Path, veth) -> tuple[dict[str, str], list[dict]]:
    """The installed sensor, run as its unit says (ExecStart=, /etc/default, user, capabilities, file
    system view, seccomp filters: tests/sensor/confine.py) in the veth pair's sensor-side namespace,
    with systemd's %i the veth end, while the other end replays a capture.  → (its /proc status, EVE events)."""
    ns_a, ns_b, a, b = veth
    svc = confine.service_section(str(unit))
    default = Path(svc["EnvironmentFile"][0].lstrip("-")).read_text()
    opts = shlex.split(re.search(r'^FLOWLSTM_OPTS="(.*)"$', default, re.M).group(1))
    argv = [opts if w == "$FLOWLSTM_OPTS" else [w.replace("%i", b)] for w in svc["ExecStart"][0].split()]
    eve = Path("/var/log/flowlstm/eve.json")
    eve.unlink(missing_ok=True)
    # Type=notify, as under systemd: the replay starts once READY=1 says the capture is open.  (The
    # link turns promiscuous inside libpcap's activation, before its ring takes packets: waiting for
    # that lost a replay's first packets on a loaded machine.)
    with NotifySocket(Path(f"/run/flowlstm-test-notify-{os.getpid()}"), 0o666) as notify:  # sent as flowlstm
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns_b, "unshare", "--mount", "--propagation", "private", "/usr/bin/python3"]
            + [confine.SELF, str(unit), "--", *(w for ws in argv for w in ws)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        )
        try:
            ready = notify.wait("READY=1", 60, proc)
            assert ready, proc.stderr.read() if proc.poll() is not None else "no READY=1 in 60 s"
            assert promiscuity(ns_b, b) == 1  # sensor.yaml has promiscuous: true
            status = dict(x.split(":", 1) for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
            status = {k: v.strip() for k, v in status.items()}
            replay = ["ip", "netns", "exec", ns_a, "tcpreplay", "-q", "-i", a, "--pps", "2000"]
            subprocess.run([*replay, str(DATA / "zeek" / "ssh_sshguess.pcap")], check=True, capture_output=True)
            time.sleep(3.0)  # the last seconds close
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    st = eve.stat()
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam("flowlstm").pw_uid, pwd.getpwnam("flowlstm").pw_gid)
    assert st.st_mode & 0o777 == 0o640  # UMask=0027
    return status, [json.loads(x) for x in eve.read_text().splitlines()]


@pytest.mark.skipif(os.geteuid() != 0, reason="installs the package: needs root")
@pytest.mark.skipif(installed("flowlstm-sensor"), reason="flowlstm-sensor is installed here; not touching it")
@pytest.mark.skipif(not shutil.which("tcpreplay"), reason="needs tcpreplay")
def test_dpkg_installs_runs_confined_and_purges(deb, tmp_path, veth):
    try:
        inst = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True)
        assert inst.returncode == 0, inst.stderr
        user = pwd.getpwnam("flowlstm")  # made by systemd-sysusers in postinst
        log = Path("/var/log/flowlstm").stat()  # made by postinst, for that user
        assert (log.st_uid, log.st_gid, log.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o750)
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
        # The daemon as the installed unit runs it, without systemd (none runs here as PID 1).
        status, events = confined_capture(Path("/lib/systemd/system/flowlstm-sensor@.service"), veth)
        uid = str(user.pw_uid)
        assert status["Uid"].split() == [uid] * 4 and status["Gid"].split() == [str(user.pw_gid)] * 4
        net_raw = f"{1 << 13:016x}"  # CAP_NET_RAW alone, as the unit grants it
        assert (status["CapEff"], status["CapPrm"], status["CapAmb"], status["CapBnd"]) == (net_raw,) * 4
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        sent = sum(len(b) for b in read_packets(DATA / "zeek" / "ssh_sshguess.pcap"))
        last = events[-1]["stats"]
        assert events[-1]["event_type"] == "stats" and last["decoder"]["pkts"] == sent, (sent, last)
        assert last["capture"]["kernel_packets"] == sent and last["capture"]["kernel_drops"] == 0, (sent, last)
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
            "/usr/lib/sysusers.d/flowlstm-sensor.conf",
        )
    )
