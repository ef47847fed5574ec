"""``flowlstm-sensor calibrate``: raise a bundle's thresholds to a false-alert budget on a site's own captures."""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__, settings
from ..errors import CaptureError
from .common import EXIT_CODES, stream, values

if TYPE_CHECKING:
    from ..calibrate import Calibration

NAME = "calibrate"
SUMMARY = "fit a model bundle's thresholds to this site's benign traffic"
EPILOG = EXIT_CODES
HELP = """\
A model bundle's thresholds are set so that at most one benign flow in 10,000
of the networks it was trained on alerts.  A network it never saw has a
heavier benign tail: ordinary traffic of a home or office LAN (device clouds,
pings, DHCP, SSDP) can score just above the thresholds, one flow at a time.
calibrate reads captures of this site's own link that you vouch for as
benign, scores every feature window with every head of the bundle, and writes
a copy of the bundle whose thresholds let at most --false-alert-budget flows in
10,000 of those captures alert (split evenly between the heads, as the trainer
splits it).  Thresholds are only raised, never lowered: the calibrated sensor
alerts on a subset of what the bundle alerts on.  The model files are copied
unchanged; the copy's metadata records the captures, the flow count and each
head's thresholds before and after (site_calibration), and its name gains
"+site", which alerts carry.

Use captures of ordinary days on the sensor's own link, at least an hour or
20,000 flows: with fewer flows no flow may alert, and each threshold lands just
above the highest benign flow seen.  An attack inside the captures is learned
as normal; calibrate on traffic your IDS saw nothing in.  Run it again when the
site changes; the feature-path options and --config must be the ones the
sensor runs with.  The copy is written beside --out, loaded back with every
check the sensor makes, and only then put in place of --out.

examples:
  tcpdump -i eth1 -s 128 -G 3600 -W 1 -w /var/tmp/site.pcap
  flowlstm-sensor calibrate --pcap /var/tmp/site.pcap --out /var/lib/flowlstm/model-site
  flowlstm-sensor run --interface eth1 --model /var/lib/flowlstm/model-site
"""


def register(p: argparse.ArgumentParser) -> None:
    settings.add_arguments(p, NAME)


def command(args: argparse.Namespace) -> int:
    from ..calibrate import FlowTops, calibrate, calibrated_metadata, check_out, write_bundle
    from ..model import DEFAULT_BUNDLE, ModelBundle

    v = values(args)
    # A bad bundle or --out fails before any capture is read.
    bundle = ModelBundle(v["model.path"] or DEFAULT_BUNDLE)
    out = Path(v["out"])
    check_out(bundle, out)
    tops = FlowTops(len(bundle.heads))
    # The heads after the first score on a thread of their own (LiteRT's invoke releases the GIL).
    with ThreadPoolExecutor(1, "flowlstm-heads") as pool:
        for res in stream(args):
            for w in res.windows:
                tops.add(w.keys["flow_id"], bundle.score_all(w.x, pool))
    flow_tops = tops.tops()
    if len(flow_tops) == 0:
        raise CaptureError(f"{', '.join(v['pcap'])}: no IP flows; nothing to calibrate on")
    cal = calibrate(flow_tops, tops.windows, bundle.head_names, bundle.thresholds, v["false-alert-budget"])
    meta = calibrated_metadata(bundle.metadata, cal, [os.path.basename(p) for p in v["pcap"]], __version__)
    write_bundle(bundle, meta, out)
    _report(cal, out, meta["name"])
    return 0


def _report(cal: Calibration, out: Path, name: str) -> None:
    per_head = cal.budget / len(cal.heads)
    lines = [
        f"flowlstm-sensor: {cal.flows:,} flows, {cal.windows:,} windows; budget {cal.budget:g} "
        f"false alerts per 10,000 flows ({per_head:g} per head)",
        f"  {'head':<12} {'bundle':>8} {'site':>8} {'kept':>8}   flows alerting: bundle → kept",
    ]
    lines += [
        f"  {h.name:<12} {h.bundle:8.4f} {h.site:8.4f} {h.threshold:8.4f}   "
        f"{h.above_bundle:>6,} → {h.above_threshold:,}"
        for h in cal.heads
    ]
    lines.append(f"  {'any head':<39}   {cal.alerting_before:>6,} → {cal.alerting_after:,}")
    lines += [
        f"flowlstm-sensor: {h.name}: {h.above_threshold:,} calibration flows score at the top of the scale, "
        f"more than the {cal.allowed:,} the budget allows; no threshold keeps them quiet"
        for h in cal.saturated
    ]
    if cal.allowed == 0:
        lines.append(
            f"flowlstm-sensor: {cal.flows:,} flows are too few for {per_head:g} in 10,000 to alert: each "
            "threshold sits just above the highest benign flow seen; calibrate on more traffic"
        )
    lines.append(f"flowlstm-sensor: wrote {out} ({name}); run the sensor with --model {out}")
    print("\n".join(lines), file=sys.stderr)
