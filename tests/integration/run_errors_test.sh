#!/usr/bin/env bash
# Bad input to `splitctl run` (issue 3): each gets a clear error and leaves the
# cluster serving (a normal run works after each). A command that does not
# exist (127), a file that is not an x86-64 executable (126), a vNode that
# does not exist (splitctl error, exit 1), and attempts to get out of the
# vNode's tree: ../../etc/shadow, a symlink to / made on the vNode,
# /proc/1/root, /proc/self/root, absolute symlinks to host paths.
source "$(dirname "$0")/lib.sh"

run_cluster_up
tree=$(vnode_tree default)

# expect_error WHAT STATUS PATTERN CMD...: a vNode run of CMD exits STATUS
# with stderr matching PATTERN (grep -E) and nothing on stdout.
expect_error() {
  local what=$1 status=$2 pattern=$3
  shift 3
  vcapture default "$@"
  if [ "$STATUS" -eq "$status" ] && grep -qE -- "$pattern" <<< "$ERR" && [ -z "$OUT" ]; then
    pass "$what: status $STATUS: $ERR"
  else
    fail "$what: expected status $status and stderr matching '$pattern'; got status $STATUS, stdout '$(head -c 300 <<< "$OUT")', stderr '$ERR'"
  fi
  still_serving "$what"
}

# Commands that cannot run.
expect_error "a command that does not exist" 127 '^[^ ]+: nosuchcommand: command not found$' nosuchcommand
expect_error "a path that does not exist" 127 '/usr/bin/nosuch: No such file or directory$' /usr/bin/nosuch
expect_error "a directory" 126 '/usr: Is a directory$' /usr

# Files placed on the vNode through stdin: random bytes, an aarch64 ELF and a
# 32-bit x86 ELF (the image's /bin/true with its header patched), files
# without execute permission (where a shell says "Permission denied",
# whatever they hold).
head -c 4096 /dev/urandom | tr '\177' x > "$TEST_STATE/garbage"
python3 - "$(image_rootfs)/usr/bin/true" "$TEST_STATE" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
arm = bytearray(data); arm[18:20] = (183).to_bytes(2, "little")           # EM_AARCH64
open(sys.argv[2] + "/aarch64", "wb").write(arm)
i386 = bytearray(data); i386[4] = 1; i386[18:20] = (3).to_bytes(2, "little")  # ELFCLASS32, EM_386
open(sys.argv[2] + "/i386", "wb").write(i386)
PY
install_file default "$TEST_STATE/garbage" /root/garbage
install_file default "$TEST_STATE/aarch64" /root/aarch64
install_file default "$TEST_STATE/i386" /root/i386
install_file default "$(image_rootfs)/usr/bin/true" /root/noexec 644
install_file default "$TEST_STATE/garbage" /root/noexec-garbage 644
expect_error "random bytes" 126 '/root/garbage: .*Exec format error' /root/garbage
expect_error "an aarch64 ELF" 126 '/root/aarch64: .*Exec format error' /root/aarch64
expect_error "a 32-bit x86 ELF" 126 '/root/i386: .*Exec format error' /root/i386
expect_error "an ELF without execute permission" 126 '/root/noexec: Permission denied$' /root/noexec
expect_error "random bytes without execute permission" 126 '/root/noexec-garbage: Permission denied$' \
  /root/noexec-garbage
capture env -u TERM -u LANG "$BIN/splitctl" run default --env PATH=/usr/bin:/root -- aarch64
if [ "$STATUS" -eq 126 ] && grep -qE 'aarch64: .*Exec format error' <<< "$ERR"; then
  pass "an aarch64 ELF found in PATH: status 126: $ERR"
else
  fail "an aarch64 ELF found in PATH: expected 126 and Exec format error; got $STATUS: '$ERR'"
fi
still_serving "an aarch64 ELF found in PATH"
# From a shell on the vNode, the shell's own messages and statuses.
compare_native "bash: a command that does not exist" bash -c 'nosuchcommand; echo "status $?"'

# A vNode that does not exist.
capture "$BIN/splitctl" run nosuchvnode -- true
if [ "$STATUS" -eq 1 ] && grep -q "nosuchvnode" <<< "$ERR" && [ "$(grep -c . <<< "$ERR")" -eq 1 ]; then
  pass "a vNode that does not exist: status 1: $ERR"
