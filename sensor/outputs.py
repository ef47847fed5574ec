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

``reopen()`` follows logrotate's rename.  A long-running sensor wraps its
outputs in ``HoldingOutput``, so a full disk delays alerts instead of losing them.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from collections import Counter, deque
from typing import Any

from .errors import OutputError

log = logging.getLogger("flowlstm.outputs")


class EveFile:
    """Append-only EVE-JSON file writer."""

    def __init__(self, path: str, mode: int = 0o640):
        self.path = path
        self.mode = mode
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
        log.warning(
            "%s: removed an unterminated last line (%d bytes) left by an interrupted writer", self.path, size - keep
        )

    def write(self, blob: bytes, kind: str = "event") -> None:  # kind: only HoldingOutput counts by it
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

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EveFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EveSocket:
    """EVE over a Unix socket, as Suricata's ``filetype: unix_dgram`` / ``unix_stream``.

    Datagram: one event per datagram.  Stream: newline-delimited events.  Sends
    never block the sensor: what the peer cannot take right now is dropped and
    counted, and a lost connection is retried on the next write (at most once a
    second), like Suricata's reconnect.
    """

    MAX_PENDING = 4 << 20  # stream bytes held for a slow reader before whole lines are dropped
    SEND_WAIT = 0.2  # seconds a datagram write may wait for a full peer queue

    def __init__(self, path: str, kind: str = "dgram"):
        if kind not in ("dgram", "stream"):
            raise ValueError("kind must be 'dgram' or 'stream'")
        self.path = path
        self.kind = kind
        self.sent = 0
        self.dropped = 0
        self._pending = bytearray()  # stream: bytes not yet taken by the peer
        self._sock: socket.socket | None = None
        self._next_try = 0.0
        self._connect()

    def _connect(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        self._next_try = now + 1.0
        kind = socket.SOCK_DGRAM if self.kind == "dgram" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
        try:
            s.connect(self.path)
        except OSError as exc:
            s.close()
            log.warning("%s: cannot connect (%s); events are dropped until it can", self.path, exc.strerror)
            return
        s.setblocking(False)
        self._sock = s

    def write(self, blob: bytes, kind: str = "event") -> None:  # kind: only HoldingOutput counts by it
        lines = blob.splitlines(keepends=True)
        if self._sock is None:
            self._connect()
        if self._sock is None:
            self.dropped += len(lines)
            return
        try:
            if self.kind == "dgram":
                # A Unix datagram queue holds few messages (net.unix.max_dgram_qlen,
                # 10 by default): give a live reader up to SEND_WAIT per write to
                # drain it, then drop and count rather than stall the sensor.
                deadline = time.monotonic() + self.SEND_WAIT
                for i, line in enumerate(lines):
                    while True:
                        try:
                            self._sock.send(line.rstrip(b"\n"))
                            self.sent += 1
                            break
                        except BlockingIOError:
                            left = deadline - time.monotonic()
                            if left <= 0 or not select.select([], [self._sock], [], left)[1]:
                                self.dropped += len(lines) - i
                                return
            else:
                self._stream(blob, len(lines))
        except (ConnectionError, OSError):
            self.dropped += len(lines)
            self.close()

    def _stream(self, blob: bytes, n_lines: int) -> None:
        # Keep what the peer has not taken, so a line is never cut in the stream;
        # past MAX_PENDING drop whole unsent lines (never the one already begun).
        self._pending += blob
        try:
            assert self._sock is not None  # connected by the caller
            n = self._sock.send(self._pending)
        except BlockingIOError:
            n = 0
        self.sent += self._pending[:n].count(b"\n")
        del self._pending[:n]
        if len(self._pending) > self.MAX_PENDING:
            cut = self._pending.find(b"\n") + 1 if n and self._pending else 0
            self.dropped += self._pending[cut:].count(b"\n")
            del self._pending[cut:]

    def reopen(self) -> None:
        self.close()
        self._next_try = 0.0
        self._connect()

    def close(self) -> None:
        if self._sock is not None:
            if self._pending:
                # Last chance to hand over what is queued, without blocking for long.
                self._sock.settimeout(1.0)
                try:
                    self._sock.sendall(self._pending)
                    self.sent += self._pending.count(b"\n")
                except OSError:
                    self.dropped += self._pending.count(b"\n")
                self._pending.clear()
            self._sock.close()
            self._sock = None

    def __enter__(self) -> EveSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HoldingOutput:
    """Lines an output cannot take now (full disk, failing file system) are held in memory
    and written, oldest first and before anything newer, as soon as it takes them again.

    Held data goes out in pieces that fit: when a write fails, the oldest held piece is
    halved at a line boundary and the older half retried, down to a single line, so a
    batch bigger than the space that came back never blocks everything behind it, and
    the output is filled with whole lines only.  Beyond ``limit`` bytes the oldest held
    lines are dropped.  Writes never raise: the failure is logged once, and so is the
    recovery.

    Every line passed to ``write`` is counted once as written, held or lost, in total
    (``written_lines``, ``held_lines``, ``lost_lines``; ``held_bytes`` is the memory used)
    and by the ``kind`` it was written with (``written``, ``lost``: ``Counter``s by kind),
    so a caller can report the alerts that really reached the output.
    """

    def __init__(self, out: EveFile | EveSocket | Any, limit: int = 64 << 20):
        self.out = out
        self.limit = limit
        self._held: deque[tuple[bytes, str, int]] = deque()  # (whole lines, kind, line count), oldest first
        self.held_bytes = 0
        self.held_lines = 0
        self.written_lines = 0
        self.lost_lines = 0
        self.written: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self._failing = False

    def write(self, blob: bytes, kind: str = "event") -> None:
        """Write whole lines after everything held, or hold them; ``kind`` labels them in the counts."""
        if blob:
            n = blob.count(b"\n")
            self._held.append((blob, kind, n))
            self.held_bytes += len(blob)
            self.held_lines += n
        if not self.flush():
            self._shed()

    def flush(self) -> bool:
        """Write as much of what is held as the output takes now, in order; True if nothing is left."""
        while self._held:
            blob, kind, n = self._held[0]
            try:
                self.out.write(blob)
            except OutputError as exc:
                if n > 1:
                    # Part of it may fit (ENOSPC, a quota): retry with the older half, whole lines only.
                    cut = blob.rfind(b"\n", 0, len(blob) // 2) + 1 or blob.find(b"\n") + 1
                    head = blob.count(b"\n", 0, cut)
                    self._held[0] = (blob[cut:], kind, n - head)
                    self._held.appendleft((blob[:cut], kind, head))
                    continue
                if not self._failing:
                    self._failing = True
                    log.error(
                        "%s; holding events in memory (up to %d MiB) until it can be written", exc, self.limit >> 20
                    )
                return False
            self._held.popleft()
            self.held_bytes -= len(blob)
            self.held_lines -= n
            self.written_lines += n
            self.written[kind] += n
        if self._failing:
            self._failing = False
            log.warning(
                "%s: writing again; every held event was written (%d lost to the memory limit so far)",
                getattr(self.out, "path", "output"),
                self.lost_lines,
            )
        return True

    def _shed(self) -> None:
        """Drop the oldest held lines, whole, until at most ``limit`` bytes are held."""
        while self.held_bytes > self.limit:
            blob, kind, n = self._held[0]
            excess = self.held_bytes - self.limit
            cut = len(blob) if len(blob) <= excess else blob.find(b"\n", excess - 1) + 1
            dropped = blob.count(b"\n", 0, cut)
            if cut == len(blob):
                self._held.popleft()
            else:
                self._held[0] = (blob[cut:], kind, n - dropped)
            self.held_bytes -= cut
            self._lose(kind, dropped)

    def _lose(self, kind: str, n: int) -> None:
        self.held_lines -= n
        self.lost_lines += n
        self.lost[kind] += n

    def discard(self) -> int:
        """Count everything still held as lost and free it; the number of lines."""
        n = self.held_lines
        while self._held:
            _, kind, lines = self._held.popleft()
            self._lose(kind, lines)
        self.held_bytes = 0
        return n

    def continue_counts(self, old: HoldingOutput) -> None:
        """Carry ``old``'s written and lost counts over to this output, which replaces it."""
        self.written_lines += old.written_lines
        self.lost_lines += old.lost_lines
        self.written.update(old.written)
        self.lost.update(old.lost)

    def reopen(self) -> None:
        self.out.reopen()

    def close(self) -> None:
        """Write what fits of what is held, count the rest lost, and close the output."""
        self.flush()
        n = self.discard()
        if n:
            log.error("%s: %d held events could not be written before exit", getattr(self.out, "path", "output"), n)
        try:
            self.out.close()
        except OutputError as exc:  # a closing line (Zeek's #close) that does not fit
            log.error("%s", exc)


def open_eve(spec: str) -> EveFile | EveSocket:
    """'-' (standard output), a file path, or ``unix_dgram:PATH`` / ``unix_stream:PATH``."""
    for kind in ("dgram", "stream"):
        if spec.startswith(f"unix_{kind}:"):
            return EveSocket(spec.split(":", 1)[1], kind)
    return EveFile("/dev/stdout" if spec == "-" else spec)
