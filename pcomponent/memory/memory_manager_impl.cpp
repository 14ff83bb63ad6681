// The memory manager (see memory_manager_impl.h): address-space events from
// the tracer and the uffd, eviction, the books. The fault path is in
// fault_datapath.cpp.
#include "pcomponent/memory/memory_manager_impl.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "kernel/log.h"
#include "kernel/wire/messages.h"
#include "pcomponent/proc_stat.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

// Without all four the memory manager cannot keep a process's memory
// right: a forked child would read evicted pages as zeroes (FORK), moved
// or dropped pages would come back stale (REMAP, REMOVE, UNMAP).
constexpr uint64_t kNeededFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                                     UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
constexpr uint64_t kPagemapPresent = uint64_t{1} << 63;
constexpr uint64_t kPagemapSwapped = uint64_t{1} << 62;
constexpr size_t kIovMax = 1024;
constexpr size_t kPagemapBatch = 8192;  // entries read at a time
// How long the eviction thread sleeps when it can make no progress (the
// victims' processes cannot be stopped just now), and when idle.
constexpr Duration kEvictionBackoff = std::chrono::milliseconds(2);
constexpr Duration kEvictionIdle = std::chrono::milliseconds(50);

// Sorted page addresses as ranges of consecutive pages.
std::vector<Region> to_ranges(const std::vector<uint64_t>& pages) {
  std::vector<Region> ranges;
  for (uint64_t page : pages) {
    if (!ranges.empty() && ranges.back().end == page) {
      ranges.back().end += kPage;
    } else {
      ranges.push_back(Region{page, page + kPage});
    }
  }
  return ranges;
}

bool all_zero(const std::byte* page) {
  const auto* words = reinterpret_cast<const uint64_t*>(page);
  uint64_t any = 0;
  for (size_t i = 0; i < kPage / sizeof(uint64_t); ++i) any |= words[i];
  return any == 0;
}

uint64_t vdso_address(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") != std::string::npos) {
      return std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    }
  }
  return 0;
}

// PAGEMAP_SCAN (Linux 6.7+), defined here because older headers lack it:
// lists the present pages of a range by walking the page tables, so a huge
// sparse region costs what it holds, not what it spans.
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
      category_mask, category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
// Page categories: WRITTEN is "no uffd-wp bit" (a page of a range not
// registered with MODE_WP is always written).
constexpr uint64_t kPageIsWritten = 1 << 1;
constexpr uint64_t kPageIsPresent = 1 << 3;
constexpr uint64_t kPageIsSwapped = 1 << 4;

// Calls `visit(address, categories)` for each present or swapped page of
// [start, end), with its categories among `wanted` (present and swapped
// always); false when the kernel has no PAGEMAP_SCAN (or it failed
// part-way: some pages may have been visited).
template <typename Fn>
bool scan_pagemap(int pagemap, uint64_t start, uint64_t end, uint64_t wanted, Fn&& visit) {
  std::array<PageRegion, 256> regions;
  while (start < end) {
    PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    arg.return_mask = kPageIsPresent | kPageIsSwapped | wanted;
    long found = ::ioctl(pagemap, kPagemapScan, &arg);
    if (found < 0) return false;
    for (long i = 0; i < found; ++i) {
      const PageRegion& region = regions[static_cast<size_t>(i)];
      for (uint64_t page = region.start; page < region.end; page += kPage) {
        visit(page, region.categories);
      }
    }
    if (arg.walk_end <= start) break;
    start = arg.walk_end;
  }
  return true;
}

// Whether PAGEMAP_SCAN works here (Linux 6.7+): one scan of a page of ours.
bool pagemap_scan_works(const void* page) {
  int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return false;
  uint64_t start = reinterpret_cast<uint64_t>(page) & ~(kPage - 1);
  bool works =
      scan_pagemap(pagemap, start, start + kPage, kPageIsWritten, [](uint64_t, uint64_t) {});
  ::close(pagemap);
  return works;
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace

MemoryManagerImpl::MemoryManagerImpl(fabric::Transport& transport, Placer& placer,
                                     PageDropper& dropper, MemoryOptions options)
    : m_transport(transport),
      m_placer(placer),
      m_dropper(dropper),
      m_options(std::move(options)),
      m_cache(std::max<uint64_t>(m_options.excache / kPage, 1), m_options.policy) {}

MemoryManagerImpl::~MemoryManagerImpl() {
  stop();
  if (m_zeroes != nullptr) ::munmap(m_zeroes, kMaxWindow * kPage);
  if (m_epoll >= 0) ::close(m_epoll);
  if (m_wake >= 0) ::close(m_wake);
}

Result<std::unique_ptr<MemoryManagerImpl>> make_memory_manager(fabric::Transport& transport,
                                                               Placer& placer,
                                                               PageDropper& dropper,
                                                               MemoryOptions options) {
  auto manager =
      std::make_unique<MemoryManagerImpl>(transport, placer, dropper, std::move(options));
  TRY(manager->start());
  return manager;
}

Result<void> MemoryManagerImpl::start() {
  void* zeroes = ::mmap(nullptr, kMaxWindow * kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (zeroes == MAP_FAILED) return Error::from_errno("mmap the zero pages");
  m_zeroes = static_cast<std::byte*>(zeroes);
  m_epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (m_epoll < 0) return Error::from_errno("epoll_create1");
  m_wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m_wake < 0) return Error::from_errno("eventfd");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = 0;
  if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, m_wake, &event) != 0) {
    return Error::from_errno("epoll_ctl the doorbell");
  }
  // Dirty tracking needs both halves: WP_ASYNC (the uffds are asked for it
  // when the kernel has it, see userfault.h) and PAGEMAP_SCAN to read it.
  bool wp_async = (supported_userfault_features() & kUffdFeatureWpAsync) != 0;
  bool pagemap_scan = pagemap_scan_works(m_zeroes);
  // SK_DIRTY_TRACKING=0 in the pComponent's environment turns it off
  // without a rebuild (a safety valve, and for measuring what it saves).
  const char* knob = std::getenv("SK_DIRTY_TRACKING");
  bool wanted = m_options.track_dirty && !(knob != nullptr && std::strcmp(knob, "0") == 0);
  m_track_dirty = wanted && wp_async && pagemap_scan;
  m_fault_thread = std::thread([this] { fault_loop(); });
  m_eviction_thread = std::thread([this] { eviction_loop(); });
  log.info("ExCache budget {} ({} policy), prefetch {} pages, vRegions of {}",
           format_size(m_options.excache),
           m_options.policy == PolicyKind::kFifo ? "FIFO" : "CLOCK", m_options.prefetch_pages,
           format_size(m_options.vregion_bytes));
  if (m_track_dirty) {
    log.info("dirty tracking: userfaultfd WP_ASYNC + PAGEMAP_SCAN (clean victims are not "
             "written back)");
  } else {
    log.info("dirty tracking: off ({}): every victim is written back unless all zero",
             !wanted     ? "turned off"
             : !wp_async ? "this kernel's userfaultfd has no WP_ASYNC"
                         : "this kernel has no PAGEMAP_SCAN");
  }
  return {};
}

