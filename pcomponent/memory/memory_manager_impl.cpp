// The memory manager (see memory_manager_impl.h): start and stop, the
// books every thread keeps (the ExCache, the process table, the vNodes'),
// the tracer's calls and inspection. The fault path is in
// fault_datapath.cpp, uffd events in address_space_events.cpp, forks in
// fork_matching.cpp, eviction and write-back in eviction.cpp.
#include "pcomponent/memory/memory_manager_impl.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernel/log.h"
#include "pcomponent/memory/pagemap.h"
#include "pcomponent/proc_stat.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

// Without all four the memory manager cannot keep a process's memory
// right: a forked child would read evicted pages as zeroes (FORK), moved
// or dropped pages would come back stale (REMAP, REMOVE, UNMAP).
constexpr uint64_t kNeededFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                                     UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

}  // namespace

MemoryManagerImpl::MemoryManagerImpl(fabric::Transport& transport, VregionPlacer& placer,
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
                                                               VregionPlacer& placer,
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
           format_size(m_options.excache), m_options.policy == PolicyKind::kFifo ? "FIFO" : "CLOCK",
           m_options.prefetch_pages, format_size(m_options.vregion_bytes));
  if (m_track_dirty) {
    log.info(
        "dirty tracking: userfaultfd WP_ASYNC + PAGEMAP_SCAN (clean victims are not "
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
    m_processes.for_each([&](const ProcessPtr& process) { processes.push_back(process); });
  }
  for (auto& process : processes) {
    std::lock_guard lock(process->lock);
    close_process(*process);
  }
}

// ---- books ---------------------------------------------------------------

ProcessPtr MemoryManagerImpl::find_pid(pid_t pid) const {
  std::lock_guard lock(m_mutex);
  return m_processes.by_pid(pid);
}

ProcessPtr MemoryManagerImpl::find_serial(uint64_t serial) const {
  std::lock_guard lock(m_mutex);
  return m_processes.by_serial(serial);
}

uint64_t MemoryManagerImpl::cache_excess() const {
  uint64_t excess = m_cache.excess(kNoVnode);
  m_vnodes.for_each([&](VnodeId vnode) { excess = std::max(excess, m_cache.excess(vnode)); });
  return excess;
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
  process.sync_counts();
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

void MemoryManagerImpl::forget_holder(VnodeId vnode, const McomponentClient* client) {
  std::lock_guard lock(m_mutex);
  m_vnodes.forget_holder(vnode, client);
}

void MemoryManagerImpl::add_process(const ProcessPtr& process) {
  m_processes.add(process);
  m_vnodes.commit(process->vnode, process->committed.total_bytes());
  ++m_stats.processes;
}

void MemoryManagerImpl::close_process(Process& process) {
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
  m_vnodes.uncommit(process.vnode, process.committed.total_bytes());
  m_processes.erase(process.serial);
  m_retrying.erase(process.serial);
  m_to_serve.erase(process.serial);
  if (m_stats.processes > 0) --m_stats.processes;
}

void MemoryManagerImpl::close_and_free(const ProcessPtr& process) {
  process->lock.lock();
  close_process(*process);
  auto mms = process->remote.take_mms();
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

McomponentClient* MemoryManagerImpl::client_for(const VregionPlacement& placement) {
  auto& client = m_clients[placement.address];
  if (!client) {
    auto address = parse_address(placement.address);
    client = std::make_unique<McomponentClient>(m_transport, placement.node,
                                                address ? *address : Address{placement.address, 0},
                                                m_options.rpc_timeout);
  }
  return client.get();
}

Result<McomponentClient*> MemoryManagerImpl::holder_for_write(Process& process, uint64_t vregion) {
  if (McomponentClient* holder = process.remote.holder(vregion)) return holder;
  {
    std::lock_guard lock(m_mutex);
    if (McomponentClient* holder = m_vnodes.holder(process.vnode, vregion)) {
      return process.remote.assign(vregion, holder);
    }
  }
  auto placed = m_placer.place(process.vnode, m_options.vregion_bytes);
  if (!placed) return std::move(placed).error();
  std::lock_guard lock(m_mutex);
  McomponentClient* client = client_for(*placed);
  auto [holder, inserted] = m_vnodes.assign(process.vnode, vregion, client);
  if (inserted) {
    log.info("vNode {}: vRegion {:#x} ({}) on {}", process.vnode, vregion * m_options.vregion_bytes,
             format_size(m_options.vregion_bytes), client->name());
  }
  return process.remote.assign(vregion, holder);
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
    auto freed = process.remote.free_pages(process.vnode, vregion_of(remote[i]), remote[i], j - i);
    if (!freed && outcome) outcome = std::move(freed).error();
    for (size_t k = i; k < j; ++k) process.pages.set(PageBits::kRemote, remote[k], false);
    i = j;
  }
  process.sync_counts();
  return outcome;
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
  // The old address space goes (a vfork child that execs stops sharing
  // its parent's mm).
  forget_pid(pid, ProcessTable::Exited::kNo);

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
  process->sync_counts();
  {
    std::lock_guard lock(m_mutex);
    add_process(process);
    m_processes.bind(pid, process);
    if (fd < 0) ++m_stats.fallbacks;
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
  log.debug("process {} (vNode {}): {} of anonymous memory in {} regions, {} pages present", pid,
            vnode, format_size(process->regions.total_bytes()), process->regions.regions().size(),
            process->pages.count(PageBits::kResident));
  release(*process);
}

Result<void> MemoryManagerImpl::reserve(pid_t pid, uint64_t bytes) {
  ProcessPtr process = find_pid(pid);
  if (!process) return {};
  std::lock_guard lock(m_mutex);
  auto checked = m_vnodes.check_commit(process->vnode, bytes);
  if (!checked) ++m_stats.refused_reservations;
  return checked;
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
      m_vnodes.commit(process->vnode, added);
    }
  }
  release(*process);
}

