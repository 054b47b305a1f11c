#!/usr/bin/env bash
# Installs the build tree ($KEEL_BUILD) to a temporary prefix, then, against
# that prefix only (PKG_CONFIG_PATH): every installed public header compiles
# on its own; examples/wordlen (a program with its own stage) builds with
# CMake + pkg-config and runs; examples/plugin builds with make + pkg-config
# and the installed `keel` runs its stage with --plugin.
set -u
: "${KEEL_BUILD:?KEEL_BUILD must name the build tree}"
: "${KEEL_SRC:?KEEL_SRC must name the source tree}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
prefix="$dir/prefix"

if cmake --install "$KEEL_BUILD" --prefix "$prefix" >"$dir/install.log" 2>&1; then
  ok "cmake --install to $prefix"
else
  bad "cmake --install: $(tail -5 "$dir/install.log")"
  exit 1
fi
for f in bin/keel include/keel/pipeline.h include/keel/stage.h include/keel/version.h; do
  [ -e "$prefix/$f" ] || bad "not installed: $f"
done
pcdir=$(dirname "$(find "$prefix" -name keel.pc | head -1)")
[ -f "$pcdir/keel.pc" ] && ok "keel.pc installed in ${pcdir#$prefix/}" || { bad "no keel.pc installed"; exit 1; }
ls "$prefix"/lib*/libkeel.so.* >/dev/null 2>&1 && ok "shared libkeel with a versioned SONAME" || bad "no libkeel.so.N"
export PKG_CONFIG_PATH="$pcdir"

# Only the installed tree: the include and library paths lead into the prefix.
inc=$(pkg-config --cflags-only-I keel | tr ' ' '\n' | grep -- -I | head -1 | sed 's/^-I//')
[ -n "$inc" ] && [ "$(cd "$inc" && pwd -P)" = "$(cd "$prefix/include" && pwd -P)" ] &&
  ok "pkg-config keel points into the prefix ($inc)" || bad "pkg-config --cflags keel: $(pkg-config --cflags keel)"

# The build's compiler and sanitizers: an ASan build's libkeel needs them.
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$KEEL_BUILD/CMakeCache.txt")
san=$(sed -n 's/^KEEL_SANITIZE:[A-Z]*=//p' "$KEEL_BUILD/CMakeCache.txt")
[ -n "$cc" ] || cc=cc
sanflags=""
[ -n "$san" ] && sanflags="-fsanitize=$san -fno-omit-frame-pointer -fno-sanitize-recover=all"

