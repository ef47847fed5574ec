"""EVE writers: whole lines only.

The file is opened ``O_APPEND`` and each batch of whole lines goes out in one
``write``, placed at the end in one piece, so concurrent readers see whole
lines.  Two ways remain to end up with an unterminated tail, and both are
handled:

- the disk fills mid-write: the tail is cut back to the last complete line at
  once and the error is raised (the caller decides whether to keep going);
- ``kill -9`` lands inside a ``write`` that spans page boundaries (Linux stops
  a write between pages for a fatal signal): the tail stays unterminated, which
  line-based shippers (Filebeat, Logstash, fluent-bit) never emit, and the next
  open — the restart — cuts it before appending, so no half line is ever glued
  to a new one.

``reopen()`` follows logrotate's rename.
"""
from __future__ import annotations

import errno
import logging
import os

from .errors import OutputError

log = logging.getLogger("flowlstm.outputs")


class EveFile:
    """Append-only EVE-JSON file writer."""

    def __init__(self, path: str, mode: int = 0o640):
        self.path = path
        self.mode = mode
        self.lines = 0
        self._fd = -1
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the path; after logrotate renamed the old file, this starts a new one."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open for appending: {exc.strerror}") from None
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)
        self._repair()

    def _repair(self) -> None:
        """Cut an unterminated tail left by a writer killed mid-write."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        tail = os.pread(self._fd, min(size, 1 << 20), max(0, size - (1 << 20)))
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        try:
            os.ftruncate(self._fd, keep)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot cut a partial last line: {exc.strerror}") from None
        log.warning("%s: removed an unterminated last line (%d bytes) left by an interrupted writer",
                    self.path, size - keep)

    def write(self, blob: bytes) -> None:
        """Append complete lines (``blob`` must end with a newline)."""
        if not blob:
            return
        if not blob.endswith(b"\n"):
            raise ValueError("EveFile.write takes whole lines")
        size = os.fstat(self._fd).st_size
        try:
            done = os.write(self._fd, blob)
            if done != len(blob):
                # A short write (full disk): don't leave half a line behind.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise OutputError(f"{self.path}: write failed ({exc.strerror}); no partial line was left") from None
        self.lines += blob.count(b"\n")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "EveFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
