#!/usr/bin/env bash
# Installs what Vigil's integration tests need, idempotently: Mosquitto,
# socat and Chromium (for the console's browser tests) from Debian packages,
# the independent DC-09 receiver used for the interoperability test (npm
# package iobroker.sia, pinned) under a cache directory, and the MinIO server
# for the object-store tests (built with go install at a pinned version), and
# promtool for the alert rules' tests (taken out of Debian's prometheus
# package, under the cache directory). With
# --bench it also installs the MinIO client mc, the peer for upload
# benchmarks. Anything already present is skipped, so
# a second run costs nothing. Prints where things are as shell assignments on
# stdout's last lines.
set -euo pipefail

bench=false
for arg in "$@"; do
  case "$arg" in
    --bench) bench=true ;;
    *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
  esac
done

cache="${VIGIL_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-testenv}"
mkdir -p "$cache"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
# Headless Chromium drives the console's browser tests (chromedp): ~480 MB,
# ~35 s, once.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# qemu user mode runs the arm64 and armv7 builds' tests and an arm64 gateway
# (make test-emulated, gateway/e2e TestQEMU*). binfmt is not registered on
# these machines, so tests name the emulator explicitly (go test -exec).
{ command -v qemu-aarch64-static && command -v qemu-arm-static; } >/dev/null 2>&1 || need_apt+=(qemu-user-static)
# The .deb test (deploy/package) installs into a throwaway root with dpkg
# and checks the unit with systemd-analyze; the maintainer scripts run
# systemd-sysusers, systemd-tmpfiles and deb-systemd-helper. Debian 12 has
# them all; a minimal machine gets them here.
{ command -v systemd-analyze && command -v systemd-sysusers && command -v systemd-tmpfiles; } >/dev/null 2>&1 || need_apt+=(systemd)
command -v deb-systemd-helper >/dev/null 2>&1 || need_apt+=(init-system-helpers)
# strace records the system calls the packaged gateway makes, checked
# against the unit's SystemCallFilter=.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
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

# MinIO server (and, for benchmarks, the mc client), built from source: MinIO
# publishes no semver tags and the module proxy refuses its RELEASE.* names,
# so the pins are pseudo-versions. A cold MinIO build takes ~5 min and ~1.5 GB
# of RAM, so the binaries live in $(go env GOPATH)/bin, where a later run finds
# them; a stamp file per tool records the pin that built it, so changing a pin
# here rebuilds.
minio_version="v0.0.0-20260212201848-7aac2a2c5b7c"
mc_version="v0.0.0-20250313080218-cf909e1063a9"
gobin="$(go env GOPATH | cut -d: -f1)/bin"

# go_tool NAME MODULE VERSION: installs MODULE@VERSION as $gobin/NAME unless
# that version is already there.
go_tool() {
  local name="$1" module="$2" version="$3"
  local bin="$gobin/$name" stamp="$cache/$name.version" have=""
  if [ -x "$bin" ]; then
    if [ -f "$stamp" ] && [ ! "$bin" -nt "$stamp" ]; then
      have="$(cat "$stamp")"
    else
      # Built before stamps were kept, or replaced by hand since: the
      # binary knows its module version.
      have="$(go version -m "$bin" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }' || true)"
    fi
  fi
  if [ "$have" != "$version" ]; then
    echo "testenv: building $name $version with go install (minutes when cold)" >&2
    # A GOOS/GOARCH exported for cross builds must not apply here: the tool
    # runs on this machine (and go install refuses GOBIN for cross builds).
    env -u GOOS -u GOARCH GOBIN="$gobin" go install "$module@$version" >&2
  fi
  if [ "$have" != "$version" ] || [ ! -f "$stamp" ] || [ "$bin" -nt "$stamp" ]; then
    echo "$version" > "$stamp"
  fi
}

go_tool minio github.com/minio/minio "$minio_version"
# nfpm builds the .deb packages (make package, the deploy/package test);
# installed here so its cold build is not charged to a test's timeout. The
# pin is in nfpm.sh.
"$(dirname "$0")/../package/nfpm.sh" >/dev/null
if $bench; then
  go_tool mc github.com/minio/mc "$mc_version"
fi

# promtool checks and unit-tests the Prometheus alert rules in
# deploy/prometheus. Debian's prometheus package ships it; only that one
# binary is taken out of the .deb (apt-get download, dpkg-deb), so no
# prometheus user, service or web assets land on the machine and nothing is
# left running (19 MB download, ~5 s, once). Building it with go install
# instead would pull the whole Prometheus module: minutes cold.
promtool="$(command -v promtool || true)"
if [ -z "$promtool" ]; then
  promtool="$cache/promtool/promtool"
  if [ ! -x "$promtool" ]; then
    echo "testenv: extracting promtool from Debian's prometheus package" >&2
    pt_tmp="$(mktemp -d)"
    if ! ( cd "$pt_tmp" && apt-get download -qq prometheus ) >&2 2>&1; then
      # The package lists may be missing on a fresh machine; update once.
      pt_sudo=""
      [ "$(id -u)" -eq 0 ] || pt_sudo="sudo"
      $pt_sudo apt-get update -qq >&2
      ( cd "$pt_tmp" && apt-get download -qq prometheus ) >&2 2>&1
    fi
    dpkg-deb --fsys-tarfile "$pt_tmp"/prometheus_*.deb | tar -x -C "$pt_tmp" ./usr/bin/promtool
    mkdir -p "$cache/promtool"
    # Moved into place whole, so an interrupted run is not taken for done.
    mv "$pt_tmp/usr/bin/promtool" "$promtool"
    rm -rf "$pt_tmp"
  fi
fi

echo "VIGIL_SIA_DIR=$sia_dir"
echo "VIGIL_MINIO=$gobin/minio"
echo "VIGIL_CHROMIUM=$(command -v chromium)"
echo "VIGIL_QEMU_AARCH64=$(command -v qemu-aarch64-static)"
echo "VIGIL_QEMU_ARM=$(command -v qemu-arm-static)"
echo "VIGIL_PROMTOOL=$promtool"
if $bench; then
  echo "VIGIL_MC=$gobin/mc"
fi
