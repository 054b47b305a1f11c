#!/usr/bin/env bash
# Redis streams as source and sink: keel push loads NDJSON; keel run reads
# with a consumer group, writes every result to an output stream (trimmed
# with --output-maxlen) or a file, each carrying its input's stream_id, and
# acknowledges everything (nothing pending after); a stage that crashes its
# process on one entry gets only that entry dead-lettered; entries trimmed
# from the stream while pending are dead-lettered by id; a poison entry (delivered
# more than --max-deliveries times) goes to the dead-letter file with its
# reason and is acknowledged, also when the consumer's own entries in flight
# lie among the claimed ones; block_ms past the reader's timeout is refused;
# a missing group without --create-group and an
# unreachable Redis are configuration errors (exit 2); Redis lost mid-run:
# the source retries, then stops with a clear error (exit 1) after
# --redis-retry-ms, and what was written stays acknowledged.
set -u
. "$(dirname "$0")/lib/redis_lib.sh"
start_redis
R="redis://127.0.0.1:$port"

python3 -c "
import random
r = random.Random(3)
for i in range(3000):
    u = r.randrange(200)
    if r.random() < 0.5: print('{\"type\":\"user\",\"user\":\"%d\"}' % u)
    else: print('{\"type\":\"score\",\"user\":\"%d\",\"product\":\"%d\"}' % (u, r.randrange(500)))
" >ev.ndjson
echo '{"type":"nope"}' >>ev.ndjson
printf '   \n\t\r\n\n' >>ev.ndjson # blank lines: skipped, as keel run skips them
"$KEEL" push --input ev.ndjson --output "$R?stream=ev" 2>push.err
rc=$?
[ $rc -eq 0 ] && [ "$(redis-cli -p "$port" xlen ev)" -eq 3001 ] && ok "keel push: 3001 entries, blank lines skipped ($(cat push.err))" ||
  bad "push exit $rc, xlen $(redis-cli -p "$port" xlen ev)"
# group= on a stream that is only added to would be ignored: refused.
"$KEEL" push --input ev.ndjson --output "$R?stream=ev2&group=g" 2>pg.err
rc=$?
[ $rc -eq 2 ] && grep -q "group= and consumer= are for reading a stream" pg.err &&
  [ "$(redis-cli -p "$port" exists ev2)" -eq 0 ] && ok "push with group=: exit 2, nothing added" || bad "push group=: exit $rc $(cat pg.err)"

"$KEEL" run --products 500 --stages user,score --input "$R?stream=ev&group=g" 2>nogroup.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "create-group" nogroup.err && ok "a missing group is exit 2: $(head -1 nogroup.err)" ||
  bad "missing group: exit $rc $(cat nogroup.err)"
# The input stream as the output (spelled through another loopback name):
# refused before anything is read, not a loop that grows the stream.
len0=$(redis-cli -p "$port" xlen ev)
timeout 20 "$KEEL" run --products 500 --stages user,score --input "$R?stream=ev&group=g" --create-group \
  --output "redis://localhost:$port?stream=ev" 2>loop.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "the output stream 'ev' is also the input stream" loop.err &&
  [ "$(redis-cli -p "$port" xlen ev)" = "$len0" ] && ok "output stream = input stream: exit 2, stream untouched" ||
  bad "output stream = input stream: exit $rc, xlen $len0 -> $(redis-cli -p "$port" xlen ev), $(cat loop.err)"

timeout 60 "$KEEL" run --products 500 --stages user,score --workers 2 --create-group --idle-exit-ms 300 \
  --input "$R?stream=ev&group=g&consumer=w1" --output "$R?stream=out" --output-maxlen 100000 \
  --dead-letter dl.ndjson --summary-json s.json 2>run.err
rc=$?
[ $rc -eq 0 ] && ok "stream to stream run exits 0 (idle exit)" || bad "exit $rc: $(tail -3 run.err)"
[ "$(redis-cli -p "$port" xlen out)" -eq 3000 ] && ok "3000 results in the output stream" ||
  bad "output stream has $(redis-cli -p "$port" xlen out)"
[ "$(json s.json "(d['stream']['read'], d['stream']['acked'], d['stream']['written'], d['stream']['pending'])")" = "(3001, 3001, 3000, 0)" ] &&
  ok "summary: 3001 read, 3001 acked (the rejected one too), 3000 written, 0 pending" ||
  bad "stream summary: $(json s.json "d['stream']")"
