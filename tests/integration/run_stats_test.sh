#!/usr/bin/env bash
# `splitctl stats` (issue 3): per pComponent, the counts of the traced
# syscalls and of the storage operations its vNodes' file accesses caused;
# they grow with the work done, and the table and --json agree.
source "$(dirname "$0")/lib.sh"

# Two pComponents: each has its own counters; the work lands on either.
run_cluster_up --pcomponents 2
pcomp_ids=$("$BIN/splitctl" --json nodes | python3 -c '
import json, sys
print(" ".join(str(n["id"]) for n in json.load(sys.stdin) if n["kind"] == "pcomponent"))')
expect_eq "two pComponents" 2 "$(wc -w <<< "$pcomp_ids")"

# stats_lines: `splitctl --json stats` flattened to "NODE GROUP NAME VALUE"
# lines, whatever the nesting: records {node, group, name, value}, or nodes
# holding groups of counters.
stats_lines() {
  "$BIN/splitctl" --json stats | python3 -c '
import json, sys
def walk(value, node, path):
    if isinstance(value, dict):
        if {"group", "name", "value"} <= value.keys():
            print(value.get("node", node), value["group"], value["name"], value["value"])
            return
        node = value.get("node", value.get("id", node))
        for key, item in value.items():
            if key in ("node", "id"):
                continue
            walk(item, key if path == [] and key.isdigit() else node, path + [key])
    elif isinstance(value, list):
        for item in value:
            walk(item, node, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and len(path) >= 2:
        print(node, path[-2], path[-1], value)
walk(json.load(sys.stdin), None, [])'
}

# counter LINES GROUP NAME: a counter summed over the pComponents (0 when
# absent).
counter() {
  awk -v ids=" $pcomp_ids " -v group="$2" -v name="$3" 'index(ids, " " $1 " ") && $2 == group && $3 == name { v += $4 } END { print v + 0 }' <<< "$1"
}
# group_total LINES GROUP: the sum of a group's counters over the pComponents.
group_total() {
  awk -v ids=" $pcomp_ids " -v group="$2" 'index(ids, " " $1 " ") && $2 == group { s += $4 } END { print s + 0 }' <<< "$1"
}

capture "$BIN/splitctl" --json stats
expect_eq "splitctl --json stats (stderr: $ERR)" 0 "$STATUS"
python3 -c 'import json, sys; json.loads(sys.argv[1])' "$OUT" && pass "stats --json is JSON" || fail "stats --json: $OUT"
before=$(stats_lines)

# Work: python3 maps its libraries (mmap, mprotect, brk) and reads its
# stdlib; the shell writes, reads back and removes a file; chroot is a
# refused call (ENOSYS), counted too.
vcapture default python3 -c 'import json; print(len(json.dumps(list(range(10000)))))'
expect_eq "python3 on the vNode" "0 58890" "$STATUS $OUT"
vcapture default sh -c 'head -c 1000000 /dev/zero > /root/stats.bin && wc -c < /root/stats.bin && rm /root/stats.bin'
expect_eq "a file written, read and removed" "0 1000000" "$STATUS $OUT"
vcapture default sh -c 'chroot / true 2>&1; chroot / true 2>&1; echo done'
expect_eq "chroot refused on the vNode" "0 done" "$STATUS $(tail -n 1 <<< "$OUT")"
after=$(stats_lines)
echo "---- non-zero counters after the work (node group name value):"
awk '$4 != 0' <<< "$after" | sed 's/^/  /'
for id in $pcomp_ids; do
  [ "$(awk -v id="$id" '$1 == id && $2 == "storage" && $3 == "mounts"' <<< "$after")" ] &&
    pass "pComponent $id has its own counters" || fail "no counters of pComponent $id"
done

# Every call that stops in the tracer is counted by name in "syscalls";
# refused ones in "refused" too. chroot is refused (ENOSYS) on a vNode.
b=$(counter "$before" syscalls chroot)
a=$(counter "$after" syscalls chroot)
[ "$a" -eq $((b + 2)) ] && pass "traced chroot counted in syscalls ($b -> $a)" || fail "traced chroot: $b -> $a, expected 2 more"
# The memory calls the ABI table routes kTraced (abi/syscall_list.h) stop in
# the tracer when the pComponent disaggregates memory, which its "memory"
# counters show; then they are counted by name.
traced=$(sed -n 's/^ *X([0-9]*, \([a-z0-9_]*\), kTraced,.*/\1/p' "$SK_SOURCE_DIR/abi/syscall_list.h")
if [ "$(awk '$2 == "memory"' <<< "$after")" ]; then
  for call in mmap munmap brk mprotect; do
    grep -qx "$call" <<< "$traced" || continue
    b=$(counter "$before" syscalls "$call")
    a=$(counter "$after" syscalls "$call")
    [ "$a" -gt "$b" ] && pass "traced $call counted ($b -> $a)" || fail "traced $call did not grow ($b -> $a)"
  done
else
  echo "SKIP: no pComponent reports memory counters (memory not disaggregated), so the kTraced memory calls ($(echo $traced)) run natively"
fi
b=$(counter "$before" refused chroot)
a=$(counter "$after" refused chroot)
[ "$a" -eq $((b + 2)) ] && pass "refused chroot counted ($b -> $a)" || fail "refused chroot: $b -> $a, expected 2 more"
b=$(counter "$before" tracer execs)
a=$(counter "$after" tracer execs)
[ "$a" -ge $((b + 5)) ] && pass "tracer execs counted ($b -> $a)" || fail "tracer execs: $b -> $a, expected 5 more"
b=$(group_total "$before" storage)
a=$(group_total "$after" storage)
[ "$a" -gt "$b" ] && pass "storage operations counted ($b -> $a)" || fail "storage operations did not grow ($b -> $a)"
for op in write read create unlink; do
  b=$(counter "$before" storage "$op")
  a=$(counter "$after" storage "$op")
  [ "$a" -gt "$b" ] && pass "storage $op counted ($b -> $a)" || fail "storage $op did not grow ($b -> $a)"
done
# The fabric the traffic went over (the local cluster's is tcp), and that
# the work moved bytes through it.
a=$(counter "$after" fabric kind_tcp)
[ "$a" -ge 1 ] && pass "fabric kind_tcp reported by the pComponents ($a)" || fail "no fabric kind_tcp on the pComponents"
b=$(counter "$before" fabric bytes_sent)
a=$(counter "$after" fabric bytes_sent)
[ "$a" -gt "$b" ] && pass "fabric bytes_sent counted ($b -> $a)" || fail "fabric bytes_sent did not grow ($b -> $a)"
# Tracer and storage counters are the pComponents' only.
others=$(awk -v ids=" $pcomp_ids " '($2 == "syscalls" || $2 == "refused" || $2 == "storage") && !index(ids, " " $1 " ")' <<< "$after")
[ -z "$others" ] && pass "syscall and storage counters belong to pComponents only" || fail "counters of other nodes: $others"

# The human table shows the same counters under each pComponent's name.
capture "$BIN/splitctl" stats
expect_eq "splitctl stats (stderr: $ERR)" 0 "$STATUS"
now=$(stats_lines)
for id in $pcomp_ids; do
  grep -qx "pComponent $id" <<< "$OUT" && pass "the table names pComponent $id" ||
    fail "the table does not name pComponent $id: $OUT"
  for row in "refused chroot" "storage write" "storage read" "tracer execs"; do
    set -- $row
    table=$(awk -v id="$id" -v group="$1" -v name="$2" '/^pComponent / { node = $2 } /^monitor/ { node = "" } node == id && $1 == group && $2 == name { print $3 }' <<< "$OUT")
    json=$(awk -v id="$id" -v group="$1" -v name="$2" '$1 == id && $2 == group && $3 == name { print $4 }' <<< "$now")
    expect_eq "pComponent $id: the table's $row is the JSON's" "${json:-absent}" "${table:-absent}"
  done
done

finish
