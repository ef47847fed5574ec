"""What aggregation returns: one second's ranked aggregates and their protocol/port entries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .render import proto_label, render_prefix


@dataclass(frozen=True)
class ProtoAggregate:
    """A protocol/port sub-entry of one aggregate.

    ``sport``/``dport`` are the first port of a range of ``2**(16 - len)``
    ports (len 16 = one port, 0 = any). proto 0 with both lengths 0 is
    aguri3's ``[*:*:*]`` placeholder for an aggregate without any entry.
    Shares are fractions of the aggregate's own bytes and packets.
    """

    proto: int
    sport: int
    sport_len: int
    dport: int
    dport_len: int
    bytes: int
    packets: int
    byte_share: float = 0.0
    packet_share: float = 0.0

    def label(self) -> str:
        """``[6:443:*]``, ``[17:1024-2047:53]``: aguri3's notation (port 0 reads ``*``)."""
        return proto_label(self.proto, self.sport, self.sport_len, self.dport, self.dport_len)


@dataclass(frozen=True)
class Aggregate:
    """One heavy hitter: a (source prefix, destination prefix) pair of one address family."""

    family: int  # 4 or 6
    src: bytes  # 16-byte network address (IPv4-mapped ::ffff:a.b.c.d for IPv4), host bits zeroed
    src_len: int  # prefix length within the family: 0..32 or 0..128
    dst: bytes
    dst_len: int
    bytes: int  # residual volume: what no more specific aggregate took
    packets: int
    protocols: tuple[ProtoAggregate, ...] = ()

    @property
    def src_len128(self) -> int:
        """Source prefix length in the 128-bit space of the packet records."""
        return self.src_len + (96 if self.family == 4 else 0)

    @property
    def dst_len128(self) -> int:
        return self.dst_len + (96 if self.family == 4 else 0)

    def spec(self) -> tuple[int, int]:
        """(src, dst) prefix lengths in the 128-bit space the packet records use."""
        return self.src_len128, self.dst_len128

    @property
    def src_text(self) -> str:
        return render_prefix(self.src, self.src_len, self.family)

    @property
    def dst_text(self) -> str:
        return render_prefix(self.dst, self.dst_len, self.family)

    def label(self) -> str:
        """``src dst`` as aguri3 writes an entry."""
        return f"{self.src_text} {self.dst_text}"


@dataclass(frozen=True)
class AggregateSet:
    """All aggregates of one second, ranked as aguri3 ranks them."""

    total_bytes: int
    total_packets: int
    input_flows: dict[int, int] = field(default_factory=dict)  # distinct address pairs per family
    aggregates: tuple[Aggregate, ...] = ()
    # Which aggregate took each address pair: sorted pair hashes → aggregate index.
    pair_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64), repr=False)
    pair_aggregate: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def __len__(self) -> int:
        return len(self.aggregates)
