// The memory manager (memory_manager.h): userfaultfd-based disaggregated
// memory for the vNode processes of one pComponent.
//
// Per process (ManagedProcess, managed_process.h): its uffd, its RegionMap
// (registered ranges) and committed ranges (for the quota), two bits per
// page (PageBits: resident here / held remotely), and its RemoteSpace
// (remote_space.h: which mComponent holds each of its vRegions, and its
// address space there, mm).
//
// The units, each in its own file:
// - ProcessTable and ForkBook (process_table.h): processes by serial and
//   pid, vfork sharing, and the two halves of a fork waiting for each other;
// - VnodeBooks (vnode_books.h): per vNode, its quota, committed bytes and
//   the default holder of each vRegion;
// - ExCache (excache.h) with its EvictionPolicy: which resident pages go next;
// - pagemap.h: which pages of a process are present, and which written;
// - this class ties them together with three threads: the fault path
//   (fault_datapath.cpp), address-space events (address_space_events.cpp),
//   forks (fork_matching.cpp), eviction and write-back (eviction.cpp). A vNode's virtual address
//   space
// is cut into vRegions of kVregionBytes; the monitor places each on an
// mComponent (placement.h) the first time one of the vNode's processes
// writes a page of it back, and the process keeps that choice (a fork
// inherits it), so a page is always fetched from where it was written.
// Address spaces on mComponents are made lazily at the first write-back
// there (a process that never evicts never costs a round trip), forked
// with P2M_MM_FORK on UFFD_EVENT_FORK and freed at exit (queued).
//
// Threads:
// - the fault thread (fault_datapath.cpp): epoll over every uffd
//   (edge-triggered), reads a process's messages and serves them with the
//   process's lock held (reading and handling are one step, so whoever
//   takes the lock sees every event that was read already handled); serves
//   missing faults (zero-fill locally when the page was never written
//   back; else P2M_PAGE_READ of the page and, on sequential faults, a
//   prefetch window), handles FORK, REMAP, REMOVE and UNMAP. It never waits
//   for a lock another thread may hold across the network: a busy process
//   is deferred and sent back to it by whoever releases it. Faults of a
//   vNode more than options.high_water pages over its ExCache budget are
//   parked until eviction catches up (the budget is a ceiling plus that
//   much plus a prefetch window). A parked fault of a process that is
//   being evicted is served at once, one page: its thread may be in a
//   kernel-mode copy that cannot stop for the eviction until its fault is
//   served. options.park_limit is the safety net for an eviction that
//   cannot make progress.
// - prefetch: up to 8 sequential streams per process (several threads or
//   loops walking memory); a stream's window starts at prefetch_pages and
//   doubles per sequential fault up to max_prefetch_pages.
// - the eviction thread: takes victims from the ExCache, groups them by
//   process and asks the PageDropper (the tracer) to drop them; the
//   tracer calls copy_out (reads the pages with process_vm_readv, writes
//   them back with P2M_PAGE_WRITE) and dropped. Also runs queued
//   mComponent work (freeing the mms of exited processes).
// - the tracer thread calls AddressSpaceEvents, copy_out and dropped.
//
// Lock order: a Process's `lock`, then m_mutex. m_mutex is never held
// across a network call or a blocking syscall; a Process lock may be (the
// fault thread fetching, copy_out writing back).
//
// Dirty tracking, where the kernel has UFFD_FEATURE_WP_ASYNC and
// PAGEMAP_SCAN (6.7+; detected at start(), the mode is logged): ranges are
// registered MISSING | WP, and a page fetched from an mComponent for a
// read fault is installed write-protected (UFFDIO_COPY_MODE_WP), so its
// first write makes it writable again in the kernel, with no message to
// us (about 1 us: the price of tracking, paid by pages read then
// written). At eviction (the process stopped) one PAGEMAP_SCAN over the
// victims tells which are present and which were written (PAGE_IS_WRITTEN:
// no uffd-wp bit); a victim that is remote and not written is byte for byte its
// mComponent copy and is dropped without being read or written back
// (`clean_drops`). The rule "uffd-wp bit set => same bytes as our remote
// copy of that address" holds because only fetched pages are installed
// protected (for read faults; zero-fills and write faults' windows are not),
// the kernel keeps the bit with the page across fork (the child's mm is a
// copy-on-write duplicate on the mComponent, made before the parent can be
// evicted again), mremap (REMAP moves the remote copy along), swap and
// migration, and clears it on every write (GUP and /proc/PID/mem writes
// included) or drops it where it cannot keep it, which reads as written.
// Everything else is treated as dirty. Without those features (Linux 6.1 in
// the QEMU guests) every victim is written back, except an all-zero page
// the mComponent never received (it reads as zeroes again on its next
// fault, like a first touch); that rule holds in both modes.
// FIXME: synchronous UFFDIO_WRITEPROTECT tracking for kernels without
// WP_ASYNC (a WP fault message per first write, 3.9 us).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "pcomponent/memory/excache.h"
#include "pcomponent/memory/managed_process.h"
#include "pcomponent/memory/mcomponent_client.h"
#include "pcomponent/memory/memory_manager.h"
#include "pcomponent/memory/page_bits.h"
#include "pcomponent/memory/process_table.h"
#include "pcomponent/memory/vnode_books.h"
#include "pcomponent/memory/vregion_placer.h"