grep -q 'nope' dl.ndjson && grep -q 'stream_id [0-9]*-[0-9]*' dl.ndjson && ok "the rejected event is in the dead-letter file with its stream id" ||
  bad "dead letter: $(cat dl.ndjson 2>/dev/null)"
redis-cli -p "$port" xrange ev - + | grep -E '^[0-9]+-[0-9]+$' | sort >in.ids
redis-cli -p "$port" xrange out - + | grep -o '"stream_id":"[0-9-]*"' | cut -d'"' -f4 | sort >out.ids
comm -23 in.ids out.ids >missing.ids
[ "$(wc -l <missing.ids)" -eq 1 ] && [ "$(wc -l <out.ids)" -eq 3000 ] &&
  ok "every input's stream id is in the output once (but the rejected one)" ||
  bad "$(wc -l <missing.ids) ids missing, $(wc -l <out.ids) output ids"
[ "$(redis-cli -p "$port" xpending ev g | head -1)" -eq 0 ] && ok "XPENDING: nothing left pending" || bad "entries still pending"

# --output-maxlen trims (approximately).
for i in $(seq 3); do
  "$KEEL" run --products 500 --stages user,score --idle-exit-ms 200 --create-group --quiet \
    --input "$R?stream=ev&group=g$i" --output "$R?stream=trim" --output-maxlen 1000 --dead-letter dl$i.ndjson
done
n=$(redis-cli -p "$port" xlen trim)
[ "$n" -lt 3000 ] && [ "$n" -ge 1000 ] && ok "--output-maxlen 1000 keeps ~1000 of 9000 ($n)" || bad "trimmed stream has $n"

# Poison: an entry another consumer took 6 times; --max-deliveries 5.
id=$(redis-cli -p "$port" xadd poison '*' data '{"type":"user","user":"1"}')
redis-cli -p "$port" xgroup create poison pg 0 >/dev/null
redis-cli -p "$port" xreadgroup group pg dead count 1 streams poison '>' >/dev/null
for i in 1 2 3 4 5; do redis-cli -p "$port" xclaim poison pg dead 0 "$id" >/dev/null; done
sleep 0.05
"$KEEL" run --products 500 --stages user --claim-idle-ms 10 --max-deliveries 5 --idle-exit-ms 300 \
  --input "$R?stream=poison&group=pg&consumer=w" --output p.out --dead-letter p.dl --summary-json p.json 2>p.err
rc=$?
[ $rc -eq 0 ] && grep -q "delivered 7 times" p.dl && grep -q "$id" p.dl &&
  ok "a poison entry goes to the dead-letter file: $(cut -c1-160 p.dl)" || bad "poison: exit $rc, $(cat p.dl p.err)"
[ "$(json p.json "(d['stream']['dead_lettered'], d['stream']['claimed'], d['stream']['acked'])")" = "(1, 1, 1)" ] &&
  [ "$(redis-cli -p "$port" xpending poison pg | head -1)" -eq 0 ] && ok "it was claimed, counted and acknowledged" ||
  bad "poison summary $(json p.json "d['stream']")"

# Poison among entries of this consumer's own: "dead" holds 1, 2, 5 and 6
# of six entries, delivered 10 times each, and w holds 3 and 4, fresh. w
# claims dead's four (idle past --claim-idle-ms) while its own two are not
# idle yet: the delivery counts of all four must be read, not only those
# before w's own entries in the id order.
for i in 1 2 3 4 5 6; do redis-cli -p "$port" xadd mixed "0-$i" data '{"type":"user","user":"'$i'"}' >/dev/null; done
redis-cli -p "$port" xgroup create mixed mg 0 >/dev/null
redis-cli -p "$port" xreadgroup group mg dead count 6 streams mixed '>' >/dev/null
for i in $(seq 9); do redis-cli -p "$port" xclaim mixed mg dead 0 0-1 0-2 0-5 0-6 >/dev/null; done
sleep 1.2
redis-cli -p "$port" xclaim mixed mg w 0 0-3 0-4 >/dev/null
"$KEEL" run --products 500 --stages user --claim-idle-ms 1000 --max-deliveries 5 --idle-exit-ms 1500 \
  --input "$R?stream=mixed&group=mg&consumer=w" --output m.out --dead-letter m.dl --summary-json m.json 2>m.err
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c 'delivered 11 times' m.dl)" -eq 4 ] && [ "$(wc -l <m.out)" -eq 2 ] &&
  [ "$(redis-cli -p "$port" xpending mixed mg | head -1)" -eq 0 ] &&
  ok "poison entries around the consumer's own are all caught (4 dead-lettered, 2 processed)" ||
  bad "mixed poison: exit $rc, out $(wc -l <m.out), dead-letter: $(cat m.dl m.err)"