void MemoryManagerImpl::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  m_eviction_wake.notify_all();
  if (m_wake >= 0) kick_fault_thread();
  if (m_fault_thread.joinable()) m_fault_thread.join();
  if (m_eviction_thread.joinable()) m_eviction_thread.join();
  // FIXME: a process still running loses its uffd here (its remote pages
  // would read as zeroes); the pComponent stops its launcher, which kills
  // every tracee, first.
  std::vector<ProcessPtr> processes;
  {
    std::lock_guard lock(m_mutex);
    for (auto& [serial, process] : m_by_serial) processes.push_back(process);
  }
  for (auto& process : processes) {
    std::lock_guard lock(process->lock);
    retire(*process);
  }
}

// ---- books ---------------------------------------------------------------

MemoryManagerImpl::ProcessPtr MemoryManagerImpl::find_pid(pid_t pid) const {
  std::lock_guard lock(m_mutex);
  auto it = m_by_pid.find(pid);
  return it == m_by_pid.end() ? nullptr : it->second;
}

MemoryManagerImpl::ProcessPtr MemoryManagerImpl::find_serial(uint64_t serial) const {
  std::lock_guard lock(m_mutex);
  auto it = m_by_serial.find(serial);
  return it == m_by_serial.end() ? nullptr : it->second;
}

void MemoryManagerImpl::sync_counts(Process& process) {
  process.resident_pages = process.pages.count(PageBits::kResident);
  process.remote_pages = process.pages.count(PageBits::kRemote);
}

void MemoryManagerImpl::set_resident(Process& process, const std::vector<uint64_t>& pages,
                                     bool resident, bool evicted) {
  std::vector<uint64_t> changed;
  changed.reserve(pages.size());
  for (uint64_t page : pages) {
    if (process.pages.set(PageBits::kResident, page, resident)) changed.push_back(page);
  }
  if (!changed.empty() && process.in_cache) {
    std::lock_guard lock(m_mutex);
    for (uint64_t page : changed) {
      if (resident) {
        m_cache.add(process.vnode, PageKey{process.serial, page});
      } else {
        m_cache.remove(process.vnode, PageKey{process.serial, page}, evicted);
      }
    }
    if (resident && m_cache.excess(process.vnode) > 0) m_eviction_wake.notify_one();
  }
  sync_counts(process);
}

void MemoryManagerImpl::add_to_cache(Process& process) {
  if (process.in_cache) return;
  process.in_cache = true;
  for (uint64_t page : process.pages.list(PageBits::kResident)) {
    m_cache.add(process.vnode, PageKey{process.serial, page});
  }
  if (m_cache.excess(process.vnode) > 0) m_eviction_wake.notify_one();
}

void MemoryManagerImpl::fail(Process& process, const std::string& reason) {
  if (process.failed) return;
  process.failed = true;
  process.failure = reason;
  pid_t pid = process.pid;
  if (pid <= 0) return;  // killed when it is matched (on_fork)
  log.error("process {} (vNode {}) killed: {}", pid, process.vnode, reason);
  {
    std::lock_guard lock(m_mutex);
    ++m_stats.failed_processes;
  }
  // The report first, so that it is there when the exit is seen.
  if (m_options.on_failure) m_options.on_failure(pid, reason);
  ::kill(pid, SIGKILL);
}

