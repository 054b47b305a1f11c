#!/usr/bin/env bash
# Redis as a shared L2 behind memoized stages: a second process running the
# same events gets L2 hits for >= 90 % of its L1 misses and the same output;
# two processes missing the same keys at the same moment compute each key
# once (the slow_square plugin stage; computes = L2 misses, counted in both
# summaries); Redis stopped mid-run: the run completes on L1 alone with a
# warning; Redis unreachable at start: exit 2 with a clear message.
set -u
. "$(dirname "$0")/lib/redis_lib.sh"
PLUGIN=${KEEL_BUILD:-}/tests/libtest_plugin_slow.so
start_redis

python3 -c "
import random
r = random.Random(7)
for i in range(20000):
    u = r.randrange(400)
    if r.random() < 0.5: print('{\"type\":\"user\",\"user\":\"%d\"}' % u)
    else: print('{\"type\":\"score\",\"user\":\"%d\",\"product\":\"%d\"}' % (u, r.randrange(300)))
" >ev.ndjson
common=(--products 2000 --stages user,score --cache user=16MiB --cache score=16MiB --workers 2 --quiet)
"$KEEL" run "${common[@]}" --l2 "redis://127.0.0.1:$port" --input ev.ndjson --output o1.ndjson --summary-json s1.json
rc1=$?
"$KEEL" run "${common[@]}" --l2 "redis://127.0.0.1:$port" --l2-ttl 10m --input ev.ndjson --output o2.ndjson --summary-json s2.json
rc2=$?
[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && ok "two runs with --l2 exit 0" || bad "runs exited $rc1 $rc2"
# An L2 no cache uses is said (it connected and did nothing, 0 calls); not
# under --no-cache, which asks for that, nor when a cache uses it.
"$KEEL" run --products 2000 --stages user --quiet --l2 "redis://127.0.0.1:$port" --input ev.ndjson --output nc.out 2>nc1.err
"$KEEL" run --products 2000 --stages user --quiet --cache user=1MiB --set cache.user.l2=off --l2 "redis://127.0.0.1:$port" \
  --input ev.ndjson --output nc.out 2>nc2.err
"$KEEL" run --products 2000 --stages user --quiet --no-cache --l2 "redis://127.0.0.1:$port" --input ev.ndjson \
  --output nc.out 2>nc3.err
"$KEEL" run --products 2000 --stages user --quiet --cache user=1MiB --l2 "redis://127.0.0.1:$port" --input ev.ndjson \
  --output nc.out 2>nc4.err
grep -q "warning: the L2 at redis://127.0.0.1:$port is not used: no stage is cached with it" nc1.err &&
  grep -q "is not used" nc2.err && ! grep -q "is not used" nc3.err && ! grep -q "is not used" nc4.err &&
  ok "an L2 no cache uses is warned about" || bad "unused L2: $(cat nc1.err nc2.err nc3.err nc4.err)"
cmp -s o1.ndjson o2.ndjson && ok "the second run's output is identical" || bad "outputs differ"
m1=$(json s1.json "d['stages']['user']['cache']['misses'] + d['stages']['score']['cache']['misses']")
h1=$(json s1.json "d['l2']['hits']")
m2=$(json s2.json "d['stages']['user']['cache']['misses'] + d['stages']['score']['cache']['misses']")
h2=$(json s2.json "d['l2']['hits']")
echo "run 1: L1 misses $m1, L2 hits $h1; run 2: L1 misses $m2, L2 hits $h2"
[ "$m1" -gt 1000 ] && [ "$h1" -eq 0 ] && ok "first run: every L1 miss is an L2 miss" || bad "first run: $m1 L1 misses, $h1 L2 hits"
[ $((h2 * 100)) -ge $((m2 * 90)) ] && [ "$m2" -gt 0 ] && ok "second run: L2 hits >= 90% of L1 misses" ||
  bad "second run: L2 hits $h2 of $m2 L1 misses"
n=$(redis-cli -p "$port" --scan --pattern 'keel:v:score:*' | wc -l)
[ "$n" -gt 0 ] && ok "entries are namespaced by stage, version and catalog version (keel:v:score:...)" || bad "no keel:v:score: keys"
ttl=$(redis-cli -p "$port" eval "return redis.call('pttl', redis.call('keys', 'keel:v:user:*')[1])" 0)
[ "$ttl" -gt 0 ] && ok "entries carry a TTL ($ttl ms left)" || bad "no TTL on an entry ($ttl)"

# rank's outputs depend on [limits] k_max (a larger k is rejected): a
# worker with k_max = 10 must reject k = 50 even when one with k_max = 100
# has put its results in the L2.
for i in $(seq 200); do echo "{\"type\":\"rank\",\"user\":\"$((i % 20))\",\"k\":50}"; done >k50.ndjson
kr=(--products 2000 --stages rank --cache rank=16MiB --quiet --input k50.ndjson --output /dev/null)
"$KEEL" run "${kr[@]}" --set limits.k_max=100 --l2 "redis://127.0.0.1:$port/5" --summary-json ka.json
"$KEEL" run "${kr[@]}" --set limits.k_max=10 --l2 "redis://127.0.0.1:$port/5" --dead-letter kb.dl --summary-json kb.json
[ "$(json ka.json "(d['events_out'], d['rejected'])")" = "(200, 0)" ] &&
  [ "$(json kb.json "(d['events_out'], d['rejected'])")" = "(0, 200)" ] && grep -q 'k must be in 1..10' kb.dl &&
  ok "k_max is part of rank's L2 keys: the k_max=10 worker rejects what the k_max=100 one cached" ||
  bad "k_max: first $(json ka.json "(d['events_out'], d['rejected'])"), second $(json kb.json "(d['events_out'], d['rejected'])")"

# [cache.STAGE] l2 = false keeps a stage off the L2 (a cheap stage whose
# miss costs less than a round trip).
"$KEEL" run "${common[@]}" --set cache.user.l2=false --l2 "redis://127.0.0.1:$port/4" --input ev.ndjson \
  --output /dev/null --summary-json s4.json
nu=$(redis-cli -p "$port" -n 4 --scan --pattern 'keel:v:user:*' | wc -l)
ns=$(redis-cli -p "$port" -n 4 --scan --pattern 'keel:v:score:*' | wc -l)
[ "$nu" -eq 0 ] && [ "$ns" -gt 0 ] && [ "$(json s4.json "d['l2']['misses']")" = "$(json s4.json "d['stages']['score']['cache']['loads']")" ] &&
  ok "cache.user.l2=false: only score uses the L2 ($ns entries)" || bad "l2=false: $nu user and $ns score entries"

# Single flight across processes: 100 distinct keys, each twice, two
# processes started together on a fresh db.
if [ -f "$PLUGIN" ]; then
  for i in $(seq 0 99) $(seq 0 99); do echo "{\"x\":$i}"; done >sq.ndjson
  sq=(--plugin "$PLUGIN" --stages slow_square --cache slow_square=1MiB --quiet --l2 "redis://127.0.0.1:$port/2")
  # Both start on a FIFO the test holds open (so their open() returns at
  # once); the events go in only when both have it open: a slow start (a
  # sanitizer build) cannot let one finish before the other begins.
  mkfifo fa fb
  exec 3<>fa 4<>fb
  "$KEEL" run "${sq[@]}" --input fa --output a.ndjson --summary-json a.json 3>&- 4>&- &
  pa=$!
  "$KEEL" run "${sq[@]}" --input fb --output b.ndjson --summary-json b.json 3>&- 4>&- &
  pb=$!
  for _ in $(seq 200); do
    [ "$(ls -l /proc/$pa/fd /proc/$pb/fd 2>/dev/null | grep -c "$dir/f[ab]\$")" -eq 2 ] && break
    sleep 0.05
  done
  cat sq.ndjson >&3
  cat sq.ndjson >&4
  exec 3>&- 4>&-
  wait $pa; ra=$?
  wait $pb; rb=$?
  [ $ra -eq 0 ] && [ $rb -eq 0 ] && ok "two concurrent runs exit 0" || bad "concurrent runs exited $ra $rb"
  computes=$(($(json a.json "d['l2']['misses']") + $(json b.json "d['l2']['misses']")))
  waits=$(($(json a.json "d['l2']['lock_waits']") + $(json b.json "d['l2']['lock_waits']")))
  echo "two processes: $computes computations of 100 distinct keys, $waits lock waits"
  [ "$computes" -eq 100 ] && ok "each key computed once across both processes" || bad "$computes computations for 100 keys"
  [ "$waits" -gt 0 ] && ok "the processes did collide (lock waits), and waited for each other's results" ||
    bad "no lock wait: the processes never missed a key at the same moment"
  python3 - <<'PY' || bad "wrong squares in the concurrent outputs"
import json
for f in ("a.ndjson", "b.ndjson"):
    rows = [json.loads(l) for l in open(f)]
    assert len(rows) == 200 and all(r["y"] == r["x"] * r["x"] for r in rows), f
PY

  # Redis stopped mid-run: 1500 distinct keys at 2 ms each take ~3 s.
  seq 0 1499 | sed 's/.*/{"x":&}/' >long.ndjson
  "$KEEL" run --plugin "$PLUGIN" --stages slow_square --cache slow_square=4MiB --l2 "redis://127.0.0.1:$port/3" \
    --input long.ndjson --output long.out --summary-json long.json 2>long.err &
  pl=$!
  for _ in $(seq 200); do # until it has stored some results
    [ "$(redis-cli -p "$port" -n 3 dbsize)" -gt 20 ] && break
    sleep 0.05
  done
  stop_redis
  wait $pl
  rl=$?
  [ $rl -eq 0 ] && ok "Redis stopped mid-run: the run completes (exit 0)" || bad "exit $rl: $(tail -3 long.err)"
  [ "$(wc -l <long.out)" -eq 1500 ] && ok "all 1500 results written" || bad "$(wc -l <long.out) results"
  grep -q "L2 cache lost" long.err && ok "a warning says the L2 was lost: $(grep -m1 'L2 cache lost' long.err)" ||
    bad "no warning on stderr"
  [ "$(json long.json "d['l2']['errors'] > 0 and d['l2']['degraded'] > 0")" = True ] &&
    ok "the summary counts L2 errors and degraded (L1-only) lookups" || bad "no L2 errors in the summary"

  # Redis gone and back at once under 8 workers: the L2 is lost once and
  # found again once, and the new server gets results. (Every worker's
  # failed call doubled the backoff, to 5 s at once, and the pooled
  # connections to the old server failed again after it came back.)
  start_redis "$port"
  seq 0 15999 | sed 's/.*/{"x":&}/' >back.ndjson # ~4 s at 2 ms per key on 8 workers
  "$KEEL" run --plugin "$PLUGIN" --stages slow_square --cache slow_square=8MiB --l2 "redis://127.0.0.1:$port/4" \
    --workers 8 --input back.ndjson --output back.out --summary-json back.json 2>back.err &
  pl=$!
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$port" -n 4 dbsize)" -gt 50 ] && break
    sleep 0.05
  done
  stop_redis
  start_redis "$port"
  wait $pl
  rl=$?
  stored=$(redis-cli -p "$port" -n 4 dbsize)
  [ $rl -eq 0 ] && [ "$(grep -c "L2 cache lost" back.err)" -eq 1 ] && [ "$(grep -c "reachable again" back.err)" -eq 1 ] &&
    [ "$(json back.json "d['l2']['reconnects']")" -eq 1 ] && [ "$stored" -gt 0 ] &&
    ok "Redis back at once under 8 workers: lost once, found again once, $stored results stored in the new server" ||
    bad "Redis back: exit $rl, stored $stored, $(json back.json "d['l2']" 2>&1), $(cat back.err)"

  # Error replies (here OOM under maxmemory with noeviction) are told once,
  # with Redis's words, not only counted; the run completes on L1.
  redis-cli -p "$port" config set maxmemory 1 >/dev/null
  redis-cli -p "$port" config set maxmemory-policy noeviction >/dev/null
  seq 20000 20199 | sed 's/.*/{"x":&}/' >oom.ndjson
  "$KEEL" run --plugin "$PLUGIN" --stages slow_square --cache slow_square=1MiB --l2 "redis://127.0.0.1:$port/5" \
    --input oom.ndjson --output oom.out --summary-json oom.json 2>oom.err
  rl=$?
  [ $rl -eq 0 ] && [ "$(wc -l <oom.out)" -eq 200 ] && [ "$(grep -c "replied with an error (OOM" oom.err)" -eq 1 ] &&
    [ "$(json oom.json "d['l2']['errors'] > 1")" = True ] &&
    ok "error replies (OOM) told once: $(grep -m1 'replied with an error' oom.err | cut -c1-90)..." ||
    bad "OOM replies: exit $rl, $(wc -l <oom.out) lines, $(cat oom.err)"
  redis-cli -p "$port" config set maxmemory 0 >/dev/null
else
  bad "plugin $PLUGIN not built (KEEL_BUILD unset?)"
fi

# Unreachable at start: exit 2.
"$KEEL" run --stages user --cache user=1MiB --l2 redis://127.0.0.1:1 --input ev.ndjson --output x.out 2>x.err
rc=$?
[ $rc -eq 2 ] && grep -q "127.0.0.1:1" x.err && ok "unreachable L2 at start: exit 2 ($(head -1 x.err))" ||
  bad "unreachable L2: exit $rc, $(cat x.err)"
"$KEEL" run --stages user --l2 'redis://u:pw@127.0.0.1:1' --input ev.ndjson 2>x.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q KEEL_REDIS_PASSWORD x.err && ! grep -q pw@ x.err && ok "a password in the address is refused" ||
  bad "password in address: exit $rc $(cat x.err)"
[ $fails -eq 0 ] && echo "all redis_l2 checks passed" || echo "$fails redis_l2 check(s) failed"
exit $fails
