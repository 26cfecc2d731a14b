#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, in under a minute: a broker, workers that join on their own (two native echo
# workers and an unmodified program run per request), traffic showing which worker served each
# request, a worker joining and taking traffic, a worker killed with SIGKILL while requests are in
# flight (none fails: the service is idempotent), HTTP through the gateway to an unmodified HTTP app
# behind a sidecar worker, the broker's status, and a clean shutdown.
#
# With SCALE0_BIN set, that binary is used and nothing is installed or built (CI does this).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${SCALE0_BIN:-} ]]; then
  scripts/setup.sh >/dev/null
  cmake --preset release >/dev/null
  cmake --build --preset release >/dev/null
  SCALE0_BIN=build/release/apps/scale0/scale0
fi
bin=$SCALE0_BIN
log=$(mktemp -d)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$log"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
fail() { echo "demo: $*" >&2; exit 1; }

say "1. A broker starts: zero configuration, loopback only (ports chosen by the system here)"
"$bin" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' --heartbeat 'tcp://127.0.0.1:*' \
  --metrics-listen 127.0.0.1:0 --peer-listen 'tcp://127.0.0.1:*' --heartbeat-interval 250 --liveness 3 >"$log/broker.out" 2>"$log/broker.err" &
pid[broker]=$!
for _ in $(seq 100); do grep -q '^ready' "$log/broker.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$log/broker.out" || fail "the broker did not start: $(cat "$log/broker.err")"
read -r _ fe be hb _peer metrics <"$log/broker.out"  # ready frontend= backend= heartbeat= peer= metrics=
fe=${fe#frontend=}; be=${be#backend=}; metrics=${metrics#metrics=}
echo "   clients connect to $fe, workers to $be; metrics on http://$metrics/metrics"

start_worker() {  # name, then worker flags
  local name=$1; shift
  "$bin" worker --broker "$be" --service echo --idempotent --name "$name" "$@" 2>"$log/$name.err" &
  pid[$name]=$!
}

say "2. Three workers join; nobody configures a pool"
start_worker alice --echo --delay 40
start_worker bob --echo --delay 40
start_worker carol --exec scripts/demo/echo-upper.sh --concurrency 2
echo "   alice, bob: native echo workers; carol runs scripts/demo/echo-upper.sh per request (stdin -> stdout)"
for _ in $(seq 100); do
  [[ $("$bin" request --broker "$fe" scale0.status 2>/dev/null | grep -o '"protocol"' | wc -l) -ge 3 ]] && break
  sleep 0.05
done

send() {  # count, label: sequential requests, printing who served each
  local i who body
  for i in $(seq "$1"); do
    body=$("$bin" request --broker "$fe" --verbose echo "$2 $i" 2>"$log/who") || fail "request $i failed: $(cat "$log/who")"
    who=$(cut -d' ' -f2- <"$log/who")
    printf '   %-12s -> %-6s replied %s\n' "$2 $i" "$who" "$body"
  done
}

say "3. Requests flow; each goes to the worker that has waited longest"
send 6 "request"

say "4. A fourth worker, dave, joins and takes traffic at once"
start_worker dave --echo --delay 40
sleep 0.4
send 8 "request"

say "5. Load from 4 clients; bob is killed with SIGKILL while it holds requests"
for c in 1 2 3 4; do
  (
    ok=0 failed=0
    for i in $(seq 25); do
      if "$bin" request --broker "$fe" --timeout 5000 echo "client $c request $i" >/dev/null 2>>"$log/load-errors"; then
        ok=$((ok + 1))
      else
        failed=$((failed + 1))
      fi
    done
    echo "$ok $failed" >"$log/load-$c"
  ) &
  pid[load$c]=$!
done
sleep 0.5
kill -9 "${pid[bob]}"
wait "${pid[bob]}" 2>/dev/null || true
unset 'pid[bob]'
echo "   bob killed"
ok=0 failed=0
for c in 1 2 3 4; do
  wait "${pid[load$c]}" || true
  unset "pid[load$c]"
  read -r o f <"$log/load-$c"
  ok=$((ok + o)) failed=$((failed + f))
done
echo "   100 requests from 4 clients: $ok succeeded, $failed failed"
[[ $failed -eq 0 ]] || fail "requests failed: $(cat "$log/load-errors")"

say "6. HTTP: a gateway in front, an unmodified HTTP app behind a sidecar worker"
app_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory docs "$app_port" >"$log/app.out" 2>&1 &
pid[app]=$!
"$bin" worker --broker "$be" --service docs.local --http "http://127.0.0.1:$app_port" --concurrency 4 \
  --name sidecar 2>"$log/sidecar.err" &
pid[sidecar]=$!
"$bin" gateway --listen 127.0.0.1:0 --broker "$fe" --metrics-listen "" >"$log/gateway.out" 2>"$log/gateway.err" &
pid[gateway]=$!
for _ in $(seq 100); do grep -q '^ready' "$log/gateway.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$log/gateway.out" || fail "the gateway did not start: $(cat "$log/gateway.err")"
read -r _ listen _ <"$log/gateway.out"
listen=${listen#listen=}
echo "   python3 -m http.server serves docs/ on :$app_port; the sidecar registers service docs.local;"
echo "   the gateway on http://$listen routes by Host"
for _ in $(seq 100); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: docs.local' "http://$listen/http.md") == 200 ]] && break
  sleep 0.1
done
curl -s -D "$log/headers" -o "$log/body" -H 'Host: docs.local' "http://$listen/http.md" ||
  fail "curl through the gateway failed"
head -1 "$log/body" | sed 's/^/   body:   /'
head -1 "$log/headers" | sed 's/^/   status: /'
grep -i '^x-request-id' "$log/headers" | sed 's/^/   /'
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nobody.local' "http://$listen/")
echo "   Host: nobody.local (no worker) -> $code"
[[ $code == 503 ]] || fail "expected 503 for a service without workers, got $code"
for name in gateway sidecar app; do kill -TERM "${pid[$name]}"; wait "${pid[$name]}" 2>/dev/null || true; unset "pid[$name]"; done

say "7. What the broker saw (scale0 status)"
"$bin" status --broker "$fe" | sed 's/^/   /'

say "8. Shutdown: workers stop gracefully, then the broker drains and exits"
for name in alice carol dave; do kill -TERM "${pid[$name]}"; done
for name in alice carol dave; do
  wait "${pid[$name]}" || fail "worker $name did not exit cleanly"
  unset "pid[$name]"
done
kill -TERM "${pid[broker]}"
wait "${pid[broker]}" || fail "the broker did not exit cleanly"
unset 'pid[broker]'
echo "   all stopped; the broker's log:"
sed 's/^/   | /' "$log/broker.err" | grep -E 'started|joined|left|stopped|draining' | cut -c1-140
say "Done."
