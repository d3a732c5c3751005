#!/bin/sh
# evidence.sh runs the evidence-path benchmark (issue 4) the way
# BENCHMARKS.md reports it: Vigil's camera → tus → spool → object-locked
# MinIO path beside mc cp, a direct objstore upload and a digest-free
# multipart upload of the same file, plus Go's SHA-256 beside sha256sum, and
# Vigil's peak RSS.
#
#   deploy/bench/evidence.sh [OUTDIR]
#
# The benchmark makes its own runs (5 for 100 MiB, 3 for 2 GiB), alternating
# Vigil and the peers, and prints the medians. OUTDIR (default
# bin/bench/evidence-DATE) keeps the raw output, machine.txt, and a full
# report per file size (evidence-SIZEMiB.txt: every run, CPU seconds, VmHWM).
# Environment: VIGIL_BENCH_EVIDENCE_MIB (sizes, default "100,2048"),
# VIGIL_BENCH_EVIDENCE_RUNS (runs per size), TMPDIR (where the big files go:
# about 3 × the largest size must be free). Takes about 5 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/../.."
GO=${GO:-go}
OUT=${1:-bin/bench/evidence-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

# MinIO and the mc client, built at their pinned versions when missing.
deploy/testenv/install.sh --bench > "$OUT/testenv"
case $OUT in
/*) . "$OUT/testenv" ;;
*) . "./$OUT/testenv" ;;
esac
export VIGIL_MINIO VIGIL_MC

tmp=${TMPDIR:-/tmp}
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
	echo "nproc: $(nproc)"
	echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "go: $($GO version)"
	echo "minio: $($GO version -m "$VIGIL_MINIO" | awk '$1 == "mod" { print $2, $3 }')"
	echo "mc: $($GO version -m "$VIGIL_MC" | awk '$1 == "mod" { print $2, $3 }')"
	echo "sha256sum: $(sha256sum --version | head -1)"
	echo "kernel: $(uname -r)"
	echo "tmp: $tmp on $(df -P "$tmp" | awk 'NR == 2 { printf "%s, %.0f GiB free", $1, $4 / 1048576 }')"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# The test runs in gateway/e2e: give it an absolute path for its reports.
VIGIL_BENCH_OUT=$(cd "$OUT" && pwd) VIGIL_E2E_BENCH=1 $GO test -run='^$' -bench=EvidenceUpload -benchtime=1x -timeout 60m ./gateway/e2e/ | tee "$OUT/evidence.txt"
echo "raw output in $OUT"
