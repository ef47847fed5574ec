"""Text forms of the 16-byte addresses used throughout the sensor."""
from __future__ import annotations

import ipaddress

import numpy as np

_MAPPED = bytes(10) + b"\xff\xff"


def format_address(addr: bytes | np.ndarray) -> str:
    """``::ffff:a.b.c.d`` → ``a.b.c.d``; any other 16 bytes → compressed IPv6."""
    raw = bytes(addr)
    if raw[:12] == _MAPPED:
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
