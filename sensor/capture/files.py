"""Capture-file reader: pcap and pcapng, plain or gzip/xz/bzip2-compressed.

The record walk runs in C (``_walk``); timestamps, lengths and headers are
then pulled out of the raw bytes with numpy, a batch at a time.  A damaged
file raises one ``CorruptCaptureError`` naming the file and byte offset, after
every packet before the damage has been delivered.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import CaptureError, CorruptCaptureError
from . import _walk
from .decode import WINDOW, decode_frames, frame_windows
from .linklayer import SUPPORTED_LINKTYPES
from .records import PACKET_DTYPE

CHUNK_BYTES = 8 << 20
DEFAULT_BATCH = 65536
# libpcap refuses records longer than this unless the file's snaplen is larger.
_MAX_SNAPLEN = 262144

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microseconds, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BT_IDB, _BT_OPB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
# Smallest valid length of each block type (others: 12, type + length + trailer).
_MIN_BLOCK = np.array([12, 20, 32, 16, 12, 12, 32, 12], dtype=np.int64)

_COMPRESSORS = (
    (b"\x1f\x8b", "gzip", lambda fh: gzip.GzipFile(fileobj=fh)),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMAFile),
    (b"BZh", "bzip2", bz2.BZ2File),
)


@dataclass
class Interface:
    """One capture interface: a pcap file has one, a pcapng section any number."""

    linktype: int
    snaplen: int
    tsresol: int = 6  # pcapng if_tsresol: 10^-n seconds, or 2^-n with the high bit set
    ts_offset_ns: int = 0

    def to_ns(self, units: np.ndarray) -> np.ndarray:
        """Timestamps in this interface's units → ns since the epoch."""
        exp = self.tsresol & 0x7F
        if self.tsresol & 0x80:
            # Binary fractions are rare; float64 keeps them to well under a microsecond.
            ns = np.clip(units.astype(np.float64) * (1e9 / 2.0**exp), 0, 2.0**62).astype(np.int64)
        elif exp <= 9:
            ns = units.astype(np.int64) * (10 ** (9 - exp))
        elif exp - 9 < 20:
            ns = (units // np.uint64(10 ** (exp - 9))).astype(np.int64)
        else:  # finer than 10^-28 s: every timestamp this field can hold is below 1 ns
            ns = np.zeros(len(units), dtype=np.int64)
        return ns + self.ts_offset_ns


@dataclass(frozen=True)
class Frames:
    """The raw frames behind the last batch: frame i is ``buf[data[i] : data[i] + cap_len[i]]``."""

    buf: np.ndarray  # uint8
    data: np.ndarray  # int64 offsets into buf
    linktype: np.ndarray  # per frame


@dataclass
class FileInfo:
    """What the reader learned about a file while reading it."""

    path: str
    format: str = ""  # "pcap" or "pcapng"
    compression: str = ""  # "", "gzip", "xz", "bzip2"
    interfaces: list[Interface] = field(default_factory=list)
    packets: int = 0
    bytes_read: int = 0  # uncompressed bytes consumed so far


class _Stream:
    """A byte window over a (possibly compressed) file, refilled on demand.

    ``buf[pos:]`` is unread data; ``base`` is the file offset of ``buf[0]``.
    A decompression error is held back until the bytes before it are used up.
    """

    def __init__(self, raw: BinaryIO, path: str, compression: str):
        self.raw = raw
        self.path = path
        self.compressed = bool(compression)
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.eof = False
        self.error: str | None = None

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def available(self) -> int:
        return len(self.buf) - self.pos

    def fill(self) -> bool:
        """Read one more chunk; False once nothing more can be read."""
        if self.eof:
            return False
        if self.compressed:
            chunk = self._read_compressed()
        else:
            try:
                chunk = self.raw.read(CHUNK_BYTES)
            except OSError as exc:
                raise CaptureError(f"{self.path}: read failed: {exc}") from exc
        if not chunk:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _read_compressed(self) -> bytes:
        # read1() returns what one decompression step produced, so the bytes decoded
        # before damaged or missing compressed data are kept (read(n) would drop them
        # together with the exception).
        parts: list[bytes] = []
        got = 0
        while got < CHUNK_BYTES:
            try:
                part = self.raw.read1(CHUNK_BYTES - got)
            except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
                # Decompressors report damage as any of these; keep what came before it.
                self.error = f"compressed stream is damaged ({exc})"
                self.eof = True
                break
            if not part:
                self.eof = True
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def ensure(self, n: int) -> bool:
        while self.available() < n:
            if not self.fill():
                return False
        return True

    def corrupt(self, reason: str, offset: int | None = None) -> CorruptCaptureError:
        return CorruptCaptureError(
            self.path, self.offset if offset is None else offset, reason, self.compressed
        )

    def end_of_data(self, what: str) -> None:
        """Called at a record boundary when no more whole records can be read."""
        if self.error:
            raise self.corrupt(self.error, self.base + len(self.buf))
        left = self.available()
        if left:
            raise self.corrupt(f"file ends inside a {what} ({left} trailing bytes)")


def _open(path: str) -> tuple[BinaryIO, str, BinaryIO]:
    """(reader, compression name, the underlying file, which the caller closes)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CaptureError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        head = fh.read(6)
        fh.seek(0)
    except OSError as exc:
        fh.close()
        raise CaptureError(f"{path}: cannot read: {exc.strerror}") from None
    for magic, name, opener in _COMPRESSORS:
        if head.startswith(magic):
            return opener(fh), name, fh
    return fh, "", fh


def _u32(arr: np.ndarray, offs: np.ndarray, k: int, order: str) -> np.ndarray:
    idx = offs[:, None] + (k + np.arange(4))
    return arr[idx].view(order + "u4")[:, 0].astype(np.int64)


class CaptureReader:
    """Iterate ``PACKET_DTYPE`` batches from one capture file.

    >>> for batch in CaptureReader("trace.pcap.gz"): ...
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = DEFAULT_BATCH):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.path = os.fspath(path)
        self.batch_size = batch_size
        self.info = FileInfo(self.path)
        # Valid right after each yielded batch, for tools that rewrite frames (inject).
        self.last_frames: Frames | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raw, compression, fh = _open(self.path)
        self.info = FileInfo(self.path, compression=compression)
        with fh, raw:
            s = _Stream(raw, self.path, compression)
            s.ensure(4)
            magic = s.buf[s.pos : s.pos + 4]
            if magic in _PCAP_MAGICS:
                self.info.format = "pcap"
                yield from self._pcap(s, magic)
            elif magic == _PCAPNG_SHB:
                self.info.format = "pcapng"
                yield from self._pcapng(s)
            else:
                if s.error:
                    raise s.corrupt(s.error, 0)
                if magic and len(magic) < 4 and any(m.startswith(magic) for m in (*_PCAP_MAGICS, _PCAPNG_SHB)):
                    raise s.corrupt("file header is truncated", 0)
                what = "empty file" if not magic else f"unknown magic {magic.hex()}"
                raise CaptureError(f"{self.path}: not a pcap or pcapng file ({what})")

    # -- pcap -------------------------------------------------------------

    def _pcap(self, s: _Stream, magic: bytes) -> Iterator[np.ndarray]:
        order, ns_per_unit = _PCAP_MAGICS[magic]
        if not s.ensure(24):
            raise s.corrupt("file header is truncated")
        head = np.frombuffer(s.buf, dtype=order + "u4", count=6, offset=s.pos)
        snaplen, linktype = int(head[4]), int(head[5]) & 0xFFFF
        self._check_linktype(linktype)
        self.info.interfaces = [Interface(linktype, snaplen, 9 if ns_per_unit == 1 else 6)]
        s.pos += 24
        swapped = order == ">"
        max_caplen = max(snaplen, _MAX_SNAPLEN)
        offs = np.empty(self.batch_size, dtype=np.int64)
        while True:
            n, pos, status = _walk.walk_pcap(s.buf, s.pos, len(s.buf), swapped, max_caplen, offs)
            if n:
                arr = np.frombuffer(s.buf, dtype=np.uint8)
                rec = offs[:n].copy()
                # One row gather: the 16-byte record header and the frame's first bytes.
                win = frame_windows(arr, rec, 16 + WINDOW)
                head = win[:, :16].view(order + "u4")
                caplen = head[:, 2].astype(np.int64)
                ts = head[:, 0].astype(np.int64) * 1_000_000_000 + head[:, 1].astype(np.int64) * ns_per_unit
                batch = decode_frames(
                    arr, rec + 16, caplen, head[:, 3], ts, linktype, swapped, window=win[:, 16:]
                )
                self.last_frames = Frames(arr, rec + 16, np.full(n, linktype))
                s.pos = pos
                self._count(batch, s)
                yield batch
            s.pos = pos
            if status == _walk.CORRUPT:
                caplen = int(np.frombuffer(s.buf, order + "u4", 1, s.pos + 8)[0])
                raise s.corrupt(f"record claims {caplen} captured bytes (limit {max_caplen})")
            if status == _walk.FULL:
                continue
            if not s.fill():
                s.end_of_data("packet record")
                return

    # -- pcapng -----------------------------------------------------------

    def _pcapng(self, s: _Stream) -> Iterator[np.ndarray]:
        offs = np.empty(self.batch_size, dtype=np.int64)
        types = np.empty(self.batch_size, dtype=np.uint32)
        order = "<"
        last_ts = 0
        while True:
            if s.ensure(4) and s.buf[s.pos : s.pos + 4] == _PCAPNG_SHB:
                order = self._section_header(s)
            n, pos, status = _walk.walk_pcapng(s.buf, s.pos, len(s.buf), order == ">", offs, types)
            if n:
                batch, last_ts, error = self._pcapng_blocks(
                    s, offs[:n].copy(), types[:n].copy(), order, last_ts
                )
                if error is None:
                    s.pos = pos
                if len(batch):
                    self._count(batch, s)
                    yield batch
                if error is not None:
                    raise error
            s.pos = pos
            if status == _walk.CORRUPT:
                raise s.corrupt("block length is invalid or does not match its trailer")
            if status in (_walk.FULL, _walk.SECTION):
                continue
            if not s.fill():
                s.end_of_data("block")
                return

    def _section_header(self, s: _Stream) -> str:
        if not s.ensure(12):
            raise s.corrupt("section header block is truncated")
        bom = s.buf[s.pos + 8 : s.pos + 12]
        if bom == b"\x4d\x3c\x2b\x1a":
            order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            order = ">"
        else:
            raise s.corrupt(f"section header has bad byte-order magic {bom.hex()}")
        length = int(np.frombuffer(s.buf, order + "u4", 1, s.pos + 4)[0])
        if length < 28 or length % 4:
            raise s.corrupt(f"section header block length {length} is invalid")
        if not s.ensure(length):
            raise s.corrupt("section header block is truncated")
        major = int(np.frombuffer(s.buf, order + "u2", 1, s.pos + 12)[0])
        if major != 1:
            raise s.corrupt(f"section header has unsupported pcapng version {major}")
        if int(np.frombuffer(s.buf, order + "u4", 1, s.pos + length - 4)[0]) != length:
            raise s.corrupt("section header block length does not match its trailer")
        self.info.interfaces = []
        s.pos += length
        return order

    def _interface(self, s: _Stream, off: int, order: str) -> Interface:
        blk_len = int(np.frombuffer(s.buf, order + "u4", 1, off + 4)[0])
        linktype = int(np.frombuffer(s.buf, order + "u2", 1, off + 8)[0])
        snaplen = int(np.frombuffer(s.buf, order + "u4", 1, off + 12)[0])
        iface = Interface(linktype, snaplen)
        p, end = off + 16, off + blk_len - 4
        while p + 4 <= end:
            code, olen = (int(v) for v in np.frombuffer(s.buf, order + "u2", 2, p))
            if code == 0:
                break
            val = s.buf[p + 4 : min(p + 4 + olen, end)]
            if code == 9 and len(val) >= 1:  # if_tsresol
                iface.tsresol = val[0]
            elif code == 14 and len(val) >= 8:  # if_tsoffset, seconds
                iface.ts_offset_ns = int(np.frombuffer(val, order + "i8", 1)[0]) * 1_000_000_000
            p += 4 + ((olen + 3) & ~3)
        self._check_linktype(linktype, at=s.base + off)
        return iface

    def _pcapng_blocks(
        self, s: _Stream, offs: np.ndarray, types: np.ndarray, order: str, last_ts: int
    ) -> tuple[np.ndarray, int, CaptureError | None]:
        """Decode the packet blocks among whole blocks at ``offs``.

        Returns the batch, the last timestamp, and the error to raise *after* the
        batch (which holds every packet before the damaged block) was delivered.
        """
        arr = np.frombuffer(s.buf, dtype=np.uint8)
        blen = _u32(arr, offs, 4, order)
        stop, error = len(offs), None
        short = blen < _MIN_BLOCK[np.minimum(types, len(_MIN_BLOCK) - 1)]
        if short.any():
            stop = int(np.argmax(short))
            error = s.corrupt(
                f"block of type {int(types[stop])} is {int(blen[stop])} bytes, too short",
                s.base + int(offs[stop]),
            )
        is_idb = types[:stop] == _BT_IDB
        # How many interfaces are defined before each block (IDBs apply in file order).
        defined = len(self.info.interfaces) + np.cumsum(is_idb) - is_idb
        for j in np.flatnonzero(is_idb):
            try:
                self.info.interfaces.append(self._interface(s, int(offs[j]), order))
            except CaptureError as exc:
                stop, error = int(j), exc
                break
        idx = np.flatnonzero(np.isin(types[:stop], (_BT_EPB, _BT_SPB, _BT_OPB)))
        offs, types, blen, defined = offs[idx], types[idx], blen[idx], defined[idx]
        if len(offs) == 0:
            return np.zeros(0, PACKET_DTYPE), last_ts, error
        spb = types == _BT_SPB
        opb = types == _BT_OPB
        iface_raw = _u32(arr, offs, 8, order)
        # OPB stores a 16-bit interface id followed by a 16-bit drop counter.
        opb_iface = (iface_raw & 0xFFFF) if order == "<" else (iface_raw >> 16)
        iface = np.where(spb, 0, np.where(opb, opb_iface, iface_raw))
        # SPBs are 16 bytes long at least, EPB/OPB 32: offsets 20..28 are read only for EPB/OPB.
        epb_off = np.where(spb, offs, offs + 20)
        wire = np.where(spb, iface_raw, _u32(arr, epb_off, 4, order))
        # A simple packet block's captured length is min(original length, the interface's snaplen).
        snap0 = self.info.interfaces[0].snaplen if self.info.interfaces else 0
        spb_cap = np.minimum(iface_raw, blen - 16)
        if snap0 > 0:
            spb_cap = np.minimum(spb_cap, snap0)
        caplen = np.where(spb, spb_cap, _u32(arr, epb_off, 0, order))
        data = offs + np.where(spb, 12, 28)
        room = blen - np.where(spb, 16, 32)
        bad = (caplen > room) | (iface >= defined)
        if bad.any():
            i = int(np.argmax(bad))
            why = (
                f"packet block refers to interface {int(iface[i])}, but only "
                f"{int(defined[i])} are defined"
                if iface[i] >= defined[i]
                else f"packet block claims {int(caplen[i])} captured bytes in a {int(blen[i])}-byte block"
            )
            error = s.corrupt(why, s.base + int(offs[i]))
            offs, spb, iface, wire, caplen, data = (
                v[:i] for v in (offs, spb, iface, wire, caplen, data)
            )
            if i == 0:
                return np.zeros(0, PACKET_DTYPE), last_ts, error
        ts_off = np.where(spb, offs, offs + 12)
        units = (_u32(arr, ts_off, 0, order).astype(np.uint64) << np.uint64(32)) | _u32(
            arr, ts_off, 4, order
        ).astype(np.uint64)
        ts = np.zeros(len(offs), dtype=np.int64)
        out = np.zeros(len(offs), dtype=PACKET_DTYPE)
        for i in np.unique(iface):
            sel = iface == i
            ts[sel] = self.info.interfaces[int(i)].to_ns(units[sel])
        # Simple packet blocks carry no timestamp: they inherit the previous packet's.
        if spb.any():
            known = np.where(spb, -1, np.arange(len(ts)))
            prev = np.maximum.accumulate(known)
            ts = np.where(prev >= 0, ts[np.maximum(prev, 0)], last_ts)
        links = np.array([itf.linktype for itf in self.info.interfaces])[iface]
        self.last_frames = Frames(arr, data, links)
        for lt in np.unique(links):
            sel = np.flatnonzero(links == lt)
            out[sel] = decode_frames(
                arr, data[sel], caplen[sel], wire[sel], ts[sel], int(lt), order == ">", iface[sel]
            )
        return out, int(ts[-1]), error

    # -- shared -----------------------------------------------------------

    def _check_linktype(self, linktype: int, at: int | None = None) -> None:
        if linktype not in SUPPORTED_LINKTYPES:
            where = f" (interface at byte offset {at})" if at is not None else ""
            raise CaptureError(
                f"{self.path}: link type {linktype}{where} is not supported; supported: "
                + ", ".join(str(t) for t in sorted(SUPPORTED_LINKTYPES))
            )

    def _count(self, batch: np.ndarray, s: _Stream) -> None:
        self.info.packets += len(batch)
        self.info.bytes_read = s.offset


def read_packets(path: str | os.PathLike, batch_size: int = DEFAULT_BATCH) -> Iterator[np.ndarray]:
    """Yield ``PACKET_DTYPE`` batches from a pcap/pcapng file (optionally compressed)."""
    return iter(CaptureReader(path, batch_size))
