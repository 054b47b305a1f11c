# lib/redis_lib.sh — sourced by tests/cli/redis_*.sh (not a test itself): a private redis-server on
# a random loopback port (no persistence), stopped when the test exits.
# Without redis-server the test says so and passes (skips); with a redis-server that is installed
# but does not start (or that redis-cli cannot reach), it fails and says why.
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

if ! command -v redis-server >/dev/null 2>&1; then
  echo "SKIPPED: redis-server is not installed (apt-get install redis-server; scripts/deps.sh does)"
  exit 0
fi
if ! command -v redis-cli >/dev/null 2>&1; then
  # The server is there, so the test is expected to run: a missing client is a broken install.
  echo "FAIL: redis-server is installed ($(command -v redis-server)) but redis-cli is not (apt-get install redis-tools)"
  exit 1
fi

# start_redis [PORT]: starts redis-server (on PORT, else a random free one); exits 1, saying why,
# when it cannot.
start_redis() {
  local want=${1:-} why="not tried"
  for _ in 1 2 3 4 5; do
    port=${want:-$((20000 + RANDOM % 40000))}
    redis-server --save '' --appendonly no --port "$port" --bind 127.0.0.1 >redis.log 2>&1 &
    redis_pid=$!
    why="redis-server (pid $redis_pid) did not answer on 127.0.0.1:$port within 5 s"
    for _ in $(seq 50); do
      # The server that answers must be ours: another test's, on the same
      # random port, would answer the ping and then go away.
      [ "$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$redis_pid" ] &&
        return 0
      if ! kill -0 "$redis_pid" 2>/dev/null; then
        wait "$redis_pid" 2>/dev/null
        why="redis-server --port $port exited with status $?"
        break
      fi
      sleep 0.1
    done
    kill -9 "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
  done
  echo "FAIL: redis-server is installed ($(command -v redis-server)) but could not be started after 5 attempts: $why"
  [ -s redis.log ] && { echo "redis.log (last lines):"; tail -n 5 redis.log; }
  exit 1
}

stop_redis() {
  kill -9 "$redis_pid" 2>/dev/null
  wait "$redis_pid" 2>/dev/null
  redis_pid=""
}

# json FILE EXPR: a value of the JSON summary (python3).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
