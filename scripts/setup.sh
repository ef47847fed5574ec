#!/usr/bin/env bash
# Set up flowlstm on Debian 12: system packages, then the virtualenvs.
#   scripts/setup.sh sensor    the sensor venv (.venv/sensor, numpy 2)
#   scripts/setup.sh trainer   the trainer venv (.venv/trainer, numpy<2, TensorFlow, Spark, Elephas)
# Idempotent: a second run only checks.  Needs root or sudo for apt-get.
# FLOWLSTM_SETUP=check: install nothing; exit 1 naming what is missing (the test suite
# runs the README's first command this way: tests check, only the README commands install).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-sensor}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# tcpreplay and fever are for the tests: replaying fixtures onto a veth pair, and a real
# EVE consumer reading our unix_stream output; netsniff-ng (trafgen) for bench/live.py;
# man-db and groff-base render the manual pages in docs/man for their test;
# python3-seccomp (libseccomp for Debian's python3) lets tests/sensor/confine.py apply the
# unit's system call and address family filters without systemd; build-essential,
# debhelper and lintian build and check the .deb (dpkg-buildpackage, debian/); debootstrap
# makes the Debian 12 tree tests/sensor/test_boot.py boots systemd in.
apt_pkgs=(python3 python3-venv python3-dev gcc libc6-dev libpcap0.8-dev tshark tcpreplay fever netsniff-ng man-db groff-base
          python3-seccomp build-essential debhelper lintian debootstrap)
[ "$what" = trainer ] && apt_pkgs+=(openjdk-17-jre-headless)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
check_only=${FLOWLSTM_SETUP:-}
if [ ${#missing[@]} -gt 0 ] && [ "$check_only" = check ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run scripts/setup.sh $what" >&2
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv/$what
case "$what" in
    sensor) extras='.[sensor,test,sensor-test,lint]' ;;
    trainer) extras='.[trainer,test]' ;;
    *) echo "setup: unknown part '$what' (expected: sensor or trainer)" >&2; exit 64 ;;
esac
stamp=$venv/.flowlstm-stamp
want=$(cat setup.cfg setup.py sensor/capture/_walk.c sensor/_flowstats.c sensor/aggregate/_lattice.c | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ "$check_only" = check ]; then
    echo "setup: $venv is missing or out of date; run scripts/setup.sh $what" >&2
    exit 1
fi
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip setuptools wheel
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$extras"
if [ "$what" = trainer ]; then
    # Elephas names the 'tensorflow' package; the CPU build above satisfies it.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps elephas==7.3.0
fi
echo "$want" > "$stamp"
echo "setup: $venv ready" >&2
