#!/usr/bin/env bash
# Compile the bus's hot path (src/smdbus/bus.py) with mypyc: an optional speed-up, never
# required. The compiled module is a C extension that Python imports in place of bus.py.
#
#   scripts/build-speedups.sh            in place: src/smdbus/bus.*.so beside bus.py
#   scripts/build-speedups.sh DIR        into DIR/smdbus (a copy of the package), for
#                                        benchmarks and tests that compare both builds
# Needs mypy (it ships mypyc), a C compiler and the Python headers.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
mypyc="${MYPYC:-$here/.venv/bin/mypyc}"
[ -x "$mypyc" ] || mypyc="$(command -v mypyc)"
if [ $# -ge 1 ]; then
  dest="$(mkdir -p "$1" && cd "$1" && pwd)"
  rm -rf "$dest/smdbus" "$dest/build"
  cp -r "$here/src/smdbus" "$dest/smdbus"
  find "$dest/smdbus" -name '*.so' -delete
else
  dest="$here/src"
fi
cd "$dest"
"$mypyc" smdbus/bus.py >build-speedups.log 2>&1 || { cat build-speedups.log >&2; exit 1; }
ls smdbus/bus.*.so >/dev/null
echo "compiled smdbus.bus in $dest/smdbus"
