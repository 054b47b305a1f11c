#!/usr/bin/env bash
# keel run --http during a run over a FIFO held open: /metrics is live
# Prometheus text that promtool accepts; once every event is through, its
# counters equal the run's JSON summary (events in/out/rejected, stage calls
# and errors, cache hits/misses, the latency histograms' counts); /healthz
# answers, an unknown path is 404, the dashboard page is served; idle
# connections from another address do not shut a scrape out; a bad
# address is a usage error (exit 2) and a busy port a runtime one (exit 1).
. "$(dirname "$0")/lib/common.sh"
command -v curl >/dev/null || { echo "FAIL: needs curl (scripts/deps.sh installs it)"; exit 1; }

# 3000 events: ranks and scores over few users (cache hits), and 7 bad lines.
python3 - >"$dir/in" <<'PY'
import random
r = random.Random(7)
for i in range(3000):
    if i % 431 == 5: print("not json"); continue
    u = r.randrange(60)
    if i % 3: print('{"type":"rank","user":"%d","k":5}' % u)
    else: print('{"type":"score","user":"%d","product":"%d"}' % (u, r.randrange(40)))
PY
mkfifo "$dir/feed"
"$KEEL" run --products 500 --dim 16 --workers 2 --cache rank=4MiB --cache score=1MiB --input "$dir/feed" \
  --output "$dir/out" --dead-letter "$dir/dl" --summary-json "$dir/summary.json" --http 127.0.0.1:0 \
  --no-progress 2>"$dir/err" &
pid=$!
exec 3>"$dir/feed"
cat "$dir/in" >&3
port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/err" | head -n 1 | sed 's/.*://')
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { bad "no 'dashboard on http://...' line: $(cat "$dir/err")"; exit 1; }
ok "serving on 127.0.0.1:$port"
# Wait (bounded) until every written line has come out, while keel waits on the open FIFO.
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/metrics" >"$dir/m" 2>/dev/null || true
  out=$(awk '/^keel_events_out_total /{o=$2} /^keel_events_rejected_total /{r=$2} END{print o+r}' "$dir/m")
  [ "$out" = 3000 ] && break
  sleep 0.1
done
[ "$out" = 3000 ] && ok "scraped during the run: every event through" || bad "scrapes never saw 3000 events done (last: $out)"
grep -q '^keel_running 1$' "$dir/m" && ok "keel_running 1 while the run waits on its input" || bad "keel_running is not 1 during the run"
if command -v promtool >/dev/null; then
  promtool check metrics <"$dir/m" >"$dir/pc" 2>&1 && ok "promtool check metrics accepts it" ||
    bad "promtool: $(head -n 3 "$dir/pc")"
else
  bad "promtool is missing: run scripts/deps.sh (Debian package prometheus)"
fi
code() { curl -s -o "$dir/body" -w '%{http_code}' "http://127.0.0.1:$port$1"; }
[ "$(code /healthz)" = 200 ] && grep -q ok "$dir/body" && ok "/healthz 200" || bad "/healthz"
[ "$(code /nope)" = 404 ] && ok "unknown path 404" || bad "unknown path not 404"
[ "$(code /)" = 200 ] && grep -q '<svg' "$dir/body" && ok "/ serves the dashboard" || bad "/ has no dashboard"
[ "$(code /api/series)" = 200 ] && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert "samples" in j and "next" in j' "$dir/body" &&
  ok "/api/series is JSON with samples" || bad "/api/series: $(head -c 200 "$dir/body")"
# 80 connections from another loopback address that send nothing (more
# than the server takes at once): a scrape from 127.0.0.1 still gets in.
python3 - "$port" "$dir/idle.ready" <<'PY' &
import socket, sys, time
held = []
for _ in range(80):
    c = socket.socket()
    c.bind(("127.0.0.2", 0))
    c.settimeout(2)
    try:
        c.connect(("127.0.0.1", int(sys.argv[1])))
        held.append(c)
    except OSError:
        pass
