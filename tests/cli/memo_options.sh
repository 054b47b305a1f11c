#!/usr/bin/env bash
# keel run's memoization options, with a plugin built here that has a stage
# declared pure but secretly nondeterministic ("drift": a global counter
# changes every tenth result) and an impure stage ("seqno"):
#  - --cache for an impure stage, an unknown stage, a bad size, a stage given
#    twice; --cache-audit out of range: exit 2 with a one-line reason, nothing run;
#  - --no-cache overrides a config file's [cache.*], which is still checked (one
#    that would be refused with caching on is refused with it off);
#  - --cache-audit 0.05 catches drift (audit_mismatches > 0, logged once, exit 0);
#    with --cache-audit-strict (or [memo] audit_strict = true in the file) the
#    run stops early with exit 3; audit_strict = off in the file is not strict.
set -u
: "${KEEL:?KEEL must name the keel executable}"
: "${KEEL_SRC:?KEEL_SRC must name the source tree}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# The plugin: its keel symbols resolve against the keel that loads it.
cat >"$dir/memo_plugin.c" <<'C'
#include <stdatomic.h>
#include <stdint.h>
#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;
static _Atomic unsigned long calls;

/* Declared pure; every tenth call in the process adds 1. */
static keel_status drift_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  keel_value t;
  if (!keel_event_get(ev, io->reads[0], &t)) return keel_event_fail(ev, "no text");
  unsigned long n = atomic_fetch_add(&calls, 1);
  return keel_event_set_int(ev, io->writes[0], (int64_t)t.u.str.len + (n % 10 == 9));
}

/* Impure (not flagged pure): numbers the events it sees. */
static keel_status seqno_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  return keel_event_set_int(ev, io->writes[0], (int64_t)atomic_fetch_add(&calls, 1));
}

static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec v_writes[] = {{"v", KEEL_FIELD_INT, 0}};
static const keel_field_spec seq_writes[] = {{"seq", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "drift", .version = 1, .flags = KEEL_STAGE_PURE, .reads = reads,
                      .n_reads = 1, .writes = v_writes, .n_writes = 1, .process = drift_process};
  keel_status st = keel_registry_add(r, &d, err, errlen);
  if (st != KEEL_OK) return st;
  keel_stage_def s = {.size = sizeof s, .name = "seqno", .version = 1, .writes = seq_writes, .n_writes = 1,
                      .process = seqno_process};
  return keel_registry_add(r, &s, err, errlen);
}
C
cc=cc
if [ -n "${KEEL_BUILD:-}" ] && [ -f "$KEEL_BUILD/CMakeCache.txt" ]; then
  c=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$KEEL_BUILD/CMakeCache.txt")
  [ -n "$c" ] && cc=$c
fi
incs=(-I"$KEEL_SRC/include")
[ -n "${KEEL_BUILD:-}" ] && incs+=(-I"$KEEL_BUILD/include")
plugin="$dir/libmemo_plugin.so"
if "$cc" -std=c11 -O1 -Wall -Wextra -Werror -fPIC -shared "${incs[@]}" -o "$plugin" "$dir/memo_plugin.c" \
  2>"$dir/cc.err"; then
  ok "test plugin built ($cc)"
else
  echo "FAIL: building the test plugin: $(cat "$dir/cc.err")"
  exit 1
fi

# 10000 events over 10 distinct texts: about 9990 cache hits.
python3 -c '
for i in range(10000): print("{\"text\":\"%s\"}" % ("abcdefghij"[: i % 10 + 1]))' >"$dir/in.ndjson"
P=(--plugin "$plugin" --input "$dir/in.ndjson" --output "$dir/out" --quiet)

