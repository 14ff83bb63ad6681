// The pComponent's memory manager: a vNode process's private anonymous
// memory lives on mComponents, and at most the ExCache budget of it is
// resident here (DESIGN.md, "Memory").
//
// Who does what:
// - The tracer (pcomponent/ptrace_launcher.cpp) owns ptrace. After every
//   execve it takes a userfaultfd for the new mm (pcomponent/userfault.h)
//   and calls on_exec(); it stops traced mmap/brk/mremap/mprotect calls and
//   asks reserve() before those that add committed memory (a refusal fails
//   the call with ENOMEM, as Linux does at its commit limit) and reports
//   what they mapped with on_map() after; it calls on_fork() for every new
//   process and on_exit() when a process is gone. It also implements
//   PageDropper, the only way to drop pages of a private mapping (an
//   injected madvise(MADV_DONTNEED) while the process is stopped), with
//   drop_pages() from pcomponent/memory/drop.h.
// - The memory manager owns everything else: the fault thread reading
//   every uffd, the mComponent address spaces (P2M_MM_CREATE / _FORK /
//   _FREE), fetching pages on missing faults (zero-fill locally for a page
//   the mComponent never received: no round trip on first touch), prefetch
//   for sequential faults, the ExCache (excache.h) and its evictions, the
//   write-back of victims, uffd events (FORK: the child gets a
//   copy-on-write duplicate on the mComponent; REMAP, REMOVE, UNMAP: keep
//   the region map and the mComponent in step), the vNode's commit quota,
//   statistics.
//
// Threads: the AddressSpaceEvents methods are called on the tracer thread;
// they never wait for the network (an exec's or exit's mComponent work is
// queued). PageDropper::drop() is called from the memory manager's eviction
// thread and blocks until the tracer has done it; the tracer calls the
// copy_out and dropped callbacks on its own thread, and copy_out writes the
// victims back to their mComponents (network) before it returns.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
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
  // private anonymous regions (stack, .bss, heap: private_anonymous_regions()
  // in region_map.h reads them from /proc) are `regions`; `uffd` was created
  // for that mm (the memory manager owns and closes uffd.fd). When taking
  // the uffd failed, pass fd -1: the process then keeps its memory local
  // (counted as a fallback) but its commits still count against the quota.
  // The process stays stopped until this returns: the regions are
  // registered here, before the program can touch them.
  virtual void on_exec(pid_t pid, VnodeId vnode, Userfault uffd,
                       std::vector<Region> regions) = 0;

  // `parent` made a new process `child` (fork, vfork, or clone without
  // CLONE_THREAD); call it at the parent's PTRACE_EVENT_FORK/VFORK/CLONE
  // stop, before resuming the parent. (The child's own first stop may come
  // before or after: it need not wait.) The memory manager finds out
  // itself whether the child shares the parent's mm (vfork, CLONE_VM) or
  // got its own (then it matches the child with the uffd that
  // UFFD_EVENT_FORK brought, which carries no pid).
  virtual void on_fork(pid_t parent, pid_t child) = 0;

  // Before a traced call that would add `bytes` of committed memory to
  // `pid` (what Linux charges against its commit limit: a writable private
  // mmap, brk growth, mremap growth, mprotect adding PROT_WRITE to a
  // private mapping): may it? An error (ENOMEM) fails the call. Nothing is
  // held: a call that then fails needs no undo.
  virtual Result<void> reserve(pid_t pid, uint64_t bytes) = 0;

  // After such a call, or any other that made private anonymous memory
  // (a PROT_NONE mmap too), succeeded: [start, start + length) is private
  // anonymous memory of `pid` to register; `accounted` says whether it was
  // reserved (counts against the quota until unmapped). Registering a range
  // twice is harmless, so mremap may report its whole new range. The
  // process is stopped until this returns.
  virtual void on_map(pid_t pid, uint64_t start, uint64_t length, bool accounted) = 0;

  // `pid` (a whole process) is gone; free its address space everywhere.
  virtual void on_exit(pid_t pid) = 0;
};

// Drops pages of a process, which only the tracer can do.
class PageDropper {
 public:
  virtual ~PageDropper() = default;

  // Saves the victims (copy_out) and returns the ranges that may be
  // dropped now, a subset of those asked for.
  using CopyOut = std::function<Result<std::vector<Region>>()>;

