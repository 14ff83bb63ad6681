#!/usr/bin/env bash
# run-native-check.sh BUILD_DIR: runs every workload in BUILD_DIR/workloads
# natively with small arguments, dynamic and static build, twice each, and
# checks that each run exits 0 and that all four outputs are identical
# (the programs are deterministic, so the vNode tests can compare a vNode's
# output with the native one byte for byte). Also checks a few properties
# the tests rely on: memtouch --random gives the same output as the
# sequential order, matmul's result does not depend on the block size, an
# impossible allocation makes memtouch exit 3 with its message, and bad
# arguments exit 2; --time (for the benchmarks) leaves stdout as it is and
# adds only "NAME: time PHASE_ns=N" lines on stderr. Prints one line per
# check and exits 1 if any failed.
set -uo pipefail

build=${1:?usage: run-native-check.sh BUILD_DIR}
bin=$build/workloads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
  echo "FAIL $*"
  failures=$((failures + 1))
}

# run_variants NAME ARGS...: runs NAME and NAME-static twice each; every run
# must exit 0 with the same stdout and an empty stderr. Leaves the output in
# $tmp/out.
run_variants() {
  local name=$1
  shift
  local first="" variant run rc
  for variant in "" -static; do
    for run in 1 2; do
      "$bin/$name$variant" "$@" >"$tmp/run" 2>"$tmp/err"
      rc=$?
      if [[ $rc -ne 0 ]]; then
        fail "$name$variant $* (run $run): exit status $rc: $(head -c 500 "$tmp/err")"
        return
      fi
      if [[ -s $tmp/err ]]; then
        fail "$name$variant $* (run $run): wrote to stderr: $(head -c 500 "$tmp/err")"
        return
      fi
      if [[ -z $first ]]; then
        first="$name$variant run $run"
        cp "$tmp/run" "$tmp/out"
      elif ! cmp -s "$tmp/run" "$tmp/out"; then
        fail "$name$variant $* (run $run): output differs from $first:"
        diff "$tmp/out" "$tmp/run" | head -20
        return
      fi
    done
  done
  echo "ok   $name $* -> $(paste -sd '|' "$tmp/out")"
}

# expect_status STATUS STDERR_PATTERN PROGRAM ARGS...: a failure case.
expect_status() {
  local want=$1 pattern=$2
  shift 2
  "$bin/$1" "${@:2}" >/dev/null 2>"$tmp/err"
  local rc=$?
  if [[ $rc -ne $want ]]; then
    fail "$*: exit status $rc, expected $want"
  elif ! grep -qE -- "$pattern" "$tmp/err"; then
    fail "$*: stderr does not match '$pattern': $(head -c 300 "$tmp/err")"
  else
    echo "ok   $* -> exit $rc: $(head -n 1 "$tmp/err")"
  fi
}

for name in pi memtouch forktree threads fileio fork_evict matmul hashprobe syscalls filebench; do
  for variant in "" -static; do
    if [[ ! -x $bin/$name$variant ]]; then
      echo "FAIL $bin/$name$variant is missing (build the 'workloads' target)"
      exit 1
    fi
  done
done

run_variants pi 1000000
run_variants pi 1000000 3
run_variants memtouch 16
run_variants memtouch 8 3
cp "$tmp/out" "$tmp/sequential"
run_variants memtouch --random 8 3
cmp -s "$tmp/out" "$tmp/sequential" && echo "ok   memtouch --random 8 3 == memtouch 8 3" ||
  fail "memtouch --random 8 3 differs from memtouch 8 3"
run_variants forktree 0
run_variants forktree 3 2
run_variants forktree 2 4
run_variants threads 1 4
run_variants threads 4 16
run_variants threads 3 1
mkdir "$tmp/fileio"
run_variants fileio "$tmp/fileio" 4
[[ -z $(ls -A "$tmp/fileio") ]] && echo "ok   fileio left its directory empty" ||
  fail "fileio left files behind: $(ls -A "$tmp/fileio")"
run_variants fork_evict 32
run_variants matmul 128 16
sed 's/ block=[0-9]*//' "$tmp/out" >"$tmp/blocked"
run_variants matmul 128 128
sed 's/ block=[0-9]*//' "$tmp/out" | cmp -s - "$tmp/blocked" &&
  echo "ok   matmul 128: same result for block 16 and 128" ||
  fail "matmul 128: result depends on the block size"
run_variants matmul 200
run_variants matmul 32 8 1000
run_variants hashprobe 4 10000
run_variants syscalls 1000 100
mkdir "$tmp/filebench"
run_variants filebench seq "$tmp/filebench" 2
run_variants filebench small "$tmp/filebench" 50
[[ -z $(ls -A "$tmp/filebench") ]] && echo "ok   filebench left its directory empty" ||
  fail "filebench left files behind: $(ls -A "$tmp/filebench")"

# --time: the same stdout, and on stderr nothing but timing lines.
check_timing() {
  local name=$1
  shift
  "$bin/$name-static" "$@" >"$tmp/plain" 2>/dev/null
  "$bin/$name-static" --time "$@" >"$tmp/timed" 2>"$tmp/err"
  if ! cmp -s "$tmp/plain" "$tmp/timed"; then
    fail "$name --time $*: stdout differs from a run without --time"
  elif [[ ! -s $tmp/err ]] || grep -qvE "^$name: time [a-z0-9_]+_ns=[0-9]+\$" "$tmp/err"; then
    fail "$name --time $*: stderr is not only timing lines: $(head -c 300 "$tmp/err")"
  else
    echo "ok   $name --time $* -> $(paste -sd '|' "$tmp/err")"
  fi
}
check_timing pi 100000 2
check_timing matmul 32 8 100
check_timing memtouch 4 2
check_timing hashprobe 2 1000
check_timing syscalls 100 10
check_timing filebench small "$tmp/filebench" 10

expect_status 3 '^memtouch: cannot allocate 1000000000 MiB$' memtouch 1000000000
expect_status 3 '^threads: cannot allocate 1000000000 MiB$' threads 2 1000000000
expect_status 2 '^usage: pi' pi
expect_status 2 "bad SAMPLES '0'" pi 0
expect_status 2 "bad THREADS 'x'" pi 10 x
expect_status 2 "bad MIB '-5'" memtouch -5
expect_status 2 'more than 4096 processes' forktree 20 2
expect_status 2 "bad BLOCK '65'" matmul 64 65
expect_status 2 '^usage: hashprobe' hashprobe 1
expect_status 2 "bad PROBES 'x'" hashprobe 1 x
expect_status 2 '^usage: syscalls' syscalls 1
expect_status 2 "unknown mode 'big'" filebench big /tmp 1
expect_status 1 'fileio: mkdir' fileio "$tmp/does-not-exist" 1

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all workload checks passed"
