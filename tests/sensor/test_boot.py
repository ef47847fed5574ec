"""The .deb under a real systemd: a Debian 12 tree boots with systemd as PID 1, installs the package
with apt, and runs flowlstm-sensor@IFACE as the unit says.

What this proves that test_packaging's emulated confinement cannot: ``systemctl enable --now``
returns once the daemon's READY=1 arrives (Type=notify) with its STATUS= text; systemd itself drops
the daemon to the flowlstm user with CAP_NET_RAW alone; a stalled main loop misses its WATCHDOG=1
pings and systemd kills and restarts it; ``systemctl reload`` swaps the model in the running
process and refuses a broken file without touching it; journald files the daemon's lines at the
priorities it prefixes; a logrotate run of the package's file, with its postrotate reload, loses
and splits no EVE line under a steady stream of alerts; an upgrade (a reinstall over a unit systemd
loaded in another version) reloads the unit and restarts the instance on it; ``apt-get purge``
stops the instance and removes the package's files and the instance's enablement link (the
flowlstm user stays, as debian/postrm says).

How it boots (not with systemd-nspawn, which failed on this project's CI machine, whose init is not
systemd, for want of a host system bus): the tree is debootstrapped once and cached (``CACHE``,
keyed by what goes into it); each run mounts an overlay on it, so the cache stays pristine, and
starts ``/lib/systemd/systemd --system`` chrooted into it as PID 1 of new PID, mount and cgroup
namespaces, inside the sensor-side network namespace of a veth pair.  Every mount lives in that
mount namespace and goes when its last process does; the cgroup namespace is rooted in a cgroup2
directory of the test's own, removed afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensor.capture import read_packets

from ..conftest import ATTACKS, DATA
from .conftest import veth_pair

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="boots systemd in namespaces: needs root"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("debootstrap", "unshare", "nsenter", "tcpreplay", "ip")),
        reason="needs debootstrap, unshare, nsenter (util-linux), tcpreplay and ip (scripts/setup.sh installs them)",
    ),
]

SUITE = "bookworm"
MIRROR = os.environ.get("FLOWLSTM_BOOT_MIRROR", "http://deb.debian.org/debian")
# The tree: systemd and what an administrator's Debian 12 has that the test drives (logrotate is
# Priority: important, so installed everywhere, but not a dependency of the package).
INCLUDE = ("systemd", "systemd-sysv", "dbus", "logrotate")
# Downloaded into the tree's apt cache, not installed: the package's Depends beyond minbase.  The
# tree has no network (it lives in the veth namespace), so 'apt-get install ./the.deb' installs the
# Depends from these; a dependency the package forgets to declare stays uninstalled and shows as a
# failure, as it would on a minimal install.  (Not --no-download: apt 2.6 then fails on the local
# .deb itself, "Internal Error, Pathname to install is not absolute".)
PREFETCH = ("python3", "procps")
# Units that would reach past the tree into the shared kernel (sysctls, binfmt_misc, modules, the
# host console) or run on their own during the test (timers, apt, logrotate's own daily run).
MASK = (
    "getty.target",
    "console-getty.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-modules-load.service",
    "systemd-firstboot.service",
    "systemd-journald-audit.socket",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "cron.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "logrotate.timer",
    "systemd-tmpfiles-clean.timer",
)
TREE_KEY = hashlib.sha256(repr((SUITE, MIRROR, INCLUDE, PREFETCH, MASK, 1)).encode()).hexdigest()[:16]
CACHE = Path(os.environ.get("FLOWLSTM_BOOT_CACHE", "/var/cache/flowlstm-test-boot"))

UNIT_FILE = "/lib/systemd/system/flowlstm-sensor@.service"
DROPIN = "/etc/systemd/system/flowlstm-sensor@.service.d/boot-test.conf"
SWAP = "/var/lib/flowlstm-boot-test/swap"  # a second model bundle, for the reload
NET_RAW = f"{1 << 13:016x}"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SYSTEMD_COLORS": "0",
    "SYSTEMD_PAGER": "",
    "DEBIAN_FRONTEND": "noninteractive",
}

# Run as PID 1 of the new PID namespace, in its private mount namespace: the API file systems
# systemd expects of a container (the layout nspawn makes), read-only where they are the host's
# kernel.  /dev is a tmpfs with the harmless nodes bound in and a file as its console, so nothing
# in the tree reaches the host's console or kernel log.  cgroup2 is mounted before systemd starts,
# so it runs the unified hierarchy inside the cgroup namespace instead of mounting the host's v1
# controllers and making cgroups in their roots.
BOOT = r"""
lower=$1 state=$2 root=$2/root
mkdir -p "$state/upper" "$state/work" "$root"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
for p in sys sysrq-trigger; do
    [ -e "$root/proc/$p" ] || continue  # no sysrq-trigger without CONFIG_MAGIC_SYSRQ
    mount --bind "$root/proc/$p" "$root/proc/$p"
    mount -o remount,bind,ro "$root/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for n in null zero full random urandom tty; do
    touch "$root/dev/$n"
    mount --bind "/dev/$n" "$root/dev/$n"