else
  fail "a vNode that does not exist: expected status 1 and one line naming it; got $STATUS: '$ERR'"
fi
still_serving "a vNode that does not exist"
capture "$BIN/splitctl" run
[ "$STATUS" -eq 2 ] && pass "run without arguments: usage error (status 2)" || fail "run without arguments: status $STATUS: $ERR"
still_serving "run without arguments"

# Escapes. The host's /etc/shadow must never show; the vNode's own may.
host_shadow=$(cat /etc/shadow 2>/dev/null || true)
vnode_shadow=$(cat "$tree/etc/shadow" 2>/dev/null || true)
# not_host WHAT: the last vNode run printed nothing of the host's shadow, and
# what it printed (if anything) is the vNode's own.
not_host() {
  if [ -z "$OUT" ] || [ "$OUT" == "$vnode_shadow" ]; then
    pass "$1: status $STATUS, $([ -n "$OUT" ] && echo "the vNode's own shadow" || echo "nothing: $ERR")"
  elif [ -n "$host_shadow" ] && grep -qxFf <(grep -v '^$' <<< "$host_shadow") <<< "$OUT"; then
    fail "$1: shows the host's /etc/shadow"
  else
    fail "$1: printed something that is not the vNode's /etc/shadow: $(head -c 300 <<< "$OUT")"
  fi
  still_serving "$1"
}
vcapture default cat ../../etc/shadow
not_host "cat ../../etc/shadow"
vcapture default sh -c 'cd /root && cat ../../../../../../../../etc/shadow'
not_host "cat ../../../../../../../../etc/shadow from /root"
vcapture default sh -c 'ln -s / /root/slash && cat /root/slash/etc/shadow && ls /root/slash/../../.. > /dev/null'
not_host "a symlink to / made on the vNode, followed"
expect_eq "the symlink to / is stored as such" "/" "$(readlink "$tree/root/slash" 2>&1)"
vcapture default sh -c 'ln -s ../../../../../../../../../../etc /root/up && cat /root/up/shadow'
not_host "a relative symlink climbing above /, followed"
vcapture default cat /proc/1/root/etc/shadow
not_host "cat /proc/1/root/etc/shadow"
vcapture default cat /proc/self/root/etc/shadow
not_host "cat /proc/self/root/etc/shadow"
vcapture default sh -c 'cat /proc/*/root/etc/shadow /proc/*/cwd/etc/shadow 2>/dev/null | sort -u'
OUT=$(sort -u <<< "$OUT") vnode_shadow=$(sort -u <<< "$vnode_shadow") not_host "cat /proc/*/root/etc/shadow"
vcapture default sh -c 'cat /proc/1/root/../../../etc/shadow'
not_host "cat /proc/1/root/../../../etc/shadow"
vcapture default sh -c "ln -s '$tree' /root/hosttree && ls /root/hosttree/"
[ "$STATUS" -ne 0 ] && [ -z "$OUT" ] && pass "a symlink to the host path of the vNode's tree leads nowhere" ||
  fail "a symlink to $tree listed: $OUT"
still_serving "a symlink to the host path"
vcapture default ls "$SPLIT_STATE" /run/splitkernel "$SK_BUILD_DIR"
[ "$STATUS" -ne 0 ] && [ -z "$OUT" ] && pass "host paths do not exist on the vNode" ||
  fail "host paths visible on the vNode: $OUT"
# The vNode's / is the tree: a file made there is in the sComponent's tree.
vcapture default sh -c 'echo marker-$$ > /marker && cat /proc/1/root/marker /root/slash/marker'
expect_eq "/, /proc/1/root and the symlink are the vNode's tree" \
  "$(cat "$tree/marker" 2>&1)"$'\n'"$(cat "$tree/marker" 2>&1)" "$OUT"
vcapture default sh -c 'unshare -rm sh -c "cat /proc/1/root/etc/shadow" 2>&1; chroot /proc/1/root cat /etc/shadow 2>&1; echo done'
if grep -q '^done$' <<< "$OUT" && ! grep -q '^root:' <<< "$OUT"; then
  pass "unshare/chroot attempts reach nothing: $(tr '\n' '|' <<< "$OUT")"
else
  fail "unshare/chroot attempts: $OUT $ERR"
fi
still_serving "unshare/chroot attempts"

finish