# A stage that kills its process on one entry (x = 13; the crash_at
# plugin). Each crash leaves every entry the process held pending, to come
# back with one delivery more; restarted until a run ends cleanly, only
# the entry that kills it may reach --max-deliveries: entries delivered d
# >= 2 times are claimed apart from the rest, in runs that halve with each
# delivery, and alone for their last one; nothing else is handed out until
# they are settled. With max 3 the suspects run alone at once; with max 5
# in halves, then quarters, then alone.
CRASH=${KEEL_BUILD:-}/tests/libtest_plugin_crash.so
crash_run() { # crash_run STREAM MAX_DELIVERIES
  local k=$1 max=$2
  python3 -c "
for i in range(300): print('{\"x\":%d}' % i)" >$k.ndjson
  "$KEEL" push --quiet --input $k.ndjson --output "$R?stream=$k"
  redis-cli -p "$port" xgroup create $k cg 0 >/dev/null
  local runs=0 crashes=0 rc=1
  while [ $runs -lt 14 ] && [ $rc -ne 0 ]; do
    runs=$((runs + 1))
    "$KEEL" run --plugin "$CRASH" --stages crash_at --set stage.crash_at.at=13 --claim-idle-ms 100 \
      --max-deliveries $max --idle-exit-ms 600 --input "$R?stream=$k&group=cg&consumer=w" --output $k.out \
      --dead-letter $k.dl --summary-json $k.json 2>$k.err
    rc=$?
    [ $rc -eq 137 ] && crashes=$((crashes + 1))
  done
  local ndl nout
  ndl=$(wc -l <$k.dl 2>/dev/null || echo 0)
  nout=$(grep -o '"x":[0-9]*' $k.out | sort -u | wc -l)
  [ $rc -eq 0 ] && [ "$crashes" -ge "$max" ] && [ "$ndl" -eq 1 ] && grep -q 'x\\":13}' $k.dl &&
    grep -q "delivered $((max + 1)) times" $k.dl && [ "$nout" -eq 299 ] && ! grep -q '"x":13,' $k.out &&
    [ "$(redis-cli -p "$port" xpending $k cg | head -1)" -eq 0 ] &&
    ok "max $max: a crashing entry is dead-lettered alone after $crashes crashes; the 299 others are output" ||
    bad "crash, max $max: $runs runs ($crashes crashes), last exit $rc, $ndl dead letters, $nout distinct outputs: $(head -c 400 $k.dl) $(tail -2 $k.err)"
}
if [ -f "$CRASH" ]; then
  crash_run crash 3
  crash_run crash5 5
else
  bad "plugin $CRASH not built (KEEL_BUILD unset?)"
fi

# Entries deleted from the stream while pending (trimmed by a later push's
# --maxlen): Redis drops them from the group as they are claimed; each
# goes to the dead-letter file with its id and why, none silently.
python3 -c "
for i in range(1000): print('{\"type\":\"user\",\"user\":\"%d\"}' % (i % 50))" >trim.ndjson
"$KEEL" push --quiet --input trim.ndjson --output "$R?stream=tp"
redis-cli -p "$port" xgroup create tp tg 0 >/dev/null
redis-cli -p "$port" xreadgroup group tg ghost count 300 streams tp '>' >/dev/null
head -100 trim.ndjson >trim2.ndjson
"$KEEL" push --quiet --input trim2.ndjson --output "$R?stream=tp" --maxlen 500
left=$(redis-cli -p "$port" xlen tp)
sleep 0.15
"$KEEL" run --products 500 --stages user --claim-idle-ms 100 --idle-exit-ms 800 \
  --input "$R?stream=tp&group=tg&consumer=w" --output tp.out --dead-letter tp.dl --summary-json tp.json 2>tp.err
