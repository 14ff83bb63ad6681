# Shared helpers of the integration tests: a private local cluster per test
# (own state directory and free port), checks that print what went wrong,
# and clean-up that always runs.
set -euo pipefail

SK_SOURCE_DIR=${SK_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SK_BUILD_DIR=${SK_BUILD_DIR:-$SK_SOURCE_DIR/build}
export SK_BUILD_DIR
BIN=$SK_BUILD_DIR/bin
TEST_STATE=$(mktemp -d /tmp/sk-itest.XXXXXX)
export SPLIT_STATE=$TEST_STATE/cluster
failures=0

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cluster() { "$SK_SOURCE_DIR/scripts/local-cluster" "$@"; }

cleanup() {
  local status=$?
  cluster down > /dev/null 2>&1 || true
  if [ $status -ne 0 ] || [ $failures -ne 0 ]; then
    echo "---- component logs ----"
    tail -n 30 "$SPLIT_STATE"/logs/*.log 2>/dev/null || true
  fi
  rm -rf "$TEST_STATE"
}
trap cleanup EXIT

# Starts a cluster on a free port; sets SPLIT_MONITOR. Arguments go to `up`.
cluster_up() {
  local output
  output=$(cluster up --port "$(free_port)" "$@")
  echo "$output"
  eval "$(echo "$output" | tail -n 1)"
  export SPLIT_MONITOR
}

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# Runs a command, capturing stdout, stderr and status in OUT, ERR, STATUS.
capture() {
  local out err
  out=$(mktemp) err=$(mktemp)
  set +e
  "$@" > "$out" 2> "$err"
  STATUS=$?
  set -e
  OUT=$(cat "$out") ERR=$(cat "$err")
  rm -f "$out" "$err"
}

# Prints "kind:state" for every node, sorted, from splitctl's JSON.
node_states() {
  "$BIN/splitctl" --json nodes | python3 -c '
import json, sys
print(" ".join(sorted(n["kind"] + ":" + n["state"] for n in json.load(sys.stdin))))'
}

# The states of every node of a kind, sorted: "alive failed".
kind_states() {
  "$BIN/splitctl" --json nodes | python3 -c '
import json, sys
print(" ".join(sorted(n["state"] for n in json.load(sys.stdin) if n["kind"] == sys.argv[1])))' "$1"
}
kind_is() { [ "$(kind_states "$1")" == "$2" ]; }

# The pid of the first component of a kind that `up` started.
component_pid() { awk -v name="$1" '$2 == name { print $1; exit }' "$SPLIT_STATE/pids"; }

# wait_for SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

finish() {
  echo "$failures failed"
  [ $failures -eq 0 ]
}
