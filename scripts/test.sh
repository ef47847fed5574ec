#!/usr/bin/env bash
# Set up everything the tests need, then run the whole test suite: ruff (lint and format)
# and mypy over the code, the sensor's tests in the sensor venv, the trainer's in the
# trainer venv.  Arguments go to both pytest runs, e.g.
#   scripts/test.sh -m "not slow"     the quick subset, for the work loop (under 2 minutes)
#   scripts/test.sh -x -k flows
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh sensor
scripts/setup.sh trainer
status=0
lint=.venv/sensor/bin
"$lint/ruff" check sensor trainer tests bench scripts || status=$?
"$lint/ruff" format --check sensor trainer tests bench scripts || status=$?
"$lint/mypy" || status=$?
.venv/sensor/bin/python -m pytest tests/sensor "$@" || status=$?
.venv/trainer/bin/python -m pytest tests/trainer "$@" || status=$?
exit $status