# Each public header compiles on its own.
hfail=""
for h in "$prefix"/include/keel/*.h; do
  printf '#include <keel/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" >"$dir/h.c"
  # shellcheck disable=SC2046
  "$cc" -std=c11 -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags keel) "$dir/h.c" 2>"$dir/h.err" ||
    hfail="$hfail $(basename "$h")"
done
[ -z "$hfail" ] && ok "every installed header compiles on its own" || bad "headers that do not compile alone:$hfail"
# ... and as C++ (extern "C", no C-only syntax), where a C++ compiler exists.
if command -v c++ >/dev/null; then
  hfail=""
  for h in "$prefix"/include/keel/*.h; do
    printf '#include <keel/%s>\nint main() { return 0; }\n' "$(basename "$h")" >"$dir/h.cpp"
    # shellcheck disable=SC2046
    c++ -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags keel) "$dir/h.cpp" 2>"$dir/h.err" ||
      hfail="$hfail $(basename "$h")"
  done
  [ -z "$hfail" ] && ok "every installed header compiles as C++" || bad "headers that do not compile as C++:$hfail"
fi

# examples/wordlen: a program of its own, CMake + pkg-config, shared libkeel.
if cmake -S "$KEEL_SRC/examples/wordlen" -B "$dir/wordlen" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$sanflags -Wall -Wextra -Werror" -DCMAKE_EXE_LINKER_FLAGS="$sanflags" >"$dir/wl.log" 2>&1 &&
  cmake --build "$dir/wordlen" >>"$dir/wl.log" 2>&1; then
  ok "examples/wordlen builds against the installed keel"
else
  bad "examples/wordlen build: $(tail -20 "$dir/wl.log")"
fi
wl="$dir/wordlen/wordlen"
if [ -x "$wl" ]; then
  ldd "$wl" | grep -q "libkeel.so.* => $prefix" && ok "wordlen runs with the installed libkeel.so" ||
    bad "wordlen's libkeel: $(ldd "$wl" | grep keel)"
  cp "$KEEL_SRC/examples/wordlen/sample.ndjson" "$dir/sample.ndjson"
  "$wl" "$dir/sample.ndjson" "$dir/wl1.ndjson" 1 2>"$dir/wl1.err"
  rc=$?
  [ $rc -eq 0 ] && grep -q "6 events in, 4 out, 2 rejected, 1 blank lines" "$dir/wl1.err" &&
    ok "wordlen: $(cat "$dir/wl1.err")" || bad "wordlen: rc $rc, $(cat "$dir/wl1.err")"
  python3 - "$dir" <<'EOF' && ok "wordlen's results and dead letters are right" || bad "wordlen's output"
import json, sys
d = sys.argv[1]
out = [json.loads(l) for l in open(f"{d}/wl1.ndjson")]
want = [(1, 19, 4), (2, 0, 0), (4, 3, 1), (7, 26, 3)]
got = [(o["line"], o["bytes"], o["words"]) for o in out]
dl = [json.loads(l) for l in open(f"{d}/wl1.ndjson.rejected.ndjson")]
ok = got == want and [r["line"] for r in dl] == [5, 6] and "over the 80-byte limit" in dl[0]["reason"] \
    and "expected string, got int" in dl[1]["reason"]
if not ok: print(got, dl)
sys.exit(0 if ok else 1)
EOF
  python3 -c "
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(3000): f.write('{\"text\":\"%s\"}\n' % ('w ' * (i % 40)))
" "$dir/many.ndjson"
  "$wl" "$dir/many.ndjson" "$dir/m1.ndjson" 1 2>/dev/null && "$wl" "$dir/many.ndjson" "$dir/m3.ndjson" 3 2>/dev/null &&
    cmp -s "$dir/m1.ndjson" "$dir/m3.ndjson" && [ "$(wc -l <"$dir/m1.ndjson")" = 3000 ] &&
    ok "wordlen: 1 and 3 workers give identical output (3000 events)" || bad "wordlen with 3 workers"
  "$wl" "$dir/none.ndjson" "$dir/x.ndjson" 2>"$dir/none.err"
  [ $? -ne 0 ] && grep -q "none.ndjson" "$dir/none.err" && ok "wordlen reports a missing input: $(cat "$dir/none.err")" ||
    bad "wordlen missing input: $(cat "$dir/none.err")"
fi

# libkeel.a needs keel.pc's private requirements: they must be complete. The
# system libraries themselves link shared (Debian ships no static build of
# some of their own dependencies), so this links libkeel.a plus
# `pkg-config --libs` of each Requires.private module plus Libs.private.
libdir=$(pkg-config --variable=libdir keel)
reqs=$(pkg-config --print-requires-private keel | awk '{print $1}' | tr '\n' ' ')
privlibs=$(sed -n 's/^Libs.private: *//p' "$pcdir/keel.pc")
# shellcheck disable=SC2046,SC2086
if "$cc" -std=c11 $sanflags $(pkg-config --cflags keel) -o "$dir/wordlen_static" "$KEEL_SRC/examples/wordlen/wordlen.c" \
  "$libdir/libkeel.a" $(pkg-config --libs $reqs) $privlibs >"$dir/static.log" 2>&1; then
  ! ldd "$dir/wordlen_static" | grep -q libkeel && "$dir/wordlen_static" "$dir/sample.ndjson" "$dir/ws.ndjson" 2 2>/dev/null &&
    cmp -s "$dir/ws.ndjson" "$dir/wl1.ndjson" && ok "wordlen with libkeel.a and keel.pc's private requirements ($reqs) gives the same output" ||
    bad "static wordlen run"