void MemoryManagerImpl::retire(Process& process) {
  if (process.dead) return;
  process.dead = true;
  if (process.uffd >= 0) {
    ::epoll_ctl(m_epoll, EPOLL_CTL_DEL, process.uffd, nullptr);
    ::close(process.uffd);
    process.uffd = -1;
  }
  for (int* fd : {&process.pagemap, &process.mem}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  std::lock_guard lock(m_mutex);
  if (process.in_cache) {
    for (uint64_t page : process.pages.list(PageBits::kResident)) {
      m_cache.remove(process.vnode, PageKey{process.serial, page}, false);
    }
  }
  if (auto vnode = m_vnodes.find(process.vnode); vnode != m_vnodes.end()) {
    vnode->second.committed -= std::min(vnode->second.committed, process.committed.total_bytes());
  }
  m_by_serial.erase(process.serial);
  m_retrying.erase(process.serial);
  m_to_serve.erase(process.serial);
  if (m_stats.processes > 0) --m_stats.processes;
}

void MemoryManagerImpl::retire_and_free(const ProcessPtr& process) {
  process->lock.lock();
  retire(*process);
  auto mms = std::move(process->mms);
  process->mms.clear();
  VnodeId vnode = process->vnode;
  release(*process);
  if (mms.empty()) return;
  queue_job([mms = std::move(mms), vnode] {
    for (const auto& [client, mm] : mms) {
      auto freed = client->free_mm(vnode, mm);
      if (!freed) log.debug("freeing mm {} on {}: {}", mm, client->name(), freed.error().text());
    }
  });
}

void MemoryManagerImpl::queue_job(std::function<void()> job) {
  {
    std::lock_guard lock(m_mutex);
    m_jobs.push_back(std::move(job));
  }
  m_eviction_wake.notify_all();
}

void MemoryManagerImpl::open_proc_files(Process& process, pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  process.pagemap = ::open((base + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  process.mem = ::open((base + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (process.pagemap < 0) log.warn("process {}: no pagemap: {}", pid, std::strerror(errno));
}

void MemoryManagerImpl::register_regions(Process& process, const std::vector<Region>& regions) {
  for (const Region& region : regions) {
    uint64_t start = region.start & ~(kPage - 1);
    uint64_t end = (region.end + kPage - 1) & ~(kPage - 1);
    if (start >= end) continue;
    uffdio_register reg{};
    reg.range = {start, end - start};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (process.track_dirty) {
      // Write-protect mode too, for dirty tracking; a range that cannot
      // have it is served without (its pages then always read as written).
      reg.mode |= UFFDIO_REGISTER_MODE_WP;
      if (::ioctl(process.uffd, UFFDIO_REGISTER, &reg) == 0) {
        process.regions.add(start, end);
        continue;
      }
      log.debug("process {}: cannot register {:#x}-{:#x} for write-protect: {}",
                process.pid.load(), start, end, std::strerror(errno));
      reg = uffdio_register{};
      reg.range = {start, end - start};
      reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    }
    if (::ioctl(process.uffd, UFFDIO_REGISTER, &reg) != 0) {
      log.debug("process {}: cannot register {:#x}-{:#x}: {}", process.pid.load(), start, end,
                std::strerror(errno));
      continue;
    }
    process.regions.add(start, end);
  }
}

void MemoryManagerImpl::scan_present(Process& process, const std::vector<Region>& regions) {
  if (process.pagemap < 0) return;
  std::vector<uint64_t> entries(kPagemapBatch);
  for (const Region& region : regions) {
    if (scan_pagemap(process.pagemap, region.start, region.end, 0, [&](uint64_t page, uint64_t) {
          process.pages.set(PageBits::kResident, page, true);
        })) {
      continue;
    }
    // An older kernel: every entry, 8 bytes per page of the region.
    for (uint64_t at = region.start; at < region.end;) {
      size_t count = static_cast<size_t>(std::min<uint64_t>((region.end - at) / kPage, kPagemapBatch));
      ssize_t got = ::pread(process.pagemap, entries.data(), count * sizeof(uint64_t),
                            static_cast<off_t>(at / kPage * sizeof(uint64_t)));
      if (got <= 0) break;
      size_t read = static_cast<size_t>(got) / sizeof(uint64_t);
      for (size_t i = 0; i < read; ++i) {
        if (entries[i] & (kPagemapPresent | kPagemapSwapped)) {
          process.pages.set(PageBits::kResident, at + i * kPage, true);
        }
      }
      at += read * kPage;
    }
  }
}

McomponentClient* MemoryManagerImpl::client_for(const Placement& placement) {
  auto& client = m_clients[placement.address];
  if (!client) {
    auto address = parse_address(placement.address);
    client = std::make_unique<McomponentClient>(
        m_transport, placement.node, address ? *address : Address{placement.address, 0},
        m_options.rpc_timeout);
  }
  return client.get();
}

Result<McomponentClient*> MemoryManagerImpl::holder_for_write(Process& process, uint64_t vregion) {
  if (auto it = process.vregions.find(vregion); it != process.vregions.end()) return it->second;
  {
    std::lock_guard lock(m_mutex);
    auto& placements = m_vnodes[process.vnode].placements;
    if (auto it = placements.find(vregion); it != placements.end()) {
      process.vregions[vregion] = it->second;
      return it->second;
    }
  }
  auto placed = m_placer.place(process.vnode, m_options.vregion_bytes);
  if (!placed) return std::move(placed).error();
  std::lock_guard lock(m_mutex);
  McomponentClient* client = client_for(*placed);
  auto [it, inserted] = m_vnodes[process.vnode].placements.emplace(vregion, client);
  if (inserted) {
    log.info("vNode {}: vRegion {:#x} ({}) on {}", process.vnode, vregion * m_options.vregion_bytes,
             format_size(m_options.vregion_bytes), client->name());
  }
  process.vregions[vregion] = it->second;
  return it->second;
}

Result<uint64_t> MemoryManagerImpl::mm_on(Process& process, McomponentClient* client) {
  if (auto it = process.mms.find(client); it != process.mms.end()) return it->second;
  uint64_t mm = TRY(client->create_mm(process.vnode));
  process.mms[client] = mm;
  return mm;
}

Result<void> MemoryManagerImpl::forget_pages(Process& process, uint64_t start, uint64_t end) {
  set_resident(process, process.pages.list(PageBits::kResident, start, end), false);
  auto remote = process.pages.list(PageBits::kRemote, start, end);
  Result<void> outcome;
  // Runs of consecutive pages within one vRegion, freed where they are.
  for (size_t i = 0; i < remote.size();) {
    size_t j = i + 1;
    while (j < remote.size() && remote[j] == remote[j - 1] + kPage &&
           vregion_of(remote[j]) == vregion_of(remote[i])) {
      ++j;
    }
    auto holder = process.vregions.find(vregion_of(remote[i]));
    if (holder != process.vregions.end()) {
      if (auto mm = process.mms.find(holder->second); mm != process.mms.end()) {
        auto freed = holder->second->free(process.vnode, mm->second, remote[i], j - i);
        if (!freed && outcome) outcome = std::move(freed).error();
      }
    }
    for (size_t k = i; k < j; ++k) process.pages.set(PageBits::kRemote, remote[k], false);
    i = j;
  }
  sync_counts(process);
  return outcome;
}

// ---- uffd events (fault thread, process lock held) -----------------------

void MemoryManagerImpl::handle_fork(const ProcessPtr& parent, int child_uffd) {
  set_nonblocking(child_uffd);
  auto child = std::make_shared<Process>();
  child->vnode = parent->vnode;
  child->uffd = child_uffd;
  // The child's uffd has its parent's features, its vmas their
  // registration, and its pages their uffd-wp bits (and so their dirty
  // state: the child's copy on the mComponent is the parent's as of now).
  child->track_dirty = parent->track_dirty;
  child->pinned = parent->pinned;
  child->parent = parent->pid;
  child->regions = parent->regions;
  child->committed = parent->committed;
  // The child has what was present in the parent when the kernel copied its
  // page tables: about what we know as resident now (the parent cannot
  // have been evicted since, as the forking thread could not stop before
  // this event was read). An estimate: copy_out checks presence, and a
  // fault on a page thought resident is served like any other.
  child->pages = parent->pages;
  child->vregions = parent->vregions;
  // Pages the parent wrote back are copied (copy-on-write) before any more
  // of the parent's messages, and so any write-back of the parent after the
  // fork, can happen: the parent's lock is held throughout.
  for (const auto& [client, mm] : parent->mms) {
    auto forked = client->fork_mm(parent->vnode, mm);
    if (forked) {
      child->mms[client] = *forked;
    } else if (!child->failed) {
      child->failed = true;
      child->failure = "its parent's memory on " + client->name() +
                       " could not be copied: " + forked.error().text();
    }
  }
  sync_counts(*child);
  {
    std::lock_guard lock(m_mutex);
    child->serial = m_next_serial++;
    m_by_serial[child->serial] = child;
    m_pending_forks[parent->serial].push_back(child);
    m_vnodes[child->vnode].committed += child->committed.total_bytes();
    ++m_stats.processes;
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  event.data.u64 = child->serial;
  if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, child_uffd, &event) != 0) {
    log.error("epoll_ctl a forked child's uffd: {}", std::strerror(errno));
  }
}

void MemoryManagerImpl::handle_remove(Process& process, uint64_t start, uint64_t end, bool unmap) {
  start &= ~(kPage - 1);
  end = (end + kPage - 1) & ~(kPage - 1);
  if (!unmap) {
    // Our own madvise, between copy_out and dropped: those pages are saved.
    for (const Region& range : process.evicting_ranges) {
      if (start >= range.start && end <= range.end) return;
    }
  }
  if (unmap) {
    process.regions.remove(start, end);
    uint64_t released = 0;
    for (const Region& part : process.committed.remove(start, end)) released += part.size();
    if (released != 0) {
      std::lock_guard lock(m_mutex);
      auto& vnode = m_vnodes[process.vnode];
      vnode.committed -= std::min(vnode.committed, released);
    }
  }
  auto forgotten = forget_pages(process, start, end);
  if (!forgotten) {
    // The pages are gone for the program either way; what stays behind on
    // an unreachable mComponent goes with the address space.
    log.warn("process {}: freeing {:#x}-{:#x} remotely: {}", process.pid.load(), start, end,
             forgotten.error().text());
  }
  process.streams = {};
}

void MemoryManagerImpl::handle_remap(Process& process, uint64_t from, uint64_t to,
                                     uint64_t length) {
  length = (length + kPage - 1) & ~(kPage - 1);
  process.regions.move(from, length, to);
  process.committed.move(from, length, to);
  auto resident = process.pages.list(PageBits::kResident, from, from + length);
  auto remote = process.pages.list(PageBits::kRemote, from, from + length);
  // Whatever was at the destination is gone (mremap unmapped it; its UNMAP
  // came first, so this is normally nothing).
  (void)forget_pages(process, to, to + length);

  // Pages here follow their vma.
  set_resident(process, resident, false);
  std::vector<uint64_t> moved;
  moved.reserve(resident.size());
  for (uint64_t page : resident) moved.push_back(page - from + to);
  set_resident(process, moved, true);

  // Pages on mComponents: re-keyed there (P2M_PAGE_MOVE) when the new
  // place is in a vRegion held by the same mComponent; otherwise read,
  // written to the new holder, freed at the old.
  for (size_t i = 0; i < remote.size();) {
    uint64_t source = remote[i];
    uint64_t target = source - from + to;
    size_t j = i + 1;
    while (j < remote.size() && remote[j] == remote[j - 1] + kPage &&
           vregion_of(remote[j]) == vregion_of(source) &&
           vregion_of(remote[j] - from + to) == vregion_of(target) &&
           j - i < wire::kMaxPagesPerMessage) {
      ++j;
    }
    uint64_t count = j - i;
    auto old_holder = process.vregions.find(vregion_of(source));
    if (old_holder == process.vregions.end() || !process.mms.contains(old_holder->second)) {
      fail(process, "moved pages are on no mComponent we know");
      return;
    }
    McomponentClient* from_client = old_holder->second;
    uint64_t from_mm = process.mms[from_client];
    auto [target_holder, fresh] = process.vregions.emplace(vregion_of(target), from_client);
    McomponentClient* to_client = target_holder->second;
    Result<void> done;
    if (to_client == from_client) {
      done = from_client->move(process.vnode, from_mm, source, target, count);
    } else {
      auto data = from_client->read(process.vnode, from_mm, source, static_cast<uint32_t>(count));
      if (!data) {
        done = std::move(data).error();
      } else if (auto to_mm = mm_on(process, to_client); !to_mm) {
        done = std::move(to_mm).error();
      } else {
        McomponentClient::Run run{target, static_cast<uint32_t>(count), *data};
        done = to_client->write(process.vnode, *to_mm, std::span(&run, 1));
        if (done) done = from_client->free(process.vnode, from_mm, source, count);
      }
    }
    if (!done) {
      fail(process, "moving its memory (mremap) failed: " + done.error().text());
      return;
    }
    for (size_t k = i; k < j; ++k) {
      process.pages.set(PageBits::kRemote, remote[k], false);
      process.pages.set(PageBits::kRemote, remote[k] - from + to, true);
    }
    i = j;
  }
  sync_counts(process);
  process.streams = {};
}

// ---- the tracer's calls --------------------------------------------------

// The pages from arg_start to env_end (fields 48 to 51 of /proc/PID/stat),
// or an empty range.
static Region argument_pages(pid_t pid) {
  auto stat = read_proc_stat(pid);
  if (!stat) return {};
  uint64_t start = stat->number(48);
  uint64_t end = stat->number(51);
  if (start == 0 || end <= start || end - start > (uint64_t{1} << 20)) return {};
  return Region{start & ~(kPage - 1), (end + kPage - 1) & ~(kPage - 1)};
}

void MemoryManagerImpl::on_exec(pid_t pid, VnodeId vnode, Userfault uffd,
                                std::vector<Region> regions) {
  ProcessPtr old;
  std::deque<ProcessPtr> orphans;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_by_pid.find(pid); it != m_by_pid.end()) {
      old = it->second;
      m_by_pid.erase(it);
      if (auto pending = m_pending_forks.find(old->serial); pending != m_pending_forks.end()) {
        orphans.swap(pending->second);
        m_pending_forks.erase(pending);
      }
    }
    // A vfork child that execs stops sharing its parent's mm.
    if (auto it = m_shares_with.find(pid); it != m_shares_with.end()) {
      m_sharers[it->second].erase(pid);
      m_shares_with.erase(it);
    }
  }
  if (old) retire_and_free(old);
  for (auto& orphan : orphans) retire_and_free(orphan);

  auto process = std::make_shared<Process>();
  process->vnode = vnode;
  process->pid = pid;
  int fd = uffd.fd;
  if (fd >= 0 && (uffd.features & kNeededFeatures) != kNeededFeatures) {
    log.warn(
        "process {}: this kernel's userfaultfd lacks fork/remap/remove/unmap events (features "
        "{:#x}); its memory stays local",
        pid, uffd.features);
    ::close(fd);
    fd = -1;
  }
  if (fd >= 0) set_nonblocking(fd);
  process->uffd = fd;
  process->track_dirty = fd >= 0 && m_track_dirty && (uffd.features & kUffdFeatureWpAsync) != 0;
  process->pinned = argument_pages(pid);
  process->lock.lock();
  if (fd >= 0) {
    register_regions(*process, regions);
    open_proc_files(*process, pid);
    scan_present(*process, process->regions.regions());
  }
  for (const Region& region : regions) process->committed.add(region.start, region.end);
  sync_counts(*process);
  {
    std::lock_guard lock(m_mutex);
    process->serial = m_next_serial++;
    m_by_pid[pid] = process;
    m_by_serial[process->serial] = process;
    m_vnodes[vnode].committed += process->committed.total_bytes();
    if (fd < 0) ++m_stats.fallbacks;
    ++m_stats.processes;
    add_to_cache(*process);
  }
  if (fd >= 0) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLET;
    event.data.u64 = process->serial;
    if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
      log.error("process {}: epoll_ctl its uffd: {}", pid, std::strerror(errno));
    }
  }
  log.debug("process {} (vNode {}): {} of anonymous memory in {} regions, {} pages present",
            pid, vnode, format_size(process->regions.total_bytes()),
            process->regions.regions().size(), process->pages.count(PageBits::kResident));
  release(*process);
}

