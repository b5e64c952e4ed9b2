#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: the real C libwebsockets (lws_smd) to compare
# with, a compiler, iproute2 for network namespaces, mosquitto as a benchmark anchor, the
# headers PyGObject builds against (the glib extra, for the GLib host-loop tests), zsh and groff
# (the generated completion and man page are checked), openssl (TLS certificates for the
# fleet tests), systemd (systemd-analyze checks the shipped units), chromium (the web view's
# browser tests, driven by Playwright; never `playwright install`).
# Installs them when running as root with apt; otherwise says what is missing (the tests that
# need them then skip, naming the reason).
set -u
want="libwebsockets-dev gcc pkg-config iproute2 mosquitto libgirepository1.0-dev libcairo2-dev zsh groff-base openssl systemd chromium"
missing=""
for p in $want; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
else
  echo "note: missing Debian packages:$missing (not root: the tests that need them will skip)"
fi
exit 0
