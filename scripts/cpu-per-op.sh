#!/bin/bash
# The servers' CPU per operation (docs/performance.md, "Where the CPU goes").
#
#   scripts/cpu-per-op.sh BINDIR PORT WORKLOAD CLIENTS SECONDS [BENCH_RAFTCTL]
#
# Starts a fresh 3-node `raftctl local` cluster from BINDIR (its raftctl runs
# the raftkv beside it) on PORT, PORT+10, PORT+20, writes for 2 s to fill the
# key space, then reads utime+stime of the three node processes
# (/proc/PID/stat) before and after `raftctl bench WORKLOAD --clients CLIENTS
# --duration SECONDS`, and prints the CPU per successful request: all three
# nodes (user and system apart) and the leader alone. BENCH_RAFTCTL (default:
# BINDIR's) drives the load, so two builds can be compared with one client.
# Node flags can be given as RAFTKV_* variables in NODE_ENV.
set -u
BIN=$1; PORT=$2; WL=$3; CL=$4; SECS=$5; BENCH=${6:-$1/raftctl}
D=$(mktemp -d /tmp/cpu-per-op.XXXXXX)
env ${NODE_ENV:-} "$BIN/raftctl" local --nodes 3 --data-dir "$D/data" --base-port "$PORT" >"$D/local.log" 2>&1 &
SUP=$!
trap 'kill $SUP 2>/dev/null; wait $SUP 2>/dev/null; rm -rf "$D"' EXIT
EP=127.0.0.1:$PORT,127.0.0.1:$((PORT+10)),127.0.0.1:$((PORT+20))
for _ in $(seq 1 100); do
  "$BENCH" --endpoints "$EP" status 2>/dev/null | grep -qi leader && break
  sleep 0.3
done
sleep 1
PIDS=$(pgrep -P $SUP -f raftkv | tr '\n' ' ')
"$BENCH" --endpoints "$EP" bench set --clients 16 --duration 2s >/dev/null 2>&1
cpu() { # user and system ticks of the listed processes
  local us=0 ss=0 u s
  for p in $*; do read -r u s < <(awk '{print $14, $15}' /proc/$p/stat); us=$((us+u)); ss=$((ss+s)); done
  echo "$us $ss"
}
LP=
for i in 0 1 2; do
  if curl -s "http://127.0.0.1:$((PORT+2+10*i))/metrics" | grep -q '^raftkv_is_leader 1'; then
    LP=$(pgrep -P $SUP -f "node-$i" | head -1)
  fi
done
read -r U0 S0 < <(cpu $PIDS); read -r LU0 LS0 < <(cpu $LP)
OUT=$("$BENCH" --endpoints "$EP" -o json bench "$WL" --clients "$CL" --duration "${SECS}s" 2>/dev/null)
read -r U1 S1 < <(cpu $PIDS); read -r LU1 LS1 < <(cpu $LP)
python3 - "$OUT" <<PY
import json, os, sys
d = json.loads(sys.argv[1]); n = max(d["requests"], 1); hz = os.sysconf("SC_CLK_TCK")
us = lambda ticks: ticks * 1e6 / hz / n
u, s, l = us($U1 - $U0), us($S1 - $S0), us($LU1 - $LU0 + $LS1 - $LS0)
print(f"$WL x$CL {d['requests']} ok {d['errors']} errors {d['throughput']:.0f}/s p50 {d['latency_ms']['p50']}ms "
      f"cpu/op {u + s:.1f}us (user {u:.1f}, sys {s:.1f}) leader {l:.1f}us")
PY
