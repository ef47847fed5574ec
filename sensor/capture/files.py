"""Capture-file reader: pcap and pcapng, plain or gzip/xz/bzip2-compressed.

The record walk runs in C (``_walk``); timestamps, lengths and headers are
then pulled out of the raw bytes with numpy, a batch at a time.  A damaged
file raises one ``CorruptCaptureError`` naming the file and byte offset, after
every packet before the damage has been delivered.

What one record or block may make the reader buffer is bounded (``MAX_*`` below),
whatever the file's own header claims, so a small compressed file cannot make it
allocate gigabytes or decompress gigabytes before it is refused.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import numpy as np

from ..errors import CaptureError, CorruptCaptureError
from . import _walk
from .decode import WINDOW, decode_frames, frame_windows
from .linklayer import SUPPORTED_LINKTYPES
from .records import PACKET_DTYPE

CHUNK_BYTES = 8 << 20
DEFAULT_BATCH = 65536
# libpcap's MAXIMUM_SNAPLEN: no libpcap build writes a longer record for the link types we
# read, and libpcap itself refuses one.  Not max(snaplen, ...): the snaplen is the file's
# own claim (a damaged header may say 2^31), so it cannot be what bounds the buffer.
MAX_RECORD_BYTES = 262144
# pcapng: any one block; far above a real one (a packet is at most 262144 bytes, options
# add kilobytes), far below what a bomb's length field would make the reader wait for ...
MAX_BLOCK_BYTES = 16 << 20
# ... and section header / interface description blocks, which are fixed fields plus options.
MAX_HEADER_BLOCK_BYTES = 1 << 20
# Interfaces one section may define (an OPB's interface field has 16 bits).
MAX_INTERFACES = 65536
# if_tsoffset (seconds) whose value in ns still fits the int64 timestamps.
_MAX_TSOFFSET_S = (1 << 63) // 1_000_000_000

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microseconds, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class _Decompressor(Protocol):
    """What zlib, lzma and bz2 decompressor objects have in common."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


_BT_IDB, _BT_OPB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
# Smallest valid length of each block type (others: 12, type + length + trailer).
_MIN_BLOCK = np.array([12, 20, 32, 16, 12, 12, 32, 12], dtype=np.int64)

_COMPRESSORS: tuple[tuple[bytes, str, Callable[[], _Decompressor]], ...] = (
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(31)),  # (31: a gzip member, its CRC and length checked)
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),
    (b"BZh", "bzip2", bz2.BZ2Decompressor),
)
_RAW_BLOCK = 1 << 16  # compressed bytes read at a time


@dataclass
class Interface:
    """One capture interface: a pcap file has one, a pcapng section any number."""

    linktype: int
    snaplen: int
    tsresol: int = 6  # pcapng if_tsresol: 10^-n seconds, or 2^-n with the high bit set
    ts_offset_ns: int = 0


