// The memory manager's fault thread: the hot path from a uffd message to an
// installed page (see memory_manager_impl.h for the design and the locks).
#include <linux/userfaultfd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernel/log.h"
#include "pcomponent/memory/memory_manager_impl.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

// epoll data of the doorbell; processes use their serial (never 0).
constexpr uint64_t kDoorbell = 0;
// Messages read from one uffd before the others get a turn.
constexpr int kMessagesPerTurn = 64;
constexpr int kEpollBatch = 64;
// How often parked and retried faults are looked at.
constexpr int kRetryPollMs = 1;

void wake_range(int uffd, uint64_t start, uint64_t length) {
  uffdio_range range{start, length};
  ::ioctl(uffd, UFFDIO_WAKE, &range);
}

}  // namespace

void MemoryManagerImpl::kick_fault_thread() {
  uint64_t one = 1;
  (void)!::write(m_wake, &one, sizeof one);
}

void MemoryManagerImpl::release(Process& process) {
  process.lock.unlock();
  // The fault thread found it busy and left it to us (see serve()).
  if (process.deferred.exchange(false)) {
    {
      std::lock_guard lock(m_mutex);
      m_to_serve.insert(process.serial);
    }
    kick_fault_thread();
  }
}

void MemoryManagerImpl::fault_loop() {
  std::array<epoll_event, kEpollBatch> events;
  std::vector<uint64_t> ready;
  for (;;) {
    int timeout = -1;
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      if (!m_to_serve.empty()) {
        timeout = 0;
      } else if (!m_parked.empty() || !m_retrying.empty()) {
        timeout = kRetryPollMs;
      }
    }
    int count = ::epoll_wait(m_epoll, events.data(), kEpollBatch, timeout);
    if (count < 0 && errno != EINTR) {
      log.error("epoll_wait: {}", std::strerror(errno));
      return;
    }
    ready.clear();
    for (int i = 0; i < count; ++i) {
      if (events[static_cast<size_t>(i)].data.u64 == kDoorbell) {
        uint64_t value;
        (void)!::read(m_wake, &value, sizeof value);
      } else {
        ready.push_back(events[static_cast<size_t>(i)].data.u64);
      }
    }
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      ready.insert(ready.end(), m_to_serve.begin(), m_to_serve.end());
      m_to_serve.clear();
      ready.insert(ready.end(), m_retrying.begin(), m_retrying.end());
    }
    std::sort(ready.begin(), ready.end());
    ready.erase(std::unique(ready.begin(), ready.end()), ready.end());
    for (uint64_t serial : ready) {
      if (ProcessPtr process = find_serial(serial)) serve(process);
    }
    release_parked(false);
  }
}

void MemoryManagerImpl::serve(const ProcessPtr& process) {
  // Never wait for a process's lock: its holder may be writing pages back
  // for seconds, and every other process's faults would wait too. Whoever
  // holds it sees `deferred` when it lets go and sends it back here (the
  // uffds are edge-triggered: nothing else would).
  if (!process->lock.try_lock()) {
    process->deferred = true;
    if (!process->lock.try_lock()) return;
    process->deferred = false;
  }
  if (process->dead || process->uffd < 0) {
    release(*process);
    return;
  }
  // Edge-triggered: read until the uffd is empty, or come back for the
  // rest after the others had their turn.
  bool drained = false;
  for (int i = 0; i < kMessagesPerTurn; ++i) {
    uffd_msg message;
    ssize_t got = ::read(process->uffd, &message, sizeof message);
    if (got != static_cast<ssize_t>(sizeof message)) {  // EAGAIN: nothing more now
      drained = true;
      break;
    }
    handle_message(process, message);
    if (process->dead) break;
  }
  // Faults the kernel refused while an event was pending, now that the
  // events are read.
  size_t waiting = process->retry.size();
  for (size_t i = 0; i < waiting && !process->dead; ++i) {
    Fault fault = process->retry.front();
    process->retry.pop_front();
    if (serve_fault(*process, fault) == Served::kRetry) process->retry.push_back(fault);
  }
  {
    std::lock_guard lock(m_mutex);
    if (process->retry.empty() || process->dead) {
      m_retrying.erase(process->serial);
    } else {
      m_retrying.insert(process->serial);
    }
    if (!drained && !process->dead) m_to_serve.insert(process->serial);
  }
  release(*process);
}

