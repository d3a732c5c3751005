#!/bin/bash
# A/B the duress latency benchmark (BENCHMARKS.md §1.0): a worktree at BASE
# against this tree, interleaved (base, main, base, main, ...), RUNS pairs,
# each under flock so that no other benchmark shares the machine's moment.
#   deploy/bench/ab-duress.sh BASE [OUTDIR]      e.g. deploy/bench/ab-duress.sh 42fb246 bin/bench/ab
# BENCH picks the variant (default the shipped nodelay broker); RUNS the pairs.
set -euo pipefail
base=${1:?usage: $0 BASE-REVISION [OUTDIR]}
out=${2:-bin/bench/ab-duress}
root=$(git rev-parse --show-toplevel)
mkdir -p "$out"
out=$(cd "$out" && pwd)
wt=$(mktemp -d /tmp/vigil-ab-base.XXXXXX)
git -C "$root" worktree add -q --detach "$wt" "$base"
trap 'git -C "$root" worktree remove --force "$wt"' EXIT
eval "$("$root/deploy/testenv/install.sh" 2>/dev/null)"
export VIGIL_MINIO
for i in ${RUNS:-1 2 3}; do
  for t in base main; do
    dir=$wt; [ "$t" = main ] && dir=$root
    (cd "$dir" && flock /tmp/bench.lock env VIGIL_E2E_BENCH=1 go test -run='^$' \
      -bench="${BENCH:-E2EDuressLatency/mosquitto=nodelay}" -benchtime=1x -timeout 20m ./gateway/e2e/ > "$out/$t-$i.txt" 2>&1) || echo "$t $i failed: $out/$t-$i.txt"
    echo "== $t $i"
    grep -A12 'target: vigil p99' "$out/$t-$i.txt" | head -12 || true
  done
done
