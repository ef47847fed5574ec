"""The 16-byte addresses used throughout the sensor: their forms, words and text.

Every address is 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped IPv6 address
``::ffff:a.b.c.d`` (the prefix ``::ffff:0:0/96``), so that one code path serves both.
"""

from __future__ import annotations

import ipaddress

import numpy as np

IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, the first 12 bytes of every IPv4 address


def address_bytes(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """The sensor's 16-byte form of an address: IPv4 mapped into ``::ffff:0:0/96``, IPv6 as is."""
    return IPV4_MAPPED_PREFIX + ip.packed if ip.version == 4 else ip.packed


def address_words(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,16) uint8 addresses → high and low 64-bit words, numerically ordered."""
    w = np.ascontiguousarray(addr).view(">u8").astype(np.uint64)
    return w[:, 0], w[:, 1]


def is_ipv4_mapped(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Per address given as ``address_words``: whether it lies in ``::ffff:0:0/96`` (is IPv4)."""
    mapped: np.ndarray = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    return mapped


def in_prefix(hi: np.ndarray, lo: np.ndarray, net: int, plen: int) -> np.ndarray:
    """Per address given as ``address_words``: whether it lies in ``net/plen`` (128-bit space)."""
    mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
    net &= mask
    m_hi, m_lo = np.uint64(mask >> 64), np.uint64(mask & 0xFFFFFFFFFFFFFFFF)
    n_hi, n_lo = np.uint64(net >> 64), np.uint64(net & 0xFFFFFFFFFFFFFFFF)
    inside: np.ndarray = ((hi & m_hi) == n_hi) & ((lo & m_lo) == n_lo)
    return inside


def format_address(addr: bytes | np.ndarray) -> str:
    """``::ffff:a.b.c.d`` → ``a.b.c.d``; any other 16 bytes → compressed IPv6."""
    raw = bytes(addr)
    if raw[:12] == IPV4_MAPPED_PREFIX:
        return ".".join(str(b) for b in raw[12:])
    return str(ipaddress.IPv6Address(raw))


def format_addresses(addrs: np.ndarray) -> np.ndarray:
    """(N, 16) uint8 → (N,) object array of strings, formatting each distinct address once."""
    if len(addrs) == 0:
        return np.zeros(0, dtype=object)
    keys = np.ascontiguousarray(addrs).view("V16").ravel()
    uniq, inv = np.unique(keys, return_inverse=True)
    text = np.array([format_address(u.tobytes()) for u in uniq], dtype=object)
    return text[inv]


def parse_addresses(text: np.ndarray) -> np.ndarray:
    """(N,) address strings → (N, 16) uint8, the inverse of ``format_addresses``, parsing each
    distinct address once."""
    uniq, inv = np.unique(np.asarray(text).astype(str), return_inverse=True)
    packed = np.frombuffer(b"".join(address_bytes(ipaddress.ip_address(a)) for a in uniq), np.uint8)
    out: np.ndarray = packed.reshape(-1, 16)[inv.reshape(-1)]
    return out