bool MemoryManagerImpl::uffd_alive(int uffd, pid_t parent) {
  // A uffd whose mm is gone (a fork that failed after copying the mm)
  // answers ESRCH to any fill; a live one says ENOENT for the vDSO, which
  // no uffd can register, so the probe never changes anything.
  uint64_t probe = vdso_address(parent);
  if (probe == 0) return true;
  uffdio_zeropage zero{{probe, kPage}, UFFDIO_ZEROPAGE_MODE_DONTWAKE, 0};
  return ::ioctl(uffd, UFFDIO_ZEROPAGE, &zero) == 0 || errno != ESRCH;
}

void MemoryManagerImpl::on_fork(pid_t parent, pid_t child) {
  long same = ::syscall(SYS_kcmp, parent, child, KCMP_VM, 0, 0);
  if (same < 0) return;  // one of them is gone already
  if (same == 0) {
    // vfork or CLONE_VM: one mm, one uffd (the parent's). The parent must
    // not be evicted while the child may write to it unstopped.
    std::lock_guard lock(m_mutex);
    if (m_by_pid.contains(parent)) {
      m_sharers[parent].insert(child);
      m_shares_with[child] = parent;
    }
    return;
  }
  ProcessPtr process;
  {
    std::lock_guard lock(m_mutex);
    // A child that exec'd before its parent's fork event was handled has
    // its own entry (and uffd) already.
    if (m_by_pid.contains(child)) return;
    auto it = m_by_pid.find(parent);
    if (it == m_by_pid.end()) {
      m_early_forks[parent].push_back(child);
      return;
    }
    process = it->second;
  }
  match_child(process, child);
}

