#!/usr/bin/env bash
# The local cluster end to end: up, every component visible in `splitctl
# nodes --json`, `up` twice starts nothing new, vNode commands and their
# errors, a killed and a stopped component marked failed within 3 s, down.
source "$(dirname "$0")/lib.sh"

cluster_up
expect_eq "nodes after up" "mcomponent:alive monitor:alive pcomponent:alive scomponent:alive" "$(node_states)"

count=$(wc -l < "$SPLIT_STATE/pids")
second=$(cluster up | tail -n 1)
expect_eq "second up prints the same monitor" "SPLIT_MONITOR=$SPLIT_MONITOR" "$second"
expect_eq "second up starts nothing" "$count" "$(wc -l < "$SPLIT_STATE/pids")"

# The human table names every kind once.
capture "$BIN/splitctl" nodes
expect_eq "splitctl nodes status" 0 "$STATUS"
for kind in monitor pcomponent mcomponent scomponent; do
  if grep -q "$kind" <<< "$OUT"; then pass "table shows $kind"; else fail "table lacks $kind: $OUT"; fi
done

# vNodes: `default` exists; create, list, errors, destroy.
capture "$BIN/splitctl" --json vnode list
expect_eq "default vnode exists" "default" "$(python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.loads(sys.argv[1])))' "$OUT")"
capture "$BIN/splitctl" vnode create web --cache 64M --memory 1G
expect_eq "vnode create web" 0 "$STATUS"
capture "$BIN/splitctl" --json vnode list
expect_eq "web has its sizes" "67108864 1073741824" "$(python3 -c '
import json, sys
v = [v for v in json.loads(sys.argv[1]) if v["name"] == "web"][0]
print(v["cache"], v["memory"])' "$OUT")"
if [ -d "$SPLIT_STATE/scomponent/0/vnodes/web" ]; then pass "sComponent holds web's tree"; else fail "no tree for web under $SPLIT_STATE/scomponent/0"; fi

capture "$BIN/splitctl" vnode create web
expect_eq "duplicate vnode fails" 1 "$STATUS"
expect_eq "duplicate vnode: one error line" 1 "$(grep -c . <<< "$ERR")"
grep -q "already exists" <<< "$ERR" && pass "duplicate message" || fail "duplicate message: $ERR"
capture "$BIN/splitctl" vnode destroy nosuch
expect_eq "destroy missing vnode fails" 1 "$STATUS"
grep -q "nosuch" <<< "$ERR" && pass "missing-vnode message names it" || fail "missing message: $ERR"
capture "$BIN/splitctl" vnode create big --memory 12Q
[ "$STATUS" -ne 0 ] && pass "bad size refused" || fail "bad size accepted"
grep -q "bad size" <<< "$ERR" && pass "bad size message" || fail "bad size message: $ERR"
capture "$BIN/splitctl" frobnicate
[ "$STATUS" -ne 0 ] && pass "unknown command refused" || fail "unknown command accepted"
capture "$BIN/splitctl" vnode destroy web
expect_eq "vnode destroy web" 0 "$STATUS"
if [ ! -d "$SPLIT_STATE/scomponent/0/vnodes/web" ]; then pass "web's tree removed"; else fail "web's tree left behind"; fi

# Piped commands go through the same console.
capture bash -c "printf 'vnode list\nnodes\n' | '$BIN/splitctl'"
expect_eq "console from a pipe" 0 "$STATUS"
grep -q default <<< "$OUT" && pass "console lists default" || fail "console output: $OUT"

# A component that stops answering (SIGSTOP) is marked failed within 3 s and
# comes back when it resumes.
pcomp=$(component_pid pcomponent)
kill -STOP "$pcomp"
start=$SECONDS
if wait_for 3 kind_is pcomponent failed; then
  pass "stopped pComponent marked failed after $((SECONDS - start)) s"
else
  fail "stopped pComponent not marked failed within 3 s: $(node_states)"
fi
kill -CONT "$pcomp"
if wait_for 5 kind_is pcomponent alive; then
  pass "resumed pComponent alive again"
else
  fail "resumed pComponent: $(node_states)"
fi

# A killed component is marked failed within 3 s; the cluster keeps serving.
kill -KILL "$(component_pid mcomponent)"
start=$SECONDS
if wait_for 3 kind_is mcomponent failed; then
  pass "killed mComponent marked failed after $((SECONDS - start)) s"
else
  fail "killed mComponent not marked failed within 3 s: $(node_states)"
fi
capture "$BIN/splitctl" nodes
expect_eq "console still served" 0 "$STATUS"
grep -q failed <<< "$OUT" && pass "table shows failed" || fail "table: $OUT"

# down stops exactly what up started.
pids=$(awk '{print $1}' "$SPLIT_STATE/pids")
cluster down
left=0
for pid in $pids; do kill -0 "$pid" 2>/dev/null && left=$((left + 1)); done
expect_eq "down leaves no process" 0 "$left"

finish
