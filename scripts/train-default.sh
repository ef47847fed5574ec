#!/usr/bin/env bash
# Train the model bundle shipped in sensor/models/default, reproducibly, from the
# bundled real data: the MAWI excerpt as background, the StopDDoS and probing
# captures injected into it (three mixed traces), MAWILab-format labels.
#   scripts/train-default.sh [WORKDIR] [extra 'flowlstm-train train' options]
# Then review WORKDIR/run/report.md and commit sensor/models/default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh trainer
work=${1:-out/default-model}
shift || true
T=".venv/trainer/bin/python -m trainer.cli"
bg=tests/data/mawi/201911211400_headers.pcap
a=tests/data/attacks
mkdir -p "$work"
# Each attack spans about 25 s to 65 s of the 78 s background, so the time split
# (last 30% of seconds held out) sees every attack in training and in test.
$T inject --background $bg --seed 1 --out-pcap "$work/mix-dos.pcap" --out-labels "$work/mix-dos" \
    --attack "$a/pkt.TCP.synflood.spoofed.pcap@25:0.6:DDoSSYN:dst=10.10.10.10" \
    --attack "$a/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng@30:1:DDoSSYN:dst=10.10.10.10"
$T inject --background $bg --seed 2 --out-pcap "$work/mix-reflection.pcap" --out-labels "$work/mix-reflection" \
    --attack "$a/amp.TCP.reflection.SYNACK.pcap@25:0.004:rflatSYNACK:dst=10.10.10.10" \
    --attack "$a/amp.dns.RRSIG.fragmented.pcap@28:0.8:rflatDNS:dst=10.10.10.10"
$T inject --background $bg --seed 3 --out-pcap "$work/mix-scan.pcap" --out-labels "$work/mix-scan" \
    --attack "$a/zmap_tcp_5k.pcapng@25:0.01:ntscSYN:src=192.168.181.131" \
    --attack "$a/nmap.pcapng@26:30:poscaSYN:src=192.168.181.140+192.168.181.141+192.168.181.142+192.168.181.143+192.168.181.144+192.168.181.145+192.168.181.146+192.168.181.147+192.168.181.148" \
    --attack "$a/hping3.pcapng@27:250:poscaSYN:src=192.168.181.160+192.168.181.161+192.168.181.162+192.168.181.163+192.168.181.164+192.168.181.165"
# Attack-dominated seconds: all attacks over a 5-second slice of the background, so
# the model also learns what the attacks look like when they are most of the link.
editcap -B "2019-11-21T05:00:05Z" $bg "$work/bg-5s.pcap"
$T inject --background "$work/bg-5s.pcap" --seed 4 --out-pcap "$work/mix-dense.pcap" --out-labels "$work/mix-dense" \
    --attack "$a/pkt.TCP.synflood.spoofed.pcap@1:1:DDoSSYN:dst=10.10.10.10" \
    --attack "$a/amp.dns.RRSIG.fragmented.pcap@3:1:rflatDNS:dst=10.10.10.10" \
    --attack "$a/amp.TCP.reflection.SYNACK.pcap@6:0.008:rflatSYNACK:dst=10.10.10.10" \
    --attack "$a/zmap_tcp_5k.pcapng@4:0.015:ntscSYN:src=192.168.181.131" \
    --attack "$a/nmap.pcapng@2:45:poscaSYN:src=192.168.181.140+192.168.181.141+192.168.181.142+192.168.181.143+192.168.181.144+192.168.181.145+192.168.181.146+192.168.181.147+192.168.181.148"
rm -f "$work/bg-5s.pcap"
rm -rf "$work/features"
$T features --pcap "$work"/mix-*.pcap --labels "$work"/mix-*.xml --out "$work/features" --master 'local[*]'
$T train --features "$work/features" --out "$work/run" --master 'local[*]' "$@"
rm -rf sensor/models/default
mkdir -p sensor/models
cp -r "$work/run/bundle" sensor/models/default
mkdir -p docs/model
cp "$work/run/report.md" "$work/run/report.json" "$work/run/"*.png docs/model/
echo "default model: sensor/models/default; report: docs/model/report.md"