void MemoryManagerImpl::match_child(const ProcessPtr& parent, pid_t child) {
  ProcessPtr matched;
  std::vector<ProcessPtr> stillborn;
  parent->lock.lock();
  if (parent->uffd < 0 && !parent->dead) {
    // A parent with local memory has a child with local memory.
    auto process = std::make_shared<Process>();
    process->vnode = parent->vnode;
    process->pid = child;
    process->committed = parent->committed;
    release(*parent);
    std::lock_guard lock(m_mutex);
    process->serial = m_next_serial++;
    process->in_cache = true;
    m_by_pid[child] = process;
    m_by_serial[process->serial] = process;
    m_vnodes[process->vnode].committed += process->committed.total_bytes();
    ++m_stats.fallbacks;
    ++m_stats.processes;
    return;
  }
  // The FORK event was read before the fork returned, and reading and
  // handling are one step under the parent's lock: it is handled now.
  std::deque<ProcessPtr> candidates;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_pending_forks.find(parent->serial); it != m_pending_forks.end()) {
      candidates = it->second;
    }
  }
  // Two forks at once from two threads of the parent leave two candidates;
  // the events come in the order the forks finished copying the mm, which
  // is the order their ptrace events come in, but a fork that failed after
  // copying leaves a uffd whose mm is already gone: skip those.
  // FIXME: two simultaneous successful forks could still be matched the
  // wrong way round if the tracer sees their events out of order.
  for (auto& candidate : candidates) {
    if (candidates.size() == 1 || uffd_alive(candidate->uffd, parent->pid)) {
      matched = candidate;
      break;
    }
    stillborn.push_back(candidate);
  }
  {
    std::lock_guard lock(m_mutex);
    auto& pending = m_pending_forks[parent->serial];
    std::erase_if(pending, [&](const ProcessPtr& entry) {
      return entry == matched ||
             std::find(stillborn.begin(), stillborn.end(), entry) != stillborn.end();
    });
    if (pending.empty()) m_pending_forks.erase(parent->serial);
  }
  release(*parent);
  for (auto& entry : stillborn) retire_and_free(entry);
  if (!matched) {
    // A vfork child that exited (a zombie has no mm to compare) or exec'd
    // already; anything else would be a fork whose UFFD_EVENT_FORK never
    // came, and the child's faults would then go unanswered.
    log.debug("process {} forked {}, and no userfaultfd is waiting for the child",
              parent->pid.load(), child);
    return;
  }

  matched->lock.lock();
  matched->pid = child;
  matched->parent = -1;
  open_proc_files(*matched, child);
  {
    std::lock_guard lock(m_mutex);
    m_by_pid[child] = matched;
    add_to_cache(*matched);
  }
  if (matched->failed) {
    std::string reason = matched->failure;
    matched->failed = false;
    fail(*matched, reason);
  }
  release(*matched);

  // Forks the child made before it was matched.
  std::vector<pid_t> early;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_early_forks.find(child); it != m_early_forks.end()) {
      early = std::move(it->second);
      m_early_forks.erase(it);
    }
  }
  for (pid_t grandchild : early) on_fork(child, grandchild);
}

