#!/usr/bin/env bash
# Prints the path of nfpm, the .deb builder, at the pinned version, after
# installing it with go install into $(go env GOPATH)/bin when it is missing
# or another version (about a minute, once; a no-op after that).
#
# Pinned to v2.45.2: v2.46 and later depend on go.digitalxero.dev modules
# that the module proxy reachable here refuses (403). It is a build tool, so
# it stays out of go.mod.
set -euo pipefail

version="v2.45.2"
module="github.com/goreleaser/nfpm/v2"
gobin="$(go env GOPATH | cut -d: -f1)/bin"
bin="$gobin/nfpm"

# The binary records the module version it was built from.
if ! go version -m "$bin" 2>/dev/null |
	awk -v m="$module" -v v="$version" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'; then
	echo "nfpm.sh: installing nfpm $version with go install (about a minute, once)" >&2
	# A GOOS/GOARCH exported for a cross build must not apply: nfpm runs here.
	env -u GOOS -u GOARCH -u GOARM CGO_ENABLED=0 GOBIN="$gobin" go install "$module/cmd/nfpm@$version" >&2
fi
echo "$bin"
