#!/usr/bin/env bash
# The standard benchmark (docs/performance.md): a fresh 3-node local cluster,
# then, REPS times each, single-client SET, 64-client SET and 64-client GET
# for SECONDS each, then FAILOVERS leader kills under a 4-client SET load.
# Prints every run and the medians. Usage: scripts/bench.sh [REPS] [SECONDS] [FAILOVERS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${2:-5}
FAILOVERS=${3:-7}
BASE=17379
export RAFTKV_ENDPOINTS=127.0.0.1:$BASE,127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 20))
CTL=target/release/raftctl
cargo build --release --quiet

WORK=$(mktemp -d)
trap 'kill -INT "$LOCAL" 2>/dev/null; wait "$LOCAL" 2>/dev/null; rm -rf "$WORK"' EXIT
$CTL local --data-dir "$WORK/data" --base-port $BASE >"$WORK/local.out" 2>&1 &
LOCAL=$!
until $CTL status >/dev/null 2>&1; do
  if ! kill -0 "$LOCAL" 2>/dev/null; then
    cat "$WORK/local.out" >&2
    exit 1
  fi
  sleep 0.2
done

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
median() { python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:])), 3))" "$@"; }

leader_id() {
  $CTL status -o json 2>/dev/null | python3 -c \
    "import json,sys; print(next(r['id'] for r in json.load(sys.stdin) if r['role']=='leader'))"
}
# A counter on the leader's /metrics.
counter() {
  curl -s "127.0.0.1:$((BASE + 2 + 10 * $(leader_id)))/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

declare -A results
for rep in $(seq "$REPS"); do
  for spec in "set 1" "set 64" "get 64"; do
    set -- $spec
    out="$WORK/$1-$2-$rep.json"
    syncs=$(counter raftkv_wal_fsync_duration_seconds_count)
    $CTL bench "$1" --clients "$2" --duration "${SECS}s" -o json >"$out" 2>/dev/null
    syncs=$(($(counter raftkv_wal_fsync_duration_seconds_count) - syncs))
    tput=$(field "$out" "round(d['throughput'])")
    p50=$(field "$out" "d['latency_ms']['p50']")
    echo "run $rep: $1 x$2: $tput req/s, p50 $p50 ms, $syncs fsyncs on the leader"
    results["$1 x$2 tput"]+=" $tput"
    results["$1 x$2 p50"]+=" $p50"
  done
done

leader_pid() {
  local id
  id=$(leader_id)
  pgrep -f "raftkv --id $id .*--client-addr 127.0.0.1:$((BASE + 10 * id))"
}
gaps=""
for t in $(seq "$FAILOVERS"); do
  pid=$(leader_pid)
  out="$WORK/failover-$t.json"
  $CTL bench set --clients 4 --duration 4s -o json >"$out" 2>/dev/null &
  bench=$!
  sleep 1.5
  kill -9 "$pid"
  wait "$bench"
  gap=$(field "$out" "d['latency_ms']['max']")
  echo "failover $t: longest write $gap ms, errors $(field "$out" "d['errors']")"
  gaps+=" $gap"
  kill -HUP "$LOCAL" # restart the killed node
  until [ "$($CTL status -o json 2>/dev/null | python3 -c \
    "import json,sys; print(sum(r['role'] in ('leader','follower') for r in json.load(sys.stdin)))" 2>/dev/null)" = 3 ]; do
    sleep 0.2
  done
done

echo "== medians over $REPS runs of ${SECS}s"
for k in "set x1" "set x64" "get x64"; do
  echo "$k: $(median ${results["$k tput"]}) req/s, p50 $(median ${results["$k p50"]}) ms"
done
if [ "$FAILOVERS" -gt 0 ]; then
  echo "failover (longest write across a leader SIGKILL), median of $FAILOVERS: $(median $gaps) ms"
fi