Result<void> MemoryManagerImpl::reserve(pid_t pid, uint64_t bytes) {
  ProcessPtr process = find_pid(pid);
  if (!process) return {};
  std::lock_guard lock(m_mutex);
  auto& vnode = m_vnodes[process->vnode];
  // FIXME: the quota is the vNode's across the cluster, but each
  // pComponent counts only its own processes, so a vNode running on two
  // pComponents may commit up to twice its quota. The mComponents enforce
  // the quota on the pages actually written (a write-back over quota kills
  // the process, like the OOM killer); a cluster-wide commit count needs
  // the monitor to lease quota to pComponents.
  if (vnode.quota != 0 && vnode.committed + bytes > vnode.quota) {
    ++m_stats.refused_reservations;
    return make_error(ENOMEM, "vNode " + std::to_string(process->vnode) + " would commit " +
                                  format_size(vnode.committed + bytes) + ", over its quota of " +
                                  format_size(vnode.quota));
  }
  return {};
}

void MemoryManagerImpl::on_map(pid_t pid, uint64_t start, uint64_t length, bool accounted) {
  ProcessPtr process = find_pid(pid);
  if (!process || length == 0) return;
  uint64_t end = (start + length + kPage - 1) & ~(kPage - 1);
  start &= ~(kPage - 1);
  process->lock.lock();
  if (!process->dead && process->uffd >= 0) register_regions(*process, {Region{start, end}});
  if (accounted) {
    uint64_t before = process->committed.total_bytes();
    process->committed.add(start, end);
    uint64_t added = process->committed.total_bytes() - before;
    if (added != 0) {
      std::lock_guard lock(m_mutex);
      m_vnodes[process->vnode].committed += added;
    }
  }
  release(*process);
}

void MemoryManagerImpl::on_exit(pid_t pid) {
  ProcessPtr process;
  std::deque<ProcessPtr> orphans;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_by_pid.find(pid); it != m_by_pid.end()) {
      process = it->second;
      m_by_pid.erase(it);
      if (auto pending = m_pending_forks.find(process->serial); pending != m_pending_forks.end()) {
        orphans.swap(pending->second);
        m_pending_forks.erase(pending);
      }
    }
    m_sharers.erase(pid);
    if (auto it = m_shares_with.find(pid); it != m_shares_with.end()) {
      m_sharers[it->second].erase(pid);
      m_shares_with.erase(it);
    }
    m_early_forks.erase(pid);
  }
  if (process) retire_and_free(process);
  for (auto& orphan : orphans) retire_and_free(orphan);
}

// ---- eviction -------------------------------------------------------------

void MemoryManagerImpl::eviction_loop() {
  std::unique_lock lock(m_mutex);
  while (!m_stopping) {
    if (!m_jobs.empty()) {
      auto job = std::move(m_jobs.front());
      m_jobs.pop_front();
      lock.unlock();
      job();
      lock.lock();
      continue;
    }
    uint64_t excess = m_cache.excess(kNoVnode);
    for (const auto& [id, vnode] : m_vnodes) excess = std::max(excess, m_cache.excess(id));
    if (excess == 0) {
      m_eviction_idle.notify_all();
      m_eviction_wake.wait_for(lock, kEvictionIdle);
      continue;
    }
    lock.unlock();
    bool progress = evict_once();
    lock.lock();
    if (!progress && !m_stopping) m_eviction_wake.wait_for(lock, kEvictionBackoff);
  }
  m_eviction_idle.notify_all();
}