rc=$?
[ $rc -eq 0 ] && [ "$(wc -l <tp.dl)" -eq 300 ] && [ "$(grep -c 'deleted from the stream' tp.dl)" -eq 300 ] &&
  [ "$(grep -c 'stream_id [0-9]*-[0-9]*' tp.dl)" -eq 300 ] && [ "$(wc -l <tp.out)" -eq "$left" ] &&
  [ "$(json tp.json "(d['stream']['deleted'], d['stream']['pending'], d['events_in'], d['rejected'])")" = "(300, 0, $((left + 300)), 300)" ] &&
  ok "300 pending entries trimmed away are dead-lettered with their ids; the $left left are output" ||
  bad "trimmed: exit $rc, $(wc -l <tp.dl) dead letters, $(wc -l <tp.out) outputs of $left, $(json tp.json "d['stream']" 2>&1) $(tail -2 tp.err)"

# [redis] fsync = true: the output and dead-letter files are synced to disk
# before each acknowledgement (seen as fsync calls); without it, none.
head -300 ev.ndjson >fs.ndjson
echo '{"type":"nope"}' >>fs.ndjson
"$KEEL" push --quiet --input fs.ndjson --output "$R?stream=fs"
for mode in true false; do
  rm -f fs-$mode.out fs-$mode.dl
  # (LeakSanitizer cannot run under ptrace: off for these two runs in an ASan build)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -e trace=fsync -o fs-$mode.trace "$KEEL" run --products 500 --stages user,score --create-group \
    --idle-exit-ms 300 --set redis.fsync=$mode --input "$R?stream=fs&group=fs$mode&consumer=w" \
    --output fs-$mode.out --dead-letter fs-$mode.dl 2>fs-$mode.err
  eval "rc_$mode=\$?"
done
nsync=$(grep -c 'fsync(' fs-true.trace)
[ "$rc_true" -eq 0 ] && [ "$rc_false" -eq 0 ] && [ "$(wc -l <fs-true.out)" -eq 300 ] && [ "$(wc -l <fs-true.dl)" -eq 1 ] &&
  [ "$nsync" -ge 2 ] && ! grep -q 'fsync(' fs-false.trace &&
  ok "[redis] fsync: output and dead letters synced before the acks ($nsync fsync calls; none without it)" ||
  bad "fsync: exit $rc_true/$rc_false, $(wc -l <fs-true.out) lines, $nsync syncs, $(grep -c 'fsync(' fs-false.trace) without; $(tail -2 fs-true.err)"

# A stream key of another type: Redis's own error, not "no group".
redis-cli -p "$port" set notastream x >/dev/null
"$KEEL" run --stages user --input "$R?stream=notastream&group=g" 2>wt.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q WRONGTYPE wt.err && ok "a key of another type is named as such: $(head -1 wt.err)" ||
  bad "wrong type: exit $rc $(cat wt.err)"

# A file input whose output stream refuses the results (the key holds a
# string): exit 1, and every event read is in the dead-letter file with
# the reason, none left unaccounted for.
head -200 ev.ndjson >wt.ndjson
"$KEEL" run --products 500 --stages user,score --input wt.ndjson --output "$R?stream=notastream" \
  --dead-letter wt.dl --summary-json wt.json 2>wto.err
rc=$?
[ $rc -eq 1 ] && [ "$(json wt.json "d['events_in'] == d['rejected'] > 0 and d['events_out'] == 0")" = True ] &&
  [ "$(grep -c 'result not written: writing the output failed (XADD notastream: WRONGTYPE' wt.dl)" = "$(json wt.json "d['rejected']")" ] &&
  ok "an output stream that refuses: every event read dead-lettered with why ($(json wt.json "d['rejected']"))" ||
  bad "refusing output stream: exit $rc, $(json wt.json "(d['events_in'], d['events_out'], d['rejected'])") $(head -c 300 wt.dl) $(cat wto.err)"

# Stopped mid-run (SIGINT): the summary's pending count is the group's as
# the run leaves it (read-ahead left unacknowledged), not a second old.
python3 -c "
for i in range(60000): print('{\"type\":\"user\",\"user\":\"%d\"}' % (i % 500))" >big.ndjson
"$KEEL" push --quiet --input big.ndjson --output "$R?stream=big"
"$KEEL" run --products 500 --stages user --create-group --input "$R?stream=big&group=bg&consumer=w" \
  --output big.out --summary-json big.json 2>big.err &
