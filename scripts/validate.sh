#!/usr/bin/env bash
# The validation network: the instrument recipe changes are decided on, never a fold's
# evaluation split (docs/model/folds/README.md).  iot-sentinel is held out of fold B's
# training side (fold B's held-out families and sources stay out too); the models train on the
# rest and the real sensor runs on iot-sentinel's benign traces and on the trained families
# injected into its backgrounds.  One training per seed, measured twice: the bundle as shipped
# (three LSTMs that must agree) and its first LSTM alone with the same normal head.
#   scripts/validate.sh WORKDIR LABEL "SEEDS" [extra 'flowlstm-train train' options]
# e.g.  scripts/validate.sh out/validation base "1 2 3 4"
#       scripts/validate.sh out/validation cal "1 2 3 4" --calibrate-last 0.2
# The corpus and features are built in WORKDIR once (the recipe's seed 1) and reused; each
# run lands in WORKDIR/LABEL-sSEED, the table over seeds in WORKDIR/LABEL.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
work=$1 label=$2 seeds=$3
shift 3
data=${DATA:-../shared/data}
scripts/setup.sh trainer
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$PWD/.venv/trainer/bin/python} SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
T=".venv/trainer/bin/python -m trainer.cli"
mkdir -p "$work"
[ -f "$work/corpus/corpus.json" ] || $T corpus --data "$data" --out "$work/corpus"
if [ ! -f "$work/features/.done" ]; then
    rm -rf "$work/features"
    $T features --corpus "$work/corpus" --out "$work/features" --master 'local[*]'
    touch "$work/features/.done"
fi
reports=()
for seed in $seeds; do
    run="$work/$label-s$seed"
    rm -rf "$run"
    $T train --features "$work/features" --corpus "$work/corpus" --out "$run" --master 'local[*]' \
        --hold-out-families amplification,synflood,dos,ics-flood,cryptomining,dns-anomaly,malware-c2 \
        --hold-out-sources iot-sentinel,ndpi-apps,zeek-misc,netshare-test \
        --max-benign-per-trace 1500 --max-anomalous-per-trace 600 --min-benign-per-kind 300 \
        --ensemble 3 --ensemble-rule all --batch-size 256 --no-family-holdout --no-baselines \
        --seed "$seed" "$@"
    $T evaluate --sensor --corpus "$work/corpus" --out "$run/alerts" \
        --model shipped="$run/bundle" --model one-member="$run/baselines/combined-one-member" \
        --sources iot-sentinel --families scan,dns-tunnel,teardrop,dhcp-flood,c2-beacon,reflection,ipv6-attack
    reports+=("$run/alerts/report.json")
done
.venv/trainer/bin/python scripts/validation-table.py --title "$label: ${*:-the recipe as it is}" "${reports[@]}" \
    | tee "$work/$label.md"
