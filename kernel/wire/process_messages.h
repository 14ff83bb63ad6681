// The process protocol: running a program on a vNode from the console and
// streaming its stdio (`splitctl run`), listing processes (`splitctl ps`)
// and reading components' counters (`splitctl stats`).
//
// Who speaks what (every request carries vNode 0 in the header unless said):
//
//   console -> monitor (CTL2MON_, on the console's connection, which splitctl
//   opens with a request handler so that the monitor can send MON2CTL_ back)
//     CTL2MON_RUN    Ctl2pRunRequest + strings  -> Ctl2pRunReply{run, pcomponent, pids}
//                    ENOENT "no vnode named 'x'"; EHOSTUNREACH when no alive
//                    pComponent has the vNode; the pComponent's error when it
//                    could not start the program.
//     CTL2MON_STDIN  Ctl2pRunInput + data       -> empty, once the pComponent wrote
//                    the data into the program's stdin (so stdin is
//                    flow-controlled end to end: send the next chunk after
//                    the reply). kInputEof closes the program's stdin. EPIPE
//                    when the program no longer reads its stdin (or ended).
//     CTL2MON_SIGNAL Ctl2pRunSignal             -> empty. Delivered to the
//                    program's process group (as a terminal would).
//     CTL2MON_PS     Ctl2monPsRequest             -> Ctl2monClusterListReply + ProcessRecord[count]
//     CTL2MON_STATS  empty                 -> Ctl2monClusterListReply + StatRecord[count]
//     (STDIN and SIGNAL: ENOENT for a run that is not running; EPERM for a
//     run another console started.)
//
//   monitor -> console (MON2CTL_, requests the console answers)
//     MON2CTL_OUTPUT P2ctlRunOutput + data -> empty once the data is written out.
//                    The monitor acknowledges the pComponent's P2MON_OUTPUT
//                    only after this reply, so a slow console slows the
//                    program instead of growing buffers anywhere. An error
//                    reply is passed back to the pComponent: EPIPE (the
//                    console's stdout or stderr is closed, as in `splitctl
//                    run ... | head -1`) closes the program's end of that
//                    stream, so its next write gets SIGPIPE as natively; any
//                    other error hangs the program up (SIGHUP) and its
//                    output is dropped.
//     MON2CTL_EXIT   P2ctlRunExit + text   -> empty. The last message of a run:
//                    the program's status (after all its output), or
//                    kExitLost with a reason when the pComponent failed.
//
//   monitor -> pComponent (MON2P_, on the membership connection)
//     MON2P_RUN      Ctl2pRunRequest{run id} + strings, header vnode = the vNode
//                    -> Ctl2pRunReply{run, vnode_pid, host_pid}
//     MON2P_STDIN    Ctl2pRunInput + data    -> empty (as CTL2MON_STDIN)
//     MON2P_SIGNAL   Ctl2pRunSignal          -> empty
//     MON2P_PS       Mon2pPsRequest            -> Ctl2monClusterListReply + ProcessRecord[count]
//     MON2P_STATS    empty              -> Ctl2monClusterListReply + StatRecord[count]
//
//   pComponent -> monitor (P2MON_, requests the pComponent sends on the
//   connection the MON2P_RUN came on, i.e. its membership connection)
//     P2MON_OUTPUT   P2ctlRunOutput + data   -> empty once the console wrote it.
//                    At most kRunOutputWindow chunks per run are unanswered.
//                    ENOENT: the run has no console any more (the program is
//                    hung up and its output dropped).
//     P2MON_EXIT     P2ctlRunExit            -> empty. Sent once the program has
//                    exited and its stdout and stderr reached end of file
//                    and every P2MON_OUTPUT of the run was answered.
//
// A run id is the monitor's (64-bit, never reused while it runs). If the
// console's connection closes, the monitor sends MON2P_SIGNAL SIGHUP for
// each of its runs; if the pComponent fails, the monitor ends its runs
// with MON2CTL_EXIT{kExitLost}; if the monitor fails, the console sees its
// connection close, and the pComponent hangs the program up (SIGHUP) when
// it finds its membership connection closed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/result.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/messages.h"

