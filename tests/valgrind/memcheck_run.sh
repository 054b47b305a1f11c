#!/usr/bin/env bash
# Valgrind memcheck of a whole `keel run` (label "valgrind", release build
# only: memcheck cannot run a sanitizer build). A small but complete run —
# the recommendation engine over a generated catalog, user/score/rank with
# rank memoized, 2 workers, a few rejects into the dead-letter file — must
# show no memory error (invalid read/write, use of uninitialised values,
# bad free) and no definite or indirect leak, and must give the same output
# as the same run without valgrind. Skips, saying so, when valgrind is not
# installed (scripts/deps.sh installs it).
set -u
: "${KEEL:?KEEL must name the keel executable}"
if ! command -v valgrind >/dev/null 2>&1; then
  echo "SKIP: valgrind is not installed (scripts/deps.sh installs it); memcheck not run"
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 300 events from keel gen (whatever trace: a text one, made here), plus
# a bad line, a blank line and a truncated last line.
seq 1 120 | awk '{print ($1 * 7919) % 97}' >"$dir/keys.txt"
seq 1 180 | awk '{print ($1 * 104729) % 131}' >>"$dir/keys.txt"
"$KEEL" gen --trace "$dir/keys.txt" --format text --products 500 --categories 4 >"$dir/in.ndjson" || exit 1
printf '{"type":"rank","user":"1","k":0}\n\nnot json\n{"type":"rank","user":"2","k":3' >>"$dir/in.ndjson"

args=(run --input "$dir/in.ndjson" --products 500 --dim 16 --set catalog.categories=4 --workers 2 --batch 16
      --cache rank=256KiB --quiet)
"$KEEL" "${args[@]}" --output "$dir/plain.ndjson" --dead-letter "$dir/plain.dl" || { bad "plain run failed"; exit 1; }

valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --track-origins=yes --log-file="$dir/vg.log" \
  "$KEEL" "${args[@]}" --output "$dir/vg.ndjson" --dead-letter "$dir/vg.dl"
rc=$?
summary=$(grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$dir/vg.log" | sed 's/^==[0-9]*== *//' | tr '\n' ';')
if [ "$rc" -eq 0 ]; then
  ok "valgrind memcheck: no error, no definite or indirect leak ($summary)"
else
  bad "valgrind memcheck: exit $rc ($summary)"
  grep -A 12 -E "Invalid|uninitialised|definitely lost in|indirectly lost in|Mismatched" "$dir/vg.log" | head -n 60
fi
cmp -s "$dir/plain.ndjson" "$dir/vg.ndjson" && cmp -s "$dir/plain.dl" "$dir/vg.dl" &&
  ok "same output and dead letters under valgrind ($(wc -l <"$dir/vg.ndjson") results, $(wc -l <"$dir/vg.dl") rejects)" ||
  bad "output under valgrind differs from the plain run"
echo "memcheck_run.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
