"""Fixtures the sensor's test modules share."""
from __future__ import annotations

import pytest

from sensor.pipeline import run_files

from ..conftest import ATTACKS


@pytest.fixture(scope="session")
def flood_windows():
    """Every window of the spoofed-source SYN flood (37,000 sources, one victim)."""
    return [w for o in run_files([ATTACKS / "pkt.TCP.synflood.spoofed.pcap"]) for w in o.windows]
