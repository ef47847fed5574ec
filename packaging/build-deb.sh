#!/usr/bin/env bash
# Build the flowlstm-sensor .deb for Debian 12 (amd64):
#   packaging/build-deb.sh [OUTDIR]        → OUTDIR/flowlstm-sensor_VERSION_amd64.deb
# A thin wrapper around 'dpkg-buildpackage -us -uc -b' (debian/ says what goes in the
# package and why: debian/rules, debian/README.source).  It builds in a copy of the tree,
# so the checkout stays clean and nothing is written next to it (dpkg-buildpackage puts
# its results in the parent directory), and prints the path of the .deb.
# The build downloads the sensor's wheels from the package index pip is configured for.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
for tool in dpkg-buildpackage dh /usr/bin/python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-deb: needs $tool (apt-get install build-essential debhelper python3-venv python3-dev libpcap0.8-dev)" >&2
        exit 69
    }
done
version=$(/usr/bin/python3 -c 'import re;print(re.search(r"\"(.+)\"", open("sensor/__init__.py").read()).group(1))')
deb_version=$(dpkg-parsechangelog -S Version)
if [ "$version" != "$deb_version" ]; then
    echo "build-deb: sensor/__init__.py says $version, debian/changelog says $deb_version (dch -v $version)" >&2
    exit 65
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/flowlstm-$version
mkdir "$src"
# The tree as git sees it (tracked and new files, not ignored build outputs); a tree
# without git is copied whole, less the virtualenvs and build directories.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$src" -xf -
else
    tar -C . --exclude=./.venv --exclude=./build --exclude=./out --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
fi
log=$work/build.log
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "build-deb: dpkg-buildpackage failed (log above)" >&2
    exit 1
fi
mkdir -p "$out"
deb=flowlstm-sensor_${version}_amd64.deb
mv "$work/$deb" "$out/$deb"
echo "$out/$deb"
