#!/usr/bin/env bash
# Stock Debian binaries on a vNode (issue 3), each compared byte for byte
# (stdout, stderr, exit status) with the same binary of the same image run
# natively in a chroot: busybox sh, ls -la /usr/bin, bash with a pipeline,
# sha256sum of a 50 MiB file made on the vNode, python3 (hashlib + json, and
# a script that writes, renames, reads back and deletes files), exit
# statuses 7 and 137 (SIGKILL).
source "$(dirname "$0")/lib.sh"

run_cluster_up

compare_native "busybox sh -c 'echo hi | wc -c'" busybox sh -c 'echo hi | wc -c'
compare_native "/bin/ls -la /usr/bin" /bin/ls -la /usr/bin
compare_native "bash loop | sort -r" /bin/bash -c 'for i in 1 2 3; do echo $i; done | sort -r'
compare_native "python3 json + hashlib" python3 -c \
  'import json,hashlib; print(hashlib.sha256(json.dumps(list(range(100000))).encode()).hexdigest())'
compare_native "bash -c 'exit 7'" bash -c 'exit 7'
compare_native "SIGKILL gives 137" bash -c 'kill -KILL $$'
compare_native "a background child killed by SIGKILL" \
  bash -c 'sleep 30 & kill -KILL $!; wait $! 2> /dev/null; echo "child status $?"'
# A program starts with default signal dispositions and nothing blocked, as
# from a login shell (`yes | head` must end yes silently by SIGPIPE).
# Signals 1-31 only: 32 and 33 are glibc's own (thread cancellation, setxid),
# which no program can reset, so their state is whatever started the tests.
compare_native "signal dispositions and mask at start" \
  sh -c 'for k in SigBlk SigIgn; do v=$(sed -n "s/^$k:\t//p" /proc/self/status); echo "$k $((0x$v & 0x7fffffff))"; done'
compare_native "yes | head -c 10: SIGPIPE ends yes silently" sh -c 'yes | head -c 10'
printf 'first line\nsecond line\n' > "$TEST_STATE/stdin.txt"
STDIN_FILE=$TEST_STATE/stdin.txt compare_native "stdin reaches the program" \
  sh -c 'read line; echo "got $line"; tac'

# The commands below write files: natively they run in a scratch copy of the
# image, so that both sides start from the same tree and write to the same
# paths.
NATIVE_ROOT=$(scratch_root "$TEST_STATE/native-root")

# 50 MiB of deterministic content written on the vNode, then hashed there
# (a separate run, so the data goes to the sComponent and back).
make_big="yes 'splitkernel 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c 52428800 > /root/big.bin"
compare_native "write a 50 MiB file (yes | head -c)" sh -c "$make_big"
compare_native "sha256sum of a 50 MiB file made on the vNode" sha256sum /root/big.bin
compare_native "ls -l of the 50 MiB file" ls -ln --time-style=+ /root/big.bin
tree=$(vnode_tree default)
if [ -f "$tree/root/big.bin" ] && cmp -s "$tree/root/big.bin" "$NATIVE_ROOT/root/big.bin"; then
  pass "the sComponent holds the 50 MiB file, byte for byte"
else
  fail "the sComponent's $tree/root/big.bin differs from the native one: $(ls -l "$tree/root/big.bin" 2>&1)"
fi
vrun default rm /root/big.bin < /dev/null || fail "rm /root/big.bin on the vNode"

# A python3 script that writes, renames, reads back and deletes files.
read -r -d '' files_script <<'PY' || true
import hashlib, os
base = "/root/pyfiles"
os.mkdir(base)
for i in range(20):
    with open(f"{base}/f{i}.tmp", "wb") as f:
        f.write(hashlib.sha256(str(i).encode()).digest() * (i * 97 + 1))
        if i % 2:
            f.flush()
            os.fsync(f.fileno())
for i in range(20):
    os.rename(f"{base}/f{i}.tmp", f"{base}/g{i}.dat")
os.mkdir(f"{base}/sub")
os.rename(f"{base}/g0.dat", f"{base}/sub/moved.dat")
with open(f"{base}/g1.dat", "ab") as f:
    f.write(b"appended\n")
os.truncate(f"{base}/g2.dat", 100)
os.symlink("g3.dat", f"{base}/link")
print(sorted(os.listdir(base)))
total = hashlib.sha256()
for name in sorted(os.listdir(base)):
    path = f"{base}/{name}"
    if os.path.isdir(path):
        print(name, "dir", sorted(os.listdir(path)))
        continue
    st = os.lstat(path)
    data = open(path, "rb").read()
    total.update(data)
    print(name, st.st_size, oct(st.st_mode), st.st_nlink, os.path.islink(path),
          hashlib.sha256(data).hexdigest()[:16])
print("total", total.hexdigest())
for name in os.listdir(base):
    path = f"{base}/{name}"
    if os.path.isdir(path) and not os.path.islink(path):
        for sub in os.listdir(path):
            os.unlink(f"{path}/{sub}")
        os.rmdir(path)
    else:
        os.unlink(path)
os.rmdir(base)
print("exists after delete:", os.path.exists(base))
try:
    open(f"{base}/g1.dat")
except FileNotFoundError as e:
    print("FileNotFoundError", e.errno)
PY
compare_native "python3 script: write, rename, read back, delete" python3 -c "$files_script"
if [ ! -e "$tree/root/pyfiles" ]; then
  pass "the script's files are gone from the sComponent"
else
  fail "left on the sComponent: $(ls -la "$tree/root/pyfiles" 2>&1)"
fi

finish
