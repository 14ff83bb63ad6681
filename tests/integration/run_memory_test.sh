#!/usr/bin/env bash
# Disaggregated memory (issue 4) on a local cluster: programs whose working
# set is far larger than their vNode's ExCache give the same output as
# natively, while their resident anonymous memory on the pComponent stays
# within the budget and the rest lives on the mComponents; fork after
# eviction, threads and python3 keep Linux semantics; the memory quota gives
# ENOMEM; a dead mComponent ends the program with a clear report, never a
# hang.
#
# The bound: a process's RssAnon (/proc/PID/status on the pComponent) may
# exceed its vNode's ExCache budget by SLACK_MIB. The memory manager lets
# faults run ahead of eviction by high_water (256 pages) plus a prefetch
# window (at most 128 pages), and the C library's own anonymous pages
# (its heap, TLS, the stack) are counted in RssAnon as well: together a
# few MiB.
source "$(dirname "$0")/lib.sh"

SLACK_MIB=8
workloads=$SK_BUILD_DIR/workloads
for name in memtouch fork_evict threads; do
  [ -x "$workloads/$name-static" ] || { fail "$workloads/$name-static is missing (build the 'workloads' target)"; finish; }
done

# One mComponent first; a second joins before the 2-mComponent case.
run_cluster_up --mcomponents 1 --excache 1G

NATIVE_ROOT=$(scratch_root "$TEST_STATE/native-root")
for name in memtouch fork_evict threads; do
  install -m 755 "$workloads/$name-static" "$NATIVE_ROOT/usr/local/bin/"
done

# make_vnode NAME OPTIONS...: creates a vNode, waits until it runs programs
# and installs the workloads into it.
make_vnode() {
  local name=$1
  shift
  capture "$BIN/splitctl" vnode create "$name" "$@"
  expect_eq "vnode create $name $* (stderr: $ERR)" 0 "$STATUS"
  wait_for 30 vnode_ready "$name" || fail "vNode $name does not run 'true' within 30 s"
  for workload in memtouch fork_evict threads; do
    install_file "$name" "$workloads/$workload-static" "/usr/local/bin/$workload-static"
  done
}

# mcomponent_usage_mib: the used MiB of each mComponent, by node id, "a b".
mcomponent_usage_mib() {
  "$BIN/splitctl" --json nodes | python3 -c '
import json, sys
nodes = sorted((n for n in json.load(sys.stdin) if n["kind"] == "mcomponent" and n["state"] == "alive"),
               key=lambda n: n["id"])
print(" ".join(str(n["usage"] >> 20) for n in nodes))'
}

# stat_value NAME: the memory counter NAME summed over the pComponents.
stat_value() {
  "$BIN/splitctl" --json stats | python3 -c '
import json, sys
print(sum(node["counters"].get("memory", {}).get(sys.argv[1], 0) for node in json.load(sys.stdin)))' "$1"
}

# sample NAME OUT: until killed, appends to OUT every 50 ms the RssAnon
# (KiB) of each process of a vNode (host uid 0x10000000 and above, see
# pcomponent/launcher.h) whose name starts with NAME ("rss PID KIB"), and
# every 500 ms the mComponents' used MiB by node id ("remote A B"). The
# native run of the same binary has the host's uid 0 and is not sampled.
sample() {  # exec: `kill $!` then stops the sampler itself
  exec python3 - "$1" "$2" "$BIN/splitctl" << 'EOF_SAMPLER'
import json, os, subprocess, sys, time
name, out, splitctl = sys.argv[1][:15], sys.argv[2], sys.argv[3]
next_remote = 0.0
with open(out, "a") as log:
    while True:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
            except OSError:
                continue
            if not fields.get("Name", "").strip().startswith(name):
                continue
            if int(fields.get("Uid", "0").split()[0]) < 0x10000000 or "RssAnon" not in fields:
                continue
            log.write(f"rss {pid} {fields['RssAnon'].split()[0]}\n")
        if time.monotonic() >= next_remote:
            next_remote = time.monotonic() + 0.5
            try:
                nodes = json.loads(subprocess.run([splitctl, "--json", "nodes"], capture_output=True,
                                                  text=True, timeout=5).stdout)
                used = [n["usage"] >> 20 for n in sorted(nodes, key=lambda n: n["id"])
                        if n["kind"] == "mcomponent" and n["state"] == "alive"]
                log.write("remote " + " ".join(map(str, used)) + "\n")
            except (subprocess.SubprocessError, ValueError):
                pass
        log.flush()
        time.sleep(0.05)
EOF_SAMPLER
}

