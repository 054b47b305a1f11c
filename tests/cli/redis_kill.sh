#!/usr/bin/env bash
# At least once across a crash: 50k events in one stream, 3 keel worker
# processes in one consumer group, one killed with SIGKILL mid-run. The two
# survivors claim its pending entries (--claim-idle-ms) and finish. Every
# input id appears in the outputs at least once, none is missing, and every
# duplicate is explained by the survivors' claimed redeliveries.
set -u
. "$(dirname "$0")/lib/redis_lib.sh"
start_redis
R="redis://127.0.0.1:$port"
N=50000
python3 -c "
import random
r = random.Random(11)
for i in range($N):
    u = r.randrange(3000)
    if r.random() < 0.5: print('{\"type\":\"user\",\"user\":\"%d\"}' % u)
    else: print('{\"type\":\"score\",\"user\":\"%d\",\"product\":\"%d\"}' % (u, r.randrange(2000)))
" >ev.ndjson
"$KEEL" push --quiet --input ev.ndjson --output "$R?stream=ev" || bad "push failed"
redis-cli -p "$port" xgroup create ev g 0 >/dev/null

worker() { # NAME [timeout]: exec, so that $! is the keel process itself
  exec ${2:+timeout $2} "$KEEL" run --products 2000 --stages user,score --quiet --claim-idle-ms 1000 --idle-exit-ms 2000 \
    --input "$R?stream=ev&group=g&consumer=$1" --output "$1.out" --dead-letter "$1.dl" --summary-json "$1.json" \
    2>"$1.err"
}
t0=$(date +%s%N)
worker victim &
pv=$! # keel itself: SIGKILL must hit the worker, not a wrapper
# Let the victim get going before the others, so that it holds work when it dies.
for _ in $(seq 2000); do
  [ -s victim.out ] && [ "$(wc -l <victim.out)" -ge 2000 ] && break
  sleep 0.01
done
worker a 120 &
pa=$!
worker b 120 &
pb=$!
for _ in $(seq 2000); do # all three at work, then the victim dies
  [ -s a.out ] && [ -s b.out ] && break
  sleep 0.005
done
kill -9 $pv
wait $pv 2>/dev/null
pend=$(redis-cli -p "$port" xpending ev g - + 100000 victim | grep -cE '^[0-9]+-[0-9]+$')
echo "victim killed holding $pend unacknowledged entries; $(wc -l <victim.out) lines in its output"
wait $pa; ra=$?
wait $pb; rb=$?
dt=$((($(date +%s%N) - t0) / 1000000))
[ $ra -eq 0 ] && [ $rb -eq 0 ] && ok "both survivors finished (exit 0) in $dt ms" || bad "survivors exited $ra $rb: $(cat a.err b.err)"
[ "$pend" -gt 0 ] && ok "the victim died with entries pending ($pend)" || bad "the victim held nothing when killed"
redis-cli -p "$port" xrange ev - + | grep -E '^[0-9]+-[0-9]+$' | sort >in.ids
# A line cut by the kill is not a result: keep whole JSON lines only. Each
# file is read on its own: joined, the victim's cut last line would swallow
# the next file's first line, and with it an id that is there.
python3 -c "
import json, sys
for f in sys.argv[1:]:
    for l in open(f):
        try: print(json.loads(l)['stream_id'])
        except Exception: pass
" victim.out a.out b.out | sort >out.ids
sort -u out.ids >uniq.ids
missing=$(comm -23 in.ids uniq.ids | wc -l)
extra=$(comm -13 in.ids uniq.ids | wc -l)
dups=$(($(wc -l <out.ids) - $(wc -l <uniq.ids)))
claimed=$(($(json a.json "d['stream']['claimed']") + $(json b.json "d['stream']['claimed']")))
redel=$(($(json a.json "d['stream']['redeliveries']") + $(json b.json "d['stream']['redeliveries']")))
echo "inputs $(wc -l <in.ids), distinct output ids $(wc -l <uniq.ids), duplicates $dups, survivors' claimed $claimed, redeliveries $redel"
[ "$(wc -l <in.ids)" -eq $N ] && ok "$N entries in the stream" || bad "stream has $(wc -l <in.ids)"
[ "$missing" -eq 0 ] && [ "$extra" -eq 0 ] && ok "every input id is in the outputs, none missing, none foreign" ||
  bad "$missing missing, $extra foreign ids"
[ "$dups" -le "$redel" ] && [ "$redel" -le "$claimed" ] && ok "every duplicate is explained by a counted redelivery ($dups <= $redel)" ||
  bad "$dups duplicates but $redel redeliveries ($claimed claimed)"
[ "$(redis-cli -p "$port" xpending ev g | head -1)" -eq 0 ] && ok "nothing left pending in the group" ||
  bad "$(redis-cli -p "$port" xpending ev g | head -1) entries still pending"
[ $fails -eq 0 ] && echo "all redis_kill checks passed" || echo "$fails redis_kill check(s) failed"
exit $fails
