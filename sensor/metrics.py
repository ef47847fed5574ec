"""A Prometheus endpoint on localhost, for the daemon's counters.

prometheus-client writes the exposition (the text format, version 0.0.4) from
a collector over the sensor's own counters, on a registry of its own, so the
library's process and platform collectors stay out of it.  Served from its own
thread by the standard library; it only reads counters the main loop updates,
so a slow scraper never slows the sensor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# name → (type, help text, value); a counter's name ends in _total, as it is scraped.
Metrics = dict[str, tuple[str, str, float]]

_FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


class SensorCollector(Collector):
    """The metrics ``collect()`` returns, read afresh on every scrape."""

    def __init__(self, collect: Callable[[], Metrics]):
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        for name, (kind, text, value) in sorted(self._collect().items()):
            yield _FAMILIES[kind](name, text, value=value)


class MetricsServer:
    """Serve ``collect()`` at http://HOST:PORT/metrics until ``close()``; OSError if PORT cannot be bound."""

    def __init__(self, collect: Callable[[], Metrics], port: int, host: str = "127.0.0.1"):
        registry = CollectorRegistry()
        registry.register(SensorCollector(collect))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep the sensor's stderr for its own log
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
