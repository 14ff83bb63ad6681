// splitctl's interactive console: reads commands line by line and runs them
// through the command layer (console.h) until quit, exit or end of input.
//
// On a terminal it uses GNU readline: the prompt "splitctl> ", history kept
// in ~/.splitctl_history, and tab completion of command words, options and
// (for `vnode destroy`) vNode names. When stdin is not a terminal it reads
// plain lines without a prompt, so scripts can pipe commands in.
//
// Errors print one "splitctl: ..." line on stderr and the console goes on.
// The exit status is 0 on a terminal; from a pipe it is that of the last
// command that failed (1 operation, 2 usage), or 0 when none did.
//
// Threads: the caller's only; readline keeps global state, so one console
// per process.
#pragma once

#include "monitor/splitctl/client.h"

namespace sk::console {

int run_console(MonitorClient& client, bool json_default);

}  // namespace sk::console