  // Stops every thread of `pid`, calls `copy_out` (nothing can write to the
  // process's memory while it runs), drops the ranges it returned with an
  // injected madvise(MADV_DONTNEED) per range, calls `dropped` (still
  // stopped), and resumes the threads. Blocks until done. Fails with ESRCH
  // if the process ended, EAGAIN when no thread could take an injection
  // just now (copy_out was not called; the memory manager tries again),
  // or copy_out's error (nothing was dropped). drop_pages() in drop.h does
  // all of this on the tracer thread.
  virtual Result<void> drop(pid_t pid, std::span<const Region> ranges, const CopyOut& copy_out,
                            const std::function<void()>& dropped) = 0;
};

struct MemoryStats {
  uint64_t faults = 0;          // missing faults served
  uint64_t zero_fills = 0;      // of which first touches, served locally
  uint64_t fetched_pages = 0;   // pages fetched from mComponents
  uint64_t prefetched_pages = 0;
  uint64_t evicted_pages = 0;
  uint64_t written_back_pages = 0;  // victims written to mComponents
  uint64_t clean_drops = 0;  // victims dropped unwritten: not written since their fetch
  uint64_t resident_pages = 0;  // in the ExCache now
  uint64_t remote_pages = 0;    // held on mComponents for our processes
  uint64_t fallbacks = 0;       // processes left with local memory (no uffd)
  uint64_t processes = 0;       // address spaces served now
  uint64_t refused_reservations = 0;  // reserve() said ENOMEM
  uint64_t failed_processes = 0;      // killed: their memory was lost
  uint64_t parked_faults = 0;   // faults that waited for eviction (over budget)
  uint64_t overruns = 0;        // parked faults served over budget after park_limit
  Histogram fault_latency;      // missing fault -> page installed, in ns
  Histogram zero_fill_latency;  // the zero-filled faults alone
  Histogram fetch_latency;      // the faults that fetched from an mComponent
};

// The counters of MemoryStats as (name, value) pairs for `splitctl stats`
// (group "memory"): every counter, then for each latency histogram its
// count, median, p99 and mean in ns, then the fault-latency histogram's
// non-empty buckets as "fault_ns_lt_N" (faults that took less than N ns and
// at least half that).
inline std::vector<std::pair<std::string, uint64_t>> memory_counters(const MemoryStats& stats) {
  std::vector<std::pair<std::string, uint64_t>> counters = {
      {"faults", stats.faults},
      {"zero_fills", stats.zero_fills},
      {"fetched_pages", stats.fetched_pages},
      {"prefetched_pages", stats.prefetched_pages},
      {"evicted_pages", stats.evicted_pages},
      {"written_back_pages", stats.written_back_pages},
      {"clean_drops", stats.clean_drops},
      {"resident_pages", stats.resident_pages},
      {"remote_pages", stats.remote_pages},
      {"processes", stats.processes},
      {"fallbacks", stats.fallbacks},
      {"refused_reservations", stats.refused_reservations},
      {"failed_processes", stats.failed_processes},
      {"parked_faults", stats.parked_faults},
      {"overruns", stats.overruns},
  };
  auto summary = [&](const std::string& name, const Histogram& histogram) {
    counters.emplace_back(name + "_count", histogram.count());
    counters.emplace_back(name + "_p50_ns", histogram.percentile(0.5));
    counters.emplace_back(name + "_p99_ns", histogram.percentile(0.99));
    counters.emplace_back(name + "_mean_ns",
                          histogram.count() == 0 ? 0 : histogram.sum() / histogram.count());
  };
  summary("fault", stats.fault_latency);
  summary("zero_fill", stats.zero_fill_latency);
  summary("fetch", stats.fetch_latency);
  for (int i = 0; i < Histogram::kBuckets; ++i) {
    if (stats.fault_latency.bucket(i) == 0) continue;
    counters.emplace_back("fault_ns_lt_" + std::to_string(uint64_t{1} << (i + 1)),
                          stats.fault_latency.bucket(i));
  }
  return counters;
}

// Per process, for `splitctl ps`.
struct ProcessMemory {
  uint64_t resident_pages = 0;
  uint64_t remote_pages = 0;
};

class MemoryManager : public AddressSpaceEvents {
 public:
  virtual MemoryStats stats() const = 0;
  virtual ProcessMemory process(pid_t pid) const = 0;
  // A vNode hosted here: its ExCache budget in bytes (0: only the
  // pComponent's) and its memory quota (what its processes may commit; 0:
  // none). Again for the same vNode updates both.
  virtual void set_vnode(VnodeId vnode, uint64_t cache, uint64_t memory) = 0;
  // The vNode is gone (its processes are, too).
  virtual void drop_vnode(VnodeId vnode) = 0;
};

}  // namespace sk::pcomponent::memory
