// What the memory manager knows about one vNode process whose anonymous
// memory it serves (memory_manager_impl.h says how the parts fit together).
//
// Locking: `lock` guards every field but the atomics; the fault thread, the
// eviction thread and the tracer's calls each take it to touch a process.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernel/config.h"
#include "kernel/node.h"
#include "pcomponent/memory/page_bits.h"
#include "pcomponent/memory/region_map.h"
#include "pcomponent/memory/remote_space.h"

namespace sk::pcomponent::memory {

inline constexpr uint64_t kPage = 4096;

// A missing-page fault read from a process's uffd.
struct Fault {
  uint64_t address = 0;  // page aligned
  bool write = false;
  Clock::time_point read_at{};
  bool no_prefetch = false;  // served while over budget: this page only
};

struct ManagedProcess {
  uint64_t serial = 0;  // PageKey::mm in the ExCache
  VnodeId vnode = kNoVnode;
  std::mutex lock;                    // guards everything below but the atomics
  std::atomic<bool> deferred{false};  // the fault thread found it locked
  std::atomic<bool> evicting{false};  // a drop() of it is under way
  std::atomic<pid_t> pid{-1};         // -1: a forked child not yet matched
  std::atomic<uint64_t> resident_pages{0};
  std::atomic<uint64_t> remote_pages{0};

  pid_t parent = -1;  // the forking process, until matched
  int uffd = -1;
  int pagemap = -1;  // /proc/PID/pagemap and /proc/PID/mem of its mm
  int mem = -1;
  bool dead = false;
  std::atomic<bool> failed{false};  // written under `lock`
  bool in_cache = false;            // its resident pages are counted in the ExCache
  bool track_dirty = false;         // dirty tracking: its uffd has WP_ASYNC, ranges MODE_WP
  // The pages holding its argv and environment (/proc/PID/stat's
  // arg_start..env_end), never evicted: other processes read them
  // (/proc/PID/cmdline and environ, so ps and pgrep), and the kernel does
  // not wait for userfaultfd on another process's behalf, so an evicted
  // one would read as empty. A page or two per process.
  Region pinned{};
  std::string failure;  // why it failed
  RegionMap regions;    // registered with its uffd
  RegionMap committed;  // counted against the vNode's quota
  PageBits pages;
  RemoteSpace remote;                   // which mComponents hold its pages
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
  std::deque<Fault> retry;  // faults the kernel said EAGAIN to

  // Counts its resident and remote pages from `pages` (lock held).
  void sync_counts() {
    resident_pages = pages.count(PageBits::kResident);
    remote_pages = pages.count(PageBits::kRemote);
  }
};
using ProcessPtr = std::shared_ptr<ManagedProcess>;

// A process's uffd is read without blocking (the fault thread's epoll is
// edge-triggered and drains it).
inline void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace sk::pcomponent::memory
