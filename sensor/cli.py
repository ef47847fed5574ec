"""``flowlstm-sensor``: the sensor's command line.

Every error flowlstm knows about is a ``FlowlstmError``; ``main()`` catches it
once, prints one line and exits with the code the error class names.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .errors import FlowlstmError, UsageError
from .aggregate import AggregateConfig
from .flows import FlowConfig
from .pipeline import FeaturePipeline, PipelineConfig
from .progress import FileProgress

log = logging.getLogger("flowlstm.cli")

EXIT_CODES = """\
exit status:
  0   success
  64  bad command line (EX_USAGE)
  65  damaged capture file; packets before the damage were processed (EX_DATAERR)
  66  capture file missing, unreadable or not a capture (EX_NOINPUT)
  73  output cannot be written (EX_CANTCREAT)
  78  invalid configuration (EX_CONFIG)
  130 interrupted
"""

MAIN_HELP = f"""\
flowlstm-sensor turns packet headers into per-second flow statistics,
AGURIM-style aggregated flows and three-second feature windows [t-1, t, t+1],
the input of flowlstm's LSTM anomaly model.

commands:
  run        score capture files with the model and append EVE-JSON alerts
  inspect    per-second summary of a capture: volume, flows, heavy hitters
  features   write the model's feature windows of a capture to Parquet

Run 'flowlstm-sensor COMMAND --help' for a command's options.

{EXIT_CODES}"""

INSPECT_HELP = """\
Read capture files (pcap or pcapng, optionally .gz/.xz/.bz2) and print one
line per second: packets, wire bytes, rate, active and new flows, distinct
sources and destinations, the share of SYN-only TCP packets, and the top
aggregated flow (AGURIM-style heavy hitter by bytes).

With --json, print one JSON object per second instead (a stable interface):
  ts          epoch second the line covers (UTC)
  packets     frames in that second, IP or not
  bytes       wire bytes of those frames
  flows       flows (bidirectional 5-tuples) with a packet in that second
  new_flows   flows that started in that second
  aggregates  [{"src", "dst", "bytes", "packets", "protocols"}], addresses
              written as aguri3 writes them: 1.2.3.4, 163.221.0.0/17, *

examples:
  flowlstm-sensor inspect --pcap /var/log/suricata/dump.pcap
  flowlstm-sensor inspect --pcap 201911211400.pcap.gz --json | jq .packets
