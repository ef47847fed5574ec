"""``flowlstm-train site``: fit the sensor to one network from a directory of its own benign captures.

One command for a security team: the site's captures become site backgrounds of the
corpus (beside the public ones, so the model keeps what it knows of other networks), the
attack library of shared/data is injected into them, features run on Spark, both heads
and the baselines are trained with thresholds for the false-alert budget, and the real
sensor is run at the alert level on the site's own traces with the new bundle and the
shipped one side by side.  Everything lands under one run directory:

    RUN/corpus/        the corpus (corpus.json, backgrounds, mixes, labels)
    RUN/features/      the windows (Parquet, one partition per trace)
    RUN/train/         report.md, report.json, plots, and bundle/ — what the sensor loads
    RUN/alerts/        the alert-level report on the site's traces

The site's traces are in training (by time: the last 30% of each trace's time span is the
window-level test), so the alert-level figures on them say how the bundle behaves on this
network, not how it generalizes; the fold evaluation (docs/detection.md) says that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sensor.errors import UsageError
from sensor.model import DEFAULT_BUNDLE

from . import corpus as corpus_mod
from . import fieldtest
from .jobs import TrainJob


def fit_site(
    captures: Path,
    data: Path,
    out: Path,
    name: str,
    sites: int = 2,
    master: str = "local[*]",
    epochs: int = TrainJob.epochs,
    public: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build, train and evaluate a bundle for the site whose benign captures are in ``captures``."""
    from sensor.pipeline import PipelineConfig

    from .extract import extract
    from .run import train_all
    from .spark import spark_context

    if not name.replace("-", "").isalnum():
        raise UsageError(f"--name {name}: use letters, digits and '-' (it names the site's traces)")
    base = corpus_mod.CorpusConfig()
    cfg = dataclasses.replace(
        base,
        sites={**(base.sites if public else {}), name: sites},
        extra={name: str(captures)},
        standalone=base.standalone if public else (),
        families=corpus_mod.families_in(data),
    )
    say(f"[1/4] corpus: {name} ({captures}) as {sites} site background(s), every attack family injected")
    corpus_mod.build(data, out / "corpus", cfg, say=lambda m: say(f"      {m}"))
    traces = corpus_mod.load(out / "corpus")["traces"]
    say(f"[2/4] features of {len(traces)} traces on Spark ({master})")
    with spark_context(master) as sc:
        extract(
            sc,
            [t["path"] for t in traces],
            str(out / "features"),
            [],
            PipelineConfig(),
            names=[t["name"] for t in traces],
            labels_by_trace=[t["labels"] for t in traces],
        )
    say("[3/4] training both heads and the baselines")
    job = TrainJob(
        str(out / "features"),
        str(out / "train"),
        name=f"flowlstm-{name}",
        master=master,
        epochs=epochs,
        batch_size=256,
        family_holdout=False,
        corpus=str(out / "corpus"),
        max_benign_per_trace=1500,
        max_anomalous_per_trace=600,
        min_benign_per_kind=300,  # as scripts/train-default.sh (docs/model/folds/README.md, stop 34)
        ensemble=3,  # likewise (stop 35): three LSTMs that must all call a window an attack
        ensemble_rule="all",
    )
    train_all(job)
    bundle = out / "train" / "bundle"
    say(f"[4/4] the real sensor on {name}'s traces: the new bundle and the shipped one")
    own = fieldtest.select(corpus_mod.load(out / "corpus"), None, [name])
    report = fieldtest.field_test(
        {name: str(bundle), "shipped": str(DEFAULT_BUNDLE)}, own, out / "alerts", progress=say
    )
    report["families"], report["sources"] = None, [name]
    report["created"] = dt.datetime.now(dt.UTC).isoformat()
    report["plots"] = fieldtest.plot(report, out / "alerts")
    fieldtest.write_report(report, out / "alerts")
    return report
