// Eviction (see memory_manager_impl.h): the eviction thread takes victims
// from the ExCache, groups them by process and asks the PageDropper (the
// tracer) to drop them; with the process stopped, the dropper calls
// copy_out, which finds which victims are there and which are clean
// (pagemap.h), reads the rest with process_vm_readv and writes them back to
// their holders (P2M_PAGE_WRITE). The thread also runs queued mComponent
// work (freeing the mms of exited processes).
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kernel/log.h"
#include "kernel/wire/messages.h"
#include "pcomponent/memory/memory_manager_impl.h"
#include "pcomponent/memory/pagemap.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

constexpr size_t kIovMax = 1024;
// How long the eviction thread sleeps when it can make no progress (the
// victims' processes cannot be stopped just now), and when idle.
constexpr Duration kEvictionBackoff = std::chrono::milliseconds(2);
constexpr Duration kEvictionIdle = std::chrono::milliseconds(50);

bool all_zero(const std::byte* page) {
  const auto* words = reinterpret_cast<const uint64_t*>(page);
  uint64_t any = 0;
  for (size_t i = 0; i < kPage / sizeof(uint64_t); ++i) any |= words[i];
  return any == 0;
}

// Reads the `pages` (sorted, present) of stopped process `pid` into
// `data`; `readable[i]` says whether page i could be read. process_vm_readv
// first; what it cannot read (PROT_NONE pages) comes through `mem`
// (/proc/PID/mem), which may read them.
void read_pages(pid_t pid, int mem, const std::vector<uint64_t>& pages,
                std::vector<std::byte>& data, std::vector<bool>& readable) {
  data.assign(pages.size() * kPage, std::byte{0});
  readable.assign(pages.size(), true);
  for (size_t first = 0; first < pages.size();) {
    std::vector<iovec> remote;
    size_t last = first;
    while (last < pages.size() && remote.size() < kIovMax) {
      if (!remote.empty() && pages[last] == pages[last - 1] + kPage) {
        remote.back().iov_len += kPage;
      } else {
        if (remote.size() == kIovMax) break;
        remote.push_back(iovec{reinterpret_cast<void*>(pages[last]), kPage});
      }
      ++last;
    }
    iovec local{data.data() + first * kPage, (last - first) * kPage};
    ssize_t got = ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0);
    size_t whole = got > 0 ? static_cast<size_t>(got) / kPage : 0;
    for (size_t i = first + whole; i < last; ++i) {
      ssize_t one = ::pread(mem, data.data() + i * kPage, kPage, static_cast<off_t>(pages[i]));
      if (one != static_cast<ssize_t>(kPage)) readable[i] = false;
    }
    first = last;
  }
}

}  // namespace

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
    if (cache_excess() == 0) {
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

std::map<uint64_t, std::vector<uint64_t>> MemoryManagerImpl::pick_victims() {
  std::map<uint64_t, std::vector<uint64_t>> by_process;
  // At least min_evict_pages (but not most of a small cache at once).
  uint64_t floor = std::min<uint64_t>(m_options.min_evict_pages,
                                      std::max<uint64_t>(m_cache.budget() / 4, kEvictBatch));
  size_t count = static_cast<size_t>(std::clamp<uint64_t>(
      cache_excess() + kEvictBatch, floor, std::max<uint64_t>(floor, m_options.max_evict_pages)));
  for (const PageKey& victim : m_cache.victims(count)) {
    by_process[victim.mm].push_back(victim.address);
  }
  // Pinned pages (ManagedProcess::pinned) go back to the end of the line.
  for (auto& [serial, pages] : by_process) {
    ProcessPtr process = m_processes.by_serial(serial);
    if (!process || process->pinned.size() == 0) continue;
    const Region pinned = process->pinned;
    std::erase_if(pages, [&](uint64_t page) {
      if (page < pinned.start || page >= pinned.end) return false;
      m_cache.remove(process->vnode, PageKey{serial, page}, false);
      m_cache.add(process->vnode, PageKey{serial, page});
      return true;
    });
  }
  std::erase_if(by_process, [](const auto& entry) { return entry.second.empty(); });
  return by_process;
}

bool MemoryManagerImpl::evict_once() {
  std::map<uint64_t, std::vector<uint64_t>> by_process;
  {
    std::lock_guard lock(m_mutex);
    by_process = pick_victims();
    if (by_process.empty()) return false;
    m_evicting = true;
  }
  bool progress = false;
  for (auto& [serial, pages] : by_process) {
    ProcessPtr process = find_serial(serial);
    if (!process) continue;
    std::sort(pages.begin(), pages.end());
    if (evict_pages(process, pages)) progress = true;
  }
  {
    std::lock_guard lock(m_mutex);
    m_evicting = false;
  }
  kick_fault_thread();  // parked faults: there is room now
  return progress;
}

bool MemoryManagerImpl::evict_pages(const ProcessPtr& process, const std::vector<uint64_t>& pages) {
  pid_t pid = process->pid;
  if (pid <= 0 || process->failed) return false;
  {
    std::lock_guard lock(m_mutex);
    if (m_processes.shared(pid)) return false;  // a vfork child runs in this mm: not now
  }
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
  if (dropped) return true;
  if (int code = dropped.error().code(); code != EAGAIN && code != ESRCH && code != ESHUTDOWN) {
    log.warn("process {}: eviction failed: {}", pid, dropped.error().text());
  }
  return false;
}

Result<std::vector<Region>> MemoryManagerImpl::copy_out(const ProcessPtr& process, pid_t pid,
                                                        const std::vector<uint64_t>& victims) {
  process->lock.lock();
  auto result = copy_out_locked(*process, pid, victims);
  release(*process);
  return result;
}

Result<std::vector<Region>> MemoryManagerImpl::copy_out_locked(
    Process& process, pid_t pid, const std::vector<uint64_t>& victims) {
  if (process.dead || process.pid != pid || process.uffd < 0) {
    return make_error(ESRCH, "process " + std::to_string(pid) + " is gone");
  }
  if (process.failed) return make_error(ESRCH, "process " + std::to_string(pid) + " failed");
  {
    // A CLONE_VM child reported since the eviction was decided writes to
    // this mm unstopped.
    std::lock_guard lock(m_mutex);
    if (m_processes.shared(pid)) {
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
  auto classes = classify_victims(process.pagemap, pages, process.track_dirty,
                                  [&](uint64_t page) { return process.pages.remote(page); });
  if (!classes) {
    return make_error(EIO, "reading the pagemap of process " + std::to_string(pid));
  }
  const std::vector<uint64_t>& present = classes->present;
  set_resident(process, classes->absent, false);

  // Copy them out (the process is stopped).
  std::vector<std::byte> data;
  std::vector<bool> readable;
  read_pages(pid, process.mem, present, data, readable);

  // An all-zero page the mComponent never had needs no write-back: it
  // reads as zeroes again on its next fault. Nor does a clean one.
  std::vector<size_t> to_write;
  std::vector<uint64_t> dropped = classes->clean;
  for (size_t i = 0; i < present.size(); ++i) {
    if (!readable[i]) continue;
    if (!process.pages.remote(present[i]) && all_zero(data.data() + i * kPage)) {
      dropped.push_back(present[i]);
    } else {
      to_write.push_back(i);
    }
  }
  auto written = TRY(write_back(process, present, data, to_write));
  for (uint64_t page : written) process.pages.set(PageBits::kRemote, page, true);
  dropped.insert(dropped.end(), written.begin(), written.end());
  std::sort(dropped.begin(), dropped.end());
  set_resident(process, dropped, false, /*evicted=*/true);
  {
    std::lock_guard lock(m_mutex);
    m_stats.evicted_pages += dropped.size();
    m_stats.written_back_pages += written.size();
    m_stats.clean_drops += classes->clean.size();
  }
  process.evicting_ranges = to_ranges(dropped);
  return process.evicting_ranges;
}

Result<std::vector<uint64_t>> MemoryManagerImpl::write_back(Process& process,
                                                            const std::vector<uint64_t>& present,
                                                            const std::vector<std::byte>& data,
                                                            const std::vector<size_t>& to_write) {
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
      list.push_back(
          McomponentClient::Run{page, 1, wire::ByteView(data.data() + i * kPage, kPage)});
    }
    open_client = *holder;
    previous = i;
  }
  std::vector<uint64_t> written;
  for (auto& [client, list] : runs) {
    auto mm = process.remote.mm_on(client, process.vnode);
    Result<void> stored =
        mm ? client->write(process.vnode, *mm, list) : Result<void>(std::move(mm).error());
    if (!stored) {
      std::string reason = stored.error().code() == ENOMEM
                               ? "out of memory: " + stored.error().message()
                               : "its memory cannot be written back: " + stored.error().text();
      // The mComponent is gone: the vNode's next vRegions go elsewhere.
      if (stored.error().code() == EIO) forget_holder(process.vnode, client);
      fail(process, reason);
      return std::move(stored).error();
    }
    for (const auto& run : list) {
      for (uint32_t k = 0; k < run.count; ++k) written.push_back(run.address + k * kPage);
    }
  }
  return written;
}

}  // namespace sk::pcomponent::memory
