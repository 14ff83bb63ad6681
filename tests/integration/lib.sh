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

# ---- Programs on vNodes, compared with native runs (issue 3) --------------
# A vNode run is `splitctl run VNODE -- CMD...` with TERM and LANG unset (the
# vNode takes them from the caller); the native run is the same stock binary
# from the same image tree: `scripts/run-native ROOT CMD...`, which the
# benchmarks (bench/native.py) use too. Both get stdin from /dev/null unless
# STDIN_FILE names a file (then through a pipe).

# The default image's tree (`cluster up` builds it).
image_rootfs() { "$SK_SOURCE_DIR/scripts/build-image" --print-path | tail -n 1; }

# vrun_argv VNODE CMD... / native_argv ROOT CMD...: the command line of a
# vNode run / a native run, in the array ARGV.
vrun_argv() {
  local vnode=$1
  shift
  ARGV=(env -u TERM -u LANG "$BIN/splitctl" run "$vnode" -- "$@")
}
# Natively: `chroot ROOT env -i PATH=... HOME=/root CMD...` in namespaces of
# its own that give the chroot /proc, /dev and an empty /tmp, with the default
# signal dispositions (see scripts/run-native).
native_argv() {
  ARGV=("$SK_SOURCE_DIR/scripts/run-native" "$@")
}

# vrun VNODE CMD...: runs CMD on the vNode.
vrun() {
  vrun_argv "$@"
  "${ARGV[@]}"
}

# native ROOT CMD...: runs CMD natively in a chroot of ROOT.
native() {
  native_argv "$@"
  "${ARGV[@]}"
}

# scratch_root DIR: a throwaway copy of the image (cp -a) at DIR, for native
# runs that write files; prints DIR.
scratch_root() {
  cp -a "$(image_rootfs)" "$1"
  echo "$1"
}

# run_to DIR CMD...: runs CMD (`native ...` and `vrun ...` too), leaving its
# stdout, stderr and exit status in DIR/out, DIR/err and DIR/status (byte for
# byte: no newline stripped). A program killed by a signal gives 128+N, and
# bash's "Killed" notice does not end up in DIR/err.
run_to() {
  local dir=$1 status=0
  shift
  mkdir -p "$dir"
  case "$1" in
    native | vrun) "$1_argv" "${@:2}" ;;
    *) ARGV=("$@") ;;
  esac
  if [ -n "${STDIN_FILE:-}" ]; then
    # Through a pipe, as on a vNode (splitctl streams stdin): programs such
    # as tac treat a regular file differently.
    { (exec "${ARGV[@]}") < <(cat "$STDIN_FILE") > "$dir/out" 2> "$dir/err"; } 2> /dev/null || status=$?
  else
    { (exec "${ARGV[@]}") < /dev/null > "$dir/out" 2> "$dir/err"; } 2> /dev/null || status=$?
  fi
  echo $status > "$dir/status"
}

# show_side LABEL DIR: a run's status, stdout and stderr, shortened.
show_side() {
  echo "  --- $1: status $(cat "$2/status"), stdout $(wc -c < "$2/out") bytes, stderr $(wc -c < "$2/err") bytes"
  head -c 2000 "$2/out" | cat -v | head -n 15 | sed 's/^/  out| /'
  head -c 2000 "$2/err" | cat -v | head -n 10 | sed 's/^/  err| /'
}

# same_result WHAT NATIVE_DIR VNODE_DIR: passes when stdout, stderr and
# status are identical; otherwise fails, printing both sides and the diff.
same_result() {
  local what=$1 a=$2 b=$3 differs=""
  cmp -s "$a/status" "$b/status" || differs+=" status"
  cmp -s "$a/out" "$b/out" || differs+=" stdout"
  cmp -s "$a/err" "$b/err" || differs+=" stderr"
  if [ -z "$differs" ]; then
    pass "$what (status $(cat "$a/status"), $(wc -c < "$a/out") bytes out)"
    return
  fi
  fail "$what: differs from native in$differs"
  show_side native "$a"
  show_side vnode "$b"
  for stream in out err; do
    if ! cmp -s "$a/$stream" "$b/$stream"; then
      echo "  --- diff of std$stream (native vs vnode):"
      diff <(cat -v "$a/$stream") <(cat -v "$b/$stream") | head -n 30 | sed 's/^/  /' || true
    fi
  done
}

