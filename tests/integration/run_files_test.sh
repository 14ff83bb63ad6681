#!/usr/bin/env bash
# Files of a vNode (issue 3): what a program writes on a vNode is in the
# sComponent's tree byte for byte, survives a restart of the pComponent
# (SIGKILL, then started again with the same flags), and a second vNode can
# neither see nor reach it.
source "$(dirname "$0")/lib.sh"

run_cluster_up
tree=$(vnode_tree default)

# Random binary data (not a multiple of any block size) through stdin, and a
# text file written by a shell on the vNode.
head -c 3000017 /dev/urandom > "$TEST_STATE/data.bin"
STDIN_FILE=$TEST_STATE/data.bin vcapture default sh -c 'mkdir -p /root/keep && cat > /root/keep/data.bin'
expect_eq "write 3 MB through stdin (stderr: $ERR)" 0 "$STATUS"
vcapture default sh -c 'for i in $(seq 1 1000); do echo "line $i"; done > /root/keep/lines.txt; ln -s lines.txt /root/keep/link; mkdir /root/keep/dir; chmod 640 /root/keep/lines.txt'
expect_eq "write a text file, a symlink and a directory (stderr: $ERR)" 0 "$STATUS"
seq 1 1000 | sed 's/^/line /' > "$TEST_STATE/lines.txt"

check_tree() {
  if cmp -s "$TEST_STATE/data.bin" "$tree/root/keep/data.bin"; then
    pass "$1: data.bin in the sComponent's tree, byte for byte"
  else
    fail "$1: $tree/root/keep/data.bin: $(cmp "$TEST_STATE/data.bin" "$tree/root/keep/data.bin" 2>&1)"
  fi
  if cmp -s "$TEST_STATE/lines.txt" "$tree/root/keep/lines.txt"; then
    pass "$1: lines.txt in the sComponent's tree, byte for byte"
  else
    fail "$1: $tree/root/keep/lines.txt: $(cmp "$TEST_STATE/lines.txt" "$tree/root/keep/lines.txt" 2>&1)"
  fi
  expect_eq "$1: the symlink in the tree" "lines.txt" "$(readlink "$tree/root/keep/link" 2>&1)"
  expect_eq "$1: the mode in the tree" "640" "$(stat -c %a "$tree/root/keep/lines.txt" 2>&1)"
}

# check_vnode WHAT: the vNode reads back what it wrote.
check_vnode() {
  local data lines
  data=$(sha256sum < "$TEST_STATE/data.bin" | cut -d' ' -f1)
  lines=$(sha256sum < "$TEST_STATE/lines.txt" | cut -d' ' -f1)
  vcapture default sha256sum /root/keep/data.bin /root/keep/lines.txt /root/keep/link
  expect_eq "$1: sha256sum on the vNode" \
    "$(printf '%s  /root/keep/data.bin\n%s  /root/keep/lines.txt\n%s  /root/keep/link' "$data" "$lines" "$lines")" \
    "$OUT"
  vcapture default stat -c '%n %s %a %F' /root/keep/data.bin /root/keep/lines.txt
  expect_eq "$1: stat of the files on the vNode" \
    "$(printf '/root/keep/data.bin 3000017 644 regular file\n/root/keep/lines.txt %s 640 regular file' "$(wc -c < "$TEST_STATE/lines.txt")")" \
    "$OUT"
  vcapture default stat -c '%n %a %F %N' /root/keep/dir /root/keep/link
  expect_eq "$1: stat of the directory and the link on the vNode" \
    "$(printf "/root/keep/dir 755 directory '/root/keep/dir'\n/root/keep/link 777 symbolic link '/root/keep/link' -> 'lines.txt'")" \
    "$OUT"
}

check_tree "after writing"
check_vnode "after writing"

# The pComponent dies (SIGKILL: no goodbye, its FUSE mounts left behind) and
# is started again with the same flags.
old=$(component_pid pcomponent)
restart_component pcomponent
new=$(component_pid pcomponent)
[ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null &&
  pass "pComponent restarted (pid $old -> $new)" || fail "pComponent not restarted: $(cat "$SPLIT_STATE/pids")"
start=$SECONDS
if wait_for 30 vnode_ready default; then
  pass "default runs again $((SECONDS - start)) s after the restart"
else
  fail "default does not run within 30 s of the pComponent's restart"
  vrun default true || true
fi
check_tree "after the restart"
check_vnode "after the restart"

# A new file after the restart lands in the tree too.
vcapture default sh -c 'echo after > /root/keep/after.txt'
expect_eq "write after the restart" "0 after" "$STATUS $(cat "$tree/root/keep/after.txt" 2>&1)"

# A second vNode: its own tree, without default's files; no path reaches them.
capture "$BIN/splitctl" vnode create other
expect_eq "vnode create other (stderr: $ERR)" 0 "$STATUS"
if ! wait_for 30 vnode_ready other; then
  fail "vNode other does not run 'true' within 30 s"
fi
vcapture other ls -a /root
expect_eq "other's /root is the image's" "$(ls -a "$(image_rootfs)/root" | tr '\n' ' ')" "$(tr '\n' ' ' <<< "$OUT")"
if [ -e "$(vnode_tree other)/root/keep" ]; then
  fail "other's tree has default's files"
else
  pass "other's tree does not have default's files"
fi
for path in /root/keep/data.bin /../default/root/keep/data.bin ../../../default/root/keep/data.bin \
  "$tree/root/keep/data.bin" /proc/1/root/root/keep/data.bin /proc/1/cwd/root/keep/data.bin; do
  vcapture other cat "$path"
  if [ "$STATUS" -ne 0 ] && [ -z "$OUT" ]; then
    pass "other cannot read $path (status $STATUS: $ERR)"
  else
    fail "other read $path: status $STATUS, $(wc -c <<< "$OUT") bytes"
  fi
done
# Default's programs are invisible to other: its pid namespace is its own.
env -u TERM -u LANG "$BIN/splitctl" run default -- \
  sh -c 'echo $$ > /root/keep/sleeper.pid; exec sleep 30' < /dev/null > /dev/null 2>&1 &
sleeper=$!
wait_for 10 test -s "$tree/root/keep/sleeper.pid" || true
vcapture other sh -c 'for p in /proc/[0-9]*; do tr "\0" " " < $p/cmdline; echo; done'
if grep -q "sleep 30" <<< "$OUT"; then
  fail "other sees default's process: $OUT"
else
  pass "other does not see default's processes"
fi
vcapture other sh -c 'cat /proc/*/root/root/keep/data.bin'
[ -z "$OUT" ] && pass "other reaches nothing through /proc/*/root" || fail "other read through /proc/*/root: $(wc -c <<< "$OUT") bytes"
# Hanging up the console (splitctl killed) ends the run on the vNode.
kill -KILL "$sleeper" 2>/dev/null || true
wait "$sleeper" 2>/dev/null || true

# And default still has them.
vcapture default sh -c 'ls /root/keep | tr "\n" " "'
expect_eq "default still has its files" "after.txt data.bin dir lines.txt link sleeper.pid " "$OUT"

finish
