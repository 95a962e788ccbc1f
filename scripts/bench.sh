#!/usr/bin/env bash
# The standard benchmark (docs/performance.md): raftkv beside etcd, driven
# by the same load generator (`raftctl bench`, etcd through `--target etcd`).
# Starts a fresh 3-node `raftctl local` cluster and a 3-member etcd
# (Debian's etcd-server, defaults) on loopback, then REPS rounds; each round
# runs every workload against raftkv and then etcd, so the two interleave:
# SET with 1 and 64 clients, linearizable GET with 64 clients, SECONDS each.
# Every run reports throughput, latency and the servers' CPU per request
# (/proc of the member processes), in total and on the leader. Then
# FAILOVERS leader kills with `raftctl bench failover`. Prints every run
# and a table of medians.
#
# Usage: scripts/bench.sh [REPS] [SECONDS] [FAILOVERS]
#   ETCD=0 skips etcd (and the protoc the etcd client's build needs);
#   TLS=1 adds a third system: a `raftctl local --tls` cluster (mutual TLS
#   on every port), to read the cost of TLS against the plaintext one;
#   OUT=DIR keeps every run's JSON there; BUILD=0 uses target/release as
#   it is (built with --features etcd). Ports 46379-46601 on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${2:-5}
FAILOVERS=${3:-7}
ETCD=${ETCD:-1}
TLS=${TLS:-0}
BASE=46379
EBASE=46500
TBASE=46579
RAFTKV=127.0.0.1:$BASE,127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 20))
RAFTKV_TLS=127.0.0.1:$TBASE,127.0.0.1:$((TBASE + 10)),127.0.0.1:$((TBASE + 20))
ETCDS=127.0.0.1:$EBASE,127.0.0.1:$((EBASE + 10)),127.0.0.1:$((EBASE + 20))
CTL=target/release/raftctl