namespace sk::wire {

// The most bytes of strings (cwd, argv, environment, each NUL-terminated) a
// run may carry: what a vNode init accepts.
inline constexpr uint32_t kMaxRunStrings = 1u << 20;
inline constexpr uint32_t kMaxRunArgs = 65536;
inline constexpr uint32_t kMaxRunEnv = 65536;
// The most bytes of output or input one message carries.
inline constexpr uint32_t kMaxRunChunk = 64u << 10;
// The most P2MON_OUTPUT chunks of one run in flight (unanswered).
inline constexpr uint32_t kRunOutputWindow = 4;
// The longest reason text of a P2ctlRunExit.
inline constexpr uint32_t kMaxExitText = 1024;

// Ctl2pRunRequest::flags: the console forwards no stdin; the program's stdin
// is at end of file from the start.
inline constexpr uint32_t kRunNoStdin = 1u << 0;

// CTL2MON_RUN and MON2P_RUN. The tail is exactly strings_length bytes: the
// working directory, then argc arguments, then envc NAME=value entries, each
// NUL-terminated.
struct Ctl2pRunRequest {
  uint64_t run;  // 0 from the console; the monitor's run id in MON2P_RUN
  uint32_t argc;
  uint32_t envc;
  uint32_t strings_length;
  uint32_t flags;  // kRunNoStdin
  FixedString<kVnodeNameLength> vnode_name;  // also the vNode's hostname
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2pRunRequest) == 56);

// A Ctl2pRunRequest with its strings, decoded and checked: argv[0] is not empty,
// the directory is absolute, every environment entry has a name and '='.
struct Ctl2pRunCommand;
Result<Ctl2pRunCommand> decode_run(ByteView payload);
// Encodes request (its counts and length are filled in) with the strings.
Result<Bytes> encode_run(Ctl2pRunRequest request, std::string_view cwd,
                         const std::vector<std::string>& argv, const std::vector<std::string>& env);

struct Ctl2pRunCommand {
  Ctl2pRunRequest request{};
  std::string cwd;
  std::vector<std::string> argv;
  std::vector<std::string> env;

  // The body of CTL2MON_RUN and MON2P_RUN (kernel/wire/body.h).
  static Result<Ctl2pRunCommand> decode(Bytes payload) { return decode_run(payload); }
  Result<Bytes> encode() && { return encode_run(request, cwd, argv, env); }
};

// Reply of MON2P_RUN (pcomponent 0) and CTL2MON_RUN.
struct Ctl2pRunReply {
  uint64_t run;
  uint32_t pcomponent;  // where it runs
  uint32_t vnode;
  int32_t vnode_pid;  // the program's pid inside the vNode
  int32_t host_pid;   // and on the pComponent's host
};
static_assert(sizeof(Ctl2pRunReply) == 24);

enum class RunStream : uint8_t { kStdout = 1, kStderr = 2 };

// P2MON_OUTPUT and MON2CTL_OUTPUT, followed by `length` bytes.
struct P2ctlRunOutput {
  uint64_t run;
  uint32_t length;  // 1..kMaxRunChunk
  uint8_t stream;   // RunStream
  uint8_t reserved0;
  uint16_t reserved1;
  Result<void> validate() const;
};
static_assert(sizeof(P2ctlRunOutput) == 16);

// Ctl2pRunInput::flags: the input ends after this data (the program's stdin is
// closed).
inline constexpr uint32_t kInputEof = 1u << 0;

// CTL2MON_STDIN and MON2P_STDIN, followed by `length` bytes.
struct Ctl2pRunInput {
  uint64_t run;
  uint32_t length;  // 0..kMaxRunChunk
  uint32_t flags;   // kInputEof
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2pRunInput) == 16);

// CTL2MON_SIGNAL and MON2P_SIGNAL.
struct Ctl2pRunSignal {
  uint64_t run;
  int32_t signo;  // 1..64
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2pRunSignal) == 16);

// P2ctlRunExit::flags.
inline constexpr uint32_t kExitCoreDumped = 1u << 0;
// The run was lost, not ended: its pComponent failed (or the monitor could
// not keep it). code is 255 and the text says why.
inline constexpr uint32_t kExitLost = 1u << 1;

