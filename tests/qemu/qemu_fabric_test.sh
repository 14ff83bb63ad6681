#!/usr/bin/env bash
# The fabric suites over verbs (issue 5): boots one VM from
# scripts/build-vm-images' kernel with the fabrictest role's initramfs,
# whose init brings up soft-RoCE (rdma_rxe: rxe0 on the VM's NIC) and runs
# build/bin/fabric_test's parameterized transport suites (Transports/*),
# both ends in the VM, then powers off. On a host without an RDMA device
# the unit run skips every verbs case; here every case must pass for both
# transports, and none be skipped. TCG unless SK_QEMU_ACCEL=kvm.
source "$(dirname "$0")/../integration/lib.sh"

[ -x "$BIN/fabric_test" ] || { fail "$BIN/fabric_test is missing (build the fabric_test target)"; finish; exit 1; }
qemu=${SK_QEMU:-qemu-system-x86_64}
command -v "$qemu" > /dev/null || { fail "$qemu not found (scripts/install-deps)"; finish; exit 1; }
accel=${SK_QEMU_ACCEL:-tcg}
configs=${SK_QEMU_CONFIGS:-$SK_SOURCE_DIR/qemu-configs}
conf() { (source "$configs/$1.conf" && eval "printf '%s' \"\${$2:-}\""); }

start=$SECONDS
images=$(BUILD=$SK_BUILD_DIR "$SK_SOURCE_DIR/scripts/build-vm-images" --roles fabrictest --no-disk) ||
  { fail "scripts/build-vm-images --roles fabrictest failed (see above)"; finish; exit 1; }
eval "$(grep '^SK_VM_[A-Z_]*=' <<< "$images")"
echo "images ready in $((SECONDS - start)) s"

machine=(-accel "$accel" -cpu max)
[ "$accel" = kvm ] && machine=(-accel kvm -cpu host)
mac=52:54:00:88:ff:01
cmdline="$(conf cluster CMDLINE) $(conf fabrictest CMDLINE) sk_role=fabrictest sk_name=fabrictest"
cmdline+=" sk_mac=$mac sk_ip=10.88.0.1/24 sk_fabric=verbs sk_filter=$(conf fabrictest FILTER)"
log=$TEST_STATE/fabrictest.log
t=$SECONDS
# restrict=on: the NIC reaches nothing; rxe0 only talks to itself.
qemu_status=0
: > "$log.raw"
timeout -k 10 "${SK_FABRIC_TEST_TIMEOUT:-600}" "$qemu" -name fabrictest "${machine[@]}" \
  -m "$(conf fabrictest MEMORY)" -smp "$(conf fabrictest CPUS)" \
  -nodefaults -no-user-config -display none -no-reboot -serial "file:$log.raw" \
  -kernel "$SK_VM_KERNEL" -initrd "$SK_VM_INITRAMFS_FABRICTEST" \
  -netdev "user,id=fabric,restrict=on" -device "virtio-net-pci,netdev=fabric,mac=$mac,romfile=" \
  -append "$cmdline" < /dev/null || qemu_status=$?
tr -d '\r' < "$log.raw" > "$log"  # the guest's console ends lines with CR LF
echo "VM ran for $((SECONDS - t)) s (QEMU status $qemu_status); its console:"
grep -a -E '^(sk-init:|\[ *(OK|FAILED|SKIPPED|PASSED) *\])' "$log" | sed 's/^/  /' || true
expect_eq "QEMU exited by itself" 0 "$qemu_status"
grep -aq 'sk-init: .*rdma: rxe0 on ' "$log" && pass "rxe0 is up in the VM" ||
  fail "no rxe0 in the VM: $(grep -a 'sk-init:' "$log" | tail -n 3)"
expect_eq "fabric_test's status" "sk-init: fabric_test: status 0" \
  "$(grep -a -o 'sk-init: .*fabric_test: status [0-9]*' "$log" | sed 's/^\(sk-init: \)\[[^]]*\] /\1/')"

# Every case passed for both transports, and the same ones.
cases() { grep -a -o "^\[       OK \] Transports/FabricTest\.[A-Za-z_]*/$1" "$log" | sed 's/.*FabricTest\.//; s,/.*,,' | sort || true; }
tcp=$(cases tcp)
verbs=$(cases verbs)
count=$(grep -c . <<< "$verbs" || true)
[ "$count" -ge 15 ] && pass "$count verbs cases passed" || fail "only $count verbs cases passed"
expect_eq "the verbs cases are the tcp cases" "$tcp" "$verbs"
expect_eq "cases skipped or failed" "" \
  "$(grep -a -E '^\[ *(SKIPPED|FAILED) *\] Transports/' "$log" | sort -u)"
echo "whole test: $((SECONDS - start)) s"
finish
