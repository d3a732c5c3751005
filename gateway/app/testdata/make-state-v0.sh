#!/bin/sh
# Remakes state-v0.tar.gz: a state directory written by the last vigil that
# recorded no schema versions (schema version 0 everywhere), for
# TestMigrateStateV0. It holds two registered buttons, two users (one with a
# password), two alerts (one delivered to an ARC receiver and acknowledged,
# one whose ARC message is still pending because the receiver had gone),
# their journal records and outbox entries, and an audit trail (a clip
# search). Run from the repository root:
#
#	sh gateway/app/testdata/make-state-v0.sh [REV]
#
# REV is the commit to build (default c56b318, the last unversioned one).
# It uses loopback ports 18080, 18883 and 19000.
set -eu
rev=${1:-c56b318}
out=$(pwd)/gateway/app/testdata/state-v0.tar.gz
work=$(mktemp -d)
trap 'kill $gw $arc 2>/dev/null || true; rm -rf "$work"' EXIT
gw= arc=

mkdir -p "$work/src"
git archive "$rev" | tar -x -C "$work/src"
(cd "$work/src" && go build -o "$work/bin/" ./cmd/vigil ./cmd/vigil-sim)
vigil="$work/bin/vigil" sim="$work/bin/vigil-sim" s="$work/state"

"$vigil" device add btn-1 --kind button --site demo --wearer "Nurse A" --state "$s"
"$vigil" device add btn-2 --kind button --site demo --wearer "Nurse B" --state "$s"
printf 'correct horse battery\n' >"$work/pw"
"$vigil" user add "Ops One" --role operator --password-file "$work/pw" --state "$s"
ig=$("$vigil" user add "IG Officer" --role ig_officer --token --state "$s")
admin=$("$vigil" token create --role admin --name "Admin" --state "$s")

"$sim" arc --listen 127.0.0.1:19000 >"$work/arc.log" 2>&1 &
arc=$!
"$vigil" run --state "$s" --http 127.0.0.1:18080 --broker-listen 127.0.0.1:18883 --gateway-id vigil-fixture \
	--arc "tcp://127.0.0.1:19000?account=1234&receiver=1&prefix=1&ack_timeout=500ms" >"$work/vigil.log" 2>&1 &
gw=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done

# Delivered: the receiver acknowledges, the button gets "help is coming".
"$sim" button --broker tcp://127.0.0.1:18883 --device btn-1 --duress --timeout 10s
curl -sf -X POST -H "Authorization: Bearer $admin" -d '{"note":"operator on the phone"}' \
	"http://127.0.0.1:18080/api/alerts/$(curl -sf -H "Authorization: Bearer $admin" http://127.0.0.1:18080/api/alerts |
		sed -n 's/.*"id": "\(btn-1\.[0-9]*\)".*/\1/p' | head -1)/ack" >/dev/null

# Pending: the receiver is gone, so the alarm waits in the outbox.
kill $arc; wait $arc 2>/dev/null || true; arc=
"$sim" button --broker tcp://127.0.0.1:18883 --device btn-2 --duress --timeout 2s || true

VIGIL_TOKEN=$ig "$vigil" clip ls --state "$s" >/dev/null

kill -TERM $gw; wait $gw || true; gw=
rm -f "$s"/*.lock "$s"/devices.json.lock
tar -czf "$out" -C "$work" state
ls -l "$out"
