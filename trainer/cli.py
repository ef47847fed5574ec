"""``flowlstm-train``: offline retraining on Apache Spark.

One error hierarchy (``sensor.errors.FlowlstmError``) is caught once in
``main()`` and turned into a one-line message and an exit code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sensor import __version__
from sensor.errors import FlowlstmError, UsageError

from .corpus import FAMILIES, CorpusConfig
from .extract import SPLIT_SECONDS, WARM_UP_SECONDS
from .jobs import TrainJob
from .model import ENSEMBLE_RULES

log = logging.getLogger("flowlstm.train")

EXIT_CODES = """\
exit status:
  0   success
  64  bad command line
  65  damaged input (capture or label file; the message names file and place)
  66  input missing or unreadable
  73  output cannot be written
"""

MAIN_HELP = f"""\
flowlstm-train retrains flowlstm's model offline, on one box or a Spark cluster.

workflow:
  corpus     build training and evaluation traces from shared/data: site
             backgrounds of merged benign captures, every attack family
             injected into every background, corpus.json of the ground truth
  inject     mix real attack captures into a background trace, writing
             MAWILab-format labels for what was injected
  features   run the sensor's own feature code on every trace inside Spark
             tasks; label each window from MAWILab CSV/XML labels
  train      train the LSTM with Elephas (and the linear-SVM and no-context
             baselines), evaluate, and export the quantized model bundle
  evaluate   score a model bundle with LiteRT on labelled features

Spark: --master takes any master URL (default local[*]); the trainer's venv
must exist at the same path on the executors.

{EXIT_CODES}"""


def _seconds(text: str) -> int:
    """A whole number of seconds, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds (0 or more), not {text!r}")
    return int(text)


def _positive(text: str) -> int:
    """A whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    """A fraction of a trace's time span: at least 0, below 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 up to (not including) 1, not {text!r}")
    return value


def _feature_names(text: str) -> tuple[str, ...]:
    """Comma-separated names of the feature schema ('present' excepted), each once."""
    from sensor.features import SCHEMA

    names = tuple(n for n in text.split(",") if n)
    unknown = [n for n in names if n not in SCHEMA.names[1:]]
    if unknown or len(set(names)) != len(names):
        what = f"unknown: {', '.join(unknown)}" if unknown else "a name given twice"
        raise argparse.ArgumentTypeError(
            f"expected feature names of schema version {SCHEMA.version} (docs/features.md), {what}"
        )
    return names