done
touch "$state/console" "$root/dev/console"
mount --bind "$state/console" "$root/dev/console"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
exec env -i container=flowlstm-boot-test /usr/sbin/chroot "$root" /lib/systemd/systemd --system \
    --log-target=journal-or-kmsg systemd.unified_cgroup_hierarchy=1 </dev/null >>"$state/console" 2>&1
"""


def tree() -> Path:
    """The cached Debian 12 tree, debootstrapped on first use (about two minutes)."""
    done = CACHE / TREE_KEY
    if done.is_dir():  # made whole, then renamed into place
        return done
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"{TREE_KEY}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        # In a private mount namespace: debootstrap mounts proc and sys in the target, and a run
        # cut short must not leave them mounted on the host.
        boot = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase"]
            + [f"--include={','.join(INCLUDE)}", SUITE, str(work), MIRROR],
            capture_output=True,
            text=True,
        )
        if boot.returncode != 0:
            pytest.fail(f"debootstrap {SUITE} from {MIRROR} failed:\n{boot.stdout[-3000:]}{boot.stderr[-2000:]}")
        for unit in MASK:
            (work / "etc/systemd/system" / unit).unlink(missing_ok=True)
            (work / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (work / "etc/systemd/system/default.target").unlink(missing_ok=True)
        (work / "etc/systemd/system/default.target").symlink_to("/lib/systemd/system/multi-user.target")
        fetch = subprocess.run(
            ["chroot", str(work), "sh", "-ec", 'apt-get clean; apt-get install -qq --download-only "$@"', "fetch"]
            + ["-y", "--no-install-recommends", *PREFETCH],
            capture_output=True,
            text=True,
            env=ENV,
        )
        if fetch.returncode != 0:
            pytest.fail(f"apt-get --download-only {' '.join(PREFETCH)} in the tree failed:\n{fetch.stderr[-3000:]}")
        try:
            work.rename(done)
        except OSError:
            if not done.is_dir():  # not another run's tree, finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done


def cgroup2_base() -> Path:
    """This process's own cgroup in the cgroup2 hierarchy (/sys/fs/cgroup, or .../unified when hybrid)."""
    mounts = [x.split(" - ", 1) for x in Path("/proc/self/mountinfo").read_text().splitlines()]
    points = [a.split()[4] for a, b in mounts if b.split()[0] == "cgroup2"]
    if not points:
        pytest.skip("no cgroup2 hierarchy is mounted here; systemd needs one to track its units")
    own = next(x[3:] for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
    return Path(points[0]) / own.lstrip("/")


def remove_cgroup(cg: Path, wait: float = 20) -> None:
    """rmdir the cgroup and what systemd made below it, deepest first (a cgroup goes once it is empty)."""
    end = time.monotonic() + wait
    while cg.exists():
        try:
            for d, _, _ in sorted(os.walk(cg), key=lambda w: -w[0].count("/")):
                os.rmdir(d)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


@dataclass
class Machine:
    """The booted tree: systemd's PID on the host; the replaying side's namespace and link, and the
    sensor's link (in the tree's network namespace)."""

    pid: int
    ns_a: str
    send: str
    iface: str

    @property
    def root(self) -> Path:
        """The tree as its processes see it (the overlay exists only in their mount namespace)."""
        return Path(f"/proc/{self.pid}/root")

    @property
    def unit(self) -> str:
        return f"flowlstm-sensor@{self.iface}.service"

    def run(self, *argv: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A command inside: systemd's namespaces, its root and working directory, a clean environment."""
        cmd = ["nsenter", "-t", str(self.pid), "-a", "-r", "-w", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return proc

    def show(self) -> dict[str, str]:
        props = "ActiveState,SubState,StatusText,MainPID,NRestarts,Result,WatchdogUSec,UnitFileState,LoadState"
        out = self.run("systemctl", "show", "-p", props, self.unit).stdout
        return dict(x.split("=", 1) for x in out.splitlines() if "=" in x)

    def wait(self, ok, what: str, timeout: float = 90) -> dict[str, str]:  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while True:
            state = self.show()
            if ok(state):
                return state
            if time.monotonic() > end:
                pytest.fail(f"{self.unit}: not {what} after {timeout} s: {state}\n{self.journal_text()}")
            time.sleep(0.5)

    def journal(self, after: str | None = None) -> list[dict[str, str]]:
        """The unit's journal entries (its processes' and systemd's about it), after a cursor."""
        args = ["--after-cursor", after] if after else []
        out = self.run("journalctl", "--no-pager", "-o", "json", "-u", self.unit, *args).stdout
        return [json.loads(x) for x in out.splitlines()]

    def cursor(self) -> str:
        out = self.run("journalctl", "--no-pager", "-n", "0", "--show-cursor").stdout
        return out.strip().rsplit("-- cursor: ", 1)[1]

    def wait_journal(self, ok, after: str, what: str, timeout: float = 60) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
        """The entries after the cursor, once one satisfies ok (the daemon acts on signals in its loop)."""
        end = time.monotonic() + timeout
        while True:
            entries = self.journal(after)
            if any(ok(e) for e in entries):
                return entries
            if time.monotonic() > end:
                pytest.fail(f"{self.unit}: no journal line {what} in {timeout} s:\n{self.journal_text()}")
            time.sleep(0.5)

    def journal_text(self) -> str:
        return self.run("journalctl", "--no-pager", "-u", self.unit, check=False).stdout[-4000:]

    def host_pid(self, ns_pid: int) -> int:
        """The host's PID of a process of the tree (systemd reports the PIDs of its own namespace)."""
        ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        for p in Path("/proc").iterdir():
            try:
                nspid = next(x for x in (p / "status").read_text().splitlines() if x.startswith("NSpid:")).split()
                if nspid[-1] == str(ns_pid) and len(nspid) > 2 and os.readlink(p / "ns" / "pid") == ns:
                    return int(p.name)
            except (OSError, StopIteration):
                continue
        raise AssertionError(f"no process {ns_pid} in the tree's PID namespace")

    def proc_status(self, ns_pid: int) -> dict[str, str]:
        text = (self.root / "proc" / str(ns_pid) / "status").read_text()
        return {k: v.strip() for k, v in (x.split(":", 1) for x in text.splitlines())}

    def eve(self, name: str = "eve.json") -> list[dict]:  # type: ignore[type-arg]
        path = self.root / "var/log/flowlstm" / name
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def write(self, path: str, text: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def replay(self, pcap: Path, pps: int) -> subprocess.Popen[bytes]:
        cmd = ["ip", "netns", "exec", self.ns_a, "tcpreplay", "-q", "-i", self.send, "--pps", str(pps), str(pcap)]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def die_with_parent() -> None:
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def boot(lower: Path, state: Path, cg: Path, netns: str) -> tuple[subprocess.Popen[str], int]:
    """Start systemd on the tree; → (the unshare process, systemd's PID on the host)."""
    cmd = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join", str(cg / "cgroup.procs")]
    cmd += ["ip", "netns", "exec", netns, "unshare", "--pid", "--fork", "--kill-child", "--mount", "--cgroup"]
    cmd += ["--propagation", "private", "sh", "-ec", BOOT, "boot", str(lower), str(state)]
    # Its own session: a ^C to the test's process group must not reach the tree's init.  If the
    # test process dies without its teardown (SIGKILL), the kernel kills unshare, and unshare
    # (--kill-child) the tree's init, and with it the PID and mount namespaces.
    outer = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    end = time.monotonic() + 60
    while time.monotonic() < end and outer.poll() is None:
        try:
            child = int(Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()[0])
            # systemctl talks to systemd on this socket, there once the manager is up.
            if (
                Path(f"/proc/{child}/comm").read_text().strip() == "systemd"
                and Path(f"/proc/{child}/root/run/systemd/private").exists()
            ):
                return outer, child
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.1)
    out = outer.communicate(timeout=10)[0] if outer.poll() is not None else "(still running)"
    console = state / "console"
    raise AssertionError(f"systemd did not start in the tree: {out}\n{console.read_text() if console.exists() else ''}")


def shutdown(outer: subprocess.Popen[str], pid: int | None) -> None:
    """Power the tree off (SIGRTMIN+4 to its systemd); SIGKILL its PID namespace if that hangs."""
    if pid is not None and outer.poll() is None:
        try:
            os.kill(pid, signal.SIGRTMIN + 4)
            outer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)  # init's death takes every process of its namespace with it
    if outer.poll() is None:
        outer.kill()
    outer.wait(timeout=30)


@pytest.fixture(scope="module")
def machine(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """The booted tree with the package installed and flowlstm-sensor@IFACE enabled and started."""
    lower = tree()
    state = tmp_path_factory.mktemp("boot")
    base = cgroup2_base()
    # A run killed before its teardown leaves its (empty) cgroup; its processes went with it.
    for stale in base.glob("flowlstm-boot-*"):
        if time.time() - stale.stat().st_mtime > 600:
            with contextlib.suppress(OSError):
                remove_cgroup(stale, wait=0)
    with veth_pair() as (ns_a, ns_b, a, b):
        cg = base / f"flowlstm-boot-{uuid.uuid4().hex[:6]}"
        cg.mkdir()
        outer: subprocess.Popen[str] | None = None
        pid = None
        try:
            outer, pid = boot(lower, state, cg, ns_b)
            m = Machine(pid, ns_a, a, b)
            running = m.run("systemctl", "is-system-running", "--wait", check=False, timeout=180)
            failed = m.run("systemctl", "--failed", "--no-legend", check=False).stdout
            assert running.stdout.strip() == "running", f"{running.stdout}{running.stderr}\nfailed units: {failed}"
            shutil.copy(deb, m.root / "var/tmp" / deb.name)
            m.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", f"/var/tmp/{deb.name}")
            m.run("systemctl", "enable", "--now", m.unit)
            yield m
        finally:
            if outer is not None:
                if pid is not None and outer.poll() is None:
                    # The boot's journal, kept beside the overlay for a failure's post-mortem.
                    log = Machine(pid, ns_a, a, b).run(
                        "journalctl", "-b", "--no-pager", "-o", "short-monotonic", check=False
                    )
                    (state / "journal.txt").write_text(log.stdout + log.stderr)
                shutdown(outer, pid)
            remove_cgroup(cg)
            # The overlay's upper layer holds the installed package (~300 MB); pytest keeps the
            # last few temporary directories, so it goes now.
            shutil.rmtree(state / "upper", ignore_errors=True)
            shutil.rmtree(state / "work", ignore_errors=True)
    leaked = [x for x in Path("/proc/self/mountinfo").read_text().splitlines() if str(state) in x]
    assert not leaked, leaked


def test_enable_now_returns_ready_confined_and_capturing(machine: Machine) -> None:
    st = machine.show()
    # Type=notify: 'enable --now' returned after READY=1, with the daemon's STATUS= text.
    assert (st["ActiveState"], st["SubState"], st["UnitFileState"]) == ("active", "running", "enabled"), st
    # READY=1 came with "capturing on IFACE, model NAME"; the loop's STATUS= lines follow at once.
    ready = rf"capturing on {machine.iface}, model flowlstm-default|\d+ packets, \d+ windows, \d+ alerts, "
    assert re.match(ready, st["StatusText"]), st
    assert st["WatchdogUSec"] == "30s" and st["NRestarts"] == "0", st
    main = int(st["MainPID"])
    status = machine.proc_status(main)
    user = next(x for x in (machine.root / "etc/passwd").read_text().splitlines() if x.startswith("flowlstm:"))
    uid, gid = user.split(":")[2:4]
    assert status["Name"] == "flowlstm-sensor"
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split() == [gid] * 4, status
    assert (status["CapEff"], status["CapPrm"], status["CapAmb"], status["CapBnd"]) == (NET_RAW,) * 4, status
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    pcap = DATA / "zeek" / "ssh_sshguess.pcap"
    sent = sum(len(b) for b in read_packets(pcap))
    replay = machine.replay(pcap, 2000)
    assert replay.wait(timeout=120) == 0, replay.stderr.read() if replay.stderr else ""
    # A stats event every 8 s: the one after the replay counts every packet sent.
    end = time.monotonic() + 40
    while not [e for e in machine.eve() if e["event_type"] == "stats" and e["stats"]["decoder"]["pkts"] == sent]:
        assert time.monotonic() < end, f"no stats event counting {sent} packets: {machine.eve()[-1:]}"
        time.sleep(1)
    st = (machine.root / "var/log/flowlstm/eve.json").stat()
    assert (str(st.st_uid), str(st.st_gid), st.st_mode & 0o777) == (uid, gid, 0o640)  # UMask=0027


def test_watchdog_restarts_a_stalled_sensor(machine: Machine) -> None:
    # 30 s is the shipped watchdog; 10 s keeps the test short.  The unit's own ExecStart: the
    # daemon's INFO lines (capturing, reloaded), which the later tests look for in the journal,
    # go there without -v.
    machine.write(DROPIN, "[Service]\nWatchdogSec=10\n")
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "restart", machine.unit)
    before = machine.wait(lambda s: s["ActiveState"] == "active" and s["WatchdogUSec"] == "10s", "restarted")
    stalled = machine.host_pid(int(before["MainPID"]))
    since = machine.cursor()
    # SIGSTOP freezes every thread, the main loop's WATCHDOG=1 pings with them.
    os.kill(stalled, signal.SIGSTOP)
    try:
        after = machine.wait(
            lambda s: s["NRestarts"] == str(int(before["NRestarts"]) + 1) and s["SubState"] == "running",
            "restarted by the watchdog",
            timeout=120,
        )
    finally:
        if Path(f"/proc/{stalled}").exists():
            os.kill(stalled, signal.SIGCONT)
    assert after["MainPID"] != before["MainPID"] and after["StatusText"], after
    lines = [(e["PRIORITY"], e["MESSAGE"]) for e in machine.journal(since) if e.get("_PID") == "1"]
    assert ("3", f"{machine.unit}: Watchdog timeout (limit 10s)!") in lines, lines
    assert any(p == "4" and m == f"{machine.unit}: Failed with result 'watchdog'." for p, m in lines), lines


def edit_config(machine: Machine, *changes: tuple[str, str]) -> None:
    """/etc/flowlstm/sensor.yaml as shipped, with some of its lines changed (each must be there once)."""
    shipped = machine.root / "etc/flowlstm/sensor.yaml.dpkg-boot"
    if not shipped.exists():
        shutil.copy(machine.root / "etc/flowlstm/sensor.yaml", shipped)
    text = shipped.read_text()
    for old, new in changes:
        assert text.count(f"\n{old}\n") == 1, old
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    machine.write("/etc/flowlstm/sensor.yaml", text)


def test_reload_swaps_the_model_and_refuses_a_broken_configuration(machine: Machine) -> None:
    bundle = next((machine.root / "opt/flowlstm/venv/sensor/lib").glob("python3*/site-packages/sensor/models/default"))
    swap = machine.root / SWAP.lstrip("/")
    shutil.rmtree(swap, ignore_errors=True)
    shutil.copytree(bundle, swap)
    meta = json.loads((swap / "metadata.json").read_text())
    meta["name"] = "flowlstm-boot-swap"
    (swap / "metadata.json").write_text(json.dumps(meta))
    before = machine.show()
    since = machine.cursor()
    edit_config(machine, ('  path: ""', f"  path: {SWAP}"))
    machine.run("systemctl", "reload", machine.unit)
    # ExecReload= returns once SIGHUP is sent (Type=notify has no wait for the reload in
    # systemd 252); the daemon swaps at its next loop turn and says so.
    swapped = "flowlstm.daemon: reloaded: model flowlstm-boot-swap ("
    machine.wait_journal(lambda e: e["PRIORITY"] == "6" and str(e["MESSAGE"]).startswith(swapped), since, "of the swap")
    after = machine.show()
    assert after["MainPID"] == before["MainPID"] and after["ActiveState"] == "active", after
    # A file the check refuses: 'systemctl reload' fails with the reason in the journal, and the
    # running sensor never sees a SIGHUP.
    since = machine.cursor()
    edit_config(machine, ('  path: ""', f"  path: {SWAP}"), ("  snaplen: 128", "  snaplen: 5"))
    refused = machine.run("systemctl", "reload", machine.unit, check=False)
    assert refused.returncode != 0, refused
    kept = machine.show()
    assert (kept["MainPID"], kept["ActiveState"]) == (before["MainPID"], "active"), kept
    time.sleep(3)  # what a SIGHUP would have logged by now
    lines = [(e["PRIORITY"], e["MESSAGE"]) for e in machine.journal(since)]
    reason = [(p, m) for p, m in lines if "capture.snaplen is 5" in m]
    assert reason and all(p == "3" for p, _ in reason), lines
    assert not any("reloaded:" in m for _, m in lines), lines
    since = machine.cursor()
    edit_config(machine, ('  path: ""', f"  path: {SWAP}"))
    machine.run("systemctl", "reload", machine.unit)
    machine.wait_journal(lambda e: str(e["MESSAGE"]).startswith(swapped), since, "of the second swap")


def test_logrotate_loses_and_splits_no_eve_line(machine: Machine) -> None:
    logs = machine.root / "var/log/flowlstm"
    # Every flow of every window an alert (threshold 0, no thresholding but the 100/s cap): a
    # steady stream of lines for the rotation to fall into.
    edit_config(
        machine,
        ("  threshold: null", "  threshold: 0"),
        ("  limit: 1", "  limit: 1000000"),
        ("  per: aggregate", "  per: flow"),
    )
    # A fresh process and files, so every line on disk is one this process counted.
    machine.run("systemctl", "stop", machine.unit)
    for f in logs.glob("eve.json*"):
        f.unlink()
    machine.run("systemctl", "start", machine.unit)
    pcap = ATTACKS / "pkt.TCP.synflood.spoofed.pcap"
    sent = sum(len(b) for b in read_packets(pcap))
    replay = machine.replay(pcap, 3000)  # about 13 s
    try:
        time.sleep(5)
        assert [e for e in machine.eve() if e["event_type"] == "alert"], "no alerts before the rotation"
        # logrotate's own run, as its daily timer would make it (-f: it is not a day old).
        machine.run("logrotate", "-f", "/etc/logrotate.d/flowlstm")
        assert (logs / "eve.json.1").exists(), sorted(p.name for p in logs.iterdir())
    finally:
        assert replay.wait(timeout=120) == 0, replay.stderr.read() if replay.stderr else ""
    end = time.monotonic() + 40
    while not [e for e in machine.eve() if e["event_type"] == "stats" and e["stats"]["decoder"]["pkts"] == sent]:
        assert time.monotonic() < end, f"no stats event counting {sent} packets: {machine.eve()[-1:]}"
        time.sleep(1)
    raw = [(logs / n).read_bytes() for n in ("eve.json.1", "eve.json")]
    assert all(r.endswith(b"\n") for r in raw)
    events = [[json.loads(x) for x in r.splitlines()] for r in raw]  # a split line would not parse
    alerts = [sum(e["event_type"] == "alert" for e in part) for part in events]
    assert all(alerts), f"alerts before and after the rotation: {alerts}"
    detect = events[1][-1]["stats"]["detect"]
    assert detect["alert_queue_overflow"] == 0 and sum(alerts) == detect["alert"], (alerts, detect)
    assert machine.show()["ActiveState"] == "active"


def test_journal_files_the_daemons_lines_at_their_priorities(machine: Machine) -> None:
    entries = machine.journal()
    sensor = [e for e in entries if e.get("_COMM") == "flowlstm-sensor"]
    manager = [e for e in entries if e.get("_PID") == "1"]
    assert any(
        e["PRIORITY"] == "6" and e["MESSAGE"] == f"flowlstm.daemon: capturing on {machine.iface}" for e in sensor
    )
    assert any(e["PRIORITY"] == "6" and str(e["MESSAGE"]).startswith("Started ") for e in manager), manager
    # journald strips the <N> prefixes the daemon writes (sensor/systemd.py): none reach MESSAGE.
    assert not [e for e in sensor if re.match(r"<\d>", str(e["MESSAGE"]))]
    assert all(e.get("SYSLOG_IDENTIFIER") == "flowlstm-sensor" for e in sensor)


def environ(machine: Machine, state: dict[str, str]) -> list[bytes]:
    """The environment of the unit's main process."""
    return Path(f"/proc/{machine.host_pid(int(state['MainPID']))}/environ").read_bytes().split(b"\0")


def test_upgrade_reloads_the_unit_and_restarts_the_instance(machine: Machine) -> None:
    # The unit systemd has loaded differs from the package's, as an older version's would: the
    # reinstall's postinst (configure with the old version) must daemon-reload before it restarts
    # the instance, or the instance restarts on the stale unit.  (systemd's own dpkg trigger
    # reloads too, but at the end of the run, after the restart: NeedDaemonReload alone cannot
    # tell.  The environment of the restarted process can.)
    unit = machine.root / UNIT_FILE.lstrip("/")
    text = unit.read_text()
    assert text.count("\n[Service]\n") == 1
    unit.write_text(text.replace("\n[Service]\n", "\n[Service]\nEnvironment=FLOWLSTM_OLD_UNIT=1\n"))
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "restart", machine.unit)
    machine.wait(lambda s: s["SubState"] == "running", "restarted")
    before = machine.show()
    assert before["ActiveState"] == "active", before
    assert b"FLOWLSTM_OLD_UNIT=1" in environ(machine, before)
    deb = next((machine.root / "var/tmp").glob("flowlstm-sensor_*.deb")).name
    confold = ("-o", "Dpkg::Options::=--force-confold")
    machine.run("apt-get", "install", "-y", "-qq", "--reinstall", *confold, f"/var/tmp/{deb}")
    assert "FLOWLSTM_OLD_UNIT" not in unit.read_text()
    reload = machine.run("systemctl", "show", "-p", "NeedDaemonReload", machine.unit).stdout.strip()
    assert reload == "NeedDaemonReload=no", reload
    after = machine.wait(lambda s: s["SubState"] == "running" and s["MainPID"] != before["MainPID"], "restarted")
    assert after["ActiveState"] == "active" and after["StatusText"], after
    assert b"FLOWLSTM_OLD_UNIT=1" not in environ(machine, after), "restarted on the unit loaded before the upgrade"


def test_purge_stops_the_instance_and_removes_the_package(machine: Machine) -> None:
    # What the test added is the administrator's to remove, as dpkg leaves it.
    for extra in (DROPIN, "/var/lib/flowlstm-boot-test", "/etc/flowlstm/sensor.yaml.dpkg-boot"):
        p = machine.root / extra.lstrip("/")
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    (machine.root / DROPIN.lstrip("/")).parent.rmdir()
    machine.run("apt-get", "purge", "-y", "-qq", "flowlstm-sensor")
    assert machine.run("dpkg-query", "-W", "flowlstm-sensor", check=False).returncode != 0
    st = machine.show()
    assert st["ActiveState"] in ("inactive", "failed") and st["LoadState"] == "not-found", st
    uid = next(x for x in (machine.root / "etc/passwd").read_text().splitlines() if x.startswith("flowlstm:")).split(
        ":"
    )[2]
    running = [p.name for p in (machine.root / "proc").iterdir() if p.name.isdigit() and p.stat().st_uid == int(uid)]
    assert not running, running
    gone = (
        "/opt/flowlstm",
        "/etc/flowlstm",
        "/etc/default/flowlstm-sensor",
        "/etc/logrotate.d/flowlstm",
        "/usr/bin/flowlstm-sensor",
        UNIT_FILE,
        "/var/log/flowlstm",
        "/usr/lib/sysusers.d/flowlstm-sensor.conf",
    )
    assert not [p for p in gone if (machine.root / p.lstrip("/")).exists()]
    # 'systemctl enable' made a link for the instance; the unit gone, it would point at nothing.
    assert not [str(p) for p in (machine.root / "etc/systemd/system").glob("*.wants/flowlstm-sensor@*")]
