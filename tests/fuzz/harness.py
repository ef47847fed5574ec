"""Fuzz campaign for the capture readers and the config and bundle loaders, in-process.

Every input starts as a window of a real capture from tests/data (its header blocks and a
few kB of records; also big-endian, SPB, multi-interface, re-linked, VLAN and IPv6
extension-header variants made with tests/sensor/pcaptools.py) and is mutated: bit flips,
interesting values in length and header fields, truncation, deletions, insertions,
repeated records, splices of two seeds, IDB options.  The gzip/xz/bzip2 targets compress
the result and may damage the compressed bytes.  The ``config`` target mutates the shipped
sensor.yaml (and every key set in block and flow style) with YAML tokens, awkward values,
deep nesting and alias bombs, and resolves it as a reload does; ``metadata`` edits the
shipped bundle's metadata.json field by field; ``model`` damages model.tflite (and the
hostile-model fixtures) byte by byte and loads it with LiteRT; a bundle that loads must
then score windows finitely.  A target may raise ``FlowlstmError`` (the
input is bad and the reader says so in one line); anything else is a finding:

- crash: any other exception; a batch or an error breaking an invariant; two reads of one
  input (tiny chunks and batches, and one chunk) giving different records or errors;
- hang: one input using over ``--hang-s`` seconds of CPU, or blocking for ``HANG_WALL_FACTOR``
  times that on the clock (the parent's watchdog kills it).  CPU time, not the clock, so that a
  campaign run at ``nice 19`` beside other work does not call a starved worker hung;
- memory: ``MemoryError`` under ``RLIMIT_AS`` set ``--mem-mb`` above the worker's size at
  start, or the worker's peak RSS growing by more than that;
- signal: the worker process died (a fault in C code).

Each finding's input is written to ``--out`` as ``<kind>-<signature hash>-<input>.bin``
with a ``.json`` beside it; ``--replay FILE.bin`` runs it again in the foreground.  Input
*i* is a pure function of ``--seed`` and *i*, so a campaign continues with ``--start``.

Quick mode (what tests/sensor/test_capture_fuzz.py runs: one process, no watchdog)::

    PYTHONPATH=$PWD python -m tests.fuzz.harness --quick 300

Long mode, by hand (``--minutes`` stops it early; ``summary.json`` in ``--out`` says where)::

    PYTHONPATH=$PWD python -m tests.fuzz.harness --inputs 1000000 --jobs 2 --out /tmp/fuzz

More targets: add ``TARGETS["name"] = Target(seeds, mutate, run)``.  ``run`` takes the input
bytes and may raise only ``FlowlstmError``;
``mutate`` may be ``mutate`` below, whose capture-aware mutators leave other formats alone.
"""

from __future__ import annotations

import argparse
import bz2
import copy
import functools
import gzip
import hashlib
import json
import lzma
import multiprocessing as mp
import os
import pickle
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from sensor.addresses import IPV4_MAPPED_PREFIX
from sensor.capture import files
from sensor.capture.records import HDR_L4, PACKET_DTYPE
from sensor.errors import CorruptCaptureError, FlowlstmError

DATA = Path(__file__).resolve().parents[1] / "data"
SEED_BYTES = 4000  # bytes of records per seed window (after the file's header blocks)
MAX_INPUT = 1 << 16  # a mutated input is cut to this
FINDINGS = ("crash", "hang", "memory", "signal")
HANG_WALL_FACTOR = 4  # a worker blocked (no CPU used) this many times --hang-s on the clock hangs too
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_DEFAULT_CHUNK = files.CHUNK_BYTES
_EXIT_MEMORY = 3  # a worker that reported a memory finding exits with this to be replaced
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, dtype=np.uint8)


class Finding(Exception):
    """A broken invariant found by the harness's own checks; reported like a crash."""


@dataclass(frozen=True)
class Target:
    """What a campaign fuzzes: real seed inputs, how to mutate one, what to run on the result."""

    seeds: Callable[[], list[bytes]]
    mutate: Callable[[bytes, random.Random, list[bytes]], bytes]
    run: Callable[[bytes], None]


# -- structure of capture inputs (lenient, independent of the reader under test) -----------

_PCAP_ORDER = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
_SHB = b"\x0a\x0d\x0d\x0a"
_SHB_TYPE = 0x0A0D0D0A
_PACKET_BLOCKS = (2, 3, 6)


@dataclass(frozen=True)
class Record:
    """One whole pcap record (kind -1) or pcapng block (kind: its type) of an input."""

    off: int
    size: int
    kind: int
    order: str


def walk(data: bytes | bytearray) -> tuple[str, list[Record]]:
    """The format ("pcap", "pcapng" or "") and the whole records from the start, up to the first bad one."""
    recs: list[Record] = []
    order = _PCAP_ORDER.get(bytes(data[:4]))
    if order:
        off = 24
        while off + 16 <= len(data):
            size = 16 + struct.unpack_from(order + "I", data, off + 8)[0]
            if off + size > len(data):
                break
            recs.append(Record(off, size, -1, order))
            off += size
        return "pcap", recs
    if bytes(data[:4]) != _SHB:
        return "", recs
    off, order = 0, "<"
    while off + 12 <= len(data):
        if bytes(data[off : off + 4]) == _SHB:
            order = ">" if bytes(data[off + 8 : off + 12]) == b"\x1a\x2b\x3c\x4d" else "<"
        kind, size = struct.unpack_from(order + "II", data, off)
        if size < 12 or size % 4 or off + size > len(data):
            break
        recs.append(Record(off, size, kind, order))
        off += size
    return "pcapng", recs