namespace sk::pcomponent::memory {

// The unit of placement (see monitor/memory_placement.h for why 64 MiB).
inline constexpr uint64_t kVregionBytes = uint64_t{64} << 20;
// The largest prefetch window, in pages.
inline constexpr uint32_t kMaxWindow = 256;

struct MemoryOptions {
  uint64_t excache = uint64_t{256} << 20;  // the pComponent's budget, bytes
  PolicyKind policy = PolicyKind::kFifo;
  // Pages installed per fault when the faults of a process are sequential
  // (1: no prefetch): the window starts at prefetch_pages and doubles with
  // each further sequential fault up to max_prefetch_pages (at most a
  // quarter of the ExCache budget, and kMaxWindow); a fault elsewhere
  // starts over.
  uint32_t prefetch_pages = 16;
  uint32_t max_prefetch_pages = 128;
  uint64_t vregion_bytes = kVregionBytes;
  // Faults of a vNode this many pages over its budget wait for eviction,
  // each at most park_limit (a safety net: eviction normally lets them go
  // within milliseconds). A parked fault of a process that is being
  // evicted is served at once, one page, as its thread may be in a
  // kernel-mode copy that cannot stop until the fault is served.
  uint64_t high_water = 4 * kEvictBatch;
  // (2 s: on a loaded 2-core machine eviction can fall half a second
  // behind; `overruns` in the stats counts the faults that did go over.)
  Duration park_limit = std::chrono::seconds(2);
  // Pages one eviction stop of a process drops: at least min_evict_pages
  // (a stop, a write-back and a madvise cost about a millisecond however
  // few pages they carry), more when the cache is further over budget, at
  // most max_evict_pages.
  size_t min_evict_pages = 256;
  size_t max_evict_pages = 1024;
  Duration rpc_timeout = std::chrono::seconds(5);
  // Track which pages were written (see the file comment) where the kernel
  // can; false writes every victim back, as on kernels that cannot.
  bool track_dirty = true;
  // Called (from any of the manager's threads) when a process is killed
  // because its memory was lost (an mComponent failed) or could not be
  // stored (the vNode's quota on the mComponents is exhausted).
  std::function<void(pid_t, const std::string&)> on_failure;
};

class MemoryManagerImpl final : public MemoryManager {
 public:
  // `placer` and `dropper` must outlive the manager.
  MemoryManagerImpl(fabric::Transport& transport, VregionPlacer& placer, PageDropper& dropper,
                    MemoryOptions options);
  ~MemoryManagerImpl() override;
  MemoryManagerImpl(const MemoryManagerImpl&) = delete;
  MemoryManagerImpl& operator=(const MemoryManagerImpl&) = delete;

  // Starts the fault and eviction threads.
  Result<void> start();
  // Stops them; idempotent (the destructor calls it).
  void stop();

