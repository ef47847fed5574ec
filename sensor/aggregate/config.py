"""How aggregation is configured: thresholds, criterion, and aguri3's rounding of them."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

BYTE, PACKET, COMBINATION = "byte", "packet", "combination"


@dataclass(frozen=True)
class AggregateConfig:
    """Thresholds as fractions of the second's volume (aguri3's ``-t 1`` is 0.01).

    ``address_threshold``: an address aggregate is kept when its residual
    bytes or packets (see ``criterion``) reach this fraction of the second's.
    ``protocol_threshold``: a protocol/port sub-entry is kept when it reaches
    this fraction of its aggregate; aguri3 uses 4 × the address threshold.
    ``criterion``: "combination" (bytes or packets), "byte" or "packet"
    (aguri3's ``-p``/``-b``-style modes; they also decide the ranking).
    ``protocols``: compute the per-aggregate protocol/port breakdown (only
    ``inspect`` shows it; the model does not use it).
    """

    address_threshold: float = 0.01
    protocol_threshold: float = 0.04
    criterion: str = COMBINATION
    protocols: bool = True

    def __post_init__(self) -> None:
        for name in ("address_threshold", "protocol_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"AggregateConfig.{name} must be a fraction in (0, 1], got {v!r}")
        if self.criterion not in (BYTE, PACKET, COMBINATION):
            raise ValueError(
                f"AggregateConfig.criterion must be one of {BYTE!r}, {PACKET!r}, {COMBINATION!r}, "
                f"got {self.criterion!r}"
            )
        if not isinstance(self.protocols, bool):
            raise ValueError(f"AggregateConfig.protocols must be true or false, got {self.protocols!r}")

    def address_limits(self, nbytes: int, npackets: int) -> tuple[int, int]:
        """Integer (bytes, packets) thresholds: ceil(volume × fraction), as aguri3 rounds."""
        f = _fraction(self.address_threshold)
        return _ceil_mul(nbytes, f), _ceil_mul(npackets, f)

    def protocol_limits(self, nbytes: int, npackets: int) -> tuple[int, int]:
        """Thresholds for one aggregate's protocol/port entries.

        aguri3 rounds the address percentage first and then multiplies by 4;
        when the protocol threshold is a whole multiple of the address one (the
        default 0.04 = 4 × 0.01) we round the same way, otherwise ceil(volume × fraction).
        """
        a, q = _fraction(self.address_threshold), _fraction(self.protocol_threshold)
        k = q / a
        if k.denominator == 1:
            return _ceil_mul(nbytes, a) * k.numerator, _ceil_mul(npackets, a) * k.numerator
        return _ceil_mul(nbytes, q), _ceil_mul(npackets, q)


@cache  # once per threshold, not once per aggregate's protocol breakdown
def _fraction(x: float) -> Fraction:
    # 0.01 is not exactly representable; read it as the decimal the user meant.
    return Fraction(x).limit_denominator(10**9)


def _ceil_mul(n: int, f: Fraction) -> int:
    return -((-n * f.numerator) // f.denominator)