void MemoryManagerImpl::handle_message(const ProcessPtr& process, const uffd_msg& message) {
  switch (message.event) {
    case UFFD_EVENT_PAGEFAULT: {
      Fault fault{message.arg.pagefault.address & ~(kPage - 1),
                  (message.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0, Clock::now()};
      if (should_park(*process)) {
        std::lock_guard lock(m_mutex);
        m_parked.push_back(Parked{process->serial, fault, fault.read_at + m_options.park_limit});
        ++m_stats.parked_faults;
        return;
      }
      if (serve_fault(*process, fault) == Served::kRetry) process->retry.push_back(fault);
      return;
    }
    case UFFD_EVENT_FORK:
      handle_fork(process, static_cast<int>(message.arg.fork.ufd));
      return;
    case UFFD_EVENT_REMAP:
      handle_remap(*process, message.arg.remap.from, message.arg.remap.to, message.arg.remap.len);
      return;
    case UFFD_EVENT_REMOVE:
      handle_remove(*process, message.arg.remove.start, message.arg.remove.end, false);
      return;
    case UFFD_EVENT_UNMAP:
      handle_remove(*process, message.arg.remove.start, message.arg.remove.end, true);
      return;
    default:
      log.warn("process {}: unexpected uffd event {:#x}", process->pid.load(), message.event);
  }
}

bool MemoryManagerImpl::should_park(const Process& process) {
  // A process kept out of the books (no pagemap) is not bounded. A forked
  // child not matched yet (pid -1: the tracer has not reported its fork)
  // is not in the books either, and cannot be evicted until it is: it
  // waits like the others, or it could fault in any amount meanwhile.
  if (!process.in_cache && process.pid > 0) return false;
  std::lock_guard lock(m_mutex);
  return m_cache.excess(process.vnode) > m_options.high_water;
}

void MemoryManagerImpl::release_parked(bool all) {
  std::deque<Parked> parked;
  {
    std::lock_guard lock(m_mutex);
    parked.swap(m_parked);
  }
  if (parked.empty()) return;
  auto now = Clock::now();
  std::deque<Parked> still;
  for (Parked& entry : parked) {
    ProcessPtr process = find_serial(entry.serial);
    if (!process) continue;
    if (!all && now < entry.deadline && !process->evicting && should_park(*process)) {
      still.push_back(entry);
      continue;
    }
    // Let go because its process is being evicted (its thread may have to
    // be served to stop) or the deadline passed, while still over budget:
    // this page only.
    entry.fault.no_prefetch = process->evicting || now >= entry.deadline;
    if (!process->lock.try_lock()) {
      still.push_back(entry);  // next round
      continue;
    }
    if (!all && now >= entry.deadline && !process->evicting && should_park(*process)) {
      std::lock_guard lock(m_mutex);
      ++m_stats.overruns;
    }
    if (!process->dead && serve_fault(*process, entry.fault) == Served::kRetry) {
      process->retry.push_back(entry.fault);
      std::lock_guard lock(m_mutex);
      m_retrying.insert(process->serial);
    }
    release(*process);
  }
  if (!still.empty()) {
    std::lock_guard lock(m_mutex);
    m_parked.insert(m_parked.end(), still.begin(), still.end());
  }
}

MemoryManagerImpl::Served MemoryManagerImpl::serve_fault(Process& process, const Fault& fault) {
  if (process.dead || process.failed) return Served::kDone;
  uint64_t page = fault.address;
  auto region = process.regions.find(page);
  if (!region) {
    // A fault outside the regions we know is still in a registered vma
    // (the kernel sends no other): the stack growing down, or a vma that
    // grew in place. Serve it and know it from now on.
    process.regions.add(page, page + kPage);
    region = Region{page, page + kPage};
  }
  bool remote = process.pages.remote(page);

  // Prefetch: when this fault is where a recent window ended, something is
  // walking memory; install the following pages that are in the same state
  // too (one round trip, or one zero-fill ioctl, for all of them).
  Process::Stream* stream = nullptr;
  for (auto& candidate : process.streams) {
    if (candidate.next == page) stream = &candidate;
  }
  bool sequential = stream != nullptr;
  if (!sequential) {
    stream = &*std::min_element(process.streams.begin(), process.streams.end(),
                                [](const auto& a, const auto& b) { return a.used < b.used; });
    stream->window = 0;
  }
  stream->used = ++process.stream_clock;
  uint64_t count = 1;
  uint32_t window = 1;
  if (m_options.prefetch_pages > 1 && !fault.no_prefetch && sequential) {
    uint64_t ceiling = std::min<uint64_t>(
        {m_options.max_prefetch_pages, m_options.excache / kPage / 4, kMaxWindow});
    window = stream->window == 0 ? m_options.prefetch_pages : stream->window * 2;
    window = static_cast<uint32_t>(std::clamp<uint64_t>(window, 1, std::max<uint64_t>(ceiling, 1)));
  }
  stream->window = window > 1 ? window : 0;
  if (window > 1) {
    uint64_t limit = region->end;
    if (remote) limit = std::min(limit, (vregion_of(page) + 1) * m_options.vregion_bytes);
    while (count < window) {
      uint64_t next = page + count * kPage;
      if (next >= limit || process.pages.resident(next) || process.pages.remote(next) != remote) {
        break;
      }
      ++count;
    }
  }

  Served served;
  Clock::time_point installed_at{};
  if (remote) {
    auto where = process.remote.locate(vregion_of(page));
    if (!where) {
      fail(process, "page " + fmt::format("{:#x}", page) + " is on no mComponent we know");
      return Served::kDone;
    }
    auto data = where->client->read(process.vnode, where->mm, page, static_cast<uint32_t>(count));
    if (!data) {
      if (data.error().code() == EIO) forget_holder(process.vnode, where->client);
      fail(process, "its memory on " + where->client->name() +
                        " is lost: " + data.error().text());
      return Served::kDone;
    }
    served = install(process, page, count, data->data(), fault.write, installed_at);
  } else {
    served = install(process, page, count, nullptr, fault.write, installed_at);
  }
  if (served == Served::kRetry) return served;
  stream->next = page + count * kPage;

  // Up to the ioctl that woke the faulting thread: the bookkeeping after it
  // is not the program's wait.
  uint64_t took = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(installed_at - fault.read_at).count());
  std::lock_guard lock(m_mutex);
  ++m_stats.faults;
  m_stats.fault_latency.record(took);
  if (remote) {
    m_stats.fetched_pages += count;
    m_stats.fetch_latency.record(took);
  } else {
    ++m_stats.zero_fills;
    m_stats.zero_fill_latency.record(took);
  }
  m_stats.prefetched_pages += count - 1;
  return Served::kDone;
}