void MemoryManagerImpl::on_exit(pid_t pid) { forget_pid(pid, ProcessTable::Exited::kYes); }

void MemoryManagerImpl::forget_pid(pid_t pid, ProcessTable::Exited exited) {
  ProcessPtr process;
  std::deque<ProcessPtr> orphans;  // its forked children not matched yet
  {
    std::lock_guard lock(m_mutex);
    process = m_processes.unbind(pid);
    if (process) orphans = m_forks.take_children(process->serial);
    m_processes.unshare(pid, exited);
    if (exited == ProcessTable::Exited::kYes) (void)m_forks.take_early(pid);
  }
  if (process) close_and_free(process);
  for (auto& orphan : orphans) close_and_free(orphan);
}

// ---- inspection ----------------------------------------------------------

MemoryStats MemoryManagerImpl::stats() const {
  std::lock_guard lock(m_mutex);
  MemoryStats stats = m_stats;
  stats.resident_pages = m_cache.resident();
  stats.remote_pages = 0;
  m_processes.for_each(
      [&](const ProcessPtr& process) { stats.remote_pages += process->remote_pages; });
  return stats;
}

ProcessMemory MemoryManagerImpl::process(pid_t pid) const {
  ProcessPtr found = find_pid(pid);
  if (!found) return {};
  return ProcessMemory{found->resident_pages, found->remote_pages};
}

void MemoryManagerImpl::set_vnode(VnodeId vnode, uint64_t cache, uint64_t memory) {
  std::lock_guard lock(m_mutex);
  m_vnodes.set_quota(vnode, memory);
  m_cache.set_vnode_budget(vnode, cache / kPage);
}

void MemoryManagerImpl::drop_vnode(VnodeId vnode) {
  std::lock_guard lock(m_mutex);
  // While its processes are still ending, the books stay until they are gone.
  if (m_vnodes.drop(vnode, m_processes.any_of_vnode(vnode))) m_cache.drop_vnode(vnode);
}

bool MemoryManagerImpl::wait_for_evictions(Duration timeout) {
  std::unique_lock lock(m_mutex);
  return m_eviction_idle.wait_for(lock, timeout, [&] {
    if (m_evicting || !m_jobs.empty()) return false;
    return cache_excess() == 0;
  });
}

}  // namespace sk::pcomponent::memory
