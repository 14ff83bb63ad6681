// The pComponent's memory manager: a vNode process's private anonymous
// memory lives on mComponents, and at most the ExCache budget of it is
// resident here (DESIGN.md, "Memory").
//
// Who does what:
// - The tracer (pcomponent/ptrace_launcher.cpp) owns ptrace. After every
//   execve it takes a userfaultfd for the new mm (pcomponent/userfault.h)
//   and calls on_exec(); it stops traced mmap/brk/mremap calls and asks
//   reserve() before they run (a refusal fails the call with ENOMEM, as
//   Linux does at its commit limit) and reports what they mapped with
//   on_map() after; it calls on_exit() when a process is gone. It also
//   implements PageDropper, the only way to drop pages of a private mapping
//   (an injected madvise(MADV_DONTNEED) while the process is stopped).
// - The memory manager owns everything else: the fault thread(s) reading
//   every uffd, the mComponent address spaces (P2M_MM_CREATE / _FORK /
//   _FREE), fetching pages on missing faults (zero-fill locally for a page
//   the mComponent never received: no round trip on first touch), prefetch
//   for sequential faults, the ExCache (excache.h) and its evictions, the
//   write-back of dirty victims, uffd events (FORK: the child gets a
//   copy-on-write duplicate on the mComponent; REMAP, REMOVE, UNMAP: keep
//   the region map and the mComponent in step), statistics.
//
// Threads: the AddressSpaceEvents methods are called on the tracer thread
// and must not block on the network for long (queue work to the fault
// thread). PageDropper::drop() may be called from any thread and blocks until
// the tracer has done it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernel/histogram.h"
#include "kernel/node.h"
#include "kernel/result.h"
#include "pcomponent/memory/region_map.h"
#include "pcomponent/userfault.h"

namespace sk::pcomponent::memory {

// What the tracer reports about address spaces.
class AddressSpaceEvents {
 public:
  virtual ~AddressSpaceEvents() = default;

  // `pid` has just exec'd (or was launched) into a fresh address space whose
  // private anonymous regions (stack, .bss, heap) are `regions`; `uffd` was
  // created for that mm (the memory manager owns and closes uffd.fd). The
  // process stays stopped until this returns: register the regions here.
  virtual void on_exec(pid_t pid, VnodeId vnode, Userfault uffd,
                       std::vector<Region> regions) = 0;

  // Before a traced mmap/brk/mremap that would add `bytes` of private
  // anonymous memory to `pid`: may it? An error (ENOMEM) fails the call.
  virtual Result<void> reserve(pid_t pid, uint64_t bytes) = 0;

  // After such a call succeeded: [start, start + length) is new private
  // anonymous memory of `pid` (the process is stopped until this returns).
  virtual void on_map(pid_t pid, uint64_t start, uint64_t length) = 0;

  // `pid` (a whole process) is gone; free its address space everywhere.
  virtual void on_exit(pid_t pid) = 0;
};

// Drops pages of a process, which only the tracer can do.
class PageDropper {
 public:
  virtual ~PageDropper() = default;

  // Stops every thread of `pid`, calls `copy_out` (which must save whatever
  // of the ranges is dirty: nothing can write to them while it runs), drops
  // the ranges with an injected madvise(MADV_DONTNEED), and resumes the
  // threads. Blocks until done; fails with ESRCH if the process ended.
  virtual Result<void> drop(pid_t pid, std::span<const Region> ranges,
                            const std::function<Result<void>()>& copy_out) = 0;
};

struct MemoryStats {
  uint64_t faults = 0;          // missing faults served
  uint64_t zero_fills = 0;      // of which first touches, served locally
  uint64_t fetched_pages = 0;   // pages fetched from mComponents
  uint64_t prefetched_pages = 0;
  uint64_t evicted_pages = 0;
  uint64_t written_back_pages = 0;
  uint64_t resident_pages = 0;  // in the ExCache now
  uint64_t remote_pages = 0;    // held on mComponents for our processes
  uint64_t fallbacks = 0;       // processes left with local memory (no uffd)
  Histogram fault_latency;      // missing fault -> page installed, in ns
};

// Per process, for `splitctl ps`.
struct ProcessMemory {
  uint64_t resident_pages = 0;
  uint64_t remote_pages = 0;
};

class MemoryManager : public AddressSpaceEvents {
 public:
  virtual MemoryStats stats() const = 0;
  virtual ProcessMemory process(pid_t pid) const = 0;
  // Budgets: the pComponent's (bytes) is fixed at creation; a vNode's own.
  virtual void set_vnode_budget(VnodeId vnode, uint64_t bytes) = 0;
};

}  // namespace sk::pcomponent::memory
