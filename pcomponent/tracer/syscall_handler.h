// One handler per traced system call, and the table that finds it.
//
// A call routed kTraced in abi/syscall_list.h stops its thread in the tracer
// twice at most: at its seccomp stop (entry), where the handler decides
// whether the call runs, and, if the handler asked for it, at its
// syscall-exit stop, where the handler sees what the call returned. The
// handler only decides; the tracer does the ptrace work (skip the call, set
// its result, resume the thread), so handlers are plain functions over a
// SyscallContext that the unit tests can call without a tracee.
//
// The table is generated from SK_TRACED_SYSCALL_HANDLERS (abi/
// syscall_list.h); handlers live in files by concern (memory_calls.cpp).
//
// Threads: the tracer thread only.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <unordered_map>

#include "abi/syscall_list.h"
#include "pcomponent/memory/memory_manager.h"

namespace sk::pcomponent::tracer {

// What the tracer keeps per traced process (thread group) for the handlers.
struct ProcessState {
  uint64_t brk = 0;  // the program break as last seen (0: not known yet)
};

using ProcessStates = std::unordered_map<pid_t, ProcessState>;

// The call one thread stopped in, and what its handler may use.
struct SyscallContext {
  pid_t tid = -1;   // the thread that made the call
  pid_t tgid = -1;  // its process
  // The six arguments (rdi, rsi, rdx, r10, r8, r9): at the exit stop still
  // those the call was entered with.
  std::array<uint64_t, 6> args{};
  // The memory manager; null when none is attached (attach_memory).
  memory::AddressSpaceEvents* memory = nullptr;
  ProcessStates* processes = nullptr;

  // The process's state, created (zeroed) on first use.
  ProcessState& process() const { return (*processes)[tgid]; }
};

// What the tracer does with a call whose entry its handler saw.
struct EntryVerdict {
  enum class Action : uint8_t {
    kRun,        // let it run; no exit stop
    kRunToExit,  // let it run and stop at its exit for on_exit
    kFail,       // skip it: it returns `result` without running
  };
  Action action = Action::kRun;
  long result = 0;  // kFail only: the return value (-errno, or brk's old break)

  static EntryVerdict run() { return {Action::kRun, 0}; }
  static EntryVerdict run_to_exit() { return {Action::kRunToExit, 0}; }
  static EntryVerdict fail(long result) { return {Action::kFail, result}; }
};

struct SyscallHandler {
  // At the call's seccomp stop.
  EntryVerdict (*on_entry)(SyscallContext& call);
  // At its exit stop, after on_entry returned kRunToExit; `result` is what
  // the call returned (rax: -errno as a large unsigned value on failure).
  void (*on_exit)(SyscallContext& call, uint64_t result);
};

// The handlers the table names, one per traced call.
#define SK_DECLARE_SYSCALL_HANDLER(name, handler) extern const SyscallHandler handler;
SK_TRACED_SYSCALL_HANDLERS(SK_DECLARE_SYSCALL_HANDLER)
#undef SK_DECLARE_SYSCALL_HANDLER

// The handler of a traced call; null for every other number.
const SyscallHandler* find_handler(long number);

// Whether a syscall's return value is an error (-4095..-1).
inline bool syscall_failed(uint64_t result) { return result > static_cast<uint64_t>(-4096); }

}  // namespace sk::pcomponent::tracer