def idb_with(idb: bytes, option: bytes, order: str = "<") -> bytes:
    """An interface description block with ``option`` (encoded) added before its end-of-options."""
    p = 16
    while p + 4 <= len(idb) - 4:
        code, olen = struct.unpack_from(order + "HH", idb, p)
        if code == 0:
            break
        p += 4 + ((olen + 3) & ~3)
    p = min(p, len(idb) - 4)
    body = idb[8:p] + option + idb[p:-4]
    n = struct.pack(order + "I", len(body) + 12)
    return idb[:4] + n + body + n


def encode_option(code: int, value: bytes, order: str = "<", length: int | None = None) -> bytes:
    """A pcapng option, padded to 4 bytes; ``length`` overrides its length field."""
    olen = len(value) if length is None else length
    return struct.pack(order + "HH", code, olen) + value + bytes(-len(value) % 4)


# -- seeds ------------------------------------------------------------------------------


def windows(raw: bytes, size: int = SEED_BYTES) -> list[bytes]:
    """The capture's header blocks with ~``size`` bytes of whole records from its start, and from its middle."""
    fmt, recs = walk(raw)
    if not fmt:
        return []
    head_end = 24 if fmt == "pcap" else next((r.off for r in recs if r.kind in _PACKET_BLOCKS), len(raw))
    body = [r for r in recs if r.off >= head_end]
    out = []
    for first in sorted({0, len(body) // 2}):
        end = first
        while end < len(body) and body[end].off + body[end].size - body[first].off <= size:
            end += 1
        end = max(end, min(first + 1, len(body)))
        if end > first:
            out.append(raw[:head_end] + raw[body[first].off : body[end - 1].off + body[end - 1].size])
    return out or [raw[:head_end]]


def _derived(tmp: Path, window_of: Callable[[str], bytes]) -> list[Path]:
    """Other framings of fixture windows, made with the test suite's byte-level transforms."""
    from tests.sensor import pcaptools

    def put(name: str, data: bytes) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    ftp = put("ftp.pcap", window_of("zeek/ftp_bruteforce.pcap"))
    amp = put("amp.pcap", window_of("attacks/amp.dns.RRSIG.fragmented.pcap"))
    hping_raw = window_of("attacks/hping3.pcapng")
    hping = put("hping.pcapng", hping_raw)
    out = [
        pcaptools.byteswap_pcap(ftp, tmp / "be.pcap"),
        pcaptools.byteswap_pcapng(hping, tmp / "be.pcapng"),
        pcaptools.epb_to_spb(hping, tmp / "spb.pcapng"),
        pcaptools.add_vlan(ftp, tmp / "qinq.pcap", [(0x88A8, 7), (0x8100, 5)]),
        pcaptools.add_ipv6_extensions(amp, tmp / "ext.pcap")[0],
        *(pcaptools.relink(amp, tmp / f"link{lt}.pcap", lt) for lt in (0, 101, 108, 113, 276)),
    ]
    # nanosecond if_tsresol and an if_tsoffset, so that mutations start from both options
    _, recs = walk(hping_raw)
    idb = recs[1]
    assert idb.kind == 1
    opts = encode_option(9, b"\x09") + encode_option(14, struct.pack("<q", 3600))
    block = idb_with(hping_raw[idb.off : idb.off + idb.size], opts)
    out.append(put("tsopts.pcapng", hping_raw[: idb.off] + block + hping_raw[idb.off + idb.size :]))
    if shutil.which("mergecap"):
        merged = tmp / "merged.pcapng"
        subprocess.run(
            ["mergecap", "-F", "pcapng", "-w", str(merged), str(ftp), str(tmp / "link113.pcap"), str(hping)],
            check=True,
            capture_output=True,
        )
        out.append(merged)
    return out


@functools.cache
def _seeds_by_format() -> dict[str, list[bytes]]:
    fixtures = sorted(p for p in DATA.rglob("*") if ".pcap" in p.name)
    seeds: dict[str, list[bytes]] = {"pcap": [], "pcapng": []}

    def window_of(rel: str) -> bytes:
        return windows((DATA / rel).read_bytes())[0]

    with tempfile.TemporaryDirectory() as tmp:
        for path in [*fixtures, *_derived(Path(tmp), window_of)]:
            raw = path.read_bytes()
            fmt, _ = walk(raw)
            if fmt:
                seeds[fmt] += windows(raw)
    return seeds


def capture_seeds(fmt: str | None = None) -> list[bytes]:
    """Seed inputs: windows of every capture in tests/data and of the derived framings."""
    by = _seeds_by_format()
    return by[fmt] if fmt else by["pcap"] + by["pcapng"]


# -- mutators: each edits a bytearray in place ----------------------------------------------

INTERESTING_32 = (
    0,
    1,
    3,
    4,
    11,
    12,
    13,
    16,
    20,
    27,
    28,
    32,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0xFFFF,
    0x10000,
    262144,
    262145,
    1 << 20,
    (1 << 20) + 4,
    16 << 20,
    (16 << 20) + 4,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFF0,
    0xFFFFFFFC,
    0xFFFFFFFF,
)
INTERESTING_64 = (0, 1, -1, 1 << 32, 9223372036, 9223372037, -9223372037, 1 << 62, -(1 << 63), (1 << 63) - 1)
TSRESOL = (0, 3, 6, 9, 10, 12, 19, 20, 28, 29, 30, 0x7F, 0x80, 0x86, 0x89, 0x9E, 0xBF, 0xC0, 0xFF)
LINKTYPES = (0, 1, 9, 12, 14, 101, 105, 108, 113, 228, 229, 276, 0xFFFF)
Mutator = Callable[[bytearray, random.Random, list[bytes]], None]


def _put(d: bytearray, at: int, fmt: str, value: int) -> None:
    if 0 <= at and at + struct.calcsize(fmt) <= len(d):
        struct.pack_into(fmt, d, at, value)


def _near(d: bytearray, at: int, fmt: str, rng: random.Random) -> int:
    """An interesting value, or the field's current value moved a little."""
    bits = struct.calcsize(fmt) * 8
    if rng.random() < 0.7 or at + bits // 8 > len(d):
        return rng.choice(INTERESTING_32) & ((1 << bits) - 1)
    return (struct.unpack_from(fmt, d, at)[0] + rng.randint(-8, 8)) & ((1 << bits) - 1)


def flip_bits(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 8)):
        d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)


