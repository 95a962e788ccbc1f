#!/usr/bin/env bash
# The sweeps of docs/performance.md ("Sweeps") and their plots: a fresh
# 3-node `raftctl local` cluster, then `raftctl bench` over client counts
# (SET and GET, 100-byte values) and over value sizes (SET, 16 clients),
# SECONDS per point; the JSON records go to docs/bench/ and
# scripts/bench/plot.py draws docs/bench/*.png from them.
# Usage: scripts/bench/sweep.sh [SECONDS]   (ports 46600-46622 on loopback;
# BUILD=0 uses target/release as it is)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-3}
BASE=46600
export RAFTKV_ENDPOINTS=127.0.0.1:$BASE,127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 20))
CTL=target/release/raftctl
OUT=docs/bench
[ "${BUILD:-1}" = 0 ] || cargo build --release --quiet --bin raftctl --bin raftkv
mkdir -p "$OUT"

WORK=$(mktemp -d)
trap 'kill -INT "$LOCAL" 2>/dev/null && wait "$LOCAL" 2>/dev/null || true; rm -rf "$WORK"' EXIT
$CTL local --data-dir "$WORK/data" --base-port $BASE >"$WORK/local.out" 2>&1 &
LOCAL=$!
for _ in $(seq 300); do $CTL status >/dev/null 2>&1 && break; sleep 0.2; done
$CTL status >/dev/null || { cat "$WORK/local.out" >&2; exit 1; }

CLIENTS=1,4,16,64,256,1024
SIZES=64,1024,16384,262144,1048576
bench() { $CTL bench "$@" --duration "${SECS}s" --data-dir "$WORK/data" -o json; }
bench set --clients $CLIENTS >"$OUT/sweep-set-clients.json"
bench get --clients $CLIENTS >"$OUT/sweep-get-clients.json"
bench set --clients 16 --value-size $SIZES >"$OUT/sweep-set-sizes.json"
python3 scripts/bench/plot.py "$OUT"
