#!/usr/bin/env bash
# Install smdbus on a device (Debian 12 and the like): a venv under /opt/smdbus, because
# Debian's Python is "externally managed" (PEP 668: pip refuses to install into it); the
# systemd units with ExecStart= pointing into that venv; the man page (the units'
# Documentation=man:smd(1)); the bash and zsh completions; and /etc/smd/daemon.toml when
# there is none (an existing one is left alone).
#
# `make install` runs this. Settings, as environment variables or `make install VAR=...`:
#   PREFIX=/opt/smdbus            the venv (smd is PREFIX/bin/smd)
#   EXTRAS=net                    pip extras: net (CPD, routes), button (evdev, gpiod); "" for none
#   WHEEL=                        install this wheel instead of building one from the source
#                                 tree's sdist (as `make dist` does; compiled where it can be,
#                                 SMDBUS_PURE=1 for pure Python)
#   PYTHON=python3                the interpreter the venv is made from (3.11 or later)
#   UNITDIR=/etc/systemd/system   MANDIR=/usr/local/share/man   CONFDIR=/etc/smd
#   BASHCOMPDIR=/usr/share/bash-completion/completions
#   ZSHCOMPDIR=/usr/local/share/zsh/site-functions
# Then: systemctl enable --now smd.socket smd.service
set -eu

PREFIX=${PREFIX:-/opt/smdbus}
EXTRAS=${EXTRAS-net}
WHEEL=${WHEEL:-}
PYTHON=${PYTHON:-python3}
UNITDIR=${UNITDIR:-/etc/systemd/system}
MANDIR=${MANDIR:-/usr/local/share/man}
CONFDIR=${CONFDIR:-/etc/smd}
BASHCOMPDIR=${BASHCOMPDIR:-/usr/share/bash-completion/completions}
ZSHCOMPDIR=${ZSHCOMPDIR:-/usr/local/share/zsh/site-functions}
SRC=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'smdbus install: %s\n' "$*"; }

if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    say "$PYTHON has no venv module: on Debian, apt-get install python3-venv" >&2
    exit 1
fi
say "venv in $PREFIX"
"$PYTHON" -m venv "$PREFIX"
target=$WHEEL
if [ -z "$target" ]; then
    # The wheel is built as `make dist` builds it: an sdist of $SRC, then a wheel from that
    # sdist, in a scratch directory. Not in $SRC (`pip install $SRC`): setuptools would put
    # into the wheel whatever an earlier build left in $SRC/build/lib, such as extensions of
    # modules since renamed or deleted. The build frontend has a venv of its own in the
    # scratch directory, not a place in the installed one. setup.py compiles the hot path
    # where it can, as for any wheel; SMDBUS_PURE=1 in the environment asks for pure Python.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    say "wheel from an sdist of $SRC"
    "$PYTHON" -m venv "$scratch/frontend"
    "$scratch/frontend/bin/python" -m pip install --quiet --disable-pip-version-check 'build>=1.0'
    if ! "$scratch/frontend/bin/python" -m build --outdir "$scratch/dist" "$SRC" \
        >"$scratch/build.log" 2>&1; then
        tail -n 40 "$scratch/build.log" >&2
        say "building the wheel failed (above: the end of its log)" >&2
        exit 1
    fi
    target=$(echo "$scratch"/dist/smdbus-*.whl)
    note=$(sed -n 's/^smdbus setup.py: //p' "$scratch/build.log" | tail -n 1)
    say "built ${target##*/}${note:+ ($note)}"
fi
[ -n "$EXTRAS" ] && target="$target[$EXTRAS]"
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check "$target"

data=$("$PREFIX/bin/python" -c 'import os, smdbus; print(os.path.join(os.path.dirname(smdbus.__file__), "data"))')

say "units in $UNITDIR (ExecStart=$PREFIX/bin/smd)"
install -d "$UNITDIR"
sed "s|/opt/smdbus/bin/smd|$PREFIX/bin/smd|g" "$data/systemd/smd.service" > "$UNITDIR/smd.service"
install -m 0644 "$data/systemd/smd.socket" "$UNITDIR/smd.socket"
chmod 0644 "$UNITDIR/smd.service"

say "man page in $MANDIR/man1, completions in $BASHCOMPDIR and $ZSHCOMPDIR"
install -D -m 0644 "$data/man/man1/smd.1" "$MANDIR/man1/smd.1"
install -D -m 0644 "$data/completion/smd.bash" "$BASHCOMPDIR/smd"
install -D -m 0644 "$data/completion/_smd" "$ZSHCOMPDIR/_smd"

if [ -e "$CONFDIR/daemon.toml" ]; then
    say "$CONFDIR/daemon.toml exists: left as it is"
else
    say "example config in $CONFDIR/daemon.toml"
    install -D -m 0644 "$data/daemon.toml" "$CONFDIR/daemon.toml"
fi

if [ -d /run/systemd/system ] && [ "$UNITDIR" = /etc/systemd/system ]; then
    systemctl daemon-reload
fi
say "done: $("$PREFIX/bin/smd" --version)"
say "next: systemctl enable --now smd.socket smd.service   (man smd)"
