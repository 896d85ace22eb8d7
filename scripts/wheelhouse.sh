#!/usr/bin/env bash
# The wheelhouse roles/carina_service installs a service host from, without an index: carina's own
# wheel (rebuilt every time, it is quick, and reproducibly) and the wheels of everything it needs
# (requirements/service.txt under the venv's pins), cached with a stamp of their recipe; both in one
# wheelhouse.tar. Built for this machine's Python and architecture: the service host needs the same.
# Prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CARINA_WHEELHOUSE:-.cache/wheelhouse}
PY=.venv/bin/python
want=$(cat requirements/service.txt requirements/constraints.txt pyproject.toml | sha256sum | cut -c1-16)
mkdir -p "$OUT/deps"
if [ "$(cat "$OUT/deps/.stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$OUT/deps" && mkdir -p "$OUT/deps"
  "$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$OUT/deps" \
    -r requirements/service.txt -c requirements/constraints.txt . >&2
  rm -f "$OUT"/deps/carina-*.whl
  echo "$want" > "$OUT/deps/.stamp"
fi
rm -rf "$OUT/carina" && mkdir -p "$OUT/carina"
# Reproducible: the same sources give the same wheel, so an unchanged wheelhouse changes nothing on hosts.
SOURCE_DATE_EPOCH=315532800 "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$OUT/carina" . >&2
rm -rf build src/*.egg-info
# One file for the role to copy: its checksum names the wheelhouse on the host.
tar --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner --exclude=.stamp \
  -C "$OUT" -cf "$OUT/wheelhouse.tar" carina deps
realpath "$OUT"
