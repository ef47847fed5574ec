"""The C lattice search gives what the pure-Python one gave, second by second.

tests/data/aggregate/pinned.txt.gz holds digests of the Python search's output for every
second of every bundled IP capture (and of the MAWI excerpt half moved into IPv6) under
four configurations; tests/sensor/aggregate_pins.py says how it was made.
"""

from __future__ import annotations

import pytest

from sensor.aggregate import aggregate_second

from .aggregate_pins import CAPTURES, CONFIGS, DATA, capture_seconds, read_pinned, second_digest, second_lines

# 6000 seconds: the per-second Python around the search dominates.
_SLOW = {"attacks/hping3.pcapng"}


@pytest.fixture(scope="module")
def pinned():
    return read_pinned()


@pytest.mark.parametrize("capture", [pytest.param(c, marks=pytest.mark.slow) if c in _SLOW else c for c in CAPTURES])
def test_every_second_matches_the_python_search(pinned, capture):
    seconds = list(capture_seconds(DATA / capture))
    for name, config in CONFIGS.items():
        want = pinned[(capture, name)]
        assert len(want) == len(seconds), f"{capture} {name}: pinned {len(want)} seconds, capture has {len(seconds)}"
        for (sec, packets), digest in zip(seconds, want, strict=True):
            lines = second_lines(sec, aggregate_second(packets, config))
            assert second_digest(lines) == digest, f"{capture} {name}: second {sec} differs; now:\n" + "\n".join(lines)
