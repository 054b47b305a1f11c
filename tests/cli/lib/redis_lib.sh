# lib/redis_lib.sh — sourced by tests/cli/redis_*.sh (not a test itself): a private redis-server on
# a random loopback port (no persistence), stopped when the test exits.
# Without redis-server the test says so and passes (skips).
: "${KEEL:?KEEL must name the keel executable}"
KEEL=$(realpath "$KEEL")
dir=$(mktemp -d)
redis_pid=""
cleanup() {
  # A failed check may come from the server: show the end of its log.
  [ "${fails:-0}" -gt 0 ] && [ -s "$dir/redis.log" ] && { echo "redis.log (last lines):"; tail -n 5 "$dir/redis.log"; }
  [ -n "$redis_pid" ] && kill -9 "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
[ -n "${KEEL_KEEP:-}" ] && trap - EXIT && echo "keeping $dir"
cd "$dir" || exit 1
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "SKIPPED: redis-server/redis-cli not installed (apt-get install redis-server; scripts/deps.sh does)"
  exit 0
fi

# start_redis [PORT]: starts redis-server (on PORT, else a random free one).
start_redis() {
  local want=${1:-}
  for _ in 1 2 3 4 5; do
    port=${want:-$((20000 + RANDOM % 40000))}
    redis-server --save '' --appendonly no --port "$port" --bind 127.0.0.1 >redis.log 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
      # The server that answers must be ours: another test's, on the same
      # random port, would answer the ping and then go away.
      [ "$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$redis_pid" ] &&
        return 0
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
  done
  echo "FAIL: cannot start redis-server"
  exit 1
}

stop_redis() {
  kill -9 "$redis_pid" 2>/dev/null
  wait "$redis_pid" 2>/dev/null
  redis_pid=""
}

# json FILE EXPR: a value of the JSON summary (python3).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