// P2MON_EXIT and MON2CTL_EXIT, followed by text_length bytes of reason.
struct P2ctlRunExit {
  uint64_t run;
  int32_t code;    // 0..255, as a shell's $? (128 + signal when killed)
  int32_t signal;  // 0, or the signal that ended it
  uint32_t flags;  // kExitCoreDumped, kExitLost
  uint32_t text_length;  // 0..kMaxExitText
  Result<void> validate() const;
};
static_assert(sizeof(P2ctlRunExit) == 24);

// Decodes a message with a variable tail whose length a field of T states:
// the tail must be exactly that long.
template <WireMessage T>
Result<std::pair<T, ByteView>> decode_sized(ByteView payload, uint32_t T::*length) {
  auto [message, tail] = TRY(decode_with_tail<T>(payload));
  if (tail.size() != message.*length) {
    return make_error(EBADMSG, "message says " + std::to_string(message.*length) +
                                   " bytes follow, but " + std::to_string(tail.size()) + " do");
  }
  return std::pair<T, ByteView>(message, tail);
}

// ---- ps -------------------------------------------------------------------

// CTL2MON_PS: the vNode whose processes to list; empty for all.
struct Ctl2monPsRequest {
  FixedString<kVnodeNameLength> vnode_name;
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2monPsRequest) == 32);

// MON2P_PS: the vNode id whose processes to list; kNoVnode for all.
struct Mon2pPsRequest {
  uint32_t vnode;
  uint32_t reserved;
};
static_assert(sizeof(Mon2pPsRequest) == 8);

// Reply of CTL2MON_/MON2P_PS and _STATS: `count` records follow.
// `unanswered` is how many pComponents did not answer the monitor (0 from a
// pComponent).
struct Ctl2monClusterListReply {
  uint32_t count;
  uint32_t unanswered;
};
static_assert(sizeof(Ctl2monClusterListReply) == 8);

// One process of a vNode (a launched program or any of its descendants).
struct ProcessRecord {
  uint64_t run;         // the run it belongs to (0 when unknown)
  uint64_t runtime_ms;  // since it started
  uint64_t rss;         // resident bytes (VmRSS)
  // Issue 4 (remote memory): pages resident in the ExCache and pages held
  // on mComponents. 0 until then.
  uint64_t cache_pages;
  uint64_t remote_pages;
  uint32_t vnode;
  uint32_t pcomponent;  // set by the monitor
  int32_t pid;          // inside the vNode
  int32_t host_pid;
  uint8_t state;  // /proc state letter: R, S, D, T, t, Z, X, I...
  uint8_t reserved0[3];
  uint32_t reserved1;
  FixedString<kVnodeNameLength> vnode_name;  // set by the monitor
  FixedString<80> command;                   // cmdline, truncated
  Result<void> validate() const;
};
static_assert(sizeof(ProcessRecord) == 176);

// ---- stats ----------------------------------------------------------------

// One counter of one component: group ("tracer", "syscalls", "refused",
// "storage", "process"; issue 4 adds "memory"), name, value.
struct StatRecord {
  uint32_t node;  // set by the monitor
  uint32_t reserved;
  uint64_t value;
  FixedString<16> group;
  FixedString<48> name;
  Result<void> validate() const;
};
static_assert(sizeof(StatRecord) == 80);

StatRecord make_stat(std::string_view group, std::string_view name, uint64_t value);

// A Ctl2monClusterListReply with its records.
template <WireMessage R>
Bytes encode_cluster_list(const std::vector<R>& records, uint32_t unanswered = 0) {
  Ctl2monClusterListReply head{static_cast<uint32_t>(records.size()), unanswered};
  ByteView tail(reinterpret_cast<const std::byte*>(records.data()), records.size() * sizeof(R));
  return encode(head, tail);
}

template <WireMessage R>
Result<std::pair<Ctl2monClusterListReply, std::vector<R>>> decode_cluster_list(ByteView payload) {
  auto [head, tail] = TRY(decode_with_tail<Ctl2monClusterListReply>(payload));
  auto records = TRY(decode_records<R>(tail, head.count));
  return std::pair<Ctl2monClusterListReply, std::vector<R>>(head, std::move(records));
}

}  // namespace sk::wire
