"""The systemd side of the daemon: ``Type=notify`` messages, the watchdog, journal priorities.

``sd_notify`` speaks systemd's documented datagram protocol on ``$NOTIFY_SOCKET``
directly rather than through systemd-python: the send must never block (a full
notify socket once hung the daemon in a namespace test), so it goes out with
``MSG_DONTWAIT`` and a failure is only logged.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("flowlstm.daemon")


def sd_notify(message: str) -> bool:
    """Send one notification to systemd (or whoever owns $NOTIFY_SOCKET)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(message.encode(), socket.MSG_DONTWAIT, path)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
    return True


def reloading() -> None:
    """Tell systemd a reload began; it shows "reloading" until the next READY=1."""
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or None when no watchdog is set."""
    wd = os.environ.get("WATCHDOG_USEC")
    return int(wd) / 2e6 if wd and wd.isdigit() and int(wd) > 0 else None


class JournalFormatter(logging.Formatter):
    """Under systemd, stderr goes to the journal: prefix sd-daemon priorities."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{record.name}: {record.getMessage()}"


def stderr_is_journal() -> bool:
    """Whether stderr is journald's stream: systemd names it in ``JOURNAL_STREAM`` (device:inode), and
    a process that inherited the variable but writes elsewhere (a pipe, a terminal) is not."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def error_prefix() -> str:
    """``<3>`` (LOG_ERR) before a line written straight to stderr, when that goes to the journal."""
    return "<3>" if stderr_is_journal() else ""


def setup_logging(prog: str, verbose: bool) -> None:
    """Log to stderr: with journald priorities and from INFO under systemd, ``prog: LEVEL: message``
    from WARNING (INFO with ``verbose``) otherwise."""
    handler = logging.StreamHandler()
    journal = stderr_is_journal()
    if journal:
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    root = logging.getLogger("flowlstm")
    root.handlers[:] = [handler]
    # Our INFO lines are lifecycle events (capturing, reloaded, stopped), never per packet: a
    # sysadmin expects them in 'journalctl -u' as Suricata's are; on a terminal they wait for -v.
    root.setLevel(logging.INFO if verbose or journal else logging.WARNING)
