#!/usr/bin/env bash
# Set up everything the tests need, then run the whole test suite:
# the sensor's tests in the sensor venv, the trainer's in the trainer venv.
# Arguments go to both pytest runs (e.g. -x, -k flows).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh sensor
scripts/setup.sh trainer
status=0
.venv/sensor/bin/python -m pytest tests/sensor "$@" || status=$?
.venv/trainer/bin/python -m pytest tests/trainer "$@" || status=$?
exit $status
