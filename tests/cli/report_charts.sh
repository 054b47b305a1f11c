#!/usr/bin/env bash
# keel run --metrics-log writes one JSON line per interval with the same
# figures as /metrics (the last line equals the run's summary); keel report
# turns it into a self-contained HTML page and SVG charts that parse as XML
# and HTML and hold every series (memory per tag and RSS, hit ratio per
# cache, events/s, queue depth; the memory budget) with one point per sample; bad inputs are
# usage errors.
. "$(dirname "$0")/lib/common.sh"

python3 - >"$dir/in" <<'PY'
import random
r = random.Random(3)
for i in range(12000):
    u = int(r.paretovariate(1.2)) % 3000
    if i % 4: print('{"type":"rank","user":"%d","k":8}' % u)
    else: print('{"type":"score","user":"%d","product":"%d"}' % (u, r.randrange(100)))
PY
# Fed through a FIFO in six bursts, so the run spans several sampling intervals.
mkfifo "$dir/feed"
"$KEEL" run --products 3000 --dim 32 --cache rank=1MiB --cache score=256KiB --memory-budget 256MiB \
  --input "$dir/feed" --output /dev/null \
  --metrics-log "$dir/m.jsonl" --metrics-interval 0.05 --summary-json "$dir/s.json" --no-progress 2>"$dir/err" &
pid=$!
exec 3>"$dir/feed"
for k in 0 1 2 3 4 5; do sed -n "$((k * 2000 + 1)),$((k * 2000 + 2000))p" "$dir/in" >&3; sleep 0.1; done
exec 3>&-
wait $pid; rc=$?
[ $rc = 0 ] && ok "run with --metrics-log exit 0" || bad "run exit $rc: $(tail -n 2 "$dir/err")"
python3 - "$dir/m.jsonl" "$dir/s.json" <<'PY' && ok "metrics log: one JSON object per line, monotonic, last line = summary" || bad "metrics log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
s = json.load(open(sys.argv[2]))
last = lines[-1]
ok = len(lines) >= 3
ts = [l["t"] for l in lines]; ins = [l["events_in"] for l in lines]
ok &= ts == sorted(ts) and ins == sorted(ins)
ok &= last["events_in"] == s["events_in"] == 12000 and last["events_out"] == s["events_out"]
ok &= last["caches"]["rank"]["hits"] == s["stages"]["rank"]["cache"]["hits"]
ok &= last["stages"]["rank"]["calls"] == s["stages"]["rank"]["calls"]
ok &= all(k in last for k in ("mem", "rss_bytes", "queue", "events_per_s", "leaks", "budget_bytes"))
ok &= last["mem"]["catalog"]["current"] > 0
ok &= last["budget_bytes"] == 256 << 20
print(f"  {len(lines)} lines over {ts[-1]:.2f} s; last: {last['events_in']} in, rank hits {last['caches']['rank']['hits']}")
sys.exit(0 if ok else 1)
PY
n=$(wc -l <"$dir/m.jsonl")

"$KEEL" report --metrics-log "$dir/m.jsonl" --output "$dir/report.html" --svg "$dir/svg" 2>"$dir/rerr"
rc=$?
[ $rc = 0 ] && ok "keel report exit 0" || bad "keel report exit $rc: $(cat "$dir/rerr")"
"$KEEL" report --metrics-log "$dir/m.jsonl" --svg "$dir/one.svg" --chart hit-ratio 2>>"$dir/rerr" &&
  ok "--svg FILE --chart hit-ratio" || bad "--svg FILE: $(cat "$dir/rerr")"
python3 - "$dir" "$n" <<'PY' && ok "HTML and SVG parse (xml.etree, html.parser) and hold every series, $n points each" || bad "report content"
import sys, xml.etree.ElementTree as ET
from html.parser import HTMLParser
d, n = sys.argv[1], int(sys.argv[2])
NS = "{http://www.w3.org/2000/svg}"
def series(root):
    return {p.get("data-series"): (int(p.get("data-n")), len(p.get("points").split())) for p in root.iter(NS + "polyline")}
ok = True
html = open(f"{d}/report.html").read()
class P(HTMLParser):
    def __init__(self): super().__init__(); self.stack = []; self.bad = 0; self.svgs = 0
    def handle_starttag(self, t, a):
        if t == "svg": self.svgs += 1
P_ = P(); P_.feed(html); P_.close()
root = ET.fromstring(html)                        # well-formed XML too
page = series(root)
if P_.svgs != 4: print("  html: svgs", P_.svgs); ok = False
if "<script" in html or "http://" in html.replace("http://www.w3.org/", ""): print("  html is not self-contained"); ok = False
want = {"memory.svg": {"rss", "budget", "catalog", "cache.rank", "cache.score"}, "hit_ratio.svg": {"rank", "score"},
        "events_per_s.svg": {"events/s"}, "queue_depth.svg": {"work", "done"}}
for f, names in want.items():
    s = series(ET.parse(f"{d}/svg/{f}").getroot())
    miss = names - set(s)
    short = {k: v for k, v in s.items() if v != (n, n)}
    print(f"  {f}: {len(s)} series" + (f", missing {miss}" if miss else "") + (f", short {short}" if short else ""))
    if miss or short or not names <= set(page): ok = False
if set(series(ET.parse(f"{d}/one.svg").getroot())) != {"rank", "score"}: print("  one.svg is not the hit-ratio chart"); ok = False
sys.exit(0 if ok else 1)
PY