def _scale_to_ns(units: np.ndarray, tsresol: int) -> np.ndarray:
    """Timestamps in units of one ``if_tsresol`` → ns."""
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        # Binary fractions are rare; float64 keeps them to well under a microsecond.
        return np.clip(units.astype(np.float64) * (1e9 / 2.0**exp), 0, 2.0**62).astype(np.int64)
    if exp <= 9:
        scaled: np.ndarray = units.astype(np.int64) * (10 ** (9 - exp))
        return scaled
    if exp - 9 < 20:
        return (units // np.uint64(10 ** (exp - 9))).astype(np.int64)
    # finer than 10^-28 s: every timestamp this field can hold is below 1 ns
    return np.zeros(len(units), dtype=np.int64)


def _units_to_ns(units: np.ndarray, tsresol: np.ndarray) -> np.ndarray:
    """Per packet, timestamp units of its interface's ``if_tsresol`` → ns.

    One pass per distinct resolution (at most 256), not per interface: a section
    may define tens of thousands of interfaces.
    """
    res = np.unique(tsresol)
    if len(res) == 1:
        return _scale_to_ns(units, int(res[0]))
    ns = np.empty(len(units), dtype=np.int64)
    for r in res:
        sel = tsresol == r
        ns[sel] = _scale_to_ns(units[sel], int(r))
    return ns


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

    def __init__(self, raw: BinaryIO | _Decompressed, path: str, compression: str):
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
        """Read more: a chunk, and at least as much as is still unread; False once nothing more can be read.

        The unread tail is copied once into the new buffer together with the new
        bytes; reading at least as much as it keeps bounds the copying to a constant
        factor of the bytes read (amortized O(n), however long a record waits).
        """
        if self.eof:
            return False
        keep = len(self.buf) - self.pos
        want = max(CHUNK_BYTES, keep)
        parts = self._read_compressed(want) if self.compressed else self._read_plain(want)
        if not parts:
            self.eof = True
            return False
        if keep == 0 and len(parts) == 1:
            buf = parts[0]
        else:
            with memoryview(self.buf) as view:
                buf = b"".join((view[self.pos :], *parts))
        self.base += self.pos
        self.buf = buf
        self.pos = 0
        return True

    def _read_plain(self, want: int) -> list[bytes]:
        assert not isinstance(self.raw, _Decompressed)  # plain files only
        try:
            chunk = self.raw.read(want)
        except OSError as exc:
            raise CaptureError(f"{self.path}: read failed: {exc}") from exc
        return [chunk] if chunk else []

    def _read_compressed(self, want: int) -> list[bytes]:
        # read1() returns what one decompression step produced, so the bytes decoded
        # before damaged or missing compressed data are kept (read(n) would drop them
        # together with the exception).
        assert isinstance(self.raw, _Decompressed)
        parts: list[bytes] = []
        got = 0
        while got < want:
            try:
                part = self.raw.read1(want - got)
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
        return parts

    def ensure(self, n: int) -> bool:
        while self.available() < n:
            if not self.fill():
                return False
        return True

    def require(self, n: int, what: str) -> None:
        """Make n bytes available, or raise: the stream's damage if that is why they are missing, else ``what``."""
        if not self.ensure(n):
            if self.error:
                raise self.corrupt(self.error, self.base + len(self.buf))
            raise self.corrupt(what)

    def corrupt(self, reason: str, offset: int | None = None) -> CorruptCaptureError:
        return CorruptCaptureError(self.path, self.offset if offset is None else offset, reason, self.compressed)

    def end_of_data(self, what: str) -> None:
        """Called at a record boundary when no more whole records can be read."""
        if self.error:
            raise self.corrupt(self.error, self.base + len(self.buf))
        left = self.available()
        if left:
            raise self.corrupt(f"file ends inside a {what} ({left} trailing bytes)")


class _Decompressed:
    """The decompressed bytes of a gzip, xz or bzip2 file, one stream (gzip member) after another.

    After a stream only zero bytes (xz stream padding, gzip padding) or another whole
    stream may follow; anything else is damage.  Python's GzipFile, LZMAFile and BZ2File
    instead end quietly when a next stream fails in its first decompression step, so
    whether damage after a first stream was reported or its data silently dropped
    depended on the size of the reads (found by fuzzing).
    """

    def __init__(self, fh: BinaryIO, new: Callable[[], _Decompressor]):
        self.fh = fh
        self.new = new
        self.d = new()
        self.data = b""  # compressed bytes read and not yet taken by the decompressor
        self.hungry = True  # the decompressor has no output left without more input
        self.end = False

    def read1(self, n: int) -> bytes:
        """Up to n decompressed bytes, b"" only at the end; raises the decompressor's errors,
        and EOFError for a file cut inside a stream."""
        while not self.end:
            if self.d.eof and not self._next_stream():
                self.end = True
                break
            if not self.data and self.hungry:
                self.data = self.fh.read(_RAW_BLOCK)
                if not self.data:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            out = self.d.decompress(self.data, n)
            if isinstance(self.d, _ZLIB_DECOMPRESS):
                # zlib keeps what max_length left unread in unconsumed_tail; output may be
                # pending inside it only when it stopped at max_length
                self.data, self.hungry = self.d.unconsumed_tail, len(out) < n
            else:  # lzma and bz2 buffer unread input themselves
                assert isinstance(self.d, (lzma.LZMADecompressor, bz2.BZ2Decompressor))
                self.data, self.hungry = b"", self.d.needs_input
            if out:
                return out
        return b""

    def _next_stream(self) -> bool:
        """Past zero padding to the start of the next stream; False at the end of the file."""
        # unused_data holds all input after the stream (zlib may also leave a copy of it in
        # unconsumed_tail when the stream ended at max_length, so that is not added)
        self.data = self.d.unused_data
        while True:
            self.data = self.data.lstrip(b"\0")
            if self.data:
                self.d, self.hungry = self.new(), True
                return True
            self.data = self.fh.read(_RAW_BLOCK)
            if not self.data:
                return False


_ZLIB_DECOMPRESS = type(zlib.decompressobj())


def _open(path: str) -> tuple[BinaryIO | _Decompressed, str, BinaryIO]:
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
    for magic, name, new in _COMPRESSORS:
        if head.startswith(magic):
            return _Decompressed(fh, new), name, fh
    return fh, "", fh


def _u32(arr: np.ndarray, offs: np.ndarray, k: int, order: str) -> np.ndarray:
    idx = offs[:, None] + (k + np.arange(4))
    return arr[idx].view(order + "u4")[:, 0].astype(np.int64)


class CaptureReader:
    """Iterate ``PACKET_DTYPE`` batches from one capture file.

    >>> for batch in CaptureReader("trace.pcap.gz"): ...
    """

    def __init__(self, path: str | os.PathLike[str], batch_size: int = DEFAULT_BATCH):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.path = os.fspath(path)
        self.batch_size = batch_size
        self.info = FileInfo(self.path)
        # Valid right after each yielded batch, for tools that rewrite frames (inject).
        self.last_frames: Frames | None = None
        # Per-interface arrays of the current section, rebuilt when interfaces are added.
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raw, compression, fh = _open(self.path)
        self.info = FileInfo(self.path, compression=compression)
        self._columns = None
        with fh:
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
        s.require(24, "file header is truncated")
        head = np.frombuffer(s.buf, dtype=order + "u4", count=6, offset=s.pos)
        snaplen, linktype = int(head[4]), int(head[5]) & 0xFFFF
        self._check_linktype(linktype)
        self.info.interfaces = [Interface(linktype, snaplen, 9 if ns_per_unit == 1 else 6)]
        s.pos += 24
        swapped = order == ">"
        offs = np.empty(self.batch_size, dtype=np.int64)
        while True:
            n, pos, status = _walk.walk_pcap(s.buf, s.pos, len(s.buf), swapped, MAX_RECORD_BYTES, offs)
            if n:
                arr = np.frombuffer(s.buf, dtype=np.uint8)
                rec = offs[:n].copy()
                # One row gather: the 16-byte record header and the frame's first bytes.
                win = frame_windows(arr, rec, 16 + WINDOW)
                head = win[:, :16].view(order + "u4")
                caplen = head[:, 2].astype(np.int64)
                ts = head[:, 0].astype(np.int64) * 1_000_000_000 + head[:, 1].astype(np.int64) * ns_per_unit
                batch = decode_frames(arr, rec + 16, caplen, head[:, 3], ts, linktype, swapped, window=win[:, 16:])
                self.last_frames = Frames(arr, rec + 16, np.full(n, linktype))
                s.pos = pos
                self._count(batch, s)
                yield batch
            s.pos = pos
            if status == _walk.CORRUPT:
                claimed = int(np.frombuffer(s.buf, order + "u4", 1, s.pos + 8)[0])
                raise s.corrupt(f"record claims {claimed} captured bytes (limit {MAX_RECORD_BYTES})")
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
            n, pos, status = _walk.walk_pcapng(s.buf, s.pos, len(s.buf), order == ">", MAX_BLOCK_BYTES, offs, types)
            if n:
                batch, last_ts, error = self._pcapng_blocks(s, offs[:n].copy(), types[:n].copy(), order, last_ts)
                if error is None:
                    s.pos = pos
                if len(batch):
                    self._count(batch, s)
                    yield batch
                if error is not None:
                    raise error
            s.pos = pos
            if status == _walk.CORRUPT:
                length = struct.unpack_from(order + "I", s.buf, s.pos + 4)[0]
                if length > MAX_BLOCK_BYTES:
                    raise s.corrupt(f"block claims {length} bytes (limit {MAX_BLOCK_BYTES})")
                raise s.corrupt("block length is invalid or does not match its trailer")
            if status in (_walk.FULL, _walk.SECTION):
                continue
            if not s.fill():
                if s.buf[s.pos : s.pos + 4] == _PCAPNG_SHB:
                    # A cut section header: say so, as a read whose chunk ended just before
                    # it does at the top of this loop (found by fuzzing: the message
                    # depended on the read size).
                    self._section_header(s)
                s.end_of_data("block")
                return

    def _section_header(self, s: _Stream) -> str:
        s.require(12, "section header block is truncated")
        bom = s.buf[s.pos + 8 : s.pos + 12]
        if bom == b"\x4d\x3c\x2b\x1a":
            order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            order = ">"
        else:
            raise s.corrupt(f"section header has bad byte-order magic {bom.hex()}")
        length = struct.unpack_from(order + "I", s.buf, s.pos + 4)[0]
        if length < 28 or length % 4:
            raise s.corrupt(f"section header block length {length} is invalid")
        if length > MAX_HEADER_BLOCK_BYTES:
            raise s.corrupt(f"section header block claims {length} bytes (limit {MAX_HEADER_BLOCK_BYTES})")
        s.require(length, "section header block is truncated")
        major = struct.unpack_from(order + "H", s.buf, s.pos + 12)[0]
        if major != 1:
            raise s.corrupt(f"section header has unsupported pcapng version {major}")
        if struct.unpack_from(order + "I", s.buf, s.pos + length - 4)[0] != length:
            raise s.corrupt("section header block length does not match its trailer")
        self.info.interfaces = []
        self._columns = None
        s.pos += length
        return order

    def _interface(self, s: _Stream, off: int, order: str) -> Interface:
        buf, at = s.buf, s.base + off
        blk_len, linktype, _, snaplen = struct.unpack_from(order + "IHHI", buf, off + 4)
        if blk_len > MAX_HEADER_BLOCK_BYTES:
            raise s.corrupt(f"interface description block claims {blk_len} bytes (limit {MAX_HEADER_BLOCK_BYTES})", at)
        if len(self.info.interfaces) >= MAX_INTERFACES:
            raise s.corrupt(f"section defines more than {MAX_INTERFACES} interfaces", at)
        iface = Interface(linktype, snaplen)
        opt = struct.Struct(order + "HH")
        p, end = off + 16, off + blk_len - 4
        while p + 4 <= end:
            code, olen = opt.unpack_from(buf, p)
            if code == 0:
                break
            if code == 9 and olen >= 1 and p + 5 <= end:  # if_tsresol
                iface.tsresol = buf[p + 4]
            elif code == 14 and olen >= 8 and p + 12 <= end:  # if_tsoffset, seconds
                seconds = struct.unpack_from(order + "q", buf, p + 4)[0]
                if abs(seconds) > _MAX_TSOFFSET_S:
                    raise s.corrupt(f"interface if_tsoffset of {seconds} s is out of range", at)
                iface.ts_offset_ns = seconds * 1_000_000_000
            p += 4 + ((olen + 3) & ~3)
        self._check_linktype(linktype, at=at)
        return iface

    def _interface_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Link type, if_tsresol and if_tsoffset (ns) of the section's interfaces, as arrays."""
        ifs = self.info.interfaces
        if self._columns is None or len(self._columns[0]) != len(ifs):
            self._columns = (
                np.array([i.linktype for i in ifs], dtype=np.int64),
                np.array([i.tsresol for i in ifs], dtype=np.int64),
                np.array([i.ts_offset_ns for i in ifs], dtype=np.int64),
            )
        return self._columns

    def _pcapng_blocks(
        self, s: _Stream, offs: np.ndarray, types: np.ndarray, order: str, last_ts: int
    ) -> tuple[np.ndarray, int, CaptureError | None]:
        """Decode the packet blocks among whole blocks at ``offs``.

        Returns the batch, the last timestamp, and the error to raise *after* the
        batch (which holds every packet before the damaged block) was delivered.
        """
        arr = np.frombuffer(s.buf, dtype=np.uint8)
        blen = _u32(arr, offs, 4, order)
        stop = len(offs)
        error: CaptureError | None = None
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
                f"packet block refers to interface {int(iface[i])}, but only {int(defined[i])} are defined"
                if iface[i] >= defined[i]
                else f"packet block claims {int(caplen[i])} captured bytes in a {int(blen[i])}-byte block"
            )
            error = s.corrupt(why, s.base + int(offs[i]))
            offs, spb, iface, wire, caplen, data = (v[:i] for v in (offs, spb, iface, wire, caplen, data))
            if i == 0:
                return np.zeros(0, PACKET_DTYPE), last_ts, error
        ts_off = np.where(spb, offs, offs + 12)
        units = (_u32(arr, ts_off, 0, order).astype(np.uint64) << np.uint64(32)) | _u32(arr, ts_off, 4, order).astype(
            np.uint64
        )
        linktypes, tsresol, tsoffset = self._interface_columns()
        ts = _units_to_ns(units, tsresol[iface]) + tsoffset[iface]
        out = np.zeros(len(offs), dtype=PACKET_DTYPE)
        # Simple packet blocks carry no timestamp: they inherit the previous packet's.
        if spb.any():
            known = np.where(spb, -1, np.arange(len(ts)))
            prev = np.maximum.accumulate(known)
            ts = np.where(prev >= 0, ts[np.maximum(prev, 0)], last_ts)
        links = linktypes[iface]
        self.last_frames = Frames(arr, data, links)
        for lt in np.unique(links):
            sel = np.flatnonzero(links == lt)
            out[sel] = decode_frames(arr, data[sel], caplen[sel], wire[sel], ts[sel], int(lt), order == ">", iface[sel])
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


def read_packets(path: str | os.PathLike[str], batch_size: int = DEFAULT_BATCH) -> Iterator[np.ndarray]:
    """Yield ``PACKET_DTYPE`` batches from a pcap/pcapng file (optionally compressed)."""
    return iter(CaptureReader(path, batch_size))
