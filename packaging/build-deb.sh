#!/usr/bin/env bash
# Build the flowlstm-sensor .deb for Debian 12 (amd64):
#   packaging/build-deb.sh [OUTDIR]        → OUTDIR/flowlstm-sensor_VERSION_amd64.deb
# The package carries its own virtualenv under /opt/flowlstm (NumPy 2, LiteRT,
# pcapy-ng, ...) built against Debian's /usr/bin/python3, the systemd unit, the
# documented configuration (a conffile), the logrotate snippet, the manual pages and the model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
py=/usr/bin/python3
[ -x "$py" ] || { echo "build-deb: needs Debian's /usr/bin/python3 (apt-get install python3-venv)" >&2; exit 69; }
version=$($py -c 'import re;print(re.search(r"\"(.+)\"", open("sensor/__init__.py").read()).group(1))')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
prefix=/opt/flowlstm
venv=$stage$prefix/venv/sensor

$py -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile ".[sensor]"
# The venv was built under the staging directory: point its scripts at the installed path.
grep -rlI "$stage" "$venv" | xargs -r sed -i "s|$stage||g"
find "$venv" -name __pycache__ -prune -exec rm -rf {} +

install -D -m 644 packaging/systemd/flowlstm-sensor@.service "$stage/lib/systemd/system/flowlstm-sensor@.service"
install -D -m 644 etc/flowlstm/sensor.yaml "$stage/etc/flowlstm/sensor.yaml"
install -D -m 644 etc/default/flowlstm-sensor "$stage/etc/default/flowlstm-sensor"
install -D -m 644 packaging/logrotate-flowlstm "$stage/etc/logrotate.d/flowlstm"
install -D -m 644 README.md "$stage/usr/share/doc/flowlstm/README.md"
for d in docs/*.md; do install -D -m 644 "$d" "$stage/usr/share/doc/flowlstm/$(basename "$d")"; done
# The manual pages of what the package puts on PATH (flowlstm-train(1) stays out: the package
# has no trainer, whose commands need Spark and TensorFlow).  gzip -n: no name or time stamp,
# so two builds of one tree give the same package.
for page in docs/man/flowlstm-sensor.8 docs/man/sensor.yaml.5; do
    dest=$stage/usr/share/man/man${page##*.}/$(basename "$page")
    install -D -m 644 "$page" "$dest"
    gzip -9n "$dest"
done
mkdir -p "$stage/usr/bin"
ln -s $prefix/venv/sensor/bin/flowlstm-sensor "$stage/usr/bin/flowlstm-sensor"

mkdir -p "$stage/DEBIAN"
size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CTL
Package: flowlstm-sensor
Version: $version
Architecture: amd64
Maintainer: flowlstm team <flowlstm@localhost>
Depends: python3 (>= 3.11), python3 (<< 3.12), libpcap0.8
Recommends: tshark
Installed-Size: $size
Section: net
Priority: optional
Description: flow-based LSTM anomaly sensor beside Suricata and Zeek
 Captures packet headers, builds per-second flow statistics and AGURIM-style
 aggregates, scores three-second windows with a quantized LSTM (LiteRT) and
 appends Suricata EVE-JSON alerts for existing log pipelines.
CTL
printf '/etc/flowlstm/sensor.yaml\n/etc/default/flowlstm-sensor\n/etc/logrotate.d/flowlstm\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
install -d -m 0750 /var/log/flowlstm
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SH
cat > "$stage/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop 'flowlstm-sensor@*.service' || true
fi
SH
cat > "$stage/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
# Debian policy: logs go on purge, not on remove.
if [ "$1" = purge ]; then rm -rf /var/log/flowlstm; fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SH
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out/flowlstm-sensor_${version}_amd64.deb" >/dev/null
echo "$out/flowlstm-sensor_${version}_amd64.deb"
