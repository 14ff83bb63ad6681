#!/usr/bin/env bash
# The QEMU cluster (issue 5): boots one VM per component with
# scripts/qemu-cluster (monitor, pComponent, mComponent, sComponent; TCG
# where KVM does not work), checks that every component joined from its own
# fabric address, runs stock binaries on a vNode and compares them byte for
# byte with native runs of the same image (as the integration tests do),
# runs the static memtouch workload on a vNode whose ExCache is smaller than
# its working set and compares its checksums with a native run, and stops
# the VMs. Uses the integration tests' helpers (tests/integration/lib.sh)
# with `cluster` pointing at scripts/qemu-cluster.
source "$(dirname "$0")/../integration/lib.sh"

cluster() { "$SK_SOURCE_DIR/scripts/qemu-cluster" "$@"; }
export BUILD=$SK_BUILD_DIR

memtouch=$SK_BUILD_DIR/workloads/memtouch-static
[ -x "$memtouch" ] || { fail "$memtouch is missing (build the 'workloads' target)"; finish; }

# The VMs are daemons of their own (QEMU -daemonize): if this script is
# killed (a ctest timeout) before its clean-up runs, a detached guard stops
# them once it is gone.
setsid bash -c 'while kill -0 "$1" 2> /dev/null; do sleep 2; done
                SPLIT_STATE=$2 "$3/scripts/qemu-cluster" down > /dev/null 2>&1' \
  guard $$ "$SPLIT_STATE" "$SK_SOURCE_DIR" < /dev/null > /dev/null 2>&1 &

start=$SECONDS
chmod 755 "$TEST_STATE"
cluster_up --timeout 600
boot_seconds=$((SECONDS - start))
pass "cluster up in $boot_seconds s"

# Every component joined, each from its VM's fabric address.
expect_eq "nodes alive" \
  "mcomponent:alive monitor:alive pcomponent:alive scomponent:alive" "$(node_states)"
addresses=$("$BIN/splitctl" --json nodes | python3 -c '
import json, sys
print(" ".join(sorted(n["kind"] + "@" + n["address"].rsplit(":", 1)[0] for n in json.load(sys.stdin))))')
expect_eq "components on their VMs' fabric addresses" \
  "mcomponent@10.88.0.3 monitor@10.88.0.1 pcomponent@10.88.0.2 scomponent@10.88.0.4" "$addresses"

# Every component on the cluster's fabric (qemu-configs/cluster.conf, or
# $FABRIC): verbs by default, RDMA over rxe between the VMs.
fabric=${FABRIC:-$(. "$SK_SOURCE_DIR/qemu-configs/cluster.conf" && echo "$FABRIC")}
fabrics=$("$BIN/splitctl" --json nodes | python3 -c '
import json, sys
print(" ".join(sorted({n["fabric"] for n in json.load(sys.stdin)})))')
expect_eq "every component on the $fabric fabric" "$fabric" "$fabrics"

if ! wait_for 120 vnode_ready default; then
  fail "vNode default does not run 'true' within 120 s"
  vrun default true < /dev/null || true
  finish
  exit 1
fi

# Stock binaries, compared with native runs. uname -s, not -a: the vNode's
# kernel is the VM's, not the host's.
compare_native "bash: uname -s; ls /; echo ok" /bin/bash -c 'uname -s; ls /; echo ok'
# Without ls's "total" (blocks as the file system allocates them: the
# VM's ext4 disk is not the host's file system).
compare_native "ls -l /usr/bin" sh -c 'ls -l /usr/bin | tail -n +2'
compare_native "python3 json + hashlib" python3 -c \
  'import json,hashlib; print(hashlib.sha256(json.dumps(list(range(20000))).encode()).hexdigest())'
compare_native "bash -c 'exit 7'" bash -c 'exit 7'
capture vrun default uname -r
vm_kernel=$(grep -a -o 'kernel [^ ,]*' "$SPLIT_STATE/logs/pcomponent0.log" | head -n 1 | cut -d' ' -f2)
expect_eq "the vNode runs on the VM's kernel (uname -r)" "$vm_kernel" "$OUT"

# memtouch (static) with an ExCache smaller than its working set: 4 MiB of
# cache for 16 MiB touched twice. Its checksums must match a native run.
NATIVE_ROOT=$(scratch_root "$TEST_STATE/native-root")
install -m 755 "$memtouch" "$NATIVE_ROOT/usr/local/bin/memtouch-static"
capture "$BIN/splitctl" vnode create small --cache 4M
expect_eq "vnode create small --cache 4M (stderr: $ERR)" 0 "$STATUS"
if wait_for 120 vnode_ready small; then
  install_file small "$memtouch" /usr/local/bin/memtouch-static
  t=$SECONDS
  VNODE=small compare_native "memtouch-static 16 2 on a 4 MiB ExCache" memtouch-static 16 2
  echo "memtouch-static 16 2 on the vNode and natively: $((SECONDS - t)) s"
  # Its pages went to the mComponent VM and came back (the pComponent's
  # memory counters say so).
  memory=$("$BIN/splitctl" --json stats | python3 -c '
import json, sys
groups = [n["counters"]["memory"] for n in json.load(sys.stdin) if "memory" in n["counters"]]
print(" ".join(str(sum(g[k] for g in groups)) for k in ("evicted_pages", "fetched_pages")) if groups else "")')
  if [ -z "$memory" ]; then
    fail "the pComponent reports no memory counters"
  elif [ "${memory% *}" -gt 0 ] && [ "${memory#* }" -gt 0 ]; then
    pass "pages evicted to and fetched from the mComponent VM (evicted, fetched: $memory)"
  else
    fail "memtouch on a 4 MiB ExCache moved no pages (evicted, fetched: $memory)"
  fi
else
  fail "vNode small does not run 'true' within 120 s"
fi

# splitctl stats: the monitor's and the pComponent's traffic went over the
# cluster's fabric, and the pComponent's moved the pages and the files.
traffic=$("$BIN/splitctl" --json stats | python3 -c '
import json, sys
fabric = sys.argv[1]
nodes = [n["counters"].get("fabric", {}) for n in json.load(sys.stdin)]
print(sum(1 for f in nodes if f.get("kind_" + fabric) == 1), len(nodes),
      sum(f.get("bytes_received", 0) for f in nodes) >> 20)' "$fabric")
read -r on_fabric reporting mib <<< "$traffic"
if [ "$on_fabric" -ge 2 ] && [ "$on_fabric" -eq "$reporting" ] && [ "$mib" -gt 0 ]; then
  pass "splitctl stats: $on_fabric of $reporting nodes on $fabric, $mib MiB received over it"
else
  fail "splitctl stats: $on_fabric of $reporting nodes on $fabric, $mib MiB received"
fi

# down stops every VM, and a second down is harmless.
pids=$(cat "$SPLIT_STATE"/*.pid 2>/dev/null || true)
capture cluster down
expect_eq "down (output: $OUT $ERR)" 0 "$STATUS"
left=""
# (A QEMU that daemonized is nobody's child here: until whoever adopted it
# reaps it, it is a zombie, which kill -0 still finds.)
for pid in $pids; do
  run_state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
  if [ -n "$run_state" ] && [ "$run_state" != Z ]; then left+=" $pid"; fi
done
expect_eq "no VM left after down" "" "$left"
capture cluster down
expect_eq "a second down (output: $OUT)" "0 qemu-cluster: not running (state $SPLIT_STATE)" "$STATUS $OUT"

echo "boot to all joined + vNode default: $boot_seconds s; whole test: $((SECONDS - start)) s"
finish
