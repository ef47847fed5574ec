#!/usr/bin/env bash
# Train the model bundle shipped in sensor/models/default, reproducibly, from the
# public captures of shared/data: 'flowlstm-train corpus' builds site backgrounds
# and mixes every attack family into every background (MAWILab-format labels),
# 'features' runs the sensor's feature code on them in Spark, 'train' fits both
# heads (the supervised LSTM and the normal-behaviour LSTM) and the baselines.
#   scripts/train-default.sh [WORKDIR] [extra 'flowlstm-train train' options]
# DATA (default ../shared/data) names the captures.  Then review
# WORKDIR/run/report.md and commit sensor/models/default and docs/model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh trainer
work=${1:-out/default-model}
shift || true
data=${DATA:-../shared/data}
T=".venv/trainer/bin/python -m trainer.cli"
mkdir -p "$work"
$T corpus --data "$data" --out "$work/corpus"
rm -rf "$work/features"
$T features --corpus "$work/corpus" --out "$work/features" --master 'local[*]'
# Every trace counts, no busy one outweighs the rest: at most 1,500 benign and 600 anomalous
# windows a trace (seeded), and of each kind of benign window (protocol, group destination) at
# least 300 where the trace has them; held-out test = the last 30% of each trace's seconds.
# The supervised head is three LSTMs that must all call a window an attack (docs/detection.md).
$T train --features "$work/features" --corpus "$work/corpus" --out "$work/run" --master 'local[*]' \
    --max-benign-per-trace 1500 --max-anomalous-per-trace 600 --min-benign-per-kind 300 \
    --ensemble 3 --ensemble-rule all --batch-size 256 --no-family-holdout "$@"
rm -rf sensor/models/default
mkdir -p sensor/models
cp -r "$work/run/bundle" sensor/models/default
mkdir -p docs/model
rm -f docs/model/*.png
cp "$work/run/report.md" "$work/run/report.json" "$work/run/"*.png docs/model/
echo "default model: sensor/models/default; report: docs/model/report.md"
