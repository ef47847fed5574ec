"""EVE writers.  A reader of the file never sees half a line.

The file is opened ``O_APPEND`` and each batch of whole lines goes out in one
``write``: the kernel places it at the end in one piece, so a log shipper
tailing the file, or a crash (even ``kill -9``) right after, sees only whole
lines.  If the disk fills mid-write, the partial tail is cut back to the last
complete line and the error is raised; the caller decides whether to keep
going.  ``reopen()`` follows logrotate's rename.
"""
from __future__ import annotations

import errno
import os

from .errors import OutputError


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
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open for appending: {exc.strerror}") from None
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)

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