# What the comparison needs from Debian, installed when missing (as root).
need() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "missing: ${missing[*]} (apt-get install them, or ETCD=0)" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
if [ "$ETCD" = 1 ]; then
  need etcd=etcd-server etcdctl=etcd-client protoc=protobuf-compiler
  [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet --features etcd --bin raftctl --bin raftkv
else
  [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet --bin raftctl --bin raftkv
fi

WORK=$(mktemp -d)
OUT=${OUT:-$WORK/runs}
mkdir -p "$OUT"
EPIDS=()
TLOCAL=
cleanup() {
  kill -INT "$LOCAL" 2>/dev/null && wait "$LOCAL" 2>/dev/null || true
  [ -z "$TLOCAL" ] || { kill -INT "$TLOCAL" 2>/dev/null && wait "$TLOCAL" 2>/dev/null || true; }
  for p in "${EPIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK/data" "$WORK/tlsdata" "$WORK"/etcd*
}
trap cleanup EXIT

$CTL local --data-dir "$WORK/data" --base-port $BASE >"$WORK/local.out" 2>&1 &
LOCAL=$!
# The TLS cluster's certificates: the ones `raftctl local --tls` makes.
TLSARGS=(--cacert "$WORK/tlsdata/tls/ca.crt" --cert "$WORK/tlsdata/tls/client.crt"
  --key "$WORK/tlsdata/tls/client.key")
if [ "$TLS" = 1 ]; then
  $CTL local --tls --data-dir "$WORK/tlsdata" --base-port $TBASE >"$WORK/tlslocal.out" 2>&1 &
  TLOCAL=$!
fi
if [ "$ETCD" = 1 ]; then
  peers=""
  for i in 0 1 2; do peers+="${peers:+,}e$i=http://127.0.0.1:$((EBASE + 10 * i + 1))"; done
  for i in 0 1 2; do
    c=http://127.0.0.1:$((EBASE + 10 * i))
    p=http://127.0.0.1:$((EBASE + 10 * i + 1))
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$peers" --initial-cluster-state new \
      --initial-cluster-token raftkv-bench >"$WORK/etcd$i.log" 2>&1 &
    EPIDS+=($!)
  done
fi
ready() {
  $CTL --endpoints "$RAFTKV" status >/dev/null 2>&1 || return 1
  [ "$TLS" = 0 ] || $CTL --endpoints "$RAFTKV_TLS" "${TLSARGS[@]}" status >/dev/null 2>&1 || return 1
  [ "$ETCD" = 0 ] || ETCDCTL_API=3 etcdctl --endpoints "$ETCDS" endpoint health >/dev/null 2>&1
}
for _ in $(seq 300); do ready && break; sleep 0.2; done
if ! ready; then
  cat "$WORK"/*local.out "$WORK"/etcd*.log >&2 2>/dev/null || true
  echo "the clusters did not start" >&2
  exit 1
fi
EPIDLIST=$(IFS=,; echo "${EPIDS[*]}")

systems=(raftkv)
[ "$TLS" = 1 ] && systems+=(tls)
[ "$ETCD" = 1 ] && systems+=(etcd)
# The id of the member leading the raftkv cluster at ENDPOINTS (and TLS
# arguments), for the leader's CPU per request; "" for etcd.
leader_of() {
  "$CTL" "$@" status -o json 2>/dev/null |
    python3 -c 'import json,sys; print(next((n["id"] for n in json.load(sys.stdin) if n.get("role") == "leader"), ""))'
}
for rep in $(seq "$REPS"); do
  for spec in "set 1" "set 64" "get 64"; do
    set -- $spec
    for sys in "${systems[@]}"; do
      out="$OUT/$sys-$1-$2-$rep.json"
      if [ "$sys" = raftkv ]; then
        leader=$(leader_of --endpoints "$RAFTKV")
        $CTL --endpoints "$RAFTKV" bench "$1" --clients "$2" --duration "${SECS}s" \
          --data-dir "$WORK/data" -o json >"$out" 2>/dev/null
      elif [ "$sys" = tls ]; then
        leader=$(leader_of --endpoints "$RAFTKV_TLS" "${TLSARGS[@]}")
        $CTL --endpoints "$RAFTKV_TLS" "${TLSARGS[@]}" bench "$1" --clients "$2" \
          --duration "${SECS}s" --data-dir "$WORK/tlsdata" -o json >"$out" 2>/dev/null
      else
        leader=
        $CTL --endpoints "$ETCDS" bench "$1" --clients "$2" --duration "${SECS}s" \
          --target etcd --cpu-pids "$EPIDLIST" -o json >"$out" 2>/dev/null
      fi
      python3 - "$out" "$sys" "$rep" "$leader" <<'PY'
import json, sys
path, sys_, rep, leader = sys.argv[1:]
d = json.load(open(path))
# Which member led during the run, kept beside its figures.
d["leader"] = f"node {leader}" if leader else None
json.dump(d, open(path, "w"))
cpu = d["cpu"].get("total") or {}
lead = next((m["per_op"] for m in d["cpu"].get("members", [])
             if m["member"] == d["leader"] and m.get("per_op")), {})
print(f"run {rep}: {sys_:6} {d['workload']} x{d['clients']}: "
      f"{d['throughput']:.0f} req/s, p50 {d['latency_ms']['p50']} ms, "
      f"p99 {d['latency_ms']['p99']} ms, CPU {cpu.get('total_us', float('nan')):.1f} µs/req "
      f"(leader {lead.get('total_us', float('nan')):.1f}), {d['errors']} errors")
PY
    done
  done
done

echo "== medians over $REPS rounds of ${SECS}s ($(date -u +%F))"
python3 - "$OUT" "${systems[@]}" <<'PY'
import glob, json, os, statistics, sys
out, systems = sys.argv[1], sys.argv[2:]
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    sys_, wl, clients, _ = os.path.basename(path)[:-5].split("-")
    d = json.load(open(path))
    cpu = d["cpu"].get("total") or {}
    lead = next((m["per_op"] for m in d["cpu"].get("members", [])
                 if m["member"] == d.get("leader") and m.get("per_op")), {})
    runs.setdefault((wl, int(clients), sys_), []).append(
        (d["throughput"], d["latency_ms"]["p99"], cpu.get("total_us"), cpu.get("user_us"),
         cpu.get("system_us"), lead.get("total_us")))
def med(rows, i):
    v = [r[i] for r in rows if r[i] is not None]
    return statistics.median(v) if v else float("nan")
names = {"set": "SET", "get": "linearizable GET"}
labels = {"raftkv": "raftkv", "tls": "raftkv, TLS", "etcd": "etcd"}
print("| workload | system | req/s | p99 ms | server CPU µs/req (user + sys) | leader CPU µs/req |")
print("|---|---|---|---|---|---|")
for wl, c in (("set", 1), ("set", 64), ("get", 64)):
    for s in systems:
        rows = runs.get((wl, c, s), [])
        print(f"| {names[wl]}, {c} client{'s' if c > 1 else ''} | {labels[s]} | {med(rows, 0):,.0f} | {med(rows, 1):.2f} | "
              f"{med(rows, 2):.0f} ({med(rows, 3):.0f} + {med(rows, 4):.0f}) | {med(rows, 5):.0f} |")
    plain = runs.get((wl, c, "raftkv"), [])
    for s, what in (("tls", "TLS / plaintext"), ("etcd", "raftkv / etcd")):
        if s not in systems:
            continue
        other = runs.get((wl, c, s), [])
        top, bottom = (other, plain) if s == "tls" else (plain, other)
        ratios = " | ".join(f"{med(top, i) / med(bottom, i):.2f}×" for i in (0, 1, 2, 5))
        print(f"| | {what} | {ratios} |")
PY

if [ "$FAILOVERS" -gt 0 ]; then
  echo "== failover: $FAILOVERS leader SIGKILLs under 200 writes/s"
  $CTL --endpoints "$RAFTKV" bench failover --trials "$FAILOVERS" --signal kill \
    --data-dir "$WORK/data"
fi
echo "every run's JSON: $OUT"
