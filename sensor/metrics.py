"""A Prometheus text-format endpoint on localhost, for the daemon's counters.

Served from its own thread by the standard library; it only reads counters the
main loop updates, so a slow scraper never slows the sensor.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# name → (type, help text, value)
Metrics = dict[str, tuple[str, str, float]]


def render(metrics: Metrics) -> bytes:
    out = []
    for name, (kind, text, value) in sorted(metrics.items()):
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return ("\n".join(out) + "\n").encode()


class MetricsServer:
    """Serve ``collect()`` at http://HOST:PORT/metrics until ``close()``."""

    def __init__(self, collect: Callable[[], Metrics], port: int, host: str = "127.0.0.1"):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render(collect())
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the sensor's stderr for its own log
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