pb=$!
for _ in $(seq 200); do [ -s big.out ] && break; sleep 0.02; done
sleep 0.1
kill -INT $pb
wait $pb
rc=$?
pend=$(redis-cli -p "$port" xpending big bg | head -1)
[ $rc -eq 130 ] && [ "$(json big.json "d['stream']['pending']")" = "$pend" ] &&
  ok "after SIGINT the summary's pending ($pend) is the group's" ||
  bad "SIGINT: exit $rc, summary pending $(json big.json "d['stream']['pending']"), XPENDING $pend"

# block_ms must stay under the reader's command timeout.
"$KEEL" run --stages user --set redis.block_ms=3000 --input "$R?stream=mixed&group=mg" 2>b.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "block_ms" b.err && ok "block_ms past 1000 is refused: $(head -1 b.err)" ||
  bad "block_ms=3000: exit $rc $(cat b.err)"

# Unreachable at start.
"$KEEL" run --stages user --input "redis://127.0.0.1:1?stream=ev&group=g" 2>u.err >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "cannot connect" u.err && ok "unreachable stream at start: exit 2 ($(head -1 u.err))" ||
  bad "unreachable: exit $rc $(cat u.err)"
"$KEEL" push --input ev.ndjson --output "redis://127.0.0.1:1?stream=x" 2>u.err
rc=$?
[ $rc -eq 2 ] && ok "keel push to an unreachable Redis: exit 2" || bad "push unreachable: exit $rc"

# A restarted stream worker appends to its output and dead-letter files.
head -5 ev.ndjson >five.ndjson
echo '{"type":"nope"}' >>five.ndjson
for i in 1 2; do
  "$KEEL" push --quiet --input five.ndjson --output "$R?stream=app"
  "$KEEL" run --products 500 --stages user,score --create-group --idle-exit-ms 200 --quiet \
    --input "$R?stream=app&group=ag&consumer=w" --output app.out --dead-letter app.dl
done
[ "$(wc -l <app.out)" -eq 10 ] && [ "$(wc -l <app.dl)" -eq 2 ] && ok "a restarted stream worker appends to its output and dead-letter files" ||
  bad "after two runs: $(wc -l <app.out) output lines, $(wc -l <app.dl) dead letters (want 10, 2)"

# Connections cut mid-run (CLIENT KILL): the source and sink reconnect and
# go on; entries lost in flight are claimed back; nothing is missing.
head -1000 ev.ndjson >k1.ndjson
"$KEEL" run --products 500 --stages user,score --create-group --idle-exit-ms 1500 --claim-idle-ms 300 \
  --input "$R?stream=cut&group=cg&consumer=w" --output "$R?stream=cutout" --summary-json cut.json 2>cut.err &
pc=$!
"$KEEL" push --quiet --input k1.ndjson --output "$R?stream=cut"
for _ in $(seq 200); do # until the worker has read (its consumer exists)
  redis-cli -p "$port" xinfo consumers cut cg 2>/dev/null | grep -qx w && break
  sleep 0.05
done
redis-cli -p "$port" client kill type normal >/dev/null
"$KEEL" push --quiet --input k1.ndjson --output "$R?stream=cut"
wait $pc
rc=$?
n=$(redis-cli -p "$port" xrange cutout - + | grep -o '"stream_id":"[0-9-]*"' | sort -u | wc -l)
# Three connections were cut (the reader's, the acknowledger's, the output's), and each reconnect counts.
# Each lost connection's failed command is an error (the output stream's too).
[ $rc -eq 0 ] && [ "$n" -eq 2000 ] &&
  [ "$(json cut.json "d['stream']['reconnects'] >= 3 and d['stream']['errors'] >= d['stream']['reconnects'] and d['stream']['pending'] == 0")" = True ] &&
  ok "connections cut mid-run: reconnected ($(json cut.json "d['stream']['reconnects']") times), all 2000 entries in the output" ||
  bad "cut: exit $rc, $n distinct outputs, $(json cut.json "d['stream']" 2>&1), $(tail -3 cut.err)"