  // AddressSpaceEvents.
  void on_exec(pid_t pid, VnodeId vnode, Userfault uffd, std::vector<Region> regions) override;
  void on_fork(pid_t parent, pid_t child) override;
  Result<void> reserve(pid_t pid, uint64_t bytes) override;
  void on_map(pid_t pid, uint64_t start, uint64_t length, bool accounted) override;
  void on_exit(pid_t pid) override;

  // MemoryManager.
  MemoryStats stats() const override;
  ProcessMemory process(pid_t pid) const override;
  void set_vnode(VnodeId vnode, uint64_t cache, uint64_t memory) override;
  void drop_vnode(VnodeId vnode) override;

  // Waits until the eviction thread is idle and every budget holds (tests).
  bool wait_for_evictions(Duration timeout);
  // Whether dirty state is tracked (the kernel can, and the options ask).
  bool tracks_dirty() const { return m_track_dirty; }

 private:
  using Process = ManagedProcess;

  struct Parked {
    uint64_t serial = 0;
    Fault fault;
    Clock::time_point deadline{};
  };

  // ---- fault thread (fault_datapath.cpp) ----
  void fault_loop();
  // Reads and handles a process's messages; retries its EAGAIN faults.
  void serve(const ProcessPtr& process);
  void handle_message(const ProcessPtr& process, const struct uffd_msg& message);
  enum class Served { kDone, kRetry };
  Served serve_fault(Process& process, const Fault& fault);
  // Installs `count` pages at `address` from `source` (nullptr: zero
  // pages); returns kRetry when the kernel refused all of it for now, and
  // sets `installed_at` when the faulting thread was woken. Pages from a
  // `source` (fetched: the mComponent's copy) for a read fault are
  // installed write-protected when the process's dirty state is tracked.
  Served install(Process& process, uint64_t address, uint64_t count, const std::byte* source,
                 bool write_fault, Clock::time_point& installed_at);
  bool should_park(const Process& process);
  void release_parked(bool all);
  void kick_fault_thread();
  // Unlocks `process`, sending it back to the fault thread if that found
  // it locked.
  void release(Process& process);

  // ---- address-space events (address_space_events.cpp; fault thread,
  // process lock held) ----
  void handle_remap(Process& process, uint64_t from, uint64_t to, uint64_t length);
  void handle_remove(Process& process, uint64_t start, uint64_t end, bool unmap);
  // Moves `count` remote pages at `source` (one vRegion) to `target` (one
  // vRegion), on the mComponents (mremap).
  Result<void> move_remote(Process& process, uint64_t source, uint64_t target, uint64_t count);
  void register_regions(Process& process, const std::vector<Region>& regions);
  void scan_present(Process& process, const std::vector<Region>& regions);
  void open_proc_files(Process& process, pid_t pid);

  // ---- forks (fork_matching.cpp) ----
  // The child's half of a fork from UFFD_EVENT_FORK (fault thread, the
  // parent's lock held).
  void handle_fork(const ProcessPtr& parent, int child_uffd);
  // Matches a forked child's pid with the uffd its parent's FORK event
  // brought (the parent's pending children).
  void match_child(const ProcessPtr& parent, pid_t child);
  // The child of a parent whose memory is local has local memory too.
  void add_local_child(ManagedProcess& parent, pid_t child);
  bool uffd_alive(int uffd, pid_t parent);

  // ---- eviction thread (eviction.cpp) ----
  void eviction_loop();
  // One batch; returns whether any page left the cache.
  bool evict_once();
  // The victims of one batch by process serial, pinned pages left out
  // (m_mutex held).
  std::map<uint64_t, std::vector<uint64_t>> pick_victims();
  // Evicts `pages` (sorted) of one process; whether they were dropped.
  bool evict_pages(const ProcessPtr& process, const std::vector<uint64_t>& pages);
  // With the process stopped: saves the victims on mComponents and
  // returns the ranges to drop (the tracer's PageDropper calls it).
  Result<std::vector<Region>> copy_out(const ProcessPtr& process, pid_t pid,
                                       const std::vector<uint64_t>& victims);
  Result<std::vector<Region>> copy_out_locked(Process& process, pid_t pid,
                                              const std::vector<uint64_t>& victims);
  // Writes the pages `to_write` (indices into `present`, whose data is
  // `data`) back to their holders; returns the pages written.
  Result<std::vector<uint64_t>> write_back(Process& process, const std::vector<uint64_t>& present,
                                           const std::vector<std::byte>& data,
                                           const std::vector<size_t>& to_write);

