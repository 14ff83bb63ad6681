// Dropping pages of a traced process: the tracer's half of an eviction
// (PageDropper in memory_manager.h). A page of a private mapping can only
// be dropped by the process itself (process_madvise refuses MADV_DONTNEED),
// and a write between saving a page and dropping it would be lost, so:
//
//   1. stop every thread of the process: PTRACE_INTERRUPT each one that is
//      running and wait for its PTRACE_EVENT_STOP (a thread blocked in a
//      uffd fault stops too; one blocked in a uffd event stops once the
//      memory manager's fault thread has read the event, which it does
//      without waiting for anyone);
//   2. call copy_out, which saves the pages and says which ranges may go;
//   3. inject madvise(start, length, MADV_DONTNEED) per range through one
//      of the threads that stopped for us (inject.h);
//   4. call dropped; 5. resume the threads that stopped for us.
//
// A thread that has not stopped 100 ms after its PTRACE_INTERRUPT is
// waiting for something that may need the tracer (a vfork parent waits for
// its child, which may sit in its first stop until the tracer, busy here,
// resumes it): drop_pages gives up with EAGAIN, and that thread's stop
// comes to the tracer's own waitpid later, as a PTRACE_EVENT_STOP (or
// whatever stop it reaches first) to be handled as usual (resumed).
//
// Stops that are not ours: a thread may already be in another ptrace stop
// (a seccomp stop, a signal-delivery stop, an event stop the tracer has not
// reaped yet), or exit meanwhile. Such a thread is stopped (or gone), which
// is all step 1 needs, but its stop belongs to the tracer: it is left
// stopped and its wait status is handed back in `other_stops`, to be
// handled exactly as if the tracer's own waitpid had returned it. Threads
// the tracer holds stopped (reaped, not resumed) are left alone. A
// thread's PTRACE_EVENT_STOP is taken as ours and resumed here (PTRACE_CONT,
// or PTRACE_LISTEN for a group-stop), so the tracer does not see a new
// thread's first stop if it coincides with an eviction (it learns of new
// threads from PTRACE_EVENT_CLONE anyway).
//
// Threads: only the tracer thread of `pid` (the one that seized it) may
// call this; it waits with waitpid(tid, __WALL) on the process's threads
// only.
#pragma once

#include <sys/types.h>

#include <functional>
#include <span>
#include <vector>

#include "kernel/result.h"
#include "pcomponent/memory/memory_manager.h"
#include "pcomponent/memory/region_map.h"

namespace sk::pcomponent::memory {

// A wait status the tracer must handle (see the file comment).
struct TraceeStop {
  pid_t tid = -1;
  int status = 0;
};

// Steps 1-5 above. Errors: ESRCH when the process is gone; EAGAIN when a
// thread did not stop in time or none stopped in a way that lets a syscall
// be injected (all were in other stops): nothing was copied or dropped, try
// again later; copy_out's error (nothing was dropped). Threads stopped for us are resumed whatever
// happens; `other_stops` is filled in every case.
Result<void> drop_pages(pid_t pid, std::span<const Region> ranges,
                        const PageDropper::CopyOut& copy_out,
                        const std::function<void()>& dropped,
                        std::vector<TraceeStop>& other_stops);

}  // namespace sk::pcomponent::memory
