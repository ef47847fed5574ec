"""Run a command under a systemd unit's [Service] sandbox, without systemd (this machine has none as PID 1).

    unshare --mount --propagation private /usr/bin/python3 confine.py UNIT -- COMMAND...

Run as root.  Read from UNIT (nothing here repeats its values), in systemd's order:

* ProtectSystem=strict, ReadWritePaths=, PrivateTmp=, ProtectHome=: in the new mount
  namespace the command runs chrooted in a read-only bind of / with each ReadWritePaths
  entry bound read-write; /tmp is an empty tmpfs, /home and /root empty read-only ones.
  Only the root file system is read-only (other mounts of this machine, /dev/shm say, keep
  their own flags).
* User=, Group=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=: setpriv
  (util-linux), with the inheritable, ambient and bounding sets all exactly the unit's.
* UMask=, then the seccomp filters systemd would load (python3-seccomp, libseccomp's own
  binding): SystemCallFilter= (an allow list; anything outside it kills the process, which
  is stricter than the unit's SystemCallErrorNumber=EPERM, so that a missing system call
  shows), SystemCallArchitectures=native, RestrictAddressFamilies=, MemoryDenyWriteExecute=,
  LockPersonality=, RestrictNamespaces=, RestrictRealtime=, RestrictSUIDSGID=, each as
  systemd's src/shared/seccomp-util.c words it.

The rest (PrivateDevices=, ProtectKernel*=, ProtectClock=, ...) is not emulated.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

# Stage two runs from this file's text (python -c), where there is no __file__.
SELF = os.path.abspath(globals().get("__file__", "confine.py"))


def service_section(unit: str) -> dict[str, list[str]]:
    """[Service] key → its values, in order (a key may repeat, as SystemCallFilter= does)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in open(unit, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def capabilities(svc: dict[str, list[str]]) -> list[str]:
    """The unit's capability set, as setpriv names them: CAP_NET_RAW → net_raw."""
    ambient = {c for v in svc.get("AmbientCapabilities", []) for c in v.split()}
    bounding = {c for v in svc.get("CapabilityBoundingSet", []) for c in v.split()}
    if ambient != bounding:
        raise SystemExit(f"confine: AmbientCapabilities {sorted(ambient)} != CapabilityBoundingSet {sorted(bounding)}")
    return sorted(c.removeprefix("CAP_").lower() for c in ambient)


def yes(svc: dict[str, list[str]], key: str) -> bool:
    return svc.get(key, ["no"])[-1].lower() in ("yes", "true", "1", "on", "strict", "full")


def expand(groups: list[str]) -> set[str]:
    """System call names of systemd's @groups (and plain names), as 'systemd-analyze syscall-filter' lists them."""
    names: set[str] = set()
    for item in groups:
        if not item.startswith("@"):
            names.add(item)
            continue
        text = subprocess.run(["systemd-analyze", "syscall-filter", item], capture_output=True, text=True, check=True)
        for line in text.stdout.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#"):
                names |= expand([word]) if word.startswith("@") else {word}
    return names


def mounts(svc: dict[str, list[str]]) -> None:
    """The file system view, then chroot into it.

    The root mount itself cannot be made read-only while anything holds a file on it open
    for writing (EBUSY), so a recursive bind of / under a scratch tmpfs is, and becomes the root.
    """

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True)

    mount("-t", "tmpfs", "-o", "mode=700", "tmpfs", "/tmp")  # nothing written outside this namespace
    new = "/tmp/root"
    os.mkdir(new)
    mount("--rbind", "/", new)
    mount("--make-rprivate", new)
    if svc.get("ProtectSystem", ["no"])[-1] == "strict":
        mount("-o", "remount,bind,ro", new)
        for p in (p.lstrip("-") for v in svc.get("ReadWritePaths", []) for p in v.split()):
            mount("--bind", p, new + p)
    if yes(svc, "PrivateTmp"):
        mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", new + "/tmp")
    if yes(svc, "ProtectHome"):
        for d in ("/home", "/root"):
            if os.path.isdir(d):
                mount("-t", "tmpfs", "-o", "ro,mode=755", "tmpfs", new + d)
    os.chroot(new)
    os.chdir("/")