# watch_run VNODE CACHE_MIB COMMAND...: compares COMMAND on VNODE with the
# native run while sampling (sample above). Checks that no process's
# RssAnon went over the vNode's ExCache budget plus SLACK_MIB; leaves the
# largest total mComponent usage (MiB) in PEAK_REMOTE_MIB and the
# per-mComponent usage at that moment in PEAK_SPREAD ("A+B").
watch_run() {
  local vnode=$1 cache_mib=$2
  shift 2
  local samples=$TEST_STATE/samples.$vnode
  : > "$samples"
  sample "$1" "$samples" &
  local sampler=$!
  VNODE=$vnode compare_native "$* on a ${cache_mib} MiB ExCache" "$@"
  kill $sampler 2> /dev/null || true
  wait $sampler 2> /dev/null || true
  local peak_kib rss_samples
  peak_kib=$(awk '$1 == "rss" && $3 > max { max = $3 } END { print max + 0 }' "$samples")
  rss_samples=$(grep -c '^rss' "$samples" || true)
  read -r PEAK_REMOTE_MIB PEAK_SPREAD < <(awk '$1 == "remote" {
      total = 0; for (i = 2; i <= NF; ++i) total += $i
      if (total >= max) { max = total; spread = ""; for (i = 2; i <= NF; ++i) spread = spread $i "+" }
    } END { sub(/\+$/, "", spread); print max + 0, (spread == "" ? "-" : spread) }' "$samples")
  if [ "$rss_samples" -lt 3 ]; then
    fail "$1: only $rss_samples RssAnon samples of the running program"
  elif [ "$peak_kib" -le $(((cache_mib + SLACK_MIB) * 1024)) ]; then
    pass "$1: peak RssAnon $((peak_kib / 1024)) MiB <= ${cache_mib} MiB ExCache + ${SLACK_MIB} MiB ($rss_samples samples)"
  else
    fail "$1: peak RssAnon $((peak_kib / 1024)) MiB > ${cache_mib} MiB ExCache + ${SLACK_MIB} MiB (faults served over budget so far: $(stat_value overruns))"
  fi
}

# remote_about_512 WHAT: the peak mComponent usage of the last watch_run
# was about 512 MiB. Every page was written back once evicted (448 MiB at
# least); pages fetched back stay on the mComponent too, so up to all 512.
remote_about_512() {
  if [ "$PEAK_REMOTE_MIB" -ge 440 ] && [ "$PEAK_REMOTE_MIB" -le 600 ]; then
    pass "$1: the mComponents held about 512 MiB: ${PEAK_REMOTE_MIB} MiB ($PEAK_SPREAD)"
  else
    fail "$1: the mComponents held ${PEAK_REMOTE_MIB} MiB ($PEAK_SPREAD), not about 512"
  fi
}

# 1. memtouch 512 MiB on a 64 MiB ExCache: native checksums, RssAnon within
#    the budget, and about 512 MiB on the mComponent; then the same with 2
#    mComponents, over which the vNode's 64 MiB vRegions spread
#    (monitor/memory_placement.h).
make_vnode m64 --cache 64M
watch_run m64 64 memtouch-static 512
remote_about_512 "1 mComponent"

# A second mComponent, started as `up` started the first (`down` stops it).
read -r _ name args < <(awk '$2 == "mcomponent" { print; exit }' "$SPLIT_STATE/pids")
# shellcheck disable=SC2086
setsid "$BIN/mcomponent" $args >> "$SPLIT_STATE/logs/mcomponent-2.log" 2>&1 < /dev/null &
echo "$! mcomponent $args" >> "$SPLIT_STATE/pids"
if wait_for 30 kind_is mcomponent "alive alive"; then
  pass "a second mComponent joined"
else
  fail "a second mComponent did not join: $(kind_states mcomponent)"