def set_bytes(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 8)):
        d[rng.randrange(len(d))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))


def put_value(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """An interesting 16/32/64-bit value in either byte order, anywhere."""
    width = rng.choice((2, 4, 4, 8))
    order = rng.choice("<>")
    at = rng.randrange(max(1, len(d) - width + 1))
    if width == 8:
        _put(d, at, order + "q", rng.choice(INTERESTING_64))
    else:
        _put(d, at, order + ("I" if width == 4 else "H"), rng.choice(INTERESTING_32) & ((1 << 8 * width) - 1))


def truncate(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    del d[rng.randrange(len(d) + 1) :]


def delete_range(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    at = rng.randrange(len(d))
    del d[at : at + rng.randint(1, 64)]


def insert_bytes(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    at = rng.randrange(len(d) + 1)
    if rng.random() < 0.5:
        d[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        src = rng.randrange(len(d))
        d[at:at] = d[src : src + rng.randint(1, 256)]


def repeat_record(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """A whole record or block repeated where it is (many SHBs, IDBs or packets in a row)."""
    _, recs = walk(d)
    if recs:
        r = rng.choice(recs)
        d[r.off : r.off] = bytes(d[r.off : r.off + r.size]) * rng.randint(1, 64)


def splice(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """This input's head and another seed's tail, cut at record boundaries or anywhere."""
    other = rng.choice(seeds)
    if rng.random() < 0.5:
        a = rng.choice([r.off for r in walk(d)[1]] + [len(d)])
        b = rng.choice([r.off for r in walk(other)[1]] + [0])
    else:
        a, b = rng.randrange(len(d) + 1), rng.randrange(len(other) + 1)
    d[a:] = other[b:]


def _fields(r: Record) -> list[tuple[int, str]]:
    """(offset, struct format) of the length, type and header fields of one record."""
    o = r.order
    if r.kind == -1:
        return [(0, o + "I"), (4, o + "I"), (8, o + "I"), (8, o + "I"), (12, o + "I")]
    common = [(0, o + "I"), (4, o + "I"), (4, o + "I"), (r.size - 4, o + "I")]
    per_type = {
        _SHB_TYPE: [(12, o + "H"), (14, o + "H"), (16, o + "Q")],
        1: [(8, o + "H"), (12, o + "I"), (16, o + "H"), (18, o + "H")],
        2: [(8, o + "H"), (10, o + "H"), (20, o + "I"), (24, o + "I")],
        3: [(8, o + "I")],
        6: [(8, o + "I"), (12, o + "I"), (16, o + "I"), (20, o + "I"), (20, o + "I"), (24, o + "I")],
    }
    return common + per_type.get(r.kind, [])


def edit_field(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """A length, type, interface or timestamp field of one record set to an interesting value, in its byte order."""
    _, recs = walk(d)
    if recs:
        r = rng.choice(recs)
        at, fmt = rng.choice(_fields(r))
        _put(d, r.off + at, fmt, _near(d, r.off + at, fmt, rng))


def edit_header(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """The link type (pcap header or an IDB), the snaplen or the magic (byte order, time unit)."""
    fmt, recs = walk(d)
    if fmt == "pcap":
        order = _PCAP_ORDER[bytes(d[:4])]
        what = rng.randrange(3)
        if what == 0:
            _put(d, 20, order + "I", rng.choice(LINKTYPES))
        elif what == 1:
            _put(d, 16, order + "I", rng.choice(INTERESTING_32))
        else:
            d[0:4] = rng.choice(list(_PCAP_ORDER))
    elif fmt == "pcapng":
        idbs = [r for r in recs if r.kind == 1]
        if idbs:
            r = rng.choice(idbs)
            _put(d, r.off + 8, r.order + "H", rng.choice(LINKTYPES))


def add_option(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """An if_tsresol, if_tsoffset or other option added to an IDB, the block kept well framed."""
    idbs = [r for r in walk(d)[1] if r.kind == 1 and r.size >= 20]
    if not idbs:
        return
    r = rng.choice(idbs)
    code = rng.choice((9, 9, 14, 14, 1, 2, 0, rng.randrange(65536)))
    if code == 9:
        value = bytes([rng.choice(TSRESOL) if rng.random() < 0.8 else rng.randrange(256)])
    elif code == 14:
        seconds = rng.choice(INTERESTING_64) if rng.random() < 0.8 else rng.randrange(-(1 << 63), 1 << 63)
        value = struct.pack(r.order + "q", seconds)
    else:
        value = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 8, 17))))
    lie = rng.choice((0xFFFF, len(value) + 4, 1)) if rng.random() < 0.1 else None  # a length that lies
    option = encode_option(code, value, r.order, lie)
    d[r.off : r.off + r.size] = idb_with(bytes(d[r.off : r.off + r.size]), option, r.order)


MUTATORS: tuple[Mutator, ...] = (
    flip_bits,
    set_bytes,
    put_value,
    truncate,
    delete_range,
    insert_bytes,
    repeat_record,
    splice,
    edit_field,
    edit_field,
    edit_header,
    add_option,
    add_option,
)
_STREAM_DAMAGE: tuple[Mutator, ...] = (flip_bits, set_bytes, truncate, delete_range, insert_bytes)


def mutate(seed: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One to six mutations of ``seed`` (now and then none), cut to ``MAX_INPUT`` bytes."""
    d = bytearray(seed)
    if rng.random() < 0.05:
        return seed
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6))):
        if not d:
            break
        rng.choice(MUTATORS)(d, rng, seeds)
    del d[MAX_INPUT:]
    return bytes(d)


_COMPRESSORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "gzip": lambda d, rng: gzip.compress(d, compresslevel=rng.randint(1, 9), mtime=0),
    "xz": lambda d, rng: lzma.compress(
        d, preset=rng.randint(0, 3), check=rng.choice((lzma.CHECK_CRC64, lzma.CHECK_CRC32, lzma.CHECK_NONE))
    ),
    "bzip2": lambda d, rng: bz2.compress(d, compresslevel=rng.randint(1, 9)),
}


def compressed(name: str) -> Callable[[bytes, random.Random, list[bytes]], bytes]:
    """A mutator that mutates the capture, compresses it, and sometimes damages or extends the stream."""
    pack = _COMPRESSORS[name]

    def mutate_compressed(seed: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
        data = mutate(seed, rng, seeds)
        if rng.random() < 0.1:  # several streams back to back (gzip members, xz streams)
            cut = rng.randrange(len(data) + 1)
            packed = bytearray(pack(data[:cut], rng) + pack(data[cut:], rng))
        else:
            packed = bytearray(pack(data, rng))
        roll = rng.random()
        if roll < 0.25:
            tail = packed[6:]  # (the magic kept, so that the stream is still taken for compressed)
            if tail:
                rng.choice(_STREAM_DAMAGE)(tail, rng, seeds)
            packed[6:] = tail
        elif roll < 0.3:
            packed += rng.choice((bytes(rng.randint(1, 64)), bytes(rng.randrange(256) for _ in range(16))))
        return bytes(packed)

    return mutate_compressed


# -- the capture target ---------------------------------------------------------------------

_scratch_dir: str | None = None


def _scratch() -> Path:
    global _scratch_dir
    if _scratch_dir is None:
        _scratch_dir = tempfile.mkdtemp(prefix="flowlstm-fuzz-", dir=_SHM)
    return Path(_scratch_dir) / f"{os.getpid()}.cap"


@dataclass
class _Read:
    records: np.ndarray
    error: FlowlstmError | None


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise Finding(f"invariant: {what}")


def _check_batch(b: np.ndarray, reader: files.CaptureReader, batch_size: int) -> None:
    _need(b.dtype == PACKET_DTYPE, "batch dtype is PACKET_DTYPE")
    _need(0 < len(b) <= batch_size, "batch holds 1..batch_size records")
    ip = b["l3"] > 0
    l3 = b["l3"]
    _need(bool(((l3 == 0) | (l3 == 4) | (l3 == 6)).all()), "l3 is 0, 4 or 6")
    _need(bool((b["hdr"] < 16).all() and (b["frag"] < 16).all()), "hdr and frag hold only their flags")
    _need(bool((b["sport"][~ip] == 0).all() and (b["proto"][~ip] == 0).all()), "non-IP records have no ports or proto")
    _need(bool(((b["hdr"][~ip] & HDR_L4) == 0).all()), "non-IP records have no transport header")
    _need(bool((b["tcp_flags"][b["proto"] != 6] == 0).all()), "only TCP has flags")
    v4 = b["l3"] == 4
    _need(
        bool((b["src"][v4][:, :12] == _MAPPED).all() and (b["dst"][v4][:, :12] == _MAPPED).all()),
        "IPv4 addresses are IPv4-mapped",
    )
    limit = files.MAX_RECORD_BYTES if reader.info.format == "pcap" else files.MAX_BLOCK_BYTES
    _need(bool((b["cap_len"] <= limit).all()), "cap_len within the reader's limit")
    _need(reader.last_frames is not None and len(reader.last_frames.data) == len(b), "last_frames match the batch")


def _check_error(exc: FlowlstmError, path: Path, reader: files.CaptureReader, size: int) -> None:
    msg = str(exc)
    _need("\n" not in msg, "error message is one line")
    _need(msg.startswith(f"{path}: "), "error message starts with the file name")
    if isinstance(exc, CorruptCaptureError):
        _need(exc.offset >= 0, "error offset is not negative")
        _need(bool(reader.info.compression) or exc.offset <= size, "error offset is inside the file")


def _read(path: Path, size: int, batch: int, chunk: int) -> _Read:
    files.CHUNK_BYTES = chunk
    reader = files.CaptureReader(path, batch_size=batch)
    got: list[np.ndarray] = []
    error = None
    try:
        for b in reader:
            _check_batch(b, reader, batch)
            got.append(b)
    except FlowlstmError as exc:
        _check_error(exc, path, reader, size)
        error = exc
    finally:
        files.CHUNK_BYTES = _DEFAULT_CHUNK
    records = np.concatenate(got) if got else np.zeros(0, PACKET_DTYPE)
    _need(reader.info.packets == len(records), "info.packets counts the records delivered")
    return _Read(records, error)


def _damaged_stream(r: _Read) -> bool:
    return isinstance(r.error, CorruptCaptureError) and r.error.reason.startswith("compressed stream is damaged")


def read_capture(data: bytes) -> None:
    """Read ``data`` as a capture file in tiny chunks and batches and in one chunk; both must agree.

    Re-raises the reader's ``FlowlstmError``.  Where a compressed stream is damaged the two
    reads may stop at different places (a decompressor drops the output of the call that
    failed), so there one's records need only be a prefix of the other's.
    """
    path = _scratch()
    path.write_bytes(data)
    h = zlib.crc32(data)
    small = _read(path, len(data), batch=(1, 3, 17, 17, 64, 64, 997, 997)[h % 8], chunk=1 + (h >> 4) % 4096)
    whole = _read(path, len(data), batch=files.DEFAULT_BATCH, chunk=_DEFAULT_CHUNK)
    if _damaged_stream(small) or _damaged_stream(whole):
        short, long_ = sorted((small.records, whole.records), key=len)
        if short.tobytes() != long_[: len(short)].tobytes():
            raise Finding("differential: a damaged stream's records differ before the damage")
    else:
        if small.records.tobytes() != whole.records.tobytes():
            raise Finding("differential: records depend on chunk and batch size")
        if (type(small.error), str(small.error)) != (type(whole.error), str(whole.error)):
            raise Finding(f"differential: error depends on chunk and batch size ({small.error} / {whole.error})")
    if whole.error is not None:
        raise whole.error


# -- the configuration target: sensor.yaml through the loader the daemon uses on SIGHUP --------

_ROOT = DATA.parents[1]
_YAML_TOKENS = (
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!python/object/apply:os.system ['true']",
    "!!str ",
    "!!float ",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "? ",
    "\n  ",
    "\n    ",
    "\t",
    "'",
    '"',
    "#",
    "|\n  ",
    ">-\n  ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "1e309",
    "-.inf",
    ".nan",
    "0x7fffffffffffffff",
    "99999999999999999999",
    "-1",
    "0",
    "~",
    "null",
    "yes",
    "off",
    "2001-12-14",
    "\\u0000",
    "\\x00",
    "\ufeff",
    "\u2028",
    "\x85",
    "\x00",
)
_YAML_VALUES = (
    "-1",
    "0",
    "1",
    "65535",
    "65536",
    "70000",
    "1e309",
    ".nan",
    "-.inf",
    "0.0",
    "1e-30",
    "true",
    "null",
    "~",
    "''",
    "[]",
    "{}",
    "[1, 2]",
    "{a: 1}",
    "x" * 300,
    "'\\n'",
    '"\\u0000"',
    "*a",
    "&a [*a, *a]",
    "!!binary AAAA",
    "2001-12-14",
    "0o777",
    "0b101",
    "+12",
    "12_000",
    "eth0\tx",
)


def config_seeds() -> list[bytes]:
    """The shipped sensor.yaml, and every file key set explicitly in block and flow style."""
    import yaml

    from sensor import settings

    shipped = (_ROOT / "etc" / "flowlstm" / "sensor.yaml").read_bytes()
    tree: dict = {}
    for key, value in settings.defaults().items():
        if key not in settings.FILE_KEYS:
            continue
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    tree.setdefault("capture", {})["interface"] = "eth0"
    tree.setdefault("outputs", {}).setdefault("eve", {})["filename"] = "/var/log/flowlstm/eve.json"
    block = yaml.safe_dump(tree, sort_keys=False).encode()
    flow = yaml.safe_dump(tree, default_flow_style=True, width=60).encode()
    small = b"capture: {interface: lo, bpf: 'not port 22'}\nfeatures:\n  max-flows: 1000\n"
    return [shipped, block, flow, small]


def _insert_token(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    at = rng.randrange(len(d) + 1)
    d[at:at] = rng.choice(_YAML_TOKENS).encode("utf-8", "surrogatepass") * rng.choice((1, 1, 1, 2, 50))


def _replace_value(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """The value of one ``key: value`` line replaced by an awkward one."""
    lines = bytes(d).split(b"\n")
    keyed = [i for i, line in enumerate(lines) if b": " in line and not line.lstrip().startswith(b"#")]
    if keyed:
        i = rng.choice(keyed)
        lines[i] = lines[i].split(b": ", 1)[0] + b": " + rng.choice(_YAML_VALUES).encode()
        d[:] = b"\n".join(lines)


def _nest(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """The text (or a key's value) wrapped in many flow collections."""
    n = rng.choice((10, 100, 1000, 5000))
    opener, closer = rng.choice(((b"[", b"]"), (b"{a: ", b"}")))
    at = rng.randrange(len(d) + 1)
    d[at:at] = opener * n + b"1" + closer * n


def _laughs(d: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """An alias expansion bomb under a real key."""
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [%s]\n" % (c, c, b", ".join([b"*%c" % (c - 1)] * 9)) for c in range(ord("b"), ord("j"))
    )
    d[:0] = bomb + b"sensor-name: *i\n"


_TEXT_MUTATORS: tuple[Mutator, ...] = (
    flip_bits,
    set_bytes,
    truncate,
    delete_range,
    insert_bytes,
    _insert_token,
    _insert_token,
    _replace_value,
    _replace_value,
    _replace_value,
)


def mutate_text(seed: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One to four text-level mutations of ``seed``; now and then nesting, a bomb or a splice."""
    d = bytearray(seed)
    roll = rng.random()
    if roll < 0.03:
        _nest(d, rng, seeds)
    elif roll < 0.05:
        _laughs(d, rng, seeds)
    elif roll < 0.08:
        other = rng.choice(seeds)
        d[rng.randrange(len(d) + 1) :] = other[rng.randrange(len(other) + 1) :]
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        if d:
            rng.choice(_TEXT_MUTATORS)(d, rng, seeds)
    del d[MAX_INPUT:]
    return bytes(d)


def _one_line_error(exc: FlowlstmError, path: Path) -> None:
    msg = str(exc)
    _need("\n" not in msg and "\r" not in msg, "error message is one line")
    _need(str(path) in msg, "error message names the file")
    _need(len(msg) <= 1000, "error message is short (no expanded value in it)")


def load_config_text(data: bytes) -> None:
    """``data`` as the configuration file, resolved and turned into a run's typed configuration."""
    from sensor import config

    path = _scratch().with_suffix(".yaml")
    path.write_bytes(data)
    try:
        values = config.resolve(str(path), {})
        config.sensor_config(values)
    except config.UsageError:
        return  # a file that names no input or output: the command line must; not the loader's concern
    except FlowlstmError as exc:
        _one_line_error(exc, path)
        raise


# -- the bundle targets: metadata.json and model.tflite through the sensor's bundle loader ----


@functools.cache
def _bundle_files() -> tuple[bytes, bytes]:
    from sensor.model import DEFAULT_BUNDLE, METADATA_FILE, MODEL_FILE

    return (DEFAULT_BUNDLE / METADATA_FILE).read_bytes(), (DEFAULT_BUNDLE / MODEL_FILE).read_bytes()


def metadata_seeds() -> list[bytes]:
    """The shipped bundle's metadata, indented and compact, without its provenance.

    ``training`` (the run's manifest and trace list, 100 KB) is free-form and the loader does
    not read it; kept, most edits would land there, and the file would pass MAX_INPUT.
    """
    meta = json.loads(_bundle_files()[0])
    meta.pop("training", None)
    return [json.dumps(meta, indent=1).encode(), json.dumps(meta, separators=(",", ":")).encode()]


def model_seeds() -> list[bytes]:
    """The shipped model and the hostile-model fixtures of tests/data/models."""
    return [_bundle_files()[1], *(p.read_bytes() for p in sorted((DATA / "models").glob("*.tflite")))]


_JSON_VALUES: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    1,
    0.5,
    1e-30,
    1e308,
    -1e308,
    2**63,
    -(2**64),
    "",
    "x",
    "1",
    [],
    [0],
    [[]],
    {},
    {"a": 1},
    float("nan"),
    float("inf"),
)


def _json_paths(node: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if len(path) > 12:  # inside a value an earlier mutation nested: nothing new to find there
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out += _json_paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:8]):
            out += _json_paths(v, (*path, i))
        if len(node) > 8:
            out += _json_paths(node[-1], (*path, len(node) - 1))
    return out


def mutate_json(seed: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """A field of the JSON replaced, deleted, resized or nested; or its text damaged."""
    if rng.random() < 0.3:
        return mutate_text(seed, rng, seeds)
    doc = json.loads(seed)
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = _json_paths(doc)[1:]
        if not paths:
            break
        *parent_path, leaf = rng.choice(paths)
        parent = doc
        for k in parent_path:
            parent = parent[k]
        roll = rng.random()
        if roll < 0.6:
            # a copy: the table's lists and objects must not be shared (a later edit inside one
            # would change the table, and could put a value inside itself)
            parent[leaf] = copy.deepcopy(rng.choice(_JSON_VALUES))
        elif roll < 0.75:
            del parent[leaf]
        elif roll < 0.9 and isinstance(parent[leaf], list):
            v = parent[leaf]
            parent[leaf] = v[: rng.randrange(len(v) + 1)] if rng.random() < 0.5 else v + v[: rng.randint(1, 3)]
        else:
            value: object = 1
            for _ in range(rng.choice((10, 100, 2000))):
                value = [value]
            parent[leaf] = value
    try:
        return json.dumps(doc).encode()[:MAX_INPUT]
    except (RecursionError, ValueError):
        return seed


def _model_bytes(seed: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """Byte-level damage to a flatbuffer: values in offsets and sizes, flips, cuts, splices."""
    d = bytearray(seed)
    for _ in range(rng.choice((1, 1, 2, 3))):
        if d:
            rng.choice((flip_bits, set_bytes, put_value, put_value, truncate, delete_range, insert_bytes))(
                d, rng, seeds
            )
    return bytes(d)


def _bundle_dir() -> Path:
    path = _scratch().with_suffix(".bundle")
    path.mkdir(exist_ok=True)
    return path


def _load_bundle(meta: bytes, model: bytes) -> None:
    from sensor.features import SCHEMA
    from sensor.model import METADATA_FILE, MODEL_FILE, ModelBundle
    from sensor.windows import WINDOW_SECONDS

    path = _bundle_dir()
    (path / METADATA_FILE).write_bytes(meta)
    (path / MODEL_FILE).write_bytes(model)
    try:
        bundle = ModelBundle(path)
    except FlowlstmError as exc:
        _one_line_error(exc, path)
        raise
    # A bundle that loads must score any window finitely within [0, 1], one score each.
    rng = np.random.default_rng(zlib.crc32(meta + model))
    x = rng.normal(0, 10, (7, WINDOW_SECONDS, SCHEMA.size)).astype(np.float32) ** 3
    s = bundle.score(x)
    _need(s.shape == (7,), "one score per window")
    _need(bool(np.isfinite(s).all()), "finite scores")


def load_metadata(data: bytes) -> None:
    """``data`` as a bundle's metadata.json beside the shipped model."""
    _load_bundle(data, _bundle_files()[1])


def load_model(data: bytes) -> None:
    """``data`` as a bundle's model.tflite, with metadata recording its sha256 (so LiteRT sees it)."""
    meta = json.loads(_bundle_files()[0])
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    _load_bundle(json.dumps(meta).encode(), data)


TARGETS: dict[str, Target] = {
    "pcap": Target(functools.partial(capture_seeds, "pcap"), mutate, read_capture),
    "pcapng": Target(functools.partial(capture_seeds, "pcapng"), mutate, read_capture),
    "gzip": Target(capture_seeds, compressed("gzip"), read_capture),
    "xz": Target(capture_seeds, compressed("xz"), read_capture),
    "bzip2": Target(capture_seeds, compressed("bzip2"), read_capture),
    "config": Target(config_seeds, mutate_text, load_config_text),
    "metadata": Target(metadata_seeds, mutate_json, load_metadata),
    "model": Target(model_seeds, _model_bytes, load_model),
}


# -- running inputs -------------------------------------------------------------------------


def generate(names: list[str], seed: int, i: int) -> tuple[str, bytes]:
    """Input ``i`` of a campaign over ``names``: (target name, bytes), a pure function of its arguments."""
    rng = random.Random(f"{seed}:{i}")
    name = names[i % len(names)]
    target = TARGETS[name]
    seeds = target.seeds()
    return name, target.mutate(seeds[(i // len(names)) % len(seeds)], rng, seeds)


def _reason(exc: FlowlstmError) -> str:
    """The error's message without the file name and with numbers as N: a coverage bucket."""
    text = str(exc).partition(": ")[2] or str(exc)
    return re.sub(r"\b[0-9a-f]{8}\b|-?\d+", "N", text)[:120]


def _signature(exc: BaseException) -> str:
    if isinstance(exc, Finding):
        return str(exc).split(" (")[0]
    frames = traceback.extract_tb(exc.__traceback__)
    inner = next((f for f in reversed(frames) if "/sensor/" in f.filename), frames[-1] if frames else None)
    where = f" at {Path(inner.filename).name}:{inner.lineno}" if inner else ""
    return f"{type(exc).__name__}{where}"


def execute(target: Target, data: bytes) -> tuple[str, str, str]:
    """Run one input: (outcome, signature, traceback).

    outcome is "ok", "rejected" (a ``FlowlstmError``; the signature is its reason), "crash"
    or "memory"; hangs and deaths are seen only from outside, by the campaign's parent.
    """
    try:
        target.run(data)
    except FlowlstmError as exc:
        return "rejected", _reason(exc), ""
    except MemoryError:
        return "memory", "MemoryError", traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - every other exception is what the campaign looks for
        return "crash", _signature(exc), traceback.format_exc()
    return "ok", "", ""


@dataclass
class Summary:
    """What a campaign (or one worker's share of it) ran and found."""

    inputs: int = 0
    seconds: float = 0.0
    last_input: int = -1  # the highest input number run
    next_input: int = 0  # every input below this one was run: where a campaign continues
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # rejected inputs by normalized error message
    findings: list[dict] = field(default_factory=list)

    def add(self, outcome: str, signature: str) -> None:
        self.inputs += 1
        self.outcomes[outcome] += 1
        if outcome == "rejected":
            self.reasons[signature] += 1

    def report(self) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.inputs} inputs in {self.seconds:.0f} s ({rate:.0f}/s): "
            + ", ".join(f"{k} {self.outcomes[k]}" for k in ("ok", "rejected", *FINDINGS))
            + f"; next input {self.next_input}"
        ]
        lines += [f"  {n:8d}  {reason}" for reason, n in self.reasons.most_common(40)]
        by_sig = Counter((f["kind"], f["signature"]) for f in self.findings)
        lines += [f"  FINDING {kind} x{n}: {sig}" for (kind, sig), n in by_sig.most_common()]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "last_input": self.last_input,
            "next_input": self.next_input,
            "outcomes": dict(self.outcomes),
            "reasons": dict(self.reasons.most_common()),
            "findings": self.findings,
        }


def save(out: Path, finding: dict, data: bytes, detail: str) -> None:
    """Write a finding's input and what is known about it; at most 3 per signature."""
    tag = hashlib.sha1(finding["signature"].encode()).hexdigest()[:8]
    if len(list(out.glob(f"{finding['kind']}-{tag}-*.bin"))) >= 3:
        return
    stem = out / f"{finding['kind']}-{tag}-{finding['input']}"
    stem.with_suffix(".bin").write_bytes(data)
    stem.with_suffix(".json").write_text(json.dumps({**finding, "traceback": detail}, indent=1))


def run_quick(inputs: int = 300, seed: int = 0, names: list[str] | None = None, out: Path | None = None) -> Summary:
    """A campaign in this process, without watchdog or memory limit: what the CI test runs."""
    names = names or list(TARGETS)
    summary = Summary()
    start = time.monotonic()
    for i in range(inputs):
        name, data = generate(names, seed, i)
        outcome, sig, detail = execute(TARGETS[name], data)
        summary.add(outcome, sig)
        summary.last_input = i
        summary.next_input = i + 1
        if outcome in FINDINGS:
            finding = {"kind": outcome, "signature": sig, "target": name, "seed": seed, "input": i}
            summary.findings.append(finding)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                save(out, finding, data, detail)
    summary.seconds = time.monotonic() - start
    return summary


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(
    slot: int,
    names: list[str],
    seed: int,
    counter,
    stop: int,
    out: str,
    mem_mb: int,
    progress,
    conn: Connection,
    scratch: str,
    deadline: float,
) -> None:
    """Run the next input not yet taken (``counter``, shared by all workers) until ``stop``;
    publish the current one in ``progress`` (its number, the clock and this process's CPU
    time when it began).

    A shared counter, not a stride per worker: targets differ in cost, and a worker striding
    over every ``jobs``-th input runs only some targets, so it runs ahead of the others and
    leaves a gap where a campaign stopped by the clock cannot be continued from one number.

    Each input's (outcome, signature, finding) goes to the parent as soon as it is known,
    so that a worker killed for a hang loses nothing but the input it hung on.
    """
    global _scratch_dir
    _scratch_dir = scratch
    limit = _vm_bytes() + (mem_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    base_rss = _peak_rss_mb()
    while time.monotonic() <= deadline:
        with counter.get_lock():
            i = counter.value
            if i >= stop:
                break
            counter.value = i + 1
        progress[3 * slot] = i
        progress[3 * slot + 2] = time.process_time()
        progress[3 * slot + 1] = time.monotonic()
        name, data = generate(names, seed, i)
        outcome, sig, detail = execute(TARGETS[name], data)
        progress[3 * slot + 1] = 0.0
        if outcome not in FINDINGS and _peak_rss_mb() - base_rss > mem_mb:
            outcome, sig = "memory", f"peak RSS grew by over {mem_mb} MB"
        finding = None
        if outcome in FINDINGS:
            finding = {"kind": outcome, "signature": sig, "target": name, "seed": seed, "input": i}
            save(Path(out), finding, data, detail)
        conn.send((i, outcome, sig, finding))
        if outcome == "memory":
            conn.close()
            sys.exit(_EXIT_MEMORY)  # the parent starts a fresh worker at the next input
    conn.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0  # gone: the parent sees it dead at its next look
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _hung(pid: int, since: float, cpu0: float, hang_s: float) -> bool:
    """Whether the input a worker began at ``since`` (its CPU time then ``cpu0``) is a hang."""
    wall = time.monotonic() - since
    return wall > hang_s and (_cpu_seconds(pid) - cpu0 > hang_s or wall > HANG_WALL_FACTOR * hang_s)


def _drain(conn: Connection, total: Summary) -> None:
    try:
        while conn.poll():
            i, outcome, sig, finding = conn.recv()
            total.add(outcome, sig)
            total.last_input = max(total.last_input, i)
            if finding:
                total.findings.append(finding)
    except (EOFError, OSError, pickle.UnpicklingError):
        pass  # the worker is gone (or was killed while sending)


def campaign(
    names: list[str],
    inputs: int,
    jobs: int = 1,
    seed: int = 0,
    start: int = 0,
    out: Path = Path("fuzz-findings"),
    hang_s: float = 10.0,
    mem_mb: int = 1024,
    seconds: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Inputs start .. start+inputs-1 in ``jobs`` worker processes, with a watchdog for hangs and deaths.

    With ``seconds``, workers stop starting inputs after that long; every input below the
    summary's ``next_input`` was run, so that is where to ``--start`` again.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        TARGETS[name].seeds()  # built once here, inherited by every worker
    ctx = mp.get_context("fork")
    progress = ctx.RawArray("d", 3 * jobs)
    stop = start + inputs
    counter = ctx.Value("q", start)
    total = Summary()
    workers: dict[int, tuple[mp.Process, Connection]] = {}
    scratch = tempfile.mkdtemp(prefix="flowlstm-fuzz-", dir=_SHM)
    deadline = time.monotonic() + seconds if seconds else float("inf")

    def spawn(slot: int) -> None:
        if counter.value >= stop:
            return
        progress[3 * slot], progress[3 * slot + 1] = -1, 0.0
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            daemon=True,
            args=(slot, names, seed, counter, stop, str(out), mem_mb, progress, send, scratch, deadline),
        )
        proc.start()
        send.close()
        workers[slot] = (proc, recv)

    def record(kind: str, signature: str, i: int) -> None:
        name, data = generate(names, seed, i)
        finding = {"kind": kind, "signature": signature, "target": name, "seed": seed, "input": i}
        total.add(kind, signature)
        total.last_input = max(total.last_input, i)
        total.findings.append(finding)
        save(out, finding, data, "")

    began = reported = time.monotonic()
    for slot in range(jobs):
        spawn(slot)
    try:
        while workers:
            time.sleep(0.2)
            for slot, (proc, conn) in list(workers.items()):
                _drain(conn, total)
                i, since, cpu0 = int(progress[3 * slot]), progress[3 * slot + 1], progress[3 * slot + 2]
                if not proc.is_alive():
                    proc.join()
                    _drain(conn, total)
                    conn.close()
                    del workers[slot]
                    if proc.exitcode != 0:
                        if proc.exitcode != _EXIT_MEMORY:
                            record("signal", f"worker died with exit code {proc.exitcode}", i)
                        spawn(slot)
                elif since and _hung(proc.pid, since, cpu0, hang_s) and int(progress[3 * slot]) == i:
                    proc.kill()
                    proc.join()
                    conn.close()
                    del workers[slot]
                    record("hang", f"one input ran over {hang_s:g} s", i)  # of CPU, or blocked
                    spawn(slot)
            if log and time.monotonic() - reported > 60:
                reported = time.monotonic()
                total.seconds = reported - began
                total.next_input = min(counter.value, stop)
                log(total.report().splitlines()[0])
    finally:
        for proc, _ in workers.values():
            proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    total.seconds = time.monotonic() - began
    total.next_input = min(counter.value, stop)
    (out / "summary.json").write_text(json.dumps(total.to_json(), indent=1))
    return total


def replay(paths: list[Path], target: str | None = None) -> int:
    """Run saved inputs again in this process and print their outcomes; 1 if any is still a finding."""
    status = 0
    for path in paths:
        meta = path.with_suffix(".json")
        name = target or (json.loads(meta.read_text())["target"] if meta.exists() else "pcap")
        outcome, sig, detail = execute(TARGETS[name], path.read_bytes())
        print(f"{path}: {name}: {outcome} {sig}")
        if detail:
            print(detail)
        status |= outcome in FINDINGS
    return status


def main(argv: list[str] | None = None) -> int:
    """Command line: quick, long (campaign) and replay modes; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.harness", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", type=int, metavar="N", help="run N inputs in this process and report")
    ap.add_argument("--inputs", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first input number (to continue a campaign)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of: " + ", ".join(TARGETS))
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="where reproducers go")
    ap.add_argument(
        "--hang-s",
        type=float,
        default=10.0,
        help=f"CPU seconds one input may use (blocked: {HANG_WALL_FACTOR}x on the clock)",
    )
    ap.add_argument("--mem-mb", type=int, default=1024)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop starting inputs after this long")
    ap.add_argument("--replay", type=Path, nargs="+", metavar="FILE")
    ap.add_argument("--list", action="store_true", help="list the targets and their seeds")
    args = ap.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    unknown = set(names) - set(TARGETS)
    if unknown:
        ap.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    if args.list:
        for name in names:
            seeds = TARGETS[name].seeds()
            print(f"{name}: {len(seeds)} seeds, {sum(map(len, seeds))} bytes")
        return 0
    if args.replay:
        return replay(args.replay, args.targets if "," not in args.targets else None)
    if args.quick:
        summary = run_quick(args.quick, args.seed, names, args.out)
    else:
        summary = campaign(
            names,
            args.inputs,
            args.jobs,
            args.seed,
            args.start,
            args.out,
            args.hang_s,
            args.mem_mb,
            args.minutes * 60,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    print(summary.report())
    return 1 if summary.findings else 0


if __name__ == "__main__":
    sys.exit(main())
