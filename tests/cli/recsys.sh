#!/usr/bin/env bash
# The recommendation engine under `keel run`: a catalog loaded from a file
# that `keel catalog` wrote ranks exactly like the same catalog generated from
# the config; a corrupt or missing catalog file is a configuration error
# (exit 2) naming the file; bad requests are rejected with the stage's reason.
set -u
: "${KEEL:?KEEL must name the keel executable}"
KEEL=$(realpath "$KEEL") # the test cds into its own directory
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

"$KEEL" catalog -o cat.bin -p 500 -d 16 -c 5 -s 3 2>/dev/null || bad "keel catalog failed"
printf '[catalog]\nproducts = 500\ndim = 16\ncategories = 5\nseed = 3\n' >gen.ini
printf '[catalog]\nfile = %s/cat.bin\n' "$dir" >file.ini
{
  for u in 1 2 3 4 5 6 7 8; do
    echo "{\"type\":\"rank\",\"user\":\"$u\",\"k\":5}"
    echo "{\"type\":\"rank\",\"user\":\"$u\",\"k\":200,\"category\":\"c$((u % 5))\"}"
    echo "{\"type\":\"score\",\"user\":\"$u\",\"product\":\"$((u * 61))\"}"
    echo "{\"type\":\"user\",\"user\":\"$u\"}"
  done
  echo '{"type":"rank","user":"x","k":0}'
  echo '{"type":"rank","user":"x","k":3,"category":"c5"}'
  echo '{"type":"score","user":"x","product":"500"}'
} >ev.ndjson

"$KEEL" run --config gen.ini --input ev.ndjson --output gen.ndjson --dead-letter gen.rej 2>gen.err
rc=$?
[ $rc -eq 0 ] && ok "run with a generated catalog exits 0" || bad "run (generated) exited $rc: $(cat gen.err)"
"$KEEL" run --config file.ini --input ev.ndjson --output file.ndjson --dead-letter file.rej --workers 2 2>file.err
rc=$?
[ $rc -eq 0 ] && ok "run with the catalog file exits 0" || bad "run (file) exited $rc: $(cat file.err)"
[ "$(wc -l <gen.ndjson)" -eq 32 ] && ok "32 results" || bad "want 32 results, got $(wc -l <gen.ndjson)"
cmp -s gen.ndjson file.ndjson && ok "file catalog output identical to generated catalog output" ||
  bad "outputs differ between generated and loaded catalog"
grep -q '"items":\["[0-9]*","[0-9]*","[0-9]*","[0-9]*","[0-9]*"\],"scores":\[' gen.ndjson &&
  ok "rank writes 5 items and their scores" || bad "rank output shape: $(head -1 gen.ndjson)"
# A category rank with k above the category's size returns the category whole
# (about 100 of 500 products), and every item is a product id.
n=$(sed -n 2p gen.ndjson | grep -o '"items":\[[^]]*\]' | grep -o '"[0-9]*"' | wc -l)
[ "$n" -gt 50 ] && [ "$n" -lt 200 ] && ok "category rank with k=200 returned its $n products" ||
  bad "category rank returned $n items"
grep -q '"reason":"rank: k must be in 1..1000, got 0"' gen.rej && ok "k=0 rejected with its reason" ||
  bad "k=0 reason missing: $(cat gen.rej)"
grep -q "unknown category 'c5' (categories are c0..c4)" gen.rej && ok "unknown category rejected" ||
  bad "category reason missing"
grep -q "unknown product '500' (products are 0..499)" gen.rej && ok "unknown product rejected" ||
  bad "product reason missing"

# Corrupt the file: one flipped byte in the embeddings.
printf '\x7f' | dd of=cat.bin bs=1 seek=3000 conv=notrunc 2>/dev/null
"$KEEL" run --config file.ini --input ev.ndjson --output x.ndjson 2>corrupt.err
rc=$?
[ $rc -eq 2 ] && grep -q "catalog $dir/cat.bin: checksum mismatch" corrupt.err &&
  ok "corrupt catalog: exit 2, $(head -1 corrupt.err)" || bad "corrupt catalog: rc $rc, $(cat corrupt.err)"
printf '[catalog]\nfile = %s/none.bin\n' "$dir" >none.ini
"$KEEL" run --config none.ini --input ev.ndjson --output x.ndjson 2>none.err
rc=$?
[ $rc -eq 2 ] && grep -q "none.bin: cannot open" none.err && ok "missing catalog: exit 2, $(head -1 none.err)" ||
  bad "missing catalog: rc $rc, $(cat none.err)"
printf '[catalog]\nproducts = 10\ncategories = 11\n' >badcat.ini
"$KEEL" run --config badcat.ini --input ev.ndjson --output x.ndjson 2>badcat.err
rc=$?
[ $rc -eq 2 ] && grep -q "categories must be in 1..10" badcat.err && ok "categories > products: exit 2" ||
  bad "categories > products: rc $rc, $(cat badcat.err)"

echo "recsys.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
