#!/usr/bin/env bash
# Compile the hot path (setup.py's COMPILED: the bus, the wire decoder, frames and
# connection table, the proxy's connection, fan-out and flow) with mypyc, as a wheel
# build does: an optional speed-up, never required. Python imports each extension in
# place of the .py beside it; SMDBUS_PURE=1 at run time goes back to the sources.
#
#   scripts/build-speedups.sh            in place: src/smdbus/**/*.so beside the sources
#                                        (they shadow edits to those sources until
#                                        `make clean`: prefer a DIR, or a wheel)
#   scripts/build-speedups.sh DIR        into DIR/smdbus (a copy of the package), for
#                                        benchmarks and tests that compare both builds
# Needs mypy (it ships mypyc), a C compiler and the Python headers; fails, saying why,
# where setup.py would fall back to a pure build.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
if [ $# -ge 1 ]; then
  dest="$(mkdir -p "$1" && cd "$1" && pwd)"
  rm -rf "$dest/smdbus" "$dest"/smdbus__mypyc.*
  cp -r "$here/src/smdbus" "$dest/smdbus"
  find "$dest/smdbus" -name '*.so' -delete
  where=(--build-lib "$dest")
else
  dest="$here/src"
  where=(--inplace)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$here"
"$python" setup.py -q build_ext "${where[@]}" --build-temp "$scratch" >"$scratch/log" 2>&1 \
  || { cat "$scratch/log" >&2; exit 1; }
if ! ls "$dest"/smdbus/bus.*.so >/dev/null 2>&1; then
  grep 'smdbus setup.py' "$scratch/log" >&2 || cat "$scratch/log" >&2
  echo "build-speedups: nothing was compiled" >&2
  exit 1
fi
echo "compiled the hot path in $dest/smdbus"