def _add_master(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--master",
        default="local[*]",
        metavar="URL",
        help="Spark master URL: local[*], local[2], spark://host:7077, yarn, ... (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="flowlstm-train", description=MAIN_HELP, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"flowlstm-train {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "corpus",
        help="build the training and evaluation corpus from real captures",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Build reproducible traces from the public captures of DATA (shared/data):
site backgrounds (the benign captures of one source merged, idle gaps
squeezed, each capture's private hosts given addresses of their own, starts
overlapped), the MAWI excerpt, and one mix per background and attack family
(several instances at spread offsets, replay rates and address remappings),
with MAWILab-format labels; with --alone, every attack capture as a trace of
its own as well (source 'alone': the attack on a link whose baseline is as
young as it, as a sensor started during an attack sees it).
OUT/corpus.json lists every trace with its
source and family, and every injected instance with its time bounds and hosts:
what 'features --corpus' extracts and what an evaluation holds out.

Families: """
        + ", ".join(FAMILIES)
        + """; and, for training only, synthetic families: random
captures of the generic shapes of floods, scans, reflections, malformed packets,
one source's floods and beacons (--synthetic).

examples:
  flowlstm-train corpus --data ../shared/data --out out/corpus
  flowlstm-train corpus --data ../shared/data --out /tmp/c --families scan,synflood \\
      --site iot-sentinel=1 --max-captures 20
""",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="shared/data (MANIFEST.md, benign/, attacks/)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=CorpusConfig.seed)
    p.add_argument(
        "--families", metavar="LIST", default=",".join(FAMILIES), help="comma-separated attack families (default: all)"
    )
    p.add_argument(
        "--site",
        action="append",
        metavar="SOURCE=N",
        help="build N site backgrounds from benign/SOURCE (repeatable; default "
        + ", ".join(f"{k}={v}" for k, v in CorpusConfig().sites.items())
        + ")",
    )
    p.add_argument("--site-seconds", type=float, default=CorpusConfig.site_seconds, metavar="S")
    p.add_argument("--max-captures", type=int, default=0, metavar="N", help="at most N captures per site (0: all)")
    p.add_argument(
        "--synthetic",
        type=int,
        default=CorpusConfig.synthetic,
        metavar="N",
        help="random captures per synthetic family (synth-fanin, synth-fanout, synth-replies, synth-malformed, "
        "synth-point, synth-beacon: the generic shapes of floods, scans, reflections, malformed packets, one "
        "source's flood and beacons, for training; 0: none; "
        "default %(default)s)",
    )
    p.add_argument(
        "--benign-synthetic",
        type=int,
        default=CorpusConfig.benign_synthetic,
        metavar="N",
        help="random captures per benign synthetic shape (benign-fragments: ordinary UDP conversations whose "
        "large datagrams are fragmented at the MTU, which the public networks hardly show), mixed unlabelled "
        "into every background, for training; 0: none; default %(default)s",
    )
    p.add_argument(
        "--alone",
        action="store_true",
        help="every attack capture also as a trace of its own, beside its mixes (off by default: on a network "
        "held out for validation the models trained with them raised more false alerts in both seeds)",
    )

    p = sub.add_parser(
        "inject",
        help="mix attack captures into a background trace",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Merge attack captures into a background trace and write MAWILab-format labels
(PREFIX.csv in the real nine-field layout, PREFIX.xml with <from>/<to> time
bounds) for what was injected.  Private lab addresses in the attacks are
remapped onto hosts the background really has (disable with --no-remap).

ATTACK is PATH@OFFSET[:RATE][:TAXONOMY][:src=IP[+IP...]|dst=IP]: start OFFSET
seconds after the background's first packet, replay RATE times faster, label
with a MAWILab TAXONOMY (e.g. ntscSYN, poscaSYN, DDoSSYN, rflatDNS), and
match the ground truth by attacker sources or by victim.

examples:
  flowlstm-train inject --background mawi.pcap \\
      --attack 'synflood.pcap@25:0.6:DDoSSYN:dst=10.10.10.10' \\
      --out-pcap mix.pcap --out-labels mix --seed 1
""",
    )
    p.add_argument("--background", required=True, metavar="PCAP")
    p.add_argument("--attack", action="append", required=True, metavar="ATTACK")
    p.add_argument("--out-pcap", required=True, metavar="PCAP")
    p.add_argument("--out-labels", required=True, metavar="PREFIX")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-remap", action="store_true", help="keep the attacks' own addresses")

    p = sub.add_parser(
        "features",
        help="extract labelled feature windows on Spark",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Run the sensor's feature pipeline over every capture (one Spark task per file)
and write OUT/trace=NAME/part-0.parquet: the sensor's window format plus
label and taxonomy columns.  A window is anomalous when a packet of its
flow in its centre second matches an anomaly in the label files.  A label file
named after a trace (mix1.xml for mix1.pcap) applies to that trace only; the
others (e.g. a MAWILab day's CSV) apply to every trace without its own.
A trace longer than --split seconds is cut into time ranges of that length,
each its own task (OUT/trace=NAME/part-K.parquet), so one long capture uses
every core: each range's pipeline starts --warm-up seconds before it to fill
the flow table, host history and link baseline.  Flows older than the warm-up
and the decayed history of the seconds before it are what a cut changes.
Run again on the same OUT, it skips every trace whose capture, labels and
settings hash as before (OUT/trace=NAME/_SUCCESS.json; a trace extracted
whole is not cut again), so a growing set of captures is extracted
incrementally.

examples:
  flowlstm-train features --pcap mix.pcap --labels mix.xml --out feat/
  flowlstm-train features --pcap /data/mawi/*.pcap.gz --labels /data/mawilab/*.csv \\
      --out hdfs-mounted/feat --master spark://spark-master:7077
""",
    )
    p.add_argument("--pcap", nargs="+", metavar="FILE")
    p.add_argument("--labels", nargs="*", default=[], metavar="FILE", help="MAWILab CSV or admd XML")
    p.add_argument(
        "--corpus", metavar="DIR", help="extract every trace of a corpus (from 'flowlstm-train corpus') with its labels"
    )
    p.add_argument(
        "--agurim",
        nargs="*",
        default=[],
        metavar="FILE",
        help="optional aguri3/agurim output (Aguri-2.0 text, UTC times) joined per second as "
        "agurim_share/agurim_entries columns",
    )
    p.add_argument(
        "--split",
        type=_seconds,
        default=SPLIT_SECONDS,
        metavar="SEC",
        help="cut traces longer than SEC seconds into ranges of SEC, one task each; 0: never (default %(default)s)",
    )
    p.add_argument(
        "--warm-up",
        type=_seconds,
        default=WARM_UP_SECONDS,
        metavar="SEC",
        help="seconds of packets before each range that only fill the pipeline's state (default %(default)s)",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    _add_master(p)

    p = sub.add_parser(
        "train",
        help="train, evaluate and export",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Train on labelled windows: the paper's LSTM (64 units, ReLU, dropout 0.5,
binary cross-entropy, RMSprop lr 0.001 rho 0.9) with Elephas on Spark, a
linear SVM (MLlib LinearSVC) and a no-context LSTM (centre second only) on the
same split, plus a leave-one-family-out run per attack family.  Writes the
report (report.md, report.json, PNG plots) and the quantized bundle RUN/bundle/.

The split is by time (the last --test-fraction of each trace's time span is held
out) unless --corpus names the corpus the features came from and something of
it is held out: then training sees no trace of the --hold-out-families and no
background of the --hold-out-sources, and the test is the held-out families on
the held-out backgrounds.  The bundle records what it was trained on, so
'evaluate --sensor' can run it on what it never saw.

examples:
  flowlstm-train train --features feat/ --out runs/2026-11-24
  flowlstm-train train --features feat/ --out runs/x --epochs 3 --no-family-holdout
  flowlstm-train train --features feat/ --corpus out/corpus --hold-out-families scan,dns-tunnel \\
      --hold-out-sources iot-sentinel --max-benign-per-trace 20000 --out runs/fold1
""",
    )
    p.add_argument("--features", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="RUN")
    p.add_argument("--epochs", type=int, default=TrainJob.epochs)
    p.add_argument("--batch-size", type=int, default=TrainJob.batch_size)
    p.add_argument("--partitions", type=int, default=TrainJob.partitions, help="Elephas workers / RDD partitions")
    p.add_argument("--test-fraction", type=float, default=TrainJob.test_fraction)
    p.add_argument(
        "--false-alert-budget",
        type=float,
        default=TrainJob.false_alert_budget,
        metavar="N",
        help="thresholds let at most N in 10,000 benign training (or --calibrate-on) flows alert (split "
        "between the two heads; "
        "default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=TrainJob.seed)
    p.add_argument(
        "--ensemble",
        type=_positive,
        default=TrainJob.ensemble,
        metavar="K",
        help="the supervised head combines K LSTMs' logits (--ensemble-rule), trained with seeds SEED .. SEED+K-1 "
        "(default %(default)s: the paper's one LSTM); with K > 1 the first member alone is exported "
        "beside it, as RUN/baselines/combined-one-member, for comparison",
    )
    p.add_argument(
        "--ensemble-rule",
        choices=ENSEMBLE_RULES,
        default=TrainJob.ensemble_rule,
        help="with --ensemble K > 1: the supervised head fires on the mean of the members' logits "
        "(mean), or only when every member calls the window an attack (all: the least of their "
        "logits, each in its own scale, set by its highest benign training flow); a member's own "
        "overconfidence on traffic no network taught it then raises no alert (default %(default)s)",
    )
    p.add_argument(
        "--ignore-features",
        type=_feature_names,
        default=",".join(TrainJob.ignore_features),
        metavar="LIST",
        help="feature names every model is trained without: they enter as 0, in the sensor too ('' for "
        "none; default: the link's composition as it is, not against its baseline, which tells networks "
        "apart rather than attacks from their network: " + ", ".join(TrainJob.ignore_features) + ")",
    )
    p.add_argument("--no-family-holdout", action="store_true", help="skip the leave-family-out runs")
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="train only the sensor's two heads, not the no-context LSTM and the linear SVM to compare with",
    )
    p.add_argument(
        "--no-family-balance",
        action="store_true",
        help="train the supervised LSTMs on the windows as they come (default: each attack family "
        "with fewer anomalous windows than the mean family is drawn up to the mean)",
    )
    p.add_argument("--corpus", metavar="DIR", help="the corpus the features came from: split by its traces")
    p.add_argument(
        "--hold-out-families", metavar="LIST", default="", help="with --corpus: attack families never trained on"
    )
    p.add_argument(
        "--hold-out-sources", metavar="LIST", default="", help="with --corpus: benign sources never trained on"
    )
    p.add_argument(
        "--calibrate-on",
        metavar="LIST",
        default="",
        help="with --corpus: benign sources no model trains on, whose flows alone set the thresholds, so "
        "the false-alert budget is met on networks the models never saw (default: the training flows)",
    )
    p.add_argument(
        "--calibrate-last",
        type=_fraction,
        default=TrainJob.calibrate_last,
        metavar="FRACTION",
        help="the last FRACTION of each training trace's time span (before the held-out part, if the "
        "split is by time) trains no model; its benign flows alone set the thresholds, so the budget "
        "is met on seconds the heads never saw (default %(default)s: the training flows)",
    )
    p.add_argument(
        "--max-benign-per-trace",
        type=int,
        default=0,
        metavar="N",
        help="keep at most N benign windows a trace (0: all)",
    )
    p.add_argument(
        "--max-anomalous-per-trace",
        type=int,
        default=0,
        metavar="N",
        help="keep at most N anomalous windows a trace (0: all)",
    )
    p.add_argument(
        "--min-benign-per-kind",
        type=int,
        default=TrainJob.min_benign_per_kind,
        metavar="N",
        help="where --max-benign-per-trace draws, keep at least N benign windows of each kind a trace has "
        "(kinds: the flow's protocol, TCP, UDP, ICMP or other, and whether its destination is a group "
        "address), so rare benign traffic such as ICMP and IGMP is not drawn away (default %(default)s)",
    )
    p.add_argument("--name", default=TrainJob.name, help="model name stored in the bundle")
    _add_master(p)

    p = sub.add_parser(
        "evaluate",
        help="score a bundle: windows with LiteRT, or alerts with the real sensor",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Window level (--features): score labelled windows with a model bundle exactly
as the sensor does (LiteRT, the bundle's normalization and threshold) and
write a report.

Alert level (--sensor --corpus): run the real 'flowlstm-sensor run' on every
selected trace of a corpus, once per model bundle, and match its EVE alerts to
the corpus ground truth: per attack family the instances detected (and within
3 s), false alerts per hour and per 10k benign flows by benign source, and
collateral alerts (background flows alerted while an attack runs).  Only the
families and sources a model never trained on should count: pick them with
--families and --sources (by default, what the first bundle's metadata says it
was never trained on).  Writes report.md, report.json and plots.

examples:
  flowlstm-train evaluate --model sensor/models/default --features feat/ --out eval/
  flowlstm-train evaluate --sensor --corpus out/corpus --model shipped=sensor/models/default \\
      --model new=runs/x/bundle --families scan,dns-tunnel --sources iot-sentinel --out eval/
""",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]BUNDLE",
        help="model bundle (repeatable with --sensor)",
    )
    p.add_argument("--features", metavar="DIR", help="labelled windows (window-level evaluation)")
    p.add_argument("--sensor", action="store_true", help="alert-level evaluation with the real sensor")
    p.add_argument("--corpus", metavar="DIR", help="with --sensor: a corpus from 'flowlstm-train corpus'")
    p.add_argument("--families", metavar="LIST", help="with --sensor: attack families to evaluate (default: all)")
    p.add_argument("--sources", metavar="LIST", help="with --sensor: benign sources to evaluate on (default: all)")
    p.add_argument("--jobs", type=int, default=0, metavar="N", help="sensor processes at a time (default: CPUs)")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_master(p)  # window level: the windows are read and scored in Spark tasks

    p = sub.add_parser(
        "site",
        help="fit the sensor to one network from its own benign captures",
        formatter_class=fmt,
        epilog=EXIT_CODES,
        description="""\
Fit the sensor to your network in one command.  Point --captures at a directory
of its benign traffic (pcap/pcapng, compressed or not: header captures are
enough, e.g. 'tcpdump -s 128 -w'); flowlstm-train builds site backgrounds from
them beside the public ones of --data, injects every attack family of the
attack library into them, extracts features on Spark, trains both heads (the
supervised LSTM and the normal-behaviour LSTM) and the baselines with
thresholds for the false-alert budget, and runs the real sensor on your traces
with the new bundle and the shipped one side by side.

  RUN/train/bundle     the bundle: flowlstm-sensor run --model RUN/train/bundle
  RUN/train/report.md  training report (window level)
  RUN/alerts/report.md alert level on your traces (detections per family,
                       false alerts per hour and per 10k flows, collateral)

examples:
  flowlstm-train site --captures /srv/pcaps/office --data ../shared/data --name office --out runs/office
""",
    )
    p.add_argument("--captures", required=True, metavar="DIR", help="your network's benign captures")
    p.add_argument(
        "--data", required=True, metavar="DIR", help="shared/data: the attack library and public backgrounds"
    )
    p.add_argument("--name", required=True, metavar="NAME", help="the site's name (letters, digits, '-')")
    p.add_argument("--out", required=True, metavar="RUN")
    p.add_argument("--sites", type=int, default=2, metavar="N", help="site backgrounds built from your captures")
    p.add_argument("--epochs", type=int, default=TrainJob.epochs)
    p.add_argument("--no-public", action="store_true", help="train on your site only, not beside the public sources")
    _add_master(p)
    return parser


def cmd_site(args: argparse.Namespace) -> int:
    from .site import fit_site

    if args.sites < 1 or args.epochs < 1:
        raise UsageError("--sites and --epochs must be at least 1")
    report = fit_site(
        Path(args.captures),
        Path(args.data),
        Path(args.out),
        args.name,
        args.sites,
        args.master,
        args.epochs,
        not args.no_public,
        say=lambda m: print(m, file=sys.stderr, flush=True),
    )
    for name, m in report["models"].items():
        print(
            f"{name}: families {m['families_detected']}/{m['families_total']}, instances "
            f"{m['instances_detected']}/{m['instances_total']}, false/10k flows {m['false_per_10k_flows']}"
        )
    out = Path(args.out)
    print(f"bundle: {out / 'train' / 'bundle'}; reports: {out / 'train' / 'report.md'}, {out / 'alerts' / 'report.md'}")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import CorpusConfig, build

    sites = CorpusConfig().sites
    if args.site:
        sites = {}
        for item in args.site:
            source, _, n = item.partition("=")
            if not source or not n.isdigit() or int(n) < 1:
                raise UsageError(f"--site {item}: expected SOURCE=N with N >= 1 (e.g. iot-sentinel=3)")
            sites[source] = int(n)
    if args.site_seconds <= 0 or min(args.max_captures, args.synthetic, args.benign_synthetic) < 0:
        raise UsageError("--site-seconds must be > 0, --max-captures, --synthetic and --benign-synthetic >= 0")
    cfg = CorpusConfig(
        seed=args.seed,
        site_seconds=args.site_seconds,
        sites=sites,
        families=tuple(f for f in args.families.split(",") if f),
        max_captures=args.max_captures,
        synthetic=args.synthetic,
        benign_synthetic=args.benign_synthetic,
        alone=args.alone,
    )
    corpus = build(Path(args.data), Path(args.out), cfg, say=lambda m: print(m, file=sys.stderr, flush=True))
    kinds = Counter(t["kind"] for t in corpus["traces"])
    instances = sum(len(t["attacks"]) for t in corpus["traces"])
    print(
        f"wrote {Path(args.out) / 'corpus.json'}: {kinds['benign']} benign traces, {kinds['mix']} mixes, "
        f"{instances} attack instances of {len(corpus['families'])} families"
    )
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    from .inject import AttackSpec, inject

    specs = [AttackSpec.parse(a) for a in args.attack]
    summary = inject(
        args.background,
        specs,
        args.out_pcap,
        f"{args.out_labels}.csv",
        f"{args.out_labels}.xml",
        seed=args.seed,
        remap=not args.no_remap,
    )
    for a in summary["injected"]:
        print(
            f"injected {a['source']}: {a['packets']} packets as {a['taxonomy']} "
            f"({a['role']}={','.join(a['addresses'])})"
        )
    print(f"wrote {args.out_pcap} ({summary['packets']} packets), {args.out_labels}.csv, {args.out_labels}.xml")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from sensor.pipeline import PipelineConfig

    from .extract import extract
    from .spark import spark_context

    names = labels_by_trace = None
    if args.corpus:
        if args.pcap or args.labels:
            raise UsageError("features: give --corpus, or --pcap (and --labels), not both")
        from .corpus import load

        traces = load(Path(args.corpus))["traces"]
        pcaps = [t["path"] for t in traces]
        names = [t["name"] for t in traces]
        labels_by_trace = [t["labels"] for t in traces]
    elif args.pcap:
        pcaps = args.pcap
    else:
        raise UsageError("features: give --pcap FILE... or --corpus DIR")
    for p in pcaps + args.labels + args.agurim + [x for lab in labels_by_trace or [] for x in lab]:
        if not Path(p).is_file():
            raise UsageError(f"{p}: no such file")
    with spark_context(args.master) as sc:
        done = extract(
            sc,
            pcaps,
            args.out,
            args.labels,
            PipelineConfig(),
            args.agurim,
            names,
            labels_by_trace,
            split=args.split,
            warm_up=args.warm_up,
        )
    for d in done:
        again = " (unchanged since it was extracted: skipped)" if d["skipped"] else ""
        print(f"{d['trace']}: {d['windows']} windows, {d['anomalous']} anomalous{again}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .run import train_all

    report = train_all(
        TrainJob(
            args.features,
            args.out,
            args.name,
            args.master,
            args.epochs,
            args.batch_size,
            args.partitions,
            args.seed,
            args.test_fraction,
            args.false_alert_budget,
            not args.no_family_holdout,
            args.corpus,
            tuple(f for f in args.hold_out_families.split(",") if f),
            tuple(f for f in args.hold_out_sources.split(",") if f),
            tuple(f for f in args.calibrate_on.split(",") if f),
            args.calibrate_last,
            args.max_benign_per_trace,
            args.max_anomalous_per_trace,
            args.min_benign_per_kind,
            not args.no_family_balance,
            not args.no_baselines,
            args.ensemble,
            args.ignore_features,
            args.ensemble_rule,
        )
    )
    print(f"report: {Path(args.out) / 'report.md'}; bundle: {Path(args.out) / 'bundle'}")
    s = report["splits"]["held out"]
    for name, m in s.items():
        print(f"  {name:18} detection {m['detection_rate']:.4f}  FPR {m['fpr']:.5f}  F1 {m['f1']:.4f}")
    return 0


def _models(given: list[str]) -> dict[str, str]:
    models: dict[str, str] = {}
    for item in given:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name or item, item
        if not (Path(path) / "metadata.json").is_file():
            raise UsageError(f"--model {item}: {path} is not a model bundle (no metadata.json)")
        if name in models:
            raise UsageError(f"--model {item}: two models named {name}; name them NAME=BUNDLE")
        models[name] = path
    return models


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.sensor:
        return _evaluate_alerts(args)
    if not args.features or len(args.model) != 1:
        raise UsageError("evaluate: give --features DIR and one --model (or --sensor --corpus DIR)")
    from sensor.model import ModelBundle

    from .evaluate import evaluate_scored, plot, write_report
    from .frame import BundleScorer, read_blocks, score_blocks, summarize
    from .run import dataset_summary
    from .spark import spark_context

    bundle = ModelBundle(args.model[0])  # refused here, before Spark starts, if it is broken
    with spark_context(args.master) as sc:
        blocks = read_blocks(sc, args.features)
        summary = summarize(blocks)
        with score_blocks(sc, blocks, [BundleScorer(str(Path(args.model[0]).resolve()))]) as scored:
            results, samples = evaluate_scored(scored, [bundle.name], [bundle.threshold], seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "dataset": dataset_summary(summary),
        "false_alert_budget": None,
        "splits": {"all windows": results},
        "model": {"path": str(args.model[0]), "sha256": bundle.sha256},
        "created": dt.datetime.now(dt.UTC).isoformat(),
    }
    report["plots"] = plot(samples, results, {bundle.name: bundle.threshold}, out)
    write_report(report, out)
    m = report["splits"]["all windows"][bundle.name]
    print(json.dumps({k: m[k] for k in ("detection_rate", "fpr", "precision", "f1", "roc_auc")}))
    return 0


def _evaluate_alerts(args: argparse.Namespace) -> int:
    from . import corpus as corpus_mod
    from . import fieldtest

    if not args.corpus:
        raise UsageError("evaluate --sensor needs --corpus DIR (built by 'flowlstm-train corpus')")
    c = corpus_mod.load(Path(args.corpus))
    models = _models(args.model)
    families = [f for f in args.families.split(",") if f] if args.families else None
    sources = [x for x in args.sources.split(",") if x] if args.sources else None
    if families is None and sources is None:
        # by default, what the first model says it never trained on
        held = json.loads((Path(next(iter(models.values()))) / "metadata.json").read_text())
        held = held.get("training", {}).get("corpus", {})
        families = held.get("held_out_families") or None
        sources = held.get("held_out_sources") or None
        if families or sources:
            print(
                f"evaluating on what {next(iter(models))} never trained on: families "
                f"{', '.join(families or ['all'])}; sources {', '.join(sources or ['all'])}",
                file=sys.stderr,
            )
    for f in families or []:
        if f not in c["families"]:
            raise UsageError(f"--families: {f} is not in the corpus ({', '.join(c['families'])})")
    for x in sources or []:
        if x not in c["sources"]:
            raise UsageError(f"--sources: {x} is not in the corpus ({', '.join(c['sources'])})")
    traces = fieldtest.select(c, families, sources)
    out = Path(args.out)
    report = fieldtest.field_test(
        models, traces, out, jobs=args.jobs, progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    report["families"], report["sources"] = families, sources
    report["created"] = dt.datetime.now(dt.UTC).isoformat()
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = fieldtest.plot(report, out)
    fieldtest.write_report(report, out)
    for name, m in report["models"].items():
        print(
            f"{name}: families {m['families_detected']}/{m['families_total']}, instances "
            f"{m['instances_detected']}/{m['instances_total']}, false/10k flows {m['false_per_10k_flows']}, "
            f"collateral {m['collateral_alerts']}"
        )
    print(f"report: {out / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="flowlstm-train: %(levelname)s: %(message)s"
    )
    if not args.command:
        parser.print_help()
        return 64
    try:
        return {
            "corpus": cmd_corpus,
            "inject": cmd_inject,
            "features": cmd_features,
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "site": cmd_site,
        }[args.command](args)
    except FlowlstmError as exc:
        print(f"flowlstm-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