else
  bad "linking libkeel.a with keel.pc's private requirements ($reqs$privlibs): $(grep -m5 'undefined\|error' "$dir/static.log")"
fi

# examples/plugin: make + pkg-config, loaded by the installed keel.
cp -r "$KEEL_SRC/examples/plugin" "$dir/plugin"
if make -C "$dir/plugin" CC="$cc" CFLAGS="$sanflags -O1 -Wall -Wextra -Werror" >"$dir/pl.log" 2>&1; then
  ok "examples/plugin builds against the installed keel"
else
  bad "examples/plugin build: $(tail -20 "$dir/pl.log")"
fi
so="$dir/plugin/libexample_stage.so"
if [ -f "$so" ]; then
  ! ldd "$so" 2>/dev/null | grep -q libkeel && ok "the plugin does not link a second libkeel" ||
    bad "the plugin links libkeel: $(ldd "$so" | grep keel)"
  printf '{"text":"hello"}\n{"text":""}\n\n{"text":"Mixed Case 42"}\n{"nope":1}\n' >"$dir/p.ndjson"
  (cd "$dir/plugin" && "$prefix/bin/keel" run --plugin ./libexample_stage.so --stages shout \
    --input "$dir/p.ndjson" --output "$dir/p.out" --summary-json "$dir/p.json" 2>"$dir/p.err")
  rc=$?
  [ $rc -eq 0 ] && ok "installed keel runs the plugin's stage: $(head -1 "$dir/p.err")" ||
    bad "keel run --plugin: rc $rc $(cat "$dir/p.err")"
  python3 - "$dir" <<'EOF' && ok "the plugin's results and dead letters are right" || bad "plugin output"
import json, sys
d = sys.argv[1]
out = [json.loads(l) for l in open(f"{d}/p.out")]
dl = [json.loads(l) for l in open(f"{d}/p.out.rejected.ndjson")]
s = json.load(open(f"{d}/p.json"))
ok = [(o["line"], o["shout"]) for o in out] == [(1, "HELLO!"), (4, "MIXED CASE 42!")] \
    and [(r["line"], r["reason"]) for r in dl] == [(2, "shout: empty text: nothing to shout"),
                                                  (5, "missing required field 'text'")] \
    and s["stages"]["shout"]["calls"] == 3 and s["stages"]["shout"]["errors"] == 1 and s["blank_lines"] == 1
if not ok: print(out, dl, s)
sys.exit(0 if ok else 1)
EOF
  "$prefix/bin/keel" check --plugin "$so" --stages shout >"$dir/c.out" 2>&1 && grep -q "shout(v1, pure, no settings)" "$dir/c.out" &&
    ok "keel check --plugin lists the plugin's stage" || bad "keel check --plugin: $(cat "$dir/c.out")"
  "$prefix/bin/keel" check --plugin "$so" --stages shout --set stage.shout.loud=1 >/dev/null 2>"$dir/e.err"
  [ $? -eq 2 ] && grep -q "unknown option 'loud' in \[stage.shout\] (it takes none)" "$dir/e.err" &&
    ok "a setting the plugin's stage does not declare is refused" || bad "undeclared setting: $(cat "$dir/e.err")"
  "$prefix/bin/keel" run --plugin "$so" --stages shout,nope --input "$dir/p.ndjson" >/dev/null 2>"$dir/e.err"
  [ $? -eq 2 ] && grep -q "unknown stage 'nope'" "$dir/e.err" && grep -q "shout" "$dir/e.err" &&
    ok "an unknown stage next to a plugin's: exit 2, the plugin's stage listed as known" || bad "$(cat "$dir/e.err")"
fi

echo "install_examples.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