fi
# A vNode made now is set up on both at once (one made before learns of
# the newcomer when the monitor catches it up, a moment after it joined).
make_vnode m64b --cache 64M
watch_run m64b 64 memtouch-static 512
remote_about_512 "2 mComponents"
if [[ "$PEAK_SPREAD" =~ ^([0-9]+)\+([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 64 ] && [ "${BASH_REMATCH[2]}" -ge 64 ]; then
  pass "the vNode's memory spread over 2 mComponents ($PEAK_SPREAD MiB)"
else
  fail "the vNode's memory did not spread over 2 mComponents ($PEAK_SPREAD MiB)"
fi
# The exit freed it all (heartbeats carry it within a second or two).
mcomponents_empty() { [ "$(mcomponent_usage_mib | tr ' ' '\n' | awk '{ t += $1 } END { print t + 0 }')" -eq 0 ]; }
if wait_for 10 mcomponents_empty; then
  pass "the mComponents freed the program's pages at its exit"
else
  fail "the mComponents still hold $(mcomponent_usage_mib) MiB after the program exited"
fi

# While a program's pages are being evicted, other processes still read its
# command line (ps, pgrep: /proc/PID/cmdline reads its stack, whose argv
# pages the memory manager keeps resident).
( set +e; env -u TERM -u LANG "$BIN/splitctl" run m64 -- memtouch-static 256 40 > /dev/null 2>&1 ) < /dev/null &
runner=$!
evicting() { [ "$(stat_value evicted_pages)" -gt "$evicted_before" ]; }
evicted_before=$(stat_value evicted_pages)
if wait_for 60 evicting; then
  sleep 1
  commands=$("$BIN/splitctl" --json ps m64 | python3 -c '
import json, sys
print("|".join(p["command"] for p in json.load(sys.stdin)))')
  expect_eq "splitctl ps shows an evicting program's command line" "memtouch-static 256 40" "$commands"
else
  fail "memtouch-static 256 40 on a 64 MiB ExCache evicted nothing within 60 s"
fi
kill -INT $runner 2> /dev/null || true
wait $runner || true

# splitctl stats: the pComponent's memory counters moved.
for counter in evicted_pages written_back_pages fetched_pages prefetched_pages fault_count; do
  value=$(stat_value $counter)
  if [ "$value" -gt 0 ]; then pass "stats memory $counter = $value"; else fail "stats memory $counter is $value"; fi
done

# 2. fork after eviction: 256 MiB on a 32 MiB ExCache.
make_vnode m32 --cache 32M
watch_run m32 32 fork_evict-static 256

# 3. threads: 4 threads over 192 MiB (disjoint slices, a shared page and
#    counter) on the 64 MiB ExCache; python3 building a list of about 300
#    MiB (8 million distinct ints and the list's pointers).
watch_run m64 64 threads-static 4 192
watch_run m64 64 python3 -c 'l = [i * 7 for i in range(8000000)]; print(len(l), sum(l) % 1000003, l[-1])'

# 4. The vNode's memory quota: ENOMEM as on Linux at its commit limit.
make_vnode q --cache 32M --memory 96M
capture vrun q memtouch-static 128
expect_eq "memtouch 128 over a 96 MiB quota: status" 3 "$STATUS"
expect_eq "memtouch 128 over a 96 MiB quota: stderr" "memtouch: cannot allocate 128 MiB" "$ERR"
capture vrun q python3 -c 'b = bytearray(200 << 20)'
expect_eq "python3 over the quota: status" 1 "$STATUS"
if [[ "$ERR" == *MemoryError* ]]; then pass "python3 over the quota raises MemoryError"; else fail "python3 over the quota: stderr '$ERR'"; fi
# Under the quota the same vNode works, and memory beyond the cache is fine.
VNODE=q compare_native "memtouch 64 within the 96 MiB quota" memtouch-static 64
still_serving "the over-quota runs"

# 5. A dead mComponent: the program whose pages it held is killed with a
#    clear report, within seconds, and the cluster keeps serving.
make_vnode d --cache 16M
out=$TEST_STATE/dead
mkdir -p "$out"
( set +e; timeout 120 env -u TERM -u LANG "$BIN/splitctl" run d -- memtouch-static 256 50 \
    < /dev/null > "$out/out" 2> "$out/err"; echo $? > "$out/status" ) &
runner=$!
# Wait until its pages are on the mComponents, then kill every mComponent.
has_remote() { [ "$(mcomponent_usage_mib | tr ' ' '\n' | awk '{ t += $1 } END { print t + 0 }')" -ge 64 ]; }
if wait_for 60 has_remote; then
  for pid in $(awk '$2 == "mcomponent" { print $1 }' "$SPLIT_STATE/pids"); do kill -9 "$pid"; done
  wait $runner || true
  status=$(cat "$out/status")
  if [ "$status" -eq 124 ]; then
    fail "the run hung after its mComponents died"
  elif [ "$status" -ne 0 ] && grep -q "mComponent" "$out/err"; then
    pass "a dead mComponent ends the run: status $status, '$(head -c 300 "$out/err")'"
  else
    fail "after its mComponents died the run ended with status $status, stderr '$(head -c 300 "$out/err")'"
  fi
else
  fail "memtouch 256 on a 16 MiB ExCache put no pages on the mComponents"
  kill $runner 2> /dev/null || true
fi
still_serving "the mComponents died"

finish
