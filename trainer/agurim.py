"""Optional AGURIM aggregates from files (aguri3/agurim Aguri-2.0 text), joined per second.

The sensor computes its own AGURIM-style aggregates (identical to aguri3's on
the bundled trace); published AGURIM output for a trace can be joined to the
windows as extra columns for analysis: for each window, the share of the
second's bytes held by the most specific published aggregate containing the
flow (forward direction), and how many aggregates that second had.  These are
not model features — the live sensor has no such files.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

from sensor.addresses import address_bytes, address_words, in_prefix, is_ipv4_mapped
from sensor.aggregate import read_aguri_file

AGURIM_FIELDS = [pa.field("agurim_share", pa.float32()), pa.field("agurim_entries", pa.int16())]


_Prefix = tuple[int, int, int]  # (family, network as int, length in the 128-bit mapped space)


def _prefix(text: str) -> _Prefix:
    """'163.221.0.0/17' → (family, network as int, length in the 128-bit mapped space)."""
    if text in ("*", "*::"):
        return (4 if text == "*" else 6), 0, 0
    net = ipaddress.ip_network(text, strict=False)
    network = int.from_bytes(address_bytes(net.network_address), "big")
    return net.version, network, net.prefixlen + (96 if net.version == 4 else 0)


class AgurimIndex:
    """Blocks of Aguri-2.0 files by second, ready to match flows."""

    def __init__(self, paths: list[str], utc_offset: int = 0):
        # second → ((source, destination, byte share) per entry, entry count)
        self.by_second: dict[int, tuple[list[tuple[_Prefix, _Prefix, float]], int]] = {}
        for p in paths:
            for block in read_aguri_file(p, utc_offset):
                if block.start is None:
                    continue
                end = max(block.end or block.start, block.start + 1)
                entries = [(_prefix(e.src), _prefix(e.dst), e.byte_pct / 100.0) for e in block.entries]
                for s in range(block.start, end):
                    self.by_second[s] = (entries, len(entries))

    def join(self, sec: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(share, entries) per flow of second ``sec``; share -1 where no file covers it."""
        n = len(src)
        got = self.by_second.get(int(sec))
        if got is None:
            return np.full(n, -1.0, np.float32), np.zeros(n, np.int16)
        entries, count = got
        share = np.zeros(n, np.float32)
        best = np.full(n, -1, np.int64)
        s_hi, s_lo = address_words(src)
        d_hi, d_lo = address_words(dst)
        v4 = is_ipv4_mapped(s_hi, s_lo)
        for sp, dp, pct in entries:
            m = v4.copy() if sp[0] == 4 else ~v4
            for (_, net, plen), hi, lo in ((sp, s_hi, s_lo), (dp, d_hi, d_lo)):
                if plen:
                    m &= in_prefix(hi, lo, net, plen)
            spec = sp[2] + dp[2]
            better = m & (spec > best)
            share[better] = pct
            best[better] = spec
        return share, np.full(n, count, np.int16)