open(sys.argv[2], "w").write(str(len(held)))
time.sleep(6)
PY
idle=$!
for _ in $(seq 1 100); do [ -s "$dir/idle.ready" ] && break; sleep 0.1; done
if curl -fsS --max-time 3 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
  ok "scrape answered beside $(cat "$dir/idle.ready") idle connections from another address"
else bad "scrape shut out by $(cat "$dir/idle.ready" 2>/dev/null) idle connections from another address"; fi
kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null
exec 3>&-
wait "$pid"; rc=$?; pid=""
[ $rc = 0 ] && ok "exit 0 after the FIFO closed" || bad "exit $rc: $(tail -n 3 "$dir/err")"

python3 - "$dir/m" "$dir/summary.json" <<'PY' && ok "scraped counters equal the summary" || bad "scraped counters differ from the summary"
import json, re, sys
vals = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip(): continue
    name, v = line.rsplit(" ", 1)
    vals[name] = float(v)
s = json.load(open(sys.argv[2]))
want = {"keel_events_in_total": s["events_in"], "keel_events_out_total": s["events_out"],
        "keel_events_rejected_total": s["rejected"]}
for st, x in s["stages"].items():
    want[f'keel_stage_calls_total{{stage="{st}"}}'] = x["calls"]
    want[f'keel_stage_errors_total{{stage="{st}"}}'] = x["errors"]
    want[f'keel_stage_latency_seconds_count{{stage="{st}"}}'] = x["calls"]
    want[f'keel_stage_latency_seconds_bucket{{stage="{st}",le="+Inf"}}'] = x["calls"]
    if "cache" in x:
        want[f'keel_cache_hits_total{{cache="{st}"}}'] = x["cache"]["hits"]
        want[f'keel_cache_misses_total{{cache="{st}"}}'] = x["cache"]["misses"]
        want[f'keel_cache_entries{{cache="{st}"}}'] = x["cache"]["entries"]
ok = True
for k, v in want.items():
    if vals.get(k) != v:
        print(f"  {k}: scraped {vals.get(k)}, summary {v}"); ok = False
if s["events_in"] != 3000 or s["rejected"] != 7 or s["stages"]["rank"]["cache"]["hits"] == 0:
    print("  unexpected summary", s["events_in"], s["rejected"]); ok = False
for k in ['keel_memory_bytes{tag="catalog"}', "keel_rss_bytes", 'keel_queue_depth{queue="work"}',
          "keel_queue_capacity", 'keel_cache_hit_ratio{cache="rank"}', "keel_leak_detector_enabled"]:
    if k not in vals: print("  missing", k); ok = False
if not vals.get('keel_memory_bytes{tag="catalog"}', 0) > 0: ok = False
print(f"  {len(want)} series compared; e.g. rank calls {s['stages']['rank']['calls']}, hits {s['stages']['rank']['cache']['hits']}")
sys.exit(0 if ok else 1)
PY

"$KEEL" run --input /dev/null --http 'nonsense' >/dev/null 2>"$dir/e1"; rc=$?
[ $rc = 2 ] && ok "bad --http address: exit 2 ($(head -n 1 "$dir/e1"))" || bad "bad --http address: exit $rc"
python3 -c 'import socket,time,sys; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(10)' >"$dir/busy" &
holder=$!
for _ in $(seq 1 50); do [ -s "$dir/busy" ] && break; sleep 0.1; done
"$KEEL" run --input /dev/null --http "127.0.0.1:$(cat "$dir/busy")" >/dev/null 2>"$dir/e2"; rc=$?
kill "$holder" 2>/dev/null
[ $rc = 1 ] && ok "port in use: exit 1 ($(head -n 1 "$dir/e2"))" || bad "port in use: exit $rc"
[ $fails = 0 ] && echo "metrics_scrape: all checks passed" || echo "metrics_scrape: $fails failed"
exit $((fails > 0))
