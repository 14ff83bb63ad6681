// The memory manager's mirror of one address space's private anonymous
// regions (the vmas whose pages the mComponent holds): which ranges are
// registered with the userfaultfd, kept in step with mmap, munmap, mremap and
// brk. A page fault outside every region is not ours to serve.
//
// Regions are half-open [start, end), page aligned, never overlapping;
// adjacent regions are merged, so the map holds what /proc/PID/maps would
// show for these vmas at most.
//
// Threads: not thread-safe; one address space is handled by one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "kernel/result.h"

namespace sk::pcomponent::memory {

struct Region {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - start; }
  bool operator==(const Region&) const = default;
};

class RegionMap {
 public:
  // Adds [start, end); overlapping parts of existing regions are replaced.
  void add(uint64_t start, uint64_t end);
  // Removes [start, end), splitting regions it cuts. Returns what was removed.
  std::vector<Region> remove(uint64_t start, uint64_t end);
  // Moves [old_start, old_start + length) to new_start (mremap with MAYMOVE);
  // the parts that were registered stay registered at the new place.
  void move(uint64_t old_start, uint64_t length, uint64_t new_start);

  std::optional<Region> find(uint64_t address) const;
  bool contains(uint64_t address) const { return find(address).has_value(); }
  std::vector<Region> regions() const;
  uint64_t total_bytes() const;

 private:
  std::map<uint64_t, uint64_t> m_regions;  // start -> end
};

// The private anonymous mappings of a process as /proc/PID/maps lists them
// ([heap], [stack], unnamed and [anon:NAME] private mappings, PROT_NONE
// ones too; never [vdso], [vvar], [vsyscall] or file mappings), merged
// where adjacent: what the tracer passes to on_exec().
Result<std::vector<Region>> private_anonymous_regions(pid_t pid);

}  // namespace sk::pcomponent::memory
