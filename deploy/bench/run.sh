#!/bin/sh
# run.sh runs Vigil's benchmarks the way BENCHMARKS.md reports them and prints
# the median of every reported figure over the runs.
#
#   deploy/bench/run.sh [OUTDIR]
#
# RUNS (default 3) end-to-end runs; COUNT (default 5) runs of each
# micro-benchmark. Raw `go test` output is kept in OUTDIR (default
# bin/bench/DATE) next to medians.txt. Needs Mosquitto (make testenv).
#
# -bench=E2E runs every end-to-end benchmark in gateway/e2e: duress latency
# over MQTT (Mosquitto default and nodelay) and over TLS with client
# certificates, durable ingest with RSS (default and nodelay), and serial
# duress latency and throughput through a pty (as is, and paced to 115200
# baud). One run takes about 5 minutes on 2 cores; each benchmark under 2.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
COUNT=${COUNT:-5}
GO=${GO:-go}
OUT=${1:-bin/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
	echo "nproc: $(nproc)"
	echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "go: $($GO version)"
	echo "mosquitto: $( (mosquitto -h 2>/dev/null || /usr/sbin/mosquitto -h 2>/dev/null) | head -1)"
	echo "kernel: $(uname -r)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

echo "== micro-benchmarks (-count=$COUNT)"
$GO test -run='^$' -bench=. -benchmem -count="$COUNT" ./devices/ ./gateway/forward/dc09/ ./gateway/journal/ | tee "$OUT/micro.txt"

i=1
while [ "$i" -le "$RUNS" ]; do
	echo "== end-to-end run $i of $RUNS"
	VIGIL_E2E_BENCH=1 $GO test -run='^$' -bench=E2E -benchtime=1x -timeout 20m ./gateway/e2e/ | tee "$OUT/e2e-$i.txt"
	i=$((i + 1))
done

# Median of each (benchmark, unit) over every line that reports it.
cat "$OUT"/micro.txt "$OUT"/e2e-*.txt | awk '
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (f = 3; f + 1 <= NF; f += 2) {
			key = name SUBSEP $(f + 1)
			n[key]++; v[key, n[key]] = $f
			if (!(key in seen)) { seen[key] = 1; order[++k] = key }
		}
	}
	END {
		for (o = 1; o <= k; o++) {
			key = order[o]; c = n[key]
			for (a = 1; a <= c; a++) s[a] = v[key, a] + 0
			for (a = 2; a <= c; a++) { x = s[a]; b = a - 1; while (b >= 1 && s[b] > x) { s[b + 1] = s[b]; b-- } s[b + 1] = x }
			med = (c % 2) ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
			split(key, p, SUBSEP)
			printf "%-62s %14.4g %-22s (n=%d)\n", p[1], med, p[2], c
		}
	}' | tee "$OUT/medians.txt"
echo "raw output and medians in $OUT"
