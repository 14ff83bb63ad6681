// The seccomp filter of every vNode program, generated from the syscall table
// (abi/syscall_list.h): RET_TRACE for the calls routed to the tracer
// (traced and refused), RET_ALLOW for everything else, so that native calls
// never leave the kernel. Calls of another ABI (int 0x80, x32) fail ENOSYS:
// the table speaks for x86-64 only.
#pragma once

#include <seccomp.h>

#include "kernel/result.h"

namespace sk::pcomponent {

// Whether the calls routed kTraced (the memory manager's mmap, brk, mremap)
// stop in the tracer: only when the pComponent disaggregates memory, so that
// a pComponent without an mComponent pays nothing for them.
enum class TraceMemory { kNo, kYes };

// The filter context; owned by the caller for the life of the process (the
// vNode init keeps it to load into each program it forks).
Result<scmp_filter_ctx> build_seccomp_filter(TraceMemory trace_memory);

}  // namespace sk::pcomponent