  // ---- books (memory_manager_impl.cpp; process lock held) ----
  uint64_t vregion_of(uint64_t address) const { return address / m_options.vregion_bytes; }
  // The holder of a vRegion of the process, placing it when it has none.
  Result<McomponentClient*> holder_for_write(Process& process, uint64_t vregion);
  // Forgets resident / remote pages of [start, end), freeing remote ones on
  // their mComponents.
  Result<void> forget_pages(Process& process, uint64_t start, uint64_t end);
  // Sets or clears the resident bit of pages, keeping the ExCache in step
  // (`evicted` counts removals as evictions).
  void set_resident(Process& process, const std::vector<uint64_t>& pages, bool resident,
                    bool evicted = false);
  // Kills the process (if it has a pid) and reports why. Process lock held.
  void fail(Process& process, const std::string& reason);
  // The mComponent behind `client` is gone: the vNode's next vRegions go
  // elsewhere (processes with pages there lose them when they touch them).
  void forget_holder(VnodeId vnode, const McomponentClient* client);
  // Closes its fds and takes it out of the cache and the tables' books.
  void close_process(Process& process);
  // close_process() with the lock taken, then queues the freeing of its mms.
  void close_and_free(const ProcessPtr& process);
  // Counts a process's resident pages in the ExCache (m_mutex held).
  void add_to_cache(Process& process);
  // Takes the process that has `pid` out of the tables (it exec'd or
  // exited), with its forked children not matched yet, and frees them.
  void forget_pid(pid_t pid, ProcessTable::Exited exited);
  // Puts a process in the tables (m_mutex held).
  void add_process(const ProcessPtr& process);
  McomponentClient* client_for(const VregionPlacement& placement);
  ProcessPtr find_pid(pid_t pid) const;
  ProcessPtr find_serial(uint64_t serial) const;
  void queue_job(std::function<void()> job);
  // Whether some vNode (or the pComponent as a whole) is over its budget.
  uint64_t cache_excess() const;

  fabric::Transport& m_transport;
  VregionPlacer& m_placer;
  PageDropper& m_dropper;
  const MemoryOptions m_options;
  bool m_track_dirty = false;  // the kernel can, and options.track_dirty
  int m_epoll = -1;
  int m_wake = -1;                // eventfd: the fault thread's doorbell
  std::byte* m_zeroes = nullptr;  // kMaxWindow zero pages, read-only

  mutable std::mutex m_mutex;  // guards everything below
  ExCache m_cache;
  ProcessTable m_processes;
  ForkBook m_forks;
  VnodeBooks m_vnodes;
  std::map<std::string, std::unique_ptr<McomponentClient>> m_clients;  // by address
  std::set<uint64_t> m_to_serve;  // serials to serve again (deferred, or not drained)
  std::set<uint64_t> m_retrying;  // serials with faults to retry
  std::deque<Parked> m_parked;
  std::deque<std::function<void()>> m_jobs;  // for the eviction thread
  MemoryStats m_stats;
  bool m_stopping = false;
  bool m_evicting = false;  // the eviction thread is in a batch
  std::condition_variable m_eviction_wake;
  std::condition_variable m_eviction_idle;

  std::thread m_fault_thread;
  std::thread m_eviction_thread;
};

// Makes and starts a memory manager.
Result<std::unique_ptr<MemoryManagerImpl>> make_memory_manager(fabric::Transport& transport,
                                                               VregionPlacer& placer,
                                                               PageDropper& dropper,
                                                               MemoryOptions options);

}  // namespace sk::pcomponent::memory