"$KEEL" report --metrics-log "$dir/nope.jsonl" --output "$dir/x.html" 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "missing log: exit 2" || bad "missing log: exit $rc"
echo 'not json' >"$dir/bad.jsonl"
"$KEEL" report --metrics-log "$dir/bad.jsonl" --output "$dir/x.html" 2>"$dir/e"; rc=$?
[ $rc = 2 ] && grep -q 'bad.jsonl:1' "$dir/e" && ok "malformed line: exit 2 naming the line" || bad "malformed line: exit $rc $(cat "$dir/e")"
{ cat "$dir/m.jsonl"; head -c 80 "$dir/m.jsonl"; } >"$dir/partial.jsonl" # a log still being written
"$KEEL" report --metrics-log "$dir/partial.jsonl" --output "$dir/p.html" 2>"$dir/e"; rc=$?
[ $rc = 0 ] && grep -q 'unfinished last line' "$dir/e" && ok "an unfinished last line is left out" || bad "partial log: exit $rc $(cat "$dir/e")"
"$KEEL" report --output "$dir/x.html" 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "no --metrics-log: exit 2" || bad "no --metrics-log: exit $rc"
echo '{"type":"user","user":"1"}' >"$dir/one"
"$KEEL" run --products 100 --dim 4 --input "$dir/one" --output /dev/null --metrics-log /dev/full --quiet 2>"$dir/e"; rc=$?
[ $rc = 1 ] && grep -q 'cannot write' "$dir/e" && ok "an unwritable metrics log: exit 1" || bad "--metrics-log /dev/full: exit $rc"
"$KEEL" run --products 100 --dim 4 --input "$dir/one" --output /dev/null --metrics-log "$dir/no/such.jsonl" 2>/dev/null; rc=$?
[ $rc = 1 ] && ok "a metrics log that cannot be created: exit 1" || bad "uncreatable metrics log: exit $rc"
"$KEEL" run --input "$dir/one" --metrics-interval 0 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "--metrics-interval 0: exit 2" || bad "--metrics-interval 0: exit $rc"
# The leak banner names every leaking tag, also one whose name is inside another's.
s='"mem":{},"rss_bytes":1,"caches":{},"queue":{"work":0,"done":0},"events_per_s":0'
printf '%s\n' "{\"t\":1,$s,\"leaks\":[{\"tag\":\"cache.rank\",\"bytes_per_s\":10}]}" \
  "{\"t\":2,$s,\"leaks\":[{\"tag\":\"cache.rank\",\"bytes_per_s\":10},{\"tag\":\"rank\",\"bytes_per_s\":99}]}" >"$dir/lk.jsonl"
"$KEEL" report --metrics-log "$dir/lk.jsonl" --output "$dir/lk.html" 2>"$dir/e"; rc=$?
[ $rc = 0 ] && grep -q 'Leak suspected: cache.rank (10 B/s), rank (99 B/s)' "$dir/lk.html" &&
  ok "the leak banner names rank beside cache.rank" || bad "leak banner: exit $rc $(grep -o 'Leak suspected: [^<]*' "$dir/lk.html")"
# A crafted log: a tag name of 120 bytes (one series, not one per sample), a
# cache name with a control character (the page stays XML), a stage with no
# figures (cells show "-", not "nan").
long=$(printf 'm%.0s' $(seq 120))
for t in 1 2 3; do
  printf '{"t":%d,"mem":{"%s":{"current":%d}},"rss_bytes":1,"caches":{"a\\u0001b":{"hit_ratio":0.5}},"queue":{"work":0,"done":0},"events_per_s":0,"stages":{"s":{}}}\n' \
    "$t" "$long" "$((t * 1048576))"
done >"$dir/odd.jsonl"
"$KEEL" report --metrics-log "$dir/odd.jsonl" --output "$dir/odd.html" --svg "$dir/odd" 2>"$dir/e"; rc=$?
python3 - "$dir" "$long" <<'PY' && ok "long names, control characters, missing figures: one series each, XML, no nan" || bad "odd log: exit $rc $(cat "$dir/e")"
import sys, xml.etree.ElementTree as ET
d, long = sys.argv[1], sys.argv[2]
NS = "{http://www.w3.org/2000/svg}"
html = open(f"{d}/odd.html", encoding="utf-8").read()
root = ET.fromstring(html)
mem = [p.get("data-series") for p in ET.parse(f"{d}/odd/memory.svg").getroot().iter(NS + "polyline")]
hit = [p.get("data-series") for p in ET.parse(f"{d}/odd/hit_ratio.svg").getroot().iter(NS + "polyline")]
print("  memory series:", [m[:12] + "..." for m in mem], "hit series:", hit)
ok = mem.count(long) == 1 and len(mem) == 2 and hit == ["a\ufffdb"] and "nan" not in html
sys.exit(0 if ok else 1)
PY
# Bad input said before anything is written, naming what is wrong.
echo '{"t":"x"}' >"$dir/tx.jsonl"
for args in "--metrics-log $dir --output $dir/x.html|$dir: cannot read: Is a directory" \
  "--metrics-log $dir/tx.jsonl --output $dir/x.html|tx.jsonl:1: not a metrics line (\"t\" is not a number)" \
  "--metrics-log $dir/m.jsonl --output $dir/x.html --chart bogus|--chart wants memory, hit-ratio, rate or queue" \
  "--metrics-log $dir/m.jsonl --output $dir/x.html --chart rate|--chart picks the one chart of --svg FILE.svg"; do
  # shellcheck disable=SC2086
  "$KEEL" report ${args%%|*} >/dev/null 2>"$dir/e"; rc=$?
  [ $rc = 2 ] && grep -qF -- "${args#*|}" "$dir/e" && [ ! -e "$dir/x.html" ] && ok "report ${args%%|*}: exit 2" ||
    bad "report ${args%%|*}: exit $rc $(cat "$dir/e")"
done
[ $fails = 0 ] && echo "report_charts: all checks passed" || echo "report_charts: $fails failed"
exit $((fails > 0))