"""

FEATURES_HELP = """\
Run the feature path over capture files (in order, as one stream) and write
every feature window to a Parquet file: one row per window, i.e. per flow and
per second t in which the flow sent a packet, holding [t-1, t, t+1] rows of
the versioned feature schema (stored in the file's metadata) plus the flow's
key and counters.  This is exactly what the model scores and the trainer
learns from.

examples:
  flowlstm-sensor features --pcap trace.pcap.gz --out trace.parquet
  flowlstm-sensor features --pcap a.pcap b.pcap --out ab.parquet --idle-timeout 60
"""


SIGNALS = """\
signals (live capture):
  SIGHUP   reopen the outputs (after logrotate), re-read --config and reload the
           model, all or nothing: a configuration or bundle that fails its checks
           is refused (logged) and the running ones stay.  Capture, feature-path,
           metrics and announce settings need a restart; a change to them is
           logged and ignored.  Command-line options keep overriding the file.
  SIGTERM  stop capturing, drain the pending windows, exit 0
"""

RUN_HELP = """\
Read capture files as fast as they can be read (--pcap), or capture live from
an interface (--interface, headers only, until SIGTERM; under systemd it speaks
Type=notify: READY=1, STATUS=, WATCHDOG=1), score every [t-1, t, t+1]
window with the model bundle (LiteRT, one thread), and append an EVE-JSON
alert for each window at or above the threshold to the EVE file, one whole
line at a time, exactly as the daemon does on live traffic.  Alerts are
thresholded like Suricata's threshold.config: per 60 s at most one scan alert
per scanner and one alert of any other kind per victim, and never more than
100 alerts a second (the alerts folded into one are counted in its metadata).
A summary goes to stderr.

The bundled default model is used unless --model names another bundle (a
directory holding model.tflite and metadata.json from 'flowlstm-train').

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
"""


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return v

    return parse


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature path")
    g.add_argument("--idle-timeout", type=_positive(float), default=FlowConfig.idle_timeout,
                   metavar="SEC", help="end a flow after SEC seconds without packets (default %(default)s)")
    g.add_argument("--active-timeout", type=_positive(float), default=FlowConfig.active_timeout,
                   metavar="SEC", help="split flows longer than SEC seconds (default %(default)s)")
    g.add_argument("--max-flows", type=_positive(int), default=FlowConfig.max_flows, metavar="N",
                   help="track at most N flows; the longest idle are evicted first (default %(default)s)")
    g.add_argument("--slack", type=float, default=PipelineConfig.slack, metavar="SEC",
                   help="count packets reordered by up to SEC seconds (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="flowlstm-sensor", description=MAIN_HELP, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"flowlstm-sensor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="score captures and write EVE alerts", description=RUN_HELP,
                       epilog=SIGNALS + "\n" + EXIT_CODES, formatter_class=fmt)
    parser.set_defaults(run_parser=p)  # main() lays --config values under it as defaults
    p.set_defaults(signatures=None)  # alert names and ids: configuration file only (alerts.signatures)
    p.add_argument("--config", metavar="FILE",
                   help="YAML configuration (see etc/flowlstm/sensor.yaml); command-line options override it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pcap", nargs="+", metavar="FILE", help="capture files, read in order, then exit")
    src.add_argument("--interface", metavar="IFACE", help="capture live from IFACE until SIGTERM")
    p.add_argument("--realtime", action="store_true", help="with --pcap: feed packets at their recorded pace")
    g = p.add_argument_group("live capture")
    g.add_argument("--bpf", default="", metavar="FILTER", help="BPF capture filter, e.g. 'not port 22'")
    g.add_argument("--snaplen", type=_positive(int), default=128, metavar="BYTES",
                   help="bytes captured per packet; headers only (default %(default)s)")
    g.add_argument("--no-promisc", action="store_true", help="do not put the interface in promiscuous mode")
    g.add_argument("--buffer-mb", type=_positive(int), default=64, metavar="MIB",
                   help="kernel capture buffer (default %(default)s)")
    g.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default: off)")
    g.add_argument("--backend", choices=("libpcap", "pyshark"), default="libpcap",
                   help="capture with libpcap (fast, default) or tshark via pyshark (remote capture; ~10k pps; "
                        "packets later than 10 s are dropped and counted)")
    g.add_argument("--no-announce", action="store_true",
                   help="do not announce the sensor over zeroconf (_flowlstm._tcp.local.)")
    p.add_argument("--eve", metavar="FILE",
                   help="EVE-JSON file to append alerts to ('-' for standard output), or unix_dgram:PATH / "
                        "unix_stream:PATH for a socket as in Suricata; required unless the configuration "
                        "names outputs.eve.filename")
    p.add_argument("--zeek-notice", metavar="FILE", help="also append the alerts to FILE as a Zeek notice log")
    p.add_argument("--model", metavar="DIR", help="model bundle (default: the bundled default model)")
    p.add_argument("--threshold", type=float, metavar="P", help="alert score threshold in [0, 1); 0 alerts on every window, for testing "
                        "a pipeline (default: the bundle's)")
    p.add_argument("--host", default="", help="sensor name written as EVE 'host' (default: none)")
    p.add_argument("--limit", type=_positive(int), default=1, metavar="N",
                   help="alerts per tracked key (scanner or victim) per --period (default %(default)s)")
    p.add_argument("--period", type=_positive(int), default=60, metavar="SEC",
                   help="thresholding period in seconds (default %(default)s)")
    p.add_argument("--max-alerts-per-second", type=_positive(int), default=100, metavar="N",
                   help="hard cap on alerts per second (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_pipeline_options(p)

    p = sub.add_parser("inspect", help="per-second summary of a capture", description=INSPECT_HELP,
                       epilog=EXIT_CODES, formatter_class=fmt)
    p.add_argument("--pcap", nargs="+", required=True, metavar="FILE", help="capture files, read in order")
    p.add_argument("--json", action="store_true", help="one JSON object per second (see above)")
    p.add_argument("--top", type=_positive(int), default=1, metavar="N",
                   help="aggregates shown per second in the table (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_pipeline_options(p)

    p = sub.add_parser("features", help="write feature windows to Parquet", description=FEATURES_HELP,
                       epilog=EXIT_CODES, formatter_class=fmt)
    p.add_argument("--pcap", nargs="+", required=True, metavar="FILE", help="capture files, read in order")
    p.add_argument("--out", required=True, metavar="OUT.parquet", help="Parquet file to write (replaced atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_pipeline_options(p)
    return parser


def _pipeline_config(args) -> PipelineConfig:
    try:
        return PipelineConfig(
            flows=FlowConfig(args.idle_timeout, args.active_timeout, args.max_flows),
            aggregate=AggregateConfig(protocols=args.command == "inspect"),
            slack=args.slack,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _stream(args):
    """Run the pipeline over args.pcap with a progress bar; yield PipelineOutputs."""
    pipe = FeaturePipeline(_pipeline_config(args))
    with FileProgress(args.pcap, enabled=not args.no_progress) as progress:
        for path, batch in progress.batches():
            yield pipe.push(batch)
    yield pipe.finish()
    if pipe.late_packets:
        log.warning("%d packets arrived later than --slack allows and were not counted", pipe.late_packets)


def cmd_inspect(args) -> int:
    from .report import SecondTable, second_json

    out = sys.stdout
    table = None if args.json else SecondTable(out, top=args.top)
    for res in _stream(args):
        for rep in res.seconds:
            if args.json:
                out.write(json.dumps(second_json(rep), separators=(",", ":")) + "\n")
            else:
                table.row(rep)
    if table:
        table.close()
    return 0


def cmd_features(args) -> int:
    from .parquet import WindowWriter

    with WindowWriter(args.out) as writer:
        for res in _stream(args):
            for w in res.windows:
                writer.write(w)
        log.info("wrote %d windows to %s", writer.rows, args.out)
    return 0


def _check_run(args):
    """'run' options that argparse cannot check alone; returns ``args``."""
    if args.threshold is not None and not 0 <= args.threshold < 1:
        raise UsageError(f"--threshold must be in [0, 1), got {args.threshold}")
    if not (args.pcap or args.interface):
        raise UsageError("name an input: --pcap FILE... or --interface IFACE (or capture.interface in --config)")
    if not args.eve:
        raise UsageError("name an output: --eve FILE (or outputs.eve.filename in --config)")
    return args


def _signatures(args) -> dict:
    from .signatures import DEFAULT_SIGNATURES

    return args.signatures or dict(DEFAULT_SIGNATURES)


def _thresholder(args):
    from .threshold import Thresholder, default_rules

    sids = {kind: sig.sid for kind, sig in _signatures(args).items()}
    return Thresholder(default_rules(args.limit, args.period, sids), max_per_second=args.max_alerts_per_second)


def _daemon_config(args):
    """The live sensor's settings and thresholder from parsed 'run' options."""
    from .capture.live import LiveConfig
    from .daemon import DaemonConfig
    from .eve import AlertConfig
    from .model import DEFAULT_BUNDLE

    try:
        live = LiveConfig(args.interface, args.bpf, args.snaplen, not args.no_promisc, args.buffer_mb)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = DaemonConfig(live, args.eve, str(args.model or DEFAULT_BUNDLE),
                       args.threshold, _pipeline_config(args),
                       AlertConfig(host=args.host, in_iface=args.interface, signatures=_signatures(args)),
                       metrics_port=args.metrics_port, notice_path=args.zeek_notice or "",
                       announce=not args.no_announce, backend=args.backend)
    return cfg, _thresholder(args)


def _parse(argv: Sequence[str]):
    """Parse argv with the values of its --config file as defaults (validated first)."""
    parser = build_parser()
    defaults = _config_defaults(argv)
    if defaults:
        parser.get_default("run_parser").set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def cmd_run(args) -> int:
    from .model import DEFAULT_BUNDLE, ModelBundle
    from .outputs import open_eve
    from .run import run_files
    from .eve import AlertConfig

    _check_run(args)
    if args.interface and not args.pcap:  # --pcap on the command line beats capture.interface in a config
        from .daemon import Sensor

        cfg, thresholder = _daemon_config(args)
        # On SIGHUP: the configuration file as it is now, under the same command line.
        reconfigure = (lambda: _daemon_config(_check_run(_parse(args.argv)))) if args.config else None
        return Sensor(cfg, thresholder, reconfigure).run()
    thresholder = _thresholder(args)
    bundle = ModelBundle(args.model or DEFAULT_BUNDLE)
    eve = open_eve(args.eve)
    notice = None
    if args.zeek_notice:
        from .zeeklog import ZeekNoticeLog

        notice = ZeekNoticeLog(args.zeek_notice, args.period)
    with eve:
        alerts = AlertConfig(host=args.host, signatures=_signatures(args))
        s = run_files(args.pcap, eve, bundle, args.threshold, _pipeline_config(args), alerts,
                      thresholder, progress=not args.no_progress, notice=notice, realtime=args.realtime)
    if notice is not None:
        notice.close()
    print(
        f"flowlstm-sensor: {s.packets} packets, {s.windows} windows scored, {s.anomalous} anomalous, "
        f"{s.alerts} alerts written to {args.eve} ({s.suppressed} folded by thresholding); "
        f"model {bundle.name} threshold {bundle.threshold if args.threshold is None else args.threshold:.4f}",
        file=sys.stderr,
    )
    return 0


class _JournalFormatter(logging.Formatter):
    """Under systemd, stderr goes to the journal: prefix sd-daemon priorities."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{record.name}: {record.getMessage()}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("flowlstm-sensor: %(levelname)s: %(message)s"))
    root = logging.getLogger("flowlstm")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


# Configuration keys → the 'run' options they set (options given on the command line win).
_CONFIG_TO_OPTION = {
    "sensor-name": "host", "capture.interface": "interface", "capture.bpf": "bpf",
    "capture.snaplen": "snaplen", "capture.buffer-mb": "buffer_mb", "model.threshold": "threshold",
    "features.idle-timeout": "idle_timeout", "features.active-timeout": "active_timeout",
    "features.max-flows": "max_flows", "features.slack": "slack", "outputs.eve.filename": "eve",
    "thresholding.limit": "limit", "thresholding.period": "period",
    "thresholding.max-per-second": "max_alerts_per_second", "metrics.port": "metrics_port",
    "capture.backend": "backend",
}


def _config_defaults(argv: Sequence[str] | None) -> dict:
    """Option defaults from ``run --config FILE``, validated before anything else runs."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return {}
    from .config import load_config, signatures

    cfg = load_config(known.config)
    # "" and null mean "not set"; 0 is a real value (model.threshold: 0 alerts on every window).
    out = {opt: cfg[key] for key, opt in _CONFIG_TO_OPTION.items() if cfg[key] not in ("", None)}
    out["no_promisc"] = not cfg["capture.promiscuous"]
    out["no_announce"] = not cfg["announce"]
    out["signatures"] = signatures(cfg)
    if cfg["model.path"]:
        out["model"] = cfg["model.path"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(argv if argv is not None else sys.argv[1:])
    except FlowlstmError as exc:
        print(f"flowlstm-sensor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    _setup_logging(args.verbose)
    if not args.command:
        build_parser().print_help()
        return 64
    try:
        return {"run": cmd_run, "inspect": cmd_inspect, "features": cmd_features}[args.command](args)
    except FlowlstmError as exc:
        print(f"flowlstm-sensor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head); say nothing, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
