"""The Prometheus endpoint over real HTTP on loopback, read back with prometheus-client's own parser."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensor.daemon import METRICS
from sensor.metrics import MetricsServer


def scrape(port: int) -> tuple[str, dict]:
    """(Content-Type, {family name: family}) of one GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.headers["Content-Type"], {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def test_serves_text_format_and_404():
    n = {"v": 0}

    def collect():
        n["v"] += 1
        return {
            "flowlstm_packets_total": ("counter", "Packets read.", n["v"]),
            "flowlstm_flows_active": ("gauge", 'Flows "now"\\ and\nthen.', 7),
        }

    srv = MetricsServer(collect, 0)
    try:
        kind, first = scrape(srv.port)
        _, second = scrape(srv.port)
        assert kind.startswith("text/plain; version=0.0.4")
        packets, flows = first["flowlstm_packets"], first["flowlstm_flows_active"]
        assert (packets.type, packets.documentation) == ("counter", "Packets read.")
        assert [(s.name, s.labels, s.value) for s in packets.samples] == [("flowlstm_packets_total", {}, 1)]
        assert (flows.type, flows.documentation) == ("gauge", 'Flows "now"\\ and\nthen.')  # escaped, read back
        assert [(s.name, s.value) for s in flows.samples] == [("flowlstm_flows_active", 7)]
        assert second["flowlstm_packets"].samples[0].value == 2
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/other", timeout=5)
        assert e.value.code == 404
    finally:
        srv.close()


def test_scraped_names_and_types_are_the_daemons():
    """What a scraper sees is METRICS exactly: counters keep their _total names, as docs/daemon.md lists them."""
    srv = MetricsServer(lambda: {name: (*METRICS[name], i) for i, name in enumerate(METRICS)}, 0)
    try:
        _, families = scrape(srv.port)
    finally:
        srv.close()
    got = {s.name: (f.type, f.documentation, s.value) for f in families.values() for s in f.samples}
    assert got == {name: (*METRICS[name], i) for i, name in enumerate(METRICS)}


def test_a_port_in_use_fails_at_construction():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError):
            MetricsServer(dict, taken.getsockname()[1])


def test_every_metric_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for name, (kind, _) in METRICS.items():
        assert f"| `{name}` | {kind} |" in doc, name
