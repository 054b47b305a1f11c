#!/usr/bin/env bash
# Output to a descriptor another process left in non-blocking mode: a pipe
# whose reader is slow then makes write(2) fail with EAGAIN, which must not
# lose a byte or fail the run. `keel gen` and `keel run --output -` write
# to such a pipe while the reader sleeps first; each output must equal the
# same command's output to a file, and each must exit 0.
. "$(dirname "$0")/lib/common.sh"

seq 1 40000 >"$dir/keys.txt"
"$KEEL" gen --trace "$dir/keys.txt" --format lirs >"$dir/events.ndjson" || bad "keel gen to a file"
"$KEEL" run --input "$dir/events.ndjson" --output "$dir/run.ndjson" --dead-letter "$dir/dl.ndjson" --quiet ||
  bad "keel run to a file"

# slow_pipe OUT CMD...: runs CMD with stdout on a non-blocking pipe whose
# reader waits 0.5 s before reading (so the 64 KiB pipe fills), then reads
# slowly; writes what came to OUT; exits with CMD's status.
slow_pipe() {
  python3 - "$@" <<'PY'
import fcntl, os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
p = subprocess.Popen(cmd, stdout=w)
os.close(w)
time.sleep(0.5)
with open(out, "wb") as f:
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        f.write(b)
        time.sleep(0.0002)
sys.exit(p.wait())
PY
}

check "keel gen: every byte through a non-blocking pipe" bash -c "
  $(declare -f slow_pipe)
  slow_pipe '$dir/gen.pipe' '$KEEL' gen --trace '$dir/keys.txt' --format lirs && cmp '$dir/gen.pipe' '$dir/events.ndjson'"
check "keel run --output -: every line through a non-blocking pipe" bash -c "
  $(declare -f slow_pipe)
  slow_pipe '$dir/run.pipe' '$KEEL' run --input '$dir/events.ndjson' --output - --dead-letter '$dir/dl2.ndjson' --quiet &&
  cmp '$dir/run.pipe' '$dir/run.ndjson'"
echo "$fails failed"
[ "$fails" -eq 0 ]
