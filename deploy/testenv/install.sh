#!/usr/bin/env bash
# Installs what Vigil's integration tests need, idempotently: Mosquitto and
# socat from Debian packages, and the independent DC-09 receiver used for the
# interoperability test (npm package iobroker.sia, pinned) under a cache
# directory. Anything already present is skipped, so a second run costs
# nothing. Prints where things are as shell assignments on stdout's last lines.
set -euo pipefail

cache="${VIGIL_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-testenv}"
mkdir -p "$cache"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "testenv: installing ${need_apt[*]} from Debian packages" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The package lists may be missing on a fresh machine; update once.
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

# An independent DC-09 receiver (not written by us) for the interop test.
sia_version="2.0.4"
sia_dir="$cache/iobroker.sia-$sia_version"
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if [ ! -f "$sia_dir/node_modules/iobroker.sia/build/lib/sia.js" ]; then
    echo "testenv: installing iobroker.sia@$sia_version from npm" >&2
    mkdir -p "$sia_dir"
    ( cd "$sia_dir" && [ -f package.json ] || npm init -y >/dev/null ) 
    ( cd "$sia_dir" && npm install --no-audit --no-fund --ignore-scripts "iobroker.sia@$sia_version" >&2 )
  fi
else
  echo "testenv: node/npm not found; the DC-09 interop test will be skipped" >&2
fi
echo "VIGIL_SIA_DIR=$sia_dir"
