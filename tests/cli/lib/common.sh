# Sourced by keel's CLI tests (tests/cli/*.sh) after their header comment:
# checks that KEEL names the executable, makes a temporary folder $dir, and
# removes it on exit — closing a FIFO writer held on fd 3 and killing a
# background keel whose process id a test left in $pid. ok/bad print one line
# per check; bad counts failures in $fails, which the test turns into its exit
# status.
set -u
: "${KEEL:?KEEL must name the keel executable}"
dir=$(mktemp -d)
pid=""
cleanup() {
  exec 3>&- 2>/dev/null
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND... : ok when COMMAND succeeds
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
expect_rc() { # expect_rc RC PATTERN ARGS... : `keel $sub ARGS` exits RC, stderr matches PATTERN
  local rc=$1 pat=$2; shift 2
  "$KEEL" "$sub" "$@" >"$dir/out" 2>"$dir/err"
  local got=$?
  if [ "$got" -ne "$rc" ] || ! grep -q -- "$pat" "$dir/err"; then
    bad "keel $sub $* -> rc $got (want $rc), stderr: $(cat "$dir/err")"
  else
    ok "keel $sub $* -> $rc ($(head -1 "$dir/err"))"
  fi
}
