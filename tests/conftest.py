"""Shared fixtures: paths to the real captures in tests/data (see tests/data/MANIFEST.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
MAWI_PCAP = DATA / "mawi" / "201911211400_headers.pcap"
ATTACKS = DATA / "attacks"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def mawi_pcap() -> Path:
    return MAWI_PCAP