# Credentials come from the environment only, and never show in messages.
redis-cli -p "$port" acl setuser alice on '>al1ce-pw' '~*' '&*' '+@all' >/dev/null
redis-cli -p "$port" config set requirepass 's3cret-pw' >/dev/null
export REDISCLI_AUTH=s3cret-pw
echo '{"type":"user","user":"9"}' >one.ndjson
"$KEEL" push --input one.ndjson --output "$R?stream=auth" 2>a1.err
rc=$?
[ $rc -eq 2 ] && grep -q "NOAUTH" a1.err && grep -q KEEL_REDIS_PASSWORD a1.err && ok "no password for a server that wants one: exit 2 ($(head -1 a1.err))" ||
  bad "no password: exit $rc $(cat a1.err)"
KEEL_REDIS_PASSWORD=wrong-pw "$KEEL" push --input one.ndjson --output "$R?stream=auth" 2>a2.err
rc=$?
[ $rc -eq 2 ] && grep -q "AUTH refused" a2.err && ! grep -q wrong-pw a2.err && ok "a wrong password: exit 2, password not echoed" ||
  bad "wrong password: exit $rc $(cat a2.err)"
KEEL_REDIS_PASSWORD=s3cret-pw "$KEEL" push --quiet --input one.ndjson --output "$R?stream=auth" &&
  KEEL_REDIS_USER=alice KEEL_REDIS_PASSWORD=al1ce-pw "$KEEL" push --quiet --input one.ndjson --output "$R?stream=auth" &&
  [ "$(redis-cli -p "$port" xlen auth 2>/dev/null)" -eq 2 ] && ok "KEEL_REDIS_PASSWORD (default user) and KEEL_REDIS_USER (ACL user) work" ||
  bad "authenticated pushes failed"
# The password changed under a running worker: its reconnects are refused,
# and it says so (not only "unreachable", which sends one to the network).
KEEL_REDIS_PASSWORD=s3cret-pw "$KEEL" run --products 500 --stages user --redis-retry-ms 1500 --create-group \
  --input "$R?stream=auth&group=ag&consumer=w" --output rot.out 2>rot.err &
pr=$!
for _ in $(seq 100); do [ -s rot.out ] && break; sleep 0.05; done
redis-cli -p "$port" config set requirepass 'rotated-pw' >/dev/null
REDISCLI_AUTH=rotated-pw redis-cli -p "$port" client kill type normal >/dev/null
wait "$pr"
rc=$?
[ $rc -eq 1 ] && grep -q "reconnecting failed: .*AUTH refused" rot.err && grep -q "the last attempt: .*AUTH refused" rot.err &&
  [ "$(grep -c "reconnecting failed" rot.err)" -eq 1 ] && ok "a password rotated under a worker: exit 1, the refusal said once" ||
  bad "rotated password: exit $rc $(cat rot.err)"
export REDISCLI_AUTH=rotated-pw
redis-cli -p "$port" config set requirepass '' >/dev/null
unset REDISCLI_AUTH

# Redis lost mid-run: a run waiting on the stream gives up after 1.5 s.
"$KEEL" run --products 500 --stages user --redis-retry-ms 1500 --create-group \
  --input "$R?stream=live&group=lg&consumer=w" --output live.out --summary-json live.json 2>live.err &
pl=$!
for _ in $(seq 200); do
  redis-cli -p "$port" xinfo consumers live lg 2>/dev/null | grep -qx w && break
  sleep 0.05
done
redis-cli -p "$port" xadd live '*' data '{"type":"user","user":"5"}' >/dev/null
for _ in $(seq 200); do # until its result is written
  [ -s live.out ] && break
  sleep 0.05
done
sleep 0.2
stop_redis
t0=$(date +%s%N)
wait $pl
rc=$?
dt=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 1 ] && [ $dt -lt 6000 ] && grep -q "giving up" live.err && ok "Redis lost: the source gives up after its retry budget, exit 1 (${dt} ms): $(grep -m1 'giving up' live.err)" ||
  bad "lost: exit $rc after $dt ms: $(cat live.err)"
[ "$(wc -l <live.out)" -eq 1 ] && [ "$(json live.json "d['stream']['acked']")" = 1 ] &&
  ok "the event read before the loss was written and acknowledged" || bad "live: $(cat live.out) $(json live.json "d['stream']")"
[ $fails -eq 0 ] && echo "all redis_stream checks passed" || echo "$fails redis_stream check(s) failed"
exit $fails
