"""Evaluation at the alert level: the real ``flowlstm-sensor run`` on corpus traces.

What a sysadmin sees is EVE alert lines after thresholding, not window scores.  For each
model bundle and each trace of a corpus (``trainer/corpus.py``) the sensor runs as a
separate process on the capture file, writing EVE; its alerts are then matched against
the ground truth of corpus.json:

- an alert **belongs to** an injected instance when its source or destination is one of the
  instance's hosts and its time (the end of the window's centre second) lies between one
  second before the instance's first packet and ``GRACE_S`` after its last;
- an instance is **detected** when some alert belongs to it; its **latency** is the first
  such alert's time plus the one second the sensor waits for t+1, minus the instance's
  first packet: "detected within 3 s" is latency ≤ 3 s;
- an alert in a mix that belongs to no instance is **collateral** while some instance is
  running (background flows alerted because an attack shares their seconds) and **false**
  otherwise; every alert on a benign trace is false;
- false alerts are reported per hour of benign trace and per 10,000 benign flows (the flow
  count is the sensor's own, from its final EVE ``stats`` event), per benign source.

Only traces the model did not train on should count: ``select`` keeps the families and
sources asked for (by default, whatever the bundle's metadata says it was not trained on).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensor.errors import FlowlstmError, UsageError

from .labels import NS
from .synth import SYNTHETIC

GRACE_S = 3.0  # an alert this long after an instance's last packet still belongs to it
DETECT_WITHIN_S = 3.0
WINDOW_DELAY_S = 1.0  # a window centred on t is scored once t+1 has closed


class SensorRunError(FlowlstmError):
    """The sensor failed on a trace; the message names the trace and the sensor's last words."""

    exit_code = 70


@dataclass(frozen=True)
class Alert:
    t: float  # EVE timestamp, epoch seconds
    src: str
    dst: str
    sid: int
    kind: str = "anomaly"  # alert.metadata.flowlstm_kind: flood, scan, reflection, anomaly
    heads: tuple[str, ...] = ()  # the heads that fired (flowlstm_head)
    flows: int = 1  # member flows of the alerted aggregate (flowlstm_flows)

    @property
    def anatomy(self) -> str:
        """What a false alert was: its kind, the heads that fired, one flow or several."""
        return f"{self.kind} / {'+'.join(self.heads) or '?'} / {'one flow' if self.flows == 1 else 'several flows'}"


@dataclass
class TraceRun:
    """The sensor's output for one trace: alerts and the flows it saw."""

    trace: str
    alerts: list[Alert]
    flows: int


def _epoch(ts: str) -> float:
    # Suricata's form: 2019-11-21T05:00:01.000000+0000
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def read_eve(path: Path) -> tuple[list[Alert], int]:
    """(alerts, flows of the last stats event) of an EVE file the sensor wrote."""
    alerts: list[Alert] = []
    flows = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("event_type") == "alert":
                meta = ev["alert"].get("metadata", {})
                alerts.append(
                    Alert(
                        _epoch(ev["timestamp"]),
                        ev["src_ip"],
                        ev["dest_ip"],
                        int(ev["alert"]["signature_id"]),
                        (meta.get("flowlstm_kind") or ["anomaly"])[0],
                        tuple(meta.get("flowlstm_head", ())),
                        int((meta.get("flowlstm_flows") or ["1"])[0]),
                    )
                )
            elif ev.get("event_type") == "stats":
                flows = int(ev["stats"]["flow"]["total"])
    return alerts, flows