def seccomp_filters(svc: dict[str, list[str]]) -> None:
    import seccomp  # python3-seccomp: Debian's /usr/bin/python3 only

    def rule(f, action, name: str, *args) -> None:
        try:
            f.add_rule(action, name, *args)
        except (RuntimeError, ValueError):
            pass  # no such system call on this architecture

    allow: set[str] = set()
    for value in svc.get("SystemCallFilter", []):
        deny = value.startswith("~")
        names = expand(value.removeprefix("~").split())
        allow = allow - names if deny else allow | names
    filters = []
    if allow:
        f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
        for name in sorted(allow):
            rule(f, seccomp.ALLOW, name)
        filters.append(f)
    # Each further filter allows by default; the kernel takes the strictest answer of all.
    extra = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    families = {v for x in svc.get("RestrictAddressFamilies", []) for v in x.split()}
    if families:
        numbers = {getattr(socket, fam) for fam in families}
        for n in range(0, 64):
            if n not in numbers:
                rule(extra, seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, n))
        rule(extra, seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GE, 64))
    if yes(svc, "MemoryDenyWriteExecute"):
        wx = 0x2 | 0x4  # PROT_WRITE | PROT_EXEC
        rule(extra, seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
        for name in ("mprotect", "pkey_mprotect"):
            rule(extra, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(2, seccomp.MASKED_EQ, 0x4, 0x4))
        rule(extra, seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, 0o100000, 0o100000))
    if yes(svc, "LockPersonality"):
        rule(extra, seccomp.ERRNO(errno.EPERM), "personality", seccomp.Arg(0, seccomp.NE, 0))  # PER_LINUX
    if yes(svc, "RestrictNamespaces"):
        rule(extra, seccomp.ERRNO(errno.EPERM), "setns")
        rule(extra, seccomp.ERRNO(errno.ENOSYS), "clone3")  # glibc falls back to clone, whose flags can be seen
        for flag in (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x80):
            for name in ("clone", "unshare"):
                rule(extra, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    if yes(svc, "RestrictRealtime"):
        for policy in (1, 2, 6):  # SCHED_FIFO, SCHED_RR, SCHED_DEADLINE
            rule(extra, seccomp.ERRNO(errno.EPERM), "sched_setscheduler", seccomp.Arg(1, seccomp.EQ, policy))
    if yes(svc, "RestrictSUIDSGID"):
        sid = 0o6000
        for name, arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2)):
            rule(extra, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(arg, seccomp.MASKED_EQ, sid, 0o4000))
            rule(extra, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(arg, seccomp.MASKED_EQ, sid, 0o2000))
            rule(extra, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(arg, seccomp.MASKED_EQ, sid, sid))
    filters.append(extra)
    # SystemCallArchitectures=native: libseccomp's filters kill calls of any other ABI already.
    assert svc.get("SystemCallArchitectures", ["native"])[-1] == "native"
    for f in reversed(filters):  # the allow list last: seccomp() itself is outside it
        f.load()


def main(argv: list[str]) -> None:
    stage2 = argv[:1] == ["--as-user"]
    if stage2:
        argv = argv[1:]
    unit, sep, command = argv[0], argv[1], argv[2:]
    if sep != "--" or not command:
        raise SystemExit("usage: confine.py UNIT -- COMMAND...")
    svc = service_section(unit)
    if not stage2:
        # Stage two runs from this file's text, not its path: PrivateTmp= hides a checkout under /tmp.
        with open(SELF, encoding="utf-8") as f:
            source = f.read()
        mounts(svc)
        caps = ",".join(f"+{c}" for c in capabilities(svc))
        user, group = svc["User"][-1], svc.get("Group", svc["User"])[-1]
        setpriv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups"]
        setpriv += [f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{caps}"]
        if yes(svc, "NoNewPrivileges"):
            setpriv.append("--no-new-privs")
        os.execvp("setpriv", [*setpriv, sys.executable, "-c", source, "--as-user", unit, "--", *command])
    if "UMask" in svc:
        os.umask(int(svc["UMask"][-1], 8))
    seccomp_filters(svc)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
