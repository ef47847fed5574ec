#!/usr/bin/env bash
# Set up the sensor, then run it with the bundled model on bundled real captures:
# the MAWI backbone excerpt (background) and a real spoofed SYN flood (StopDDoS).
# Alerts go to out/eve.json (Suricata EVE-JSON); a summary is printed.
#   scripts/demo.sh [extra 'flowlstm-sensor run' options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh sensor
mkdir -p out
rm -f out/eve.json
.venv/sensor/bin/flowlstm-sensor run \
    --pcap tests/data/mawi/201911211400_headers.pcap tests/data/attacks/pkt.TCP.synflood.spoofed.pcap \
    --eve out/eve.json --host demo "$@"
.venv/sensor/bin/python - <<'PY'
import collections, json
events = [json.loads(line) for line in open("out/eve.json")]
alerts = [e for e in events if e["event_type"] == "alert"]
stats = [e["stats"] for e in events if e["event_type"] == "stats"]
print(f"out/eve.json: {len(alerts)} alerts" + (f", {stats[-1]['decoder']['pkts']} packets" if stats else ""))
for (sig, cat), n in collections.Counter((a["alert"]["signature"], a["alert"]["category"]) for a in alerts).most_common():
    print(f"  {n:5d}  {sig}  [{cat}]")
if alerts:
    print("first alert:", json.dumps(alerts[0])[:400], "...")
PY