# usage RC PATTERN ARGS...: keel run ARGS exits RC with PATTERN on stderr's first line, no output.
usage() {
  local rc=$1 pat=$2; shift 2
  rm -f "$dir/out"
  "$KEEL" run "$@" >"$dir/stdout" 2>"$dir/err"
  local got=$?
  if [ "$got" -eq "$rc" ] && head -n 1 "$dir/err" | grep -q -- "$pat" && [ ! -s "$dir/out" ]; then
    ok "${*//$dir\//} -> $rc ($(head -n 1 "$dir/err"))"
  else
    bad "keel run $* -> rc $got (want $rc, '$pat'): $(cat "$dir/err")"
  fi
}
usage 2 "stage 'seqno' is not pure" "${P[@]}" --stages drift,seqno --cache seqno=1MiB
usage 2 "there is no stage 'nope' in the pipeline" "${P[@]}" --stages drift --cache nope=1MiB
usage 2 "there is no stage 'rank' in the pipeline" "${P[@]}" --stages drift --cache rank=1MiB
usage 2 "'lots' is not a size" "${P[@]}" --stages drift --cache drift=lots
usage 2 "wants STAGE=SIZE" "${P[@]}" --stages drift --cache drift
usage 2 "given twice" "${P[@]}" --stages drift --cache drift=1MiB --cache drift=2MiB
usage 2 "unknown cache policy" "${P[@]}" --stages drift --cache drift=1MiB --set cache.drift.policy=mru
usage 2 "maintenance = 'lazy': want auto, thread or caller" "${P[@]}" --stages drift --cache drift=1MiB --set cache.drift.maintenance=lazy
for m in auto thread caller; do
  if "$KEEL" run "${P[@]}" --stages drift --cache drift=1MiB --set cache.drift.maintenance=$m \
    --summary-json "$dir/m.json" 2>"$dir/err" >/dev/null &&
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["stages"]["drift"]["cache"]; sys.exit(0 if c["hits"] > 0 else 1)' "$dir/m.json"; then
    ok "[cache.drift] maintenance = $m: the memo runs and hits"
  else
    bad "maintenance = $m: $(cat "$dir/err")"
  fi
done
usage 2 "rate in 0..1" "${P[@]}" --stages drift --cache drift=1MiB --cache-audit 1.5

# --no-cache overrides the config file's caches; they are still checked.
printf '[pipeline]\nstages = drift,seqno\n[cache.drift]\nsize = 1MiB\n' >"$dir/memo.ini"
printf '[pipeline]\nstages = drift,seqno\n[cache.seqno]\nsize = 1MiB\n' >"$dir/impure.ini"
has_cache() { python3 -c 'import json,sys; sys.exit(0 if "cache" in json.load(open(sys.argv[1]))["stages"]["drift"] else 1)' "$1"; }
if "$KEEL" run "${P[@]}" --config "$dir/memo.ini" --summary-json "$dir/s1.json" 2>"$dir/err" && has_cache "$dir/s1.json"; then
  ok "the config file's [cache.drift] memoizes drift"
else
  bad "config [cache.drift]: $(cat "$dir/err")"
fi
if "$KEEL" run "${P[@]}" --config "$dir/memo.ini" --no-cache --summary-json "$dir/s2.json" 2>"$dir/err" &&
  ! has_cache "$dir/s2.json"; then
  ok "--no-cache turns the config file's cache off"
else
  bad "--no-cache with [cache.drift]: $(cat "$dir/err")"
fi
usage 2 "stage 'seqno' is not pure" "${P[@]}" --config "$dir/impure.ini"
usage 2 "stage 'seqno' is not pure" "${P[@]}" --config "$dir/impure.ini" --no-cache

# Audit. jq-free reader of the drift cache's figures.
audit_of() {
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
c = s["stages"]["drift"]["cache"]
print(c["hits"], c["audits"], c["audit_mismatches"], s["events_in"], str(s["interrupted"]).lower())' "$1"
}
A=("${P[@]}" --stages drift --cache drift=1MiB)
"$KEEL" run "${A[@]}" --cache-audit 0.05 --summary-json "$dir/a.json" 2>"$dir/err"
rc=$?
read -r hits audits mism events_in interrupted < <(audit_of "$dir/a.json")
nlog=$(grep -c "cache audit mismatch in stage 'drift'" "$dir/err")
if [ $rc -eq 0 ] && [ "$hits" -le 10000 ] && [ "$mism" -gt 0 ] && [ "$nlog" -eq 1 ] && [ "$events_in" -eq 10000 ]; then
  ok "--cache-audit 0.05: $mism mismatches in $audits audits of $hits hits, logged once, exit 0"