# compare_native WHAT CMD...: runs CMD natively in NATIVE_ROOT (default: the
# image) and on VNODE (default: default) and compares them (same_result).
compare_native() {
  local what=$1
  shift
  local dir
  dir=$(mktemp -d "$TEST_STATE/run.XXXXXX")
  run_to "$dir/native" native "${NATIVE_ROOT:-$(image_rootfs)}" "$@"
  run_to "$dir/vnode" vrun "${VNODE:-default}" "$@"
  same_result "$what" "$dir/native" "$dir/vnode"
}

# vcapture VNODE CMD...: capture (OUT, ERR, STATUS) of a vNode run, stdin
# from STDIN_FILE or /dev/null.
vcapture() {
  capture vrun "$@" < "${STDIN_FILE:-/dev/null}"
}

# still_serving WHAT: a normal run on `default` works (after bad input).
still_serving() {
  local out
  set +e
  out=$(vrun default echo still-serving < /dev/null 2>&1)
  local status=$?
  set -e
  if [ $status -eq 0 ] && [ "$out" == "still-serving" ]; then
    pass "still serving after $1"
  else
    fail "not serving after $1: status $status, output '$out'"
  fi
}

# vnode_ready VNODE: a run on it succeeds (for wait_for).
vnode_ready() { vrun "$1" true < /dev/null > /dev/null 2>&1; }

# install_file VNODE HOST_FILE PATH [MODE]: copies a host file into the
# vNode the way a user would, through the vNode: stdin of `cat > PATH`.
install_file() {
  vrun "$1" sh -c "cat > '$3' && chmod ${4:-755} '$3'" < "$2"
}

# vnode_tree VNODE: the vNode's tree on the first sComponent.
vnode_tree() { echo "$SPLIT_STATE/scomponent/0/vnodes/$1"; }

# restart_component NAME: kills (SIGKILL) the first component NAME that `up`
# started and starts it again with the same flags, as `up` does; its line in
# SPLIT_STATE/pids gets the new pid, so `down` stops it. Uses
# `local-cluster restart NAME` when the script has one.
restart_component() {
  local name=$1
  if grep -qE '^#.*local-cluster restart' "$SK_SOURCE_DIR/scripts/local-cluster"; then
    cluster restart "$name"
    return
  fi
  local pid args
  pid=$(awk -v name="$name" '$2 == name { print $1; exit }' "$SPLIT_STATE/pids")
  args=$(awk -v name="$name" '$2 == name { $1 = ""; $2 = ""; sub(/^  /, ""); print; exit }' \
    "$SPLIT_STATE/pids")
  [ -n "$pid" ] || { echo "restart_component: no $name in $SPLIT_STATE/pids" >&2; return 1; }
  kill -KILL "$pid"
  wait_for 10 bash -c "! kill -0 $pid 2>/dev/null"
  # shellcheck disable=SC2086
  setsid "$BIN/$name" $args >> "$SPLIT_STATE/logs/$name.log" 2>&1 < /dev/null &
  local new=$!
  sed -i "s/^$pid $name /$new $name /" "$SPLIT_STATE/pids"
}

# run_cluster_up [OPTIONS of up]: cluster_up for the tests that run programs,
# then waits (30 s at most) until `default` runs one; fails the test if it
# does not. The state directory is made traversable first: a vNode's
# programs and init run as unprivileged host uids, and mktemp -d made it 0700.
run_cluster_up() {
  chmod 755 "$TEST_STATE"
  cluster_up "$@"
  if ! wait_for 30 vnode_ready default; then
    fail "vNode default does not run 'true' within 30 s"
    vrun default true < /dev/null || true
    finish
    exit 1
  fi
}
