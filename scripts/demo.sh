#!/usr/bin/env bash
# Set up the sensor and run it on the bundled real MAWI excerpt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh sensor
exec .venv/sensor/bin/flowlstm-sensor inspect --pcap tests/data/mawi/201911211400_headers.pcap "$@"
