#!/usr/bin/env bash
# Builds Vigil's Debian packages: vigil (gateway, verifier, unit, Pi config)
# and vigil-tools (simulator), one pair per architecture.
#
#   deploy/package/build.sh [--out DIR] [--bin-dir DIR] [--conffile FILE] ARCH...
#   deploy/package/build.sh --print-deb-version
#
# ARCH is a Debian architecture: amd64, arm64 or armhf (GOARM=7). Packages
# go to --out (default dist/packages), named as Debian does
# (vigil_VERSION_ARCH.deb). Binaries are built into --bin-dir/ARCH (default
# bin/package), where go build finds them up to date the next time.
# --conffile replaces deploy/package/vigil.yaml as /etc/vigil/vigil.yaml (the
# package test uses it to ship a changed conffile in an upgrade).
#
# Environment, as `make package` passes it (computed the same way when unset):
#   VERSION     git describe --tags --always --dirty, or 0.0.0-dev
#   COMMIT      the full commit hash
#   BUILD_DATE  the commit's time (SOURCE_DATE_EPOCH when set), RFC 3339 UTC
#   DEB_VERSION the package version; derived from VERSION when unset (see
#               deb_version)
#   NFPM        the nfpm binary (default: nfpm.sh installs the pinned one)
#   GO          the go command
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
GO="${GO:-go}"

out="$repo/dist/packages"
bin_dir="$repo/bin/package"
conffile="$here/vigil.yaml"
print_version=false
arches=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out="$2"; shift 2 ;;
	--bin-dir) bin_dir="$2"; shift 2 ;;
	--conffile) conffile="$2"; shift 2 ;;
	--print-deb-version) print_version=true; shift ;;
	amd64 | arm64 | armhf) arches+=("$1"); shift ;;
	*)
		echo "usage: $0 [--out DIR] [--bin-dir DIR] [--conffile FILE] amd64|arm64|armhf..." >&2
		echo "       $0 --print-deb-version" >&2
		exit 2
		;;
	esac
done

# The same defaults as the Makefile's, for a direct run.
if [ -z "${VERSION:-}" ]; then
	VERSION="$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)"
fi
if [ -z "${COMMIT:-}" ]; then
	COMMIT="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
fi
if [ -z "${BUILD_DATE:-}" ]; then
	epoch="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"
	BUILD_DATE="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
fi

# deb_version turns VERSION into a Debian version, which must start with a
# digit and sort the way releases do (dpkg --compare-versions):
#   v1.2.3                  -> 1.2.3
#   v1.2.3-rc1              -> 1.2.3~rc1          (~ sorts before the release)
#   v1.2.3-4-gabc1234       -> 1.2.3+git4.abc1234 (4 commits after the tag)
#   v1.2.3-rc1-4-gabc1234   -> 1.2.3~rc1+git4.abc1234
#   abc1234 (no tag yet)    -> 0.1.0~git20261101.093000.abc1234 (commit time,
#                              from BUILD_DATE, so later commits sort higher,
#                              and below the first release 0.1.0)
#   0.0.0-dev (no git)      -> 0.0.0~dev
# and -dirty (uncommitted changes) adds .dirty (+dirty after a bare release).
deb_version() {
	local v="$1" date="$2" dirty="" base pre="" count="" hash="" stamp
	if [[ $v == *-dirty ]]; then
		dirty=1
		v="${v%-dirty}"
	fi
	v="${v#v}"
	if [[ $v =~ ^[0-9a-f]{7,40}$ ]]; then
		stamp="${date//[^0-9]/}"
		if [[ ! $stamp =~ ^[0-9]{14}$ ]]; then
			echo "build.sh: BUILD_DATE=$date is not a UTC date and time; set DEB_VERSION" >&2
			return 1
		fi
		printf '0.1.0~git%s.%s.%s%s\n' "${stamp:0:8}" "${stamp:8:6}" "$v" "${dirty:+.dirty}"
		return 0
	fi
	if [[ $v =~ ^([0-9]+(\.[0-9]+)*)(-([A-Za-z][0-9A-Za-z.]*))?(-([0-9]+)-g([0-9a-f]+))?$ ]]; then
		base="${BASH_REMATCH[1]}"
		pre="${BASH_REMATCH[4]}"
		count="${BASH_REMATCH[6]}"
		hash="${BASH_REMATCH[7]}"
		v="$base${pre:+~$pre}"
		if [ -n "$count" ]; then
			printf '%s+git%s.%s%s\n' "$v" "$count" "$hash" "${dirty:+.dirty}"
		else
			printf '%s%s\n' "$v" "${dirty:++dirty}"
		fi
		return 0
	fi
	echo "build.sh: cannot make a Debian version of VERSION=$1; set DEB_VERSION" >&2
	return 1
}

if [ -z "${DEB_VERSION:-}" ]; then
	DEB_VERSION="$(deb_version "$VERSION" "$BUILD_DATE")"
fi
# Debian policy 5.6.12: upstream version starts with a digit; letters,
# digits and . + ~ (and - only before a revision).
if [[ ! $DEB_VERSION =~ ^[0-9][0-9A-Za-z.+~]*(-[0-9A-Za-z.+~]+)?$ ]]; then
	echo "build.sh: DEB_VERSION=$DEB_VERSION is not a valid Debian version" >&2
	exit 1
fi
if $print_version; then
	echo "$DEB_VERSION"
	exit 0
fi
if [ ${#arches[@]} -eq 0 ]; then
	echo "build.sh: name at least one architecture: amd64, arm64, armhf" >&2
	exit 2
fi

NFPM="${NFPM:-$("$here/nfpm.sh")}"
buildinfo="github.com/vigil-gw/vigil/cmd/internal/buildinfo"
ldflags="-s -w -X $buildinfo.version=$VERSION -X $buildinfo.commit=$COMMIT -X $buildinfo.date=$BUILD_DATE"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Package timestamps from the commit, so a rebuild gives the same .deb.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date -u -d "$BUILD_DATE" +%s)}"

cd "$repo"
for arch in "${arches[@]}"; do
	goarm=""
	case "$arch" in
	amd64) goarch=amd64 ;;
	arm64) goarch=arm64 ;;
	armhf) goarch=arm goarm=7 ;;
	esac
	dir="$bin_dir/$arch"
	mkdir -p "$dir"
	echo "package: $arch: building binaries ($VERSION)" >&2
	env CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="$goarm" \
		"$GO" build -trimpath -ldflags "$ldflags" -o "$dir/" ./cmd/vigil ./cmd/vigil-verify ./cmd/vigil-sim
	for pkg in vigil vigil-tools; do
		env DEB_ARCH="$arch" DEB_VERSION="$DEB_VERSION" VIGIL_BIN_DIR="$dir" VIGIL_CONFFILE="$conffile" \
			"$NFPM" package --config "deploy/package/$pkg.nfpm.yaml" --packager deb --target "$out/" >&2
	done
	echo "package: $out/vigil_${DEB_VERSION}_$arch.deb and vigil-tools_${DEB_VERSION}_$arch.deb" >&2
done
