#!/usr/bin/env bash
# The workloads (tests/workloads, dynamic and static builds) on a vNode
# (issue 3), each compared byte for byte with a native run of the same binary
# in a chroot of the same image. The binaries reach the vNode the way a user
# would put them there: through stdin of `cat > /usr/local/bin/NAME` run on
# the vNode (stdin forwarding and FUSE writes). A second vNode with a small
# ExCache runs the memory workloads again, so that pages are evicted to the
# mComponent and fetched back (and a fork copies evicted pages).
source "$(dirname "$0")/lib.sh"

workloads=$SK_BUILD_DIR/workloads
names=(pi memtouch forktree threads fileio fork_evict matmul)
for name in "${names[@]}"; do
  for variant in "" -static; do
    [ -x "$workloads/$name$variant" ] || { fail "$workloads/$name$variant is missing (build the 'workloads' target)"; finish; }
  done
done

run_cluster_up

# Natively: the binaries in /usr/local/bin of a scratch copy of the image.
NATIVE_ROOT=$(scratch_root "$TEST_STATE/native-root")
for name in "${names[@]}"; do
  for variant in "" -static; do
    install -m 755 "$workloads/$name$variant" "$NATIVE_ROOT/usr/local/bin/"
  done
done

# install_workloads VNODE NAME...: both variants of each through the vNode,
# checked against the sComponent's copy.
install_workloads() {
  local vnode=$1 name variant status
  shift
  for name in "$@"; do
    for variant in "" -static; do
      set +e
      install_file "$vnode" "$workloads/$name$variant" "/usr/local/bin/$name$variant" 2> "$TEST_STATE/install.err"
      status=$?
      set -e
      if [ $status -ne 0 ]; then
        fail "install $name$variant on $vnode: status $status: $(head -c 500 "$TEST_STATE/install.err")"
      elif ! cmp -s "$workloads/$name$variant" "$(vnode_tree "$vnode")/usr/local/bin/$name$variant"; then
        fail "install $name$variant on $vnode: the sComponent's copy differs"
      fi
    done
  done
}

start=$SECONDS
install_workloads default "${names[@]}"
pass "installed ${#names[@]} workloads x 2 through the vNode in $((SECONDS - start)) s"
compare_native "installed binary is executable with the same mode" ls -ln --time-style=+ /usr/local/bin/pi-static

# run_both ARGS...: ARGS with both variants of the workload ARGS[0].
run_both() {
  local name=$1 variant
  shift
  for variant in "" -static; do
    compare_native "$name$variant $*${VNODE:+ on $VNODE}" "$name$variant" "$@"
  done
}

run_both pi 1000000 3
run_both memtouch 16
run_both memtouch --random 8 3
run_both forktree 3 2
run_both threads 4 16
run_both fileio /root 4
run_both fork_evict 32
run_both matmul 128 16

# Remote memory under pressure: an ExCache far smaller than the working set.
capture "$BIN/splitctl" vnode create small --cache 4M
expect_eq "vnode create small --cache 4M (stderr: $ERR)" 0 "$STATUS"
if wait_for 30 vnode_ready small; then
  install_workloads small memtouch fork_evict forktree
  VNODE=small run_both memtouch 32 2
  VNODE=small run_both memtouch --random 16 2
  VNODE=small run_both fork_evict 24
  VNODE=small run_both forktree 2 3
else
  fail "vNode small does not run 'true' within 30 s"
fi

# Bad arguments: the workloads' own errors and statuses come through.
compare_native "memtouch with a bad argument (status 2)" memtouch -5
compare_native "an impossible allocation (status 3)" memtouch-static 1000000000

finish