def run_sensor(sensor: list[str], model: str, pcap: str, eve: Path) -> TraceRun:
    """``sensor run --pcap PCAP --model MODEL --eve EVE`` as a process; its alerts and flows."""
    eve.parent.mkdir(parents=True, exist_ok=True)
    eve.unlink(missing_ok=True)
    cmd = [*sensor, "run", "--pcap", pcap, "--model", model, "--eve", str(eve), "--no-progress", "--no-announce"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SensorRunError(f"{pcap}: the sensor exited {proc.returncode}: {last}")
    alerts, flows = read_eve(eve)
    return TraceRun(Path(pcap).name, alerts, flows)


def select(
    corpus: dict[str, Any], families: Iterable[str] | None, sources: Iterable[str] | None
) -> list[dict[str, Any]]:
    """The corpus traces an evaluation runs: mixes of ``families`` on backgrounds of
    ``sources``, and the benign traces of ``sources`` (None: all real families, all sources)."""
    fam = set(families) if families is not None else None
    src = set(sources) if sources is not None else None
    out = []
    for t in corpus["traces"]:
        if src is not None and t["source"] not in src:
            continue
        if t["kind"] == "mix" and fam is not None and t["family"] not in fam:
            continue
        if t["kind"] == "mix" and fam is None and t["family"] in SYNTHETIC:
            continue  # training-only shapes: an evaluation is on real attacks
        out.append(t)
    return out


@dataclass
class Tally:
    """One model's alert-level results over the traces it ran on."""

    instances: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by family
    detected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    detected_3s: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    true_alerts: int = 0
    collateral: int = 0
    false_in_mixes: int = 0
    benign_alerts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by source
    benign_flows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    benign_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # False alerts on benign traces by what they were (Alert.anatomy): which kind of alert and
    # which head a model's false alerts come from is where the next change has to look.
    false_anatomy: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, trace: dict[str, Any], run: TraceRun) -> None:
        if trace["kind"] == "benign":
            for a in run.alerts:
                self.false_anatomy[a.anatomy] += 1
            self.benign_alerts[trace["source"]] += len(run.alerts)
            self.benign_flows[trace["source"]] += run.flows
            self.benign_seconds[trace["source"]] += max(float(trace["seconds"]), 1.0)
            return
        spans = []
        for inst in trace["attacks"]:
            lo, hi = inst["from_ns"] / NS - 1.0, inst["to_ns"] / NS + GRACE_S
            spans.append((lo, hi, set(inst["hosts"])))
            fam = inst["family"]
            self.instances[fam] += 1
            mine = [a.t for a in run.alerts if lo <= a.t <= hi and (a.src in spans[-1][2] or a.dst in spans[-1][2])]
            if mine:
                self.detected[fam] += 1
                latency = max(min(mine) + WINDOW_DELAY_S - inst["from_ns"] / NS, 0.0)
                self.latencies[fam].append(latency)
                self.detected_3s[fam] += latency <= DETECT_WITHIN_S
        for a in run.alerts:
            if any(lo <= a.t <= hi and (a.src in hosts or a.dst in hosts) for lo, hi, hosts in spans):
                self.true_alerts += 1
            elif any(lo <= a.t <= hi for lo, hi, _ in spans):
                self.collateral += 1
            else:
                self.false_in_mixes += 1

    def summary(self) -> dict[str, Any]:
        fams = sorted(self.instances)
        per_family = {
            f: {
                "instances": self.instances[f],
                "detected": self.detected[f],
                "detected_within_3s": self.detected_3s[f],
                "median_latency_s": _median(self.latencies[f]),
            }
            for f in fams
        }
        alerts = sum(self.benign_alerts.values())
        flows = sum(self.benign_flows.values())
        hours = sum(self.benign_seconds.values()) / 3600
        per_source = {
            s: {
                "false_alerts": self.benign_alerts[s],
                "flows": self.benign_flows[s],
                "hours": round(self.benign_seconds[s] / 3600, 4),
                "per_10k_flows": _rate(self.benign_alerts[s], self.benign_flows[s] / 1e4),
            }
            for s in sorted(self.benign_flows)
        }
        n_inst = sum(self.instances.values())
        return {
            "families": per_family,
            "families_detected": sum(1 for f in fams if self.detected[f]),
            "families_total": len(fams),
            "instances_detected": sum(self.detected.values()),
            "instances_detected_within_3s": sum(self.detected_3s.values()),
            "instances_total": n_inst,
            "true_alerts": self.true_alerts,
            "collateral_alerts": self.collateral,
            "false_alerts_in_mixes": self.false_in_mixes,
            "false_alerts_benign": alerts,
            "benign_flows": flows,
            "benign_hours": round(hours, 4),
            "false_per_hour": _rate(alerts, hours),
            "false_per_10k_flows": _rate(alerts, flows / 1e4),
            "sources": per_source,
            "false_anatomy": dict(sorted(self.false_anatomy.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


def _rate(n: float, d: float) -> float | None:
    return round(n / d, 4) if d > 0 else None


def _median(v: list[float]) -> float | None:
    if not v:
        return None
    s = sorted(v)
    m = len(s) // 2
    return round(s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2, 3)


def default_sensor() -> list[str]:
    """The sensor command: its own venv's Python next to this checkout's, else this Python."""
    root = Path(__file__).resolve().parents[1]
    venv = root / ".venv" / "sensor" / "bin" / "python"
    return [str(venv) if venv.exists() else sys.executable, "-m", "sensor.cli"]


def field_test(
    models: dict[str, str],
    traces: list[dict[str, Any]],
    out: Path,
    sensor: list[str] | None = None,
    jobs: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every model on every trace (``jobs`` sensor processes at a time); the results."""
    if not traces:
        raise UsageError("no corpus traces left to evaluate on; check --families and --sources")
    sensor = sensor or default_sensor()
    jobs = jobs or os.cpu_count() or 1
    results: dict[str, Any] = {}
    for name, bundle in models.items():
        tally = Tally()
        done = 0
        with cf.ThreadPoolExecutor(jobs) as pool:
            futures = {
                pool.submit(run_sensor, sensor, bundle, t["path"], out / "eve" / name / f"{t['name']}.json"): t
                for t in traces
            }
            for fut in cf.as_completed(futures):
                tally.add(futures[fut], fut.result())
                done += 1
                if progress and (done % 10 == 0 or done == len(traces)):
                    progress(f"{name}: {done}/{len(traces)} traces")
        results[name] = {"bundle": bundle, **tally.summary()}
    return {
        "traces": len(traces),
        "mixes": sum(t["kind"] == "mix" for t in traces),
        "benign": sum(t["kind"] == "benign" for t in traces),
        "models": results,
    }


def _bars(out: Path, name: str, labels: list[str], values: dict[str, list[float]], ylabel: str) -> str:
    """One grouped bar chart: a group per label, a bar per model; written as ``out/name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.85), 3.5))
    width = 0.8 / max(len(values), 1)
    at = np.arange(len(labels))
    for i, (model, v) in enumerate(values.items()):
        ax.bar(at + i * width, v, width, label=model)
    ax.set_xticks(at + width * (len(values) - 1) / 2, labels, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plot(report: dict[str, Any], out: Path) -> list[str]:
    """Per-family detection bars and false alerts per benign source, one bar per model."""
    models = report["models"]
    files = []
    fams = sorted({f for m in models.values() for f in m["families"]})
    if fams:
        detected = {
            n: [m["families"][f]["detected"] / m["families"][f]["instances"] if f in m["families"] else 0 for f in fams]
            for n, m in models.items()
        }
        files.append(_bars(out, "alerts_detection.png", fams, detected, "share of instances detected"))
    sources = sorted({s for m in models.values() for s in m["sources"]})
    if sources:
        false = {
            n: [(m["sources"][s]["per_10k_flows"] or 0) if s in m["sources"] else 0 for s in sources]
            for n, m in models.items()
        }
        files.append(_bars(out, "alerts_false_by_source.png", sources, false, "false alerts per 10k flows"))
    return files


def _cell(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def write_report(report: dict[str, Any], out: Path) -> None:
    """report.json and report.md (tables; the plots beside them)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    models = report["models"]
    lines = [
        "# Alert-level evaluation",
        "",
        f"The real `flowlstm-sensor run` on {report['traces']} corpus traces ({report['mixes']} mixes, "
        f"{report['benign']} benign); held out: families {', '.join(report.get('families') or ['all'])}; "
        f"sources {', '.join(report.get('sources') or ['all'])}. Rules: `trainer/fieldtest.py`.",
        "",
        "| model | families detected | instances detected (≤3 s) | false / h | false / 10k flows "
        "| collateral | false in mixes |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, m in models.items():
        lines.append(
            f"| {n} | {m['families_detected']}/{m['families_total']} | {m['instances_detected']}/"
            f"{m['instances_total']} ({m['instances_detected_within_3s']}) | {_cell(m['false_per_hour'])} | "
            f"{_cell(m['false_per_10k_flows'])} | {m['collateral_alerts']} | {m['false_alerts_in_mixes']} |"
        )
    fams = sorted({f for m in models.values() for f in m["families"]})
    if fams:
        lines += ["", "## Per family (instances detected / total, within 3 s)", ""]
        lines += ["| family | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for f in fams:
            cells = []
            for m in models.values():
                r = m["families"].get(f)
                cells.append(f"{r['detected']}/{r['instances']} ({r['detected_within_3s']})" if r else "–")
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
    sources = sorted({s for m in models.values() for s in m["sources"]})
    if sources:
        lines += ["", "## False alerts per benign source (alerts, per 10k flows)", ""]
        lines += ["| source | flows | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
        for s in sources:
            first = next(m["sources"][s] for m in models.values() if s in m["sources"])
            cells = [
                f"{m['sources'][s]['false_alerts']} ({_cell(m['sources'][s]['per_10k_flows'])})"
                if s in m["sources"]
                else "–"
                for m in models.values()
            ]
            lines.append(f"| {s} | {first['flows']} | " + " | ".join(cells) + " |")
    anatomy = sorted({a for m in models.values() for a in m.get("false_anatomy", {})})
    if anatomy:
        lines += ["", "## False alerts on benign traces by kind / heads fired / members", ""]
        lines += ["| alert | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for a in anatomy:
            lines.append(
                f"| {a} | " + " | ".join(str(m.get("false_anatomy", {}).get(a, 0)) for m in models.values()) + " |"
            )
    for p in report.get("plots", []):
        lines += ["", f"![{p}]({p})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
