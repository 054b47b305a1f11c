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
