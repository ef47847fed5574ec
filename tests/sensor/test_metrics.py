"""The Prometheus endpoint over real HTTP on loopback."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from sensor.metrics import MetricsServer


def test_serves_text_format_and_404():
    n = {"v": 0}

    def collect():
        n["v"] += 1
        return {"flowlstm_packets_total": ("counter", "Packets read.", n["v"])}

    srv = MetricsServer(collect, 0)
    try:
        url = f"http://127.0.0.1:{srv.port}/metrics"
        first = urllib.request.urlopen(url, timeout=5).read().decode()
        second = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "# TYPE flowlstm_packets_total counter" in first and "flowlstm_packets_total 1" in first
        assert "flowlstm_packets_total 2" in second
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/other", timeout=5)
    finally:
        srv.close()


def test_every_metric_is_documented():
    from pathlib import Path

    from sensor.daemon import METRICS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for name, (kind, _) in METRICS.items():
        assert f"| `{name}` | {kind} |" in doc, name
