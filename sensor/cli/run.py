"""``flowlstm-sensor run``: score capture files or a live interface, append EVE-JSON alerts."""

from __future__ import annotations

import argparse
import sys

from .. import settings
from ..config import SensorConfig, sensor_config
from ..errors import UsageError
from .common import EXIT_CODES, values

NAME = "run"
SUMMARY = "score captures and write EVE alerts"
SIGNALS = """\
signals (live capture):
  SIGHUP   reopen the outputs (after logrotate), re-read --config and reload the
           model, all or nothing: a configuration or bundle that fails its checks
           is refused (logged) and the running ones stay.  Capture, feature-path,
           metrics and announce settings need a restart; a change to them is
           logged and ignored.  Command-line options keep overriding the file.
  SIGTERM  stop capturing, drain the pending windows, exit 0
"""
EPILOG = SIGNALS + "\n" + EXIT_CODES
HELP = """\
Read capture files as fast as they can be read (--pcap), or capture live from
an interface (--interface, headers only, until SIGTERM; under systemd it speaks
Type=notify: READY=1, STATUS=, WATCHDOG=1), score every [t-1, t, t+1]
window with the model bundle (LiteRT, one thread), and append an EVE-JSON
alert for each window at or above the threshold to the EVE file, one whole
line at a time.  Files and interfaces go through the same path, so the same
packets give the same alerts.  Alerts are thresholded like Suricata's
threshold.config: per 60 s at most one scan alert per scanner and one alert of
any other kind per victim, and never more than 100 alerts a second (the alerts
folded into one are counted in its metadata).  A summary goes to stderr.

The bundled default model is used unless --model names another bundle (a
directory holding model.tflite and metadata.json from 'flowlstm-train').
Every option can also be set in the --config file (sensor.yaml(5)); the
command line wins.

Live, the sensor rides out what a long-running daemon meets: a link that goes
down or an interface that disappears (the capture is reopened every 2 s), a
full disk (events wait in memory, up to 64 MiB, and are written in order once
there is space), and a clock stepped back (the feature path restarts its clock
rather than calling every packet late).  Each is logged once and counted in
the metrics.

examples:
  flowlstm-sensor run --pcap trace.pcap.gz --eve /var/log/flowlstm/eve.json
  flowlstm-sensor run --pcap a.pcap --eve - --threshold 0.9 | jq .alert.signature
  flowlstm-sensor run --interface eth1 --bpf 'not port 22' --eve /var/log/flowlstm/eve.json
  flowlstm-sensor run --config /etc/flowlstm/sensor.yaml
"""


def register(p: argparse.ArgumentParser) -> None:
    settings.add_arguments(p, NAME)


def _config(args: argparse.Namespace) -> SensorConfig:
    given = settings.given(args)
    if given.get("pcap") and given.get("capture.interface"):
        raise UsageError("--pcap and --interface exclude each other; give one input")
    return sensor_config(values(args))


def command(args: argparse.Namespace) -> int:
    from ..daemon import Sensor

    cfg = _config(args)
    if cfg.values["check"]:
        from ..model import ModelBundle

        bundle = ModelBundle(cfg.model_path)  # every check a reload makes, smoke inference included
        print(
            f"flowlstm-sensor: configuration {cfg.values['config'] or '(command line)'} and model "
            f"{bundle.name} ({bundle.sha256[:12]}) are good",
            file=sys.stderr,
        )
        return 0
    # On SIGHUP: the configuration file as it is now, under the same command line.
    reconfigure = (lambda: _config(args)) if cfg.values["config"] else None
    summary = Sensor(cfg, reconfigure, progress=cfg.values["progress"]).run()
    if cfg.capture is None:
        print(
            f"flowlstm-sensor: {summary.packets} packets, {summary.windows} windows scored, "
            f"{summary.anomalous} anomalous, {summary.alerts} alerts written to {cfg.eve_path} "
            f"({summary.suppressed} folded by thresholding); model {summary.model} "
            f"threshold {summary.threshold:.4f}",
            file=sys.stderr,
        )
    return 130 if summary.interrupted else 0