bool MemoryManagerImpl::evict_once() {
  std::map<uint64_t, std::vector<uint64_t>> by_process;
  {
    std::lock_guard lock(m_mutex);
    uint64_t excess = m_cache.excess(kNoVnode);
    for (const auto& [id, vnode] : m_vnodes) excess = std::max(excess, m_cache.excess(id));
    // At least min_evict_pages (but not most of a small cache at once).
    uint64_t floor = std::min<uint64_t>(m_options.min_evict_pages,
                                        std::max<uint64_t>(m_cache.budget() / 4, kEvictBatch));
    size_t count = static_cast<size_t>(std::clamp<uint64_t>(
        excess + kEvictBatch, floor, std::max<uint64_t>(floor, m_options.max_evict_pages)));
    auto victims = m_cache.victims(count);
    if (victims.empty()) return false;
    for (const PageKey& victim : victims) by_process[victim.mm].push_back(victim.address);
    // Pinned pages (Process::pinned) go back to the end of the line.
    for (auto& [serial, pages] : by_process) {
      auto found = m_by_serial.find(serial);
      if (found == m_by_serial.end()) continue;
      const Process& process = *found->second;
      if (process.pinned.size() == 0) continue;
      std::erase_if(pages, [&](uint64_t page) {
        if (page < process.pinned.start || page >= process.pinned.end) return false;
        m_cache.remove(process.vnode, PageKey{serial, page}, false);
        m_cache.add(process.vnode, PageKey{serial, page});
        return true;
      });
    }
    std::erase_if(by_process, [](const auto& entry) { return entry.second.empty(); });
    if (by_process.empty()) return false;
    m_evicting = true;
  }
  bool progress = false;
  for (auto& [serial, pages] : by_process) {
    ProcessPtr process = find_serial(serial);
    if (!process) continue;
    pid_t pid = process->pid;
    if (pid <= 0 || process->failed) continue;
    {
      std::lock_guard lock(m_mutex);
      if (auto sharers = m_sharers.find(pid); sharers != m_sharers.end() && !sharers->second.empty()) {
        continue;  // a vfork child runs in this mm: not now
      }
    }
    std::sort(pages.begin(), pages.end());
    auto ranges = to_ranges(pages);
    process->evicting = true;
    kick_fault_thread();  // its parked faults need not wait for this
    auto started = Clock::now();
    auto dropped = m_dropper.drop(
        pid, ranges, [&] { return copy_out(process, pid, pages); },
        [&] {
          process->lock.lock();
          process->evicting_ranges.clear();
          release(*process);
        });
    process->evicting = false;
    log.debug("process {}: evicting {} pages in {} ranges took {} us: {}", pid, pages.size(),
              ranges.size(),
              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count(),
              dropped ? std::string("done") : dropped.error().text());
    if (dropped) {
      progress = true;
    } else if (int code = dropped.error().code();
               code != EAGAIN && code != ESRCH && code != ESHUTDOWN) {
      log.warn("process {}: eviction failed: {}", pid, dropped.error().text());
    }
  }
  {
    std::lock_guard lock(m_mutex);
    m_evicting = false;
  }
  kick_fault_thread();  // parked faults: there is room now
  return progress;
}

Result<std::vector<Region>> MemoryManagerImpl::copy_out(const ProcessPtr& process_ptr, pid_t pid,
                                                        const std::vector<uint64_t>& victims) {
  Process& process = *process_ptr;
  process.lock.lock();
  auto result = [&]() -> Result<std::vector<Region>> {
    if (process.dead || process.pid != pid || process.uffd < 0) {
      return make_error(ESRCH, "process " + std::to_string(pid) + " is gone");
    }
    if (process.failed) return make_error(ESRCH, "process " + std::to_string(pid) + " failed");
    {
      // A CLONE_VM child reported since the eviction was decided writes to
      // this mm unstopped.
      std::lock_guard lock(m_mutex);
      if (auto sharers = m_sharers.find(pid); sharers != m_sharers.end() && !sharers->second.empty()) {
        return make_error(EAGAIN, "process " + std::to_string(pid) + " shares its memory now");
      }
    }
    if (process.pagemap < 0) {
      // Without its pagemap we cannot tell a present page from a missing
      // one, and reading a missing one would fault into our own uffd while
      // we hold its lock: keep its pages here, out of the cache's books, so
      // that they do not stand in the way of other evictions.
      log.warn("process {}: no pagemap, its memory stays local", pid);
      std::lock_guard lock(m_mutex);
      for (uint64_t page : process.pages.list(PageBits::kResident)) {
        m_cache.remove(process.vnode, PageKey{process.serial, page}, false);
      }
      process.in_cache = false;
      return std::vector<Region>{};
    }
    std::vector<uint64_t> pages;
    for (uint64_t page : victims) {
      if (process.pages.resident(page)) pages.push_back(page);
    }
    if (pages.empty()) return std::vector<Region>{};

    // Only pages really there may be read: reading a missing page would
    // fault into our own uffd, whose messages wait for this lock.
    std::vector<uint64_t> present, absent, clean;
    bool classified = false;
    if (process.track_dirty) {
      // One PAGEMAP_SCAN says which are there and which were written since
      // they were installed write-protected. One not written that the
      // mComponent holds is byte for byte that copy (see the file comment
      // of memory_manager_impl.h): it is dropped unread. Any other page is
      // handled as if nothing were tracked.
      enum : uint8_t { kAbsent, kWritten, kUnwritten };
      classified = true;
      std::vector<uint8_t> state;
      for (const Region& range : to_ranges(pages)) {
        state.assign(static_cast<size_t>(range.size() / kPage), kAbsent);
        classified = scan_pagemap(process.pagemap, range.start, range.end, kPageIsWritten,
                                  [&](uint64_t page, uint64_t categories) {
                                    if (page < range.start || page >= range.end) return;
                                    state[(page - range.start) / kPage] =
                                        categories & kPageIsWritten ? kWritten : kUnwritten;
                                  });
        if (!classified) break;
        for (size_t i = 0; i < state.size(); ++i) {
          uint64_t page = range.start + i * kPage;
          if (state[i] == kAbsent) {
            absent.push_back(page);
          } else if (state[i] == kUnwritten && process.pages.remote(page)) {
            clean.push_back(page);
          } else {
            present.push_back(page);
          }
        }
      }
      if (!classified) {
        log.debug("process {}: PAGEMAP_SCAN failed ({}): every victim counts as written", pid,
                  std::strerror(errno));
        present.clear();
        absent.clear();
        clean.clear();
      }
    }
    if (!classified) {
      std::vector<uint64_t> entries;
      for (const Region& range : to_ranges(pages)) {
        size_t count = static_cast<size_t>(range.size() / kPage);
        entries.assign(count, 0);
        ssize_t got = ::pread(process.pagemap, entries.data(), count * sizeof(uint64_t),
                              static_cast<off_t>(range.start / kPage * sizeof(uint64_t)));
        if (got != static_cast<ssize_t>(count * sizeof(uint64_t))) {
          return make_error(EIO, "reading the pagemap of process " + std::to_string(pid));
        }
        for (size_t i = 0; i < count; ++i) {
          uint64_t page = range.start + i * kPage;
          (entries[i] & (kPagemapPresent | kPagemapSwapped) ? present : absent).push_back(page);
        }
      }
    }
    set_resident(process, absent, false);

    // Copy them out (the process is stopped).
    std::vector<std::byte> data(present.size() * kPage);
    std::vector<bool> readable(present.size(), true);
    for (size_t first = 0; first < present.size();) {
      std::vector<iovec> remote;
      size_t last = first;
      while (last < present.size() && remote.size() < kIovMax) {
        if (!remote.empty() && present[last] == present[last - 1] + kPage) {
          remote.back().iov_len += kPage;
        } else {
          if (remote.size() == kIovMax) break;
          remote.push_back(iovec{reinterpret_cast<void*>(present[last]), kPage});
        }
        ++last;
      }
      iovec local{data.data() + first * kPage, (last - first) * kPage};
      ssize_t got = ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0);
      size_t whole = got > 0 ? static_cast<size_t>(got) / kPage : 0;
      // What process_vm_readv could not read (PROT_NONE pages) comes
      // through /proc/PID/mem, which may read them.
      for (size_t i = first + whole; i < last; ++i) {
        ssize_t one = ::pread(process.mem, data.data() + i * kPage, kPage,
                              static_cast<off_t>(present[i]));
        if (one != static_cast<ssize_t>(kPage)) readable[i] = false;
      }
      first = last;
    }

    // An all-zero page the mComponent never had needs no write-back: it
    // reads as zeroes again on its next fault. Nor does a clean one.
    std::vector<size_t> to_write;
    std::vector<uint64_t> dropped = clean;
    for (size_t i = 0; i < present.size(); ++i) {
      if (!readable[i]) continue;
      if (!process.pages.remote(present[i]) && all_zero(data.data() + i * kPage)) {
        dropped.push_back(present[i]);
      } else {
        to_write.push_back(i);
      }
    }
    // Runs of consecutive pages per holder (a vRegion boundary may change
    // the holder; data of consecutive present pages is consecutive too).
    std::map<McomponentClient*, std::vector<McomponentClient::Run>> runs;
    McomponentClient* open_client = nullptr;
    size_t previous = 0;
    for (size_t i : to_write) {
      uint64_t page = present[i];
      auto holder = holder_for_write(process, vregion_of(page));
      if (!holder) {
        fail(process, "no mComponent can take its memory: " + holder.error().text());
        return std::move(holder).error();
      }
      auto& list = runs[*holder];
      if (open_client == *holder && !list.empty() && i == previous + 1 &&
          page == list.back().address + uint64_t{list.back().count} * kPage &&
          list.back().count < wire::kMaxPagesPerMessage) {
        auto& run = list.back();
        ++run.count;
        run.data = wire::ByteView(run.data.data(), static_cast<size_t>(run.count) * kPage);
      } else {
        list.push_back(McomponentClient::Run{page, 1, wire::ByteView(data.data() + i * kPage, kPage)});
      }
      open_client = *holder;
      previous = i;
    }
    std::vector<uint64_t> written;
    for (auto& [client, list] : runs) {
      auto mm = mm_on(process, client);
      Result<void> stored = mm ? client->write(process.vnode, *mm, list)
                               : Result<void>(std::move(mm).error());
      if (!stored) {
        std::string reason = stored.error().code() == ENOMEM
                                 ? "out of memory: " + stored.error().message()
                                 : "its memory cannot be written back: " + stored.error().text();
        if (stored.error().code() == EIO) {
          // The mComponent is gone: the vNode's next vRegions go elsewhere
          // (processes with pages there lose them when they touch them).
          std::lock_guard lock(m_mutex);
          std::erase_if(m_vnodes[process.vnode].placements,
                        [client](const auto& entry) { return entry.second == client; });
        }
        fail(process, reason);
        return std::move(stored).error();
      }
      for (const auto& run : list) {
        for (uint32_t k = 0; k < run.count; ++k) written.push_back(run.address + k * kPage);
      }
    }
    for (uint64_t page : written) process.pages.set(PageBits::kRemote, page, true);
    dropped.insert(dropped.end(), written.begin(), written.end());
    std::sort(dropped.begin(), dropped.end());
    set_resident(process, dropped, false, /*evicted=*/true);
    {
      std::lock_guard lock(m_mutex);
      m_stats.evicted_pages += dropped.size();
      m_stats.written_back_pages += written.size();
      m_stats.clean_drops += clean.size();
    }
    process.evicting_ranges = to_ranges(dropped);
    return process.evicting_ranges;
  }();
  release(process);
  return result;
}

