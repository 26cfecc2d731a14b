#!/usr/bin/env bash
# Sets up, builds and runs the main job: a broker with three echo workers on loopback, requests
# showing which worker served each, a worker killed with SIGKILL, and the broker's status.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null
bin=build/release/apps/scale0/scale0
log=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$log"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. A broker starts (ports chosen by the system, loopback only)"
"$bin" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' --heartbeat 'tcp://127.0.0.1:*' \
  --heartbeat-interval 250 --liveness 3 >"$log/broker.out" 2>"$log/broker.err" &
pids+=($!)
for _ in $(seq 50); do grep -q '^ready' "$log/broker.out" 2>/dev/null && break; sleep 0.1; done
read -r _ fe be hb <"$log/broker.out"
fe=${fe#frontend=}; be=${be#backend=}
echo "   clients: $fe   workers: $be   ${hb}"

say "2. Three echo workers join (no configuration: they just connect)"
for name in alice bob carol; do
  "$bin" worker --broker "$be" --service echo --echo --idempotent --delay 20 --name "$name" 2>"$log/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
  echo "   worker $name (pid $!) serves 'echo'"
done
sleep 0.5

send() {
  local n=$1 who
  for i in $(seq "$n"); do
    who=$("$bin" request --broker "$fe" --verbose echo "request $i" 2>&1 >/dev/null | cut -d' ' -f2-)
    printf '   request %-2s -> served by %s\n' "$i" "$who"
  done
}

say "3. Nine requests: each goes to the worker that has waited longest"
send 9

say "4. carol is killed with SIGKILL; requests keep being served by the others"
{ kill -9 "$pid_carol"; wait "$pid_carol"; } 2>/dev/null || true
send 6

say "5. The broker's view (scale0.status)"
"$bin" request --broker "$fe" scale0.status >"$log/status.json"
/usr/bin/python3 - "$log/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for svc in s["services"]:
    print("   service {name}: {workers} workers, {idle_slots} idle slots, {requests} requests, "
          "{replies} replies, errors {errors}".format(**svc))
for w in s["workers"]:
    print("   worker {id}: {services}, concurrency {concurrency}, last heard {last_seen_ms:.0f} ms ago".format(**w))
c = s["counters"]
print("   workers joined {workers_joined}, left {workers_left}, expired {workers_expired}; "
      "redispatched {redispatched}".format(**c))
PY

say "6. Shutting down: workers stop gracefully, then the broker"
for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
sleep 0.3
kill "${pids[0]}"
wait 2>/dev/null || true
pids=()
echo "   done"
