// The memory manager (memory_manager.h): userfaultfd-based disaggregated
// memory for the vNode processes of one pComponent.
//
// Per process (Process below): its uffd, its RegionMap (registered ranges)
// and committed ranges (for the quota), two bits per page (PageBits:
// resident here / held remotely), and, per mComponent that holds some of
// its pages, an address space there (mm). A vNode's virtual address space
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
#include "pcomponent/memory/mcomponent_client.h"
#include "pcomponent/memory/memory_manager.h"
#include "pcomponent/memory/page_bits.h"
#include "pcomponent/memory/placement.h"

namespace sk::pcomponent::memory {

inline constexpr uint64_t kPage = 4096;
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
  MemoryManagerImpl(fabric::Transport& transport, Placer& placer, PageDropper& dropper,
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
  struct Fault {
    uint64_t address = 0;  // page aligned
    bool write = false;
    Clock::time_point read_at{};
    bool no_prefetch = false;  // served while over budget: this page only
  };

  struct Process {
    uint64_t serial = 0;  // PageKey::mm in the ExCache
    VnodeId vnode = kNoVnode;
    std::mutex lock;  // guards everything below but the atomics
    std::atomic<bool> deferred{false};   // the fault thread found it locked
    std::atomic<bool> evicting{false};   // a drop() of it is under way
    std::atomic<pid_t> pid{-1};          // -1: a forked child not yet matched
    std::atomic<uint64_t> resident_pages{0};
    std::atomic<uint64_t> remote_pages{0};

    pid_t parent = -1;  // the forking process, until matched
    int uffd = -1;
    int pagemap = -1;  // /proc/PID/pagemap and /proc/PID/mem of its mm
    int mem = -1;
    bool dead = false;
    std::atomic<bool> failed{false};  // written under `lock`
    bool in_cache = false;  // its resident pages are counted in the ExCache
    bool track_dirty = false;  // dirty tracking: its uffd has WP_ASYNC, ranges MODE_WP
    // The pages holding its argv and environment (/proc/PID/stat's
    // arg_start..env_end), never evicted: other processes read them
    // (/proc/PID/cmdline and environ, so ps and pgrep), and the kernel does
    // not wait for userfaultfd on another process's behalf, so an evicted
    // one would read as empty. A page or two per process.
    Region pinned{};
    std::string failure;    // why it failed
    RegionMap regions;
    RegionMap committed;
    PageBits pages;
    std::map<uint64_t, McomponentClient*> vregions;  // vRegion index -> holder
    std::map<McomponentClient*, uint64_t> mms;       // holder -> mm there
    std::vector<Region> evicting_ranges;  // our own madvise, between copy_out and dropped
    // Sequential fault detection, for several threads (or loops) walking
    // memory at once: where each recent stream's last window ended.
    struct Stream {
      uint64_t next = 0;    // the page a sequential fault would be at
      uint32_t window = 0;  // its current prefetch window
      uint64_t used = 0;    // for replacing the least recently used
    };
    std::array<Stream, 8> streams{};
    uint64_t stream_clock = 0;
    std::deque<Fault> retry;              // faults the kernel said EAGAIN to
  };
  using ProcessPtr = std::shared_ptr<Process>;

  struct Vnode {
    uint64_t cache_pages = 0;
    uint64_t quota = 0;      // bytes; 0: none
    uint64_t committed = 0;  // bytes committed by its processes here
    std::map<uint64_t, McomponentClient*> placements;  // vRegion -> default holder
  };

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

  // ---- events (memory_manager_impl.cpp) ----
  void handle_fork(const ProcessPtr& parent, int child_uffd);
  void handle_remap(Process& process, uint64_t from, uint64_t to, uint64_t length);
  void handle_remove(Process& process, uint64_t start, uint64_t end, bool unmap);

  // ---- eviction thread ----
  void eviction_loop();
  // One batch; returns whether any page left the cache.
  bool evict_once();
  Result<std::vector<Region>> copy_out(const ProcessPtr& process, pid_t pid,
                                       const std::vector<uint64_t>& victims);

  // ---- shared helpers (process lock held) ----
  uint64_t vregion_of(uint64_t address) const { return address / m_options.vregion_bytes; }
  // The holder of a vRegion of the process, placing it when it has none.
  Result<McomponentClient*> holder_for_write(Process& process, uint64_t vregion);
  Result<uint64_t> mm_on(Process& process, McomponentClient* client);
  // Forgets resident / remote pages of [start, end), freeing remote ones on
  // their mComponents.
  Result<void> forget_pages(Process& process, uint64_t start, uint64_t end);
  // Sets or clears the resident bit of pages, keeping the ExCache in step
  // (`evicted` counts removals as evictions).
  void set_resident(Process& process, const std::vector<uint64_t>& pages, bool resident,
                    bool evicted = false);
  void sync_counts(Process& process);
  // Kills the process (if it has a pid) and reports why. Process lock held.
  void fail(Process& process, const std::string& reason);
  // Closes its fds and takes it out of the cache and the tables' books.
  void retire(Process& process);
  // retire() with the lock taken, then queues the freeing of its mms.
  void retire_and_free(const ProcessPtr& process);
  // Matches a forked child's pid with the uffd its parent's FORK event
  // brought (the parent's pending children).
  void match_child(const ProcessPtr& parent, pid_t child);
  bool uffd_alive(int uffd, pid_t parent);
  void register_regions(Process& process, const std::vector<Region>& regions);
  void scan_present(Process& process, const std::vector<Region>& regions);
  void open_proc_files(Process& process, pid_t pid);
  // Adds a process to the tables (m_mutex held).
  void add_to_cache(Process& process);
  McomponentClient* client_for(const Placement& placement);
  ProcessPtr find_pid(pid_t pid) const;
  ProcessPtr find_serial(uint64_t serial) const;
  void queue_job(std::function<void()> job);

  fabric::Transport& m_transport;
  Placer& m_placer;
  PageDropper& m_dropper;
  const MemoryOptions m_options;
  bool m_track_dirty = false;  // the kernel can, and options.track_dirty
  int m_epoll = -1;
  int m_wake = -1;  // eventfd: the fault thread's doorbell
  std::byte* m_zeroes = nullptr;  // kMaxWindow zero pages, read-only

  mutable std::mutex m_mutex;  // guards everything below
  ExCache m_cache;
  std::unordered_map<pid_t, ProcessPtr> m_by_pid;
  std::unordered_map<uint64_t, ProcessPtr> m_by_serial;
  // Children whose UFFD_EVENT_FORK was read and whose on_fork() has not
  // come yet, by the parent's serial, in the order the events came.
  std::map<uint64_t, std::deque<ProcessPtr>> m_pending_forks;
  // on_fork() calls whose parent was itself not matched yet (parent pid ->
  // child pids), replayed when it is.
  std::map<pid_t, std::vector<pid_t>> m_early_forks;
  std::map<pid_t, std::set<pid_t>> m_sharers;   // pid -> vfork/CLONE_VM children sharing its mm
  std::map<pid_t, pid_t> m_shares_with;         // such a child -> its parent
  std::map<VnodeId, Vnode> m_vnodes;
  std::map<std::string, std::unique_ptr<McomponentClient>> m_clients;  // by address
  std::set<uint64_t> m_to_serve;  // serials to serve again (deferred, or not drained)
  std::set<uint64_t> m_retrying;  // serials with faults to retry
  std::deque<Parked> m_parked;
  std::deque<std::function<void()>> m_jobs;  // for the eviction thread
  uint64_t m_next_serial = 1;
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
                                                               Placer& placer,
                                                               PageDropper& dropper,
                                                               MemoryOptions options);

}  // namespace sk::pcomponent::memory