// ---- inspection ----------------------------------------------------------

MemoryStats MemoryManagerImpl::stats() const {
  std::lock_guard lock(m_mutex);
  MemoryStats stats = m_stats;
  stats.resident_pages = m_cache.resident();
  stats.remote_pages = 0;
  for (const auto& [serial, process] : m_by_serial) stats.remote_pages += process->remote_pages;
  return stats;
}

ProcessMemory MemoryManagerImpl::process(pid_t pid) const {
  ProcessPtr found = find_pid(pid);
  if (!found) return {};
  return ProcessMemory{found->resident_pages, found->remote_pages};
}

void MemoryManagerImpl::set_vnode(VnodeId vnode, uint64_t cache, uint64_t memory) {
  std::lock_guard lock(m_mutex);
  auto& entry = m_vnodes[vnode];
  entry.cache_pages = cache / kPage;
  entry.quota = memory;
  m_cache.set_vnode_budget(vnode, entry.cache_pages);
}

void MemoryManagerImpl::drop_vnode(VnodeId vnode) {
  std::lock_guard lock(m_mutex);
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return;
  bool busy = false;
  for (const auto& [serial, process] : m_by_serial) busy = busy || process->vnode == vnode;
  if (busy) {
    // Its processes are still ending: keep the books until they are gone.
    it->second.placements.clear();
    return;
  }
  m_vnodes.erase(it);
  m_cache.drop_vnode(vnode);
}

bool MemoryManagerImpl::wait_for_evictions(Duration timeout) {
  std::unique_lock lock(m_mutex);
  return m_eviction_idle.wait_for(lock, timeout, [&] {
    if (m_evicting || !m_jobs.empty()) return false;
    if (m_cache.excess(kNoVnode) > 0) return false;
    for (const auto& [id, vnode] : m_vnodes) {
      if (m_cache.excess(id) > 0) return false;
    }
    return true;
  });
}

}  // namespace sk::pcomponent::memory
