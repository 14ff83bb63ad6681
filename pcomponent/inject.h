// Syscall injection into a ptrace-stopped tracee: the small library the
// memory manager uses to act inside a vNode process (create its
// userfaultfd, drop evicted pages with madvise), as CRIU's compel does.
//
// How: save the registers, point rip at a `syscall` instruction with the
// call's number and arguments loaded (orig_rax = -1 so no restart logic
// touches it), single-step over it, read rax, restore the registers. The
// tracee must be in a stop that passes through get_signal(): a
// signal-delivery-stop (e.g. the SIGTRAP of a single step), a group-stop or
// PTRACE_EVENT_STOP. An event stop in the middle of a syscall (exec, fork)
// is not one: single-step the tracee out of it first (step_out_of_syscall).
//
// Threads: only the tracer thread of the tracee may use an Injector.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <span>

#include "kernel/result.h"

namespace sk::pcomponent {

class Injector {
 public:
  explicit Injector(pid_t pid) : m_pid(pid) {}

  // Runs syscall `number` with `args` in the tracee and returns what the
  // kernel returned (a value >= 0, or -errno as a negative value). The
  // tracee is left stopped with its registers as they were. Fails (Error)
  // when the tracee vanished or another signal interrupted the injection.
  Result<long> syscall(long number, std::array<uint64_t, 6> args = {});

  // Copies bytes into the tracee's stack below its red zone, where nothing
  // live can be, and returns their address in the tracee. Valid until the
  // tracee runs again.
  Result<uint64_t> push(std::span<const std::byte> bytes);

 private:
  Result<uint64_t> syscall_instruction(uint64_t rip);

  pid_t m_pid;
  uint64_t m_syscall_instruction = 0;  // address of a 0f 05 in the tracee
};

// From a ptrace event stop inside a syscall (PTRACE_EVENT_EXEC, _FORK, ...):
// lets the syscall finish and stops the tracee on its SIGTRAP right before
// it returns to user mode, where injection is safe. Waits for that stop
// (only on this pid). The SIGTRAP is consumed: resume with signal 0.
Result<void> step_out_of_syscall(pid_t pid);

}  // namespace sk::pcomponent