else
  bad "--cache-audit 0.05: rc $rc, hits $hits, audits $audits, mismatches $mism, $nlog log lines: $(cat "$dir/err")"
fi
"$KEEL" run "${A[@]}" --cache-audit 0.05 --cache-audit-strict --summary-json "$dir/b.json" 2>"$dir/err"
rc=$?
read -r hits audits mism events_in interrupted < <(audit_of "$dir/b.json")
if [ $rc -eq 3 ] && [ "$mism" -gt 0 ] && [ "$interrupted" = true ] && [ "$events_in" -lt 10000 ] &&
  grep -q "cache audit" "$dir/err"; then
  ok "--cache-audit-strict: stopped after $events_in events, exit 3 ($(tail -n 1 "$dir/err"))"
else
  bad "--cache-audit-strict: rc $rc (want 3), $events_in events read, interrupted $interrupted: $(cat "$dir/err")"
fi
printf '[pipeline]\nstages = drift\n[cache.drift]\nsize = 1MiB\n[memo]\naudit_rate = 0.05\naudit_strict = %s\n' on \
  >"$dir/strict.ini"
"$KEEL" run "${P[@]}" --config "$dir/strict.ini" 2>"$dir/err"
rc=$?
[ $rc -eq 3 ] && ok "[memo] audit_strict = on in the file -> exit 3" || bad "audit_strict = on -> rc $rc (want 3)"
printf '[pipeline]\nstages = drift\n[cache.drift]\nsize = 1MiB\n[memo]\naudit_rate = 0.05\naudit_strict = %s\n' off \
  >"$dir/lax.ini"
"$KEEL" run "${P[@]}" --config "$dir/lax.ini" --summary-json "$dir/c.json" 2>"$dir/err"
rc=$?
read -r hits audits mism events_in interrupted < <(audit_of "$dir/c.json")
[ $rc -eq 0 ] && [ "$mism" -gt 0 ] && [ "$events_in" -eq 10000 ] &&
  ok "[memo] audit_strict = off in the file: mismatches counted, not strict, exit 0" ||
  bad "audit_strict = off -> rc $rc (want 0), $mism mismatches, $events_in events"
# Without --cache-audit nothing is audited.
"$KEEL" run "${A[@]}" --summary-json "$dir/d.json" 2>"$dir/err"
read -r hits audits mism events_in interrupted < <(audit_of "$dir/d.json")
[ "$audits" -eq 0 ] && [ "$mism" -eq 0 ] && ok "without --cache-audit nothing is audited ($hits hits)" ||
  bad "without --cache-audit: $audits audits, $mism mismatches"

# No false alarm: the recommendation engine's stages are deterministic, so
# auditing a fifth of their hits finds nothing.
if [ -n "${KEEL_SHARED:-}" ] && [ -r "$KEEL_SHARED/traces/scarab-recs.bin" ]; then
  "$KEEL" gen --trace "$KEEL_SHARED/traces/scarab-recs.bin" --format bin64 --limit 20000 --products 500 \
    >"$dir/recs.ndjson"
  "$KEEL" run --input "$dir/recs.ndjson" --output /dev/null --products 500 --workers 2 --cache rank=4MiB \
    --cache score=1MiB --cache user=1MiB --cache-audit 0.2 --cache-audit-strict --summary-json "$dir/r.json" \
    --quiet 2>"$dir/err"
  rc=$?
  python3 - "$dir/r.json" <<'PY' && [ $rc -eq 0 ] && ok "recsys stages audited at 0.2: no mismatch, exit 0" ||
import json, sys
st = json.load(open(sys.argv[1]))["stages"]
audits = sum(st[n]["cache"]["audits"] for n in ("user", "score", "rank"))
mism = sum(st[n]["cache"]["audit_mismatches"] for n in ("user", "score", "rank"))
print(f"   recsys: {audits} audits, {mism} mismatches")
sys.exit(0 if audits > 100 and mism == 0 else 1)
PY
    bad "recsys stages under audit: rc $rc: $(cat "$dir/err")"
else
  bad "KEEL_SHARED/traces/scarab-recs.bin is missing"
fi

[ "$fails" -eq 0 ] && echo "all memo_options checks passed" || echo "$fails memo_options check(s) failed"
[ "$fails" -eq 0 ]
