#!/usr/bin/env bash
# The live dashboard in a real browser: keel run --http over a FIFO fed in
# bursts, then headless Chromium loads http://127.0.0.1:PORT/, lets the page
# poll /api/series, and dumps the DOM: each of the four charts (memory per
# tag, cache hit ratio, events/s, queue depth) must hold polylines with data
# points, the memory chart one per busy tag plus RSS, the hit-ratio chart the
# rank cache's. A screenshot is taken too (kept with KEEP_SCREENSHOT=PATH).
. "$(dirname "$0")/lib/common.sh"
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "FAIL: needs chromium (scripts/deps.sh installs it)"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: needs curl"; exit 1; }

mkfifo "$dir/feed"
"$KEEL" run --products 2000 --dim 32 --cache rank=2MiB --input "$dir/feed" --output /dev/null \
  --http 127.0.0.1:0 --metrics-interval 0.2 --no-progress 2>"$dir/err" &
pid=$!
exec 3>"$dir/feed"
port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/err" | head -n 1 | sed 's/.*://')
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: keel did not say where it serves: $(cat "$dir/err")"; exit 1; }
# Bursts over ~2 s so the samples differ: ranking over a growing set of users.
for b in $(seq 0 9); do
  python3 -c "
import sys
for i in range(600): print('{\"type\":\"rank\",\"user\":\"%d\",\"k\":10}' % ((i * 7 + $b * 131) % (80 + 40 * $b)))
" >&3
  sleep 0.2
done
n=$(curl -fsS "http://127.0.0.1:$port/api/series" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["samples"]))')
[ "${n:-0}" -ge 5 ] && ok "$n samples published while the input came in bursts" || bad "only ${n:-0} samples published"

flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --window-size=1240,720)
timeout 90 "$browser" "${flags[@]}" --user-data-dir="$dir/profile1" --virtual-time-budget=4000 \
  --dump-dom "http://127.0.0.1:$port/" >"$dir/dom.html" 2>"$dir/chromium.log"
timeout 90 "$browser" "${flags[@]}" --user-data-dir="$dir/profile2" --virtual-time-budget=4000 \
  --screenshot="$dir/dashboard.png" "http://127.0.0.1:$port/" >>"$dir/chromium.log" 2>&1
exec 3>&-
wait "$pid"; rc=$?; pid=""
[ $rc = 0 ] && ok "keel exit 0" || bad "keel exit $rc"

python3 - "$dir/dom.html" <<'PY' && ok "every chart holds data points" || bad "charts without data (see above)"
import re, sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.svg = None; self.charts = {}; self.leaks = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and a.get("id", "").startswith("chart-"):
            self.svg = a["id"]; self.charts[self.svg] = []
        elif tag == "polyline" and self.svg:
            pts = [p for p in a.get("points", "").split() if "," in p]
            self.charts[self.svg].append((a.get("data-series"), len(pts), int(a.get("data-n", 0))))
    def handle_endtag(self, tag):
        if tag == "svg": self.svg = None
p = P(); p.feed(open(sys.argv[1]).read())
ok = True
for cid in ["chart-mem", "chart-hit", "chart-rate", "chart-queue"]:
    lines = p.charts.get(cid, [])
    with_data = [l for l in lines if l[1] >= 3 and l[1] == l[2]]
    print(f"  {cid}: {len(lines)} series, " + ", ".join(f"{n}={k} points" for n, k, _ in lines))
    if not with_data: ok = False
names = {n for n, _, _ in p.charts.get("chart-mem", [])}
if not {"rss", "catalog", "cache.rank"} <= names: print("  memory chart lacks rss/catalog/cache.rank:", names); ok = False
if "rank" not in {n for n, _, _ in p.charts.get("chart-hit", [])}: print("  no rank hit-ratio series"); ok = False
sys.exit(0 if ok else 1)
PY
if [ -s "$dir/dashboard.png" ] && [ "$(head -c 8 "$dir/dashboard.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
  ok "screenshot taken ($(stat -c %s "$dir/dashboard.png") bytes PNG)"
  [ -n "${KEEP_SCREENSHOT:-}" ] && cp "$dir/dashboard.png" "$KEEP_SCREENSHOT"
else
  bad "no screenshot: $(tail -n 3 "$dir/chromium.log")"
fi
[ $fails = 0 ] && echo "dashboard_chromium: all checks passed" || echo "dashboard_chromium: $fails failed"
exit $((fails > 0))
