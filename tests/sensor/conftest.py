"""Fixtures the sensor's test modules share: the synflood's windows, a veth pair between two namespaces,
a systemd-style notification socket, the built .deb."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.pipeline import run_files

from ..conftest import ATTACKS


@pytest.fixture(scope="session")
def flood_windows():
    """Every window of the spoofed-source SYN flood (37,000 sources, one victim)."""
    return [w for o in run_files([ATTACKS / "pkt.TCP.synflood.spoofed.pcap"]) for w in o.windows]


@contextlib.contextmanager
def veth_pair() -> Iterator[tuple[str, str, str, str]]:
    """(ns_a, ns_b, a, b): namespaces ns_a and ns_b joined by veth links a and b, removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b, a, b = f"flA{tag}", f"flB{tag}", f"fla{tag}", f"flb{tag}"
    sh = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    try:
        sh("ip", "netns", "add", ns_a)
        sh("ip", "netns", "add", ns_b)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", ns_a)
        sh("ip", "link", "set", b, "netns", ns_b)
        # No IPv6 on the pair (router solicitations, MLD reports): only replayed packets cross
        # it, so the kernel's capture counters and the sensor's can be compared exactly.
        for ns, dev in ((ns_a, a), (ns_b, b)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        for ns, dev in ((ns_a, a), (ns_b, b), (ns_b, "lo")):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        # Multicast on the sensor side's loopback, for the zeroconf announcement test.
        sh("ip", "netns", "exec", ns_b, "ip", "link", "set", "lo", "multicast", "on")
        sh("ip", "netns", "exec", ns_b, "ip", "route", "add", "224.0.0.0/4", "dev", "lo")
        yield ns_a, ns_b, a, b
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def veth():
    """A veth pair for one test (``veth_pair``)."""
    with veth_pair() as pair:
        yield pair


class NotifySocket:
    """The datagram socket a Type=notify service's NOTIFY_SOCKET names, read all the time as
    systemd reads it (a daemon's sends must never fill it), its messages kept in order."""

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path, self.mode = path, mode
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> NotifySocket:
        self.path.unlink(missing_ok=True)
        self._sock.bind(str(self.path))
        self.path.chmod(self.mode)  # 0o666 when the daemon sends as another user
        self._sock.settimeout(0.2)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._reader.join()
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def _read(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError, BlockingIOError):
                self.messages.append(self._sock.recv(4096).decode())

    def said(self, line: str) -> bool:
        """Whether a message so far has ``line`` (e.g. ``READY=1``) as one of its lines."""
        return any(line in m.split("\n") for m in list(self.messages))

    def wait(self, line: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
        """Wait up to ``timeout`` s for ``line``; False at once if ``proc`` exits first."""
        end = time.monotonic() + timeout
        while not self.said(line):
            if time.monotonic() > end or (proc is not None and proc.poll() is not None):
                return self.said(line)
            time.sleep(0.05)
        return True


@pytest.fixture(scope="session")
def deb(tmp_path_factory):
    """The .deb packaging/build-deb.sh builds, once per session (test_packaging, test_boot).
    FLOWLSTM_TEST_DEB names one built already, to rerun those tests without the build."""
    given = os.environ.get("FLOWLSTM_TEST_DEB")
    if given:
        return Path(given).resolve()
    root = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        [str(root / "packaging" / "build-deb.sh"), str(out)], capture_output=True, text=True, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])