MemoryManagerImpl::Served MemoryManagerImpl::install(Process& process, uint64_t address,
                                                     uint64_t count, const std::byte* source,
                                                     bool write_fault,
                                                     Clock::time_point& installed_at) {
  const uint64_t length = count * kPage;
  uint64_t done = 0;
  std::vector<uint64_t> installed;
  installed.reserve(count);
  // A zero page for a read (the shared zero page: no memory until
  // written); real pages for a write, which would otherwise fault again at
  // once to break the zero page's copy-on-write.
  const std::byte* from = source != nullptr ? source : (write_fault ? m_zeroes : nullptr);
  // Pages fetched for a read fault go in write-protected (dirty tracking,
  // see memory_manager_impl.h): the first write to one unprotects it in the
  // kernel (about 1 us), and one never written is dropped without a
  // write-back. Not those of a write fault: the faulting page would take
  // that fault again at once, and the rest of its window is most likely
  // being written too (a write stream), so they are dirty from the start,
  // as without tracking.
  bool protect = source != nullptr && process.track_dirty && !write_fault;
  while (done < length) {
    int64_t progress = 0;
    int error = 0;
    if (from != nullptr) {
      uint64_t chunk = length - done;
      uint64_t mode = protect ? UFFDIO_COPY_MODE_WP : 0;
      uffdio_copy copy{address + done, reinterpret_cast<uint64_t>(from + done), chunk, mode, 0};
      if (::ioctl(process.uffd, UFFDIO_COPY, &copy) == 0) {
        progress = static_cast<int64_t>(chunk);
      } else {
        error = errno;
        progress = copy.copy;
        if (error == EINVAL && mode != 0 && progress <= 0) {
          // A range registered without MODE_WP (its registration with it
          // failed): unprotected, so read as written at eviction.
          protect = false;
          continue;
        }
      }
    } else {
      uffdio_zeropage zero{{address + done, length - done}, 0, 0};
      if (::ioctl(process.uffd, UFFDIO_ZEROPAGE, &zero) == 0) {
        progress = static_cast<int64_t>(length - done);
      } else {
        error = errno;
        progress = zero.zeropage;
      }
    }
    if (progress > 0) {
      for (uint64_t offset = 0; offset < static_cast<uint64_t>(progress); offset += kPage) {
        installed.push_back(address + done + offset);
      }
      done += static_cast<uint64_t>(progress);
      continue;
    }
    if (error == EEXIST) {
      // The page is there already (another thread's fault raced this one,
      // or it was present before we knew of it): the process's own data.
      // Wake whoever waits on it and know it as resident.
      wake_range(process.uffd, address + done, kPage);
      installed.push_back(address + done);
      done += kPage;
      continue;
    }
    if (error == EAGAIN && done == 0) {
      // An event (fork, mremap, munmap, madvise) is pending: the kernel
      // refuses to fill until it is read. serve() reads it, then retries.
      return Served::kRetry;
    }
    // ESRCH: the mm is gone (exit, exec); ENOENT/EINVAL: the range went
    // (munmap raced the fault). Let the faulting thread find out itself.
    if (error != EAGAIN) {
      log.debug("process {}: filling {:#x}+{}: {}", process.pid.load(), address + done,
                length - done, std::strerror(error));
    }
    wake_range(process.uffd, address + done, length - done);
    break;
  }
  installed_at = Clock::now();
  set_resident(process, installed, true);
  return Served::kDone;
}

}  // namespace sk::pcomponent::memory
