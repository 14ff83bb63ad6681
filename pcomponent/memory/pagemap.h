// Reading a process's page tables through /proc/PID/pagemap: which pages
// are present (so that the memory manager only ever reads pages that are
// there — reading a missing one would fault into its own uffd), and, with
// PAGEMAP_SCAN and userfaultfd WP_ASYNC, which were written since they were
// installed write-protected (memory_manager_impl.h, "Dirty tracking").
#pragma once

#include <sys/ioctl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "pcomponent/memory/managed_process.h"
#include "pcomponent/memory/region_map.h"

namespace sk::pcomponent::memory {

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
inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
// Page categories: WRITTEN is "no uffd-wp bit" (a page of a range not
// registered with MODE_WP is always written).
inline constexpr uint64_t kPageIsWritten = 1 << 1;
inline constexpr uint64_t kPageIsPresent = 1 << 3;
inline constexpr uint64_t kPageIsSwapped = 1 << 4;

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

// Whether PAGEMAP_SCAN works here (Linux 6.7+): one scan of `page`, ours.
bool pagemap_scan_works(const void* page);

// Calls `present(address)` for every present or swapped page of `regions`:
// PAGEMAP_SCAN where the kernel has it, else every 8-byte entry.
void for_each_present(int pagemap, const std::vector<Region>& regions,
                      const std::function<void(uint64_t)>& present);

// Sorted page addresses as ranges of consecutive pages.
std::vector<Region> to_ranges(const std::vector<uint64_t>& pages);

// The victims of an eviction sorted by what their write-back needs.
struct VictimClasses {
  std::vector<uint64_t> present;  // there, and to be read and written back
  std::vector<uint64_t> absent;   // not there (never faulted in, or gone)
  std::vector<uint64_t> clean;    // there, unwritten, and the same as their remote copy
};
// Classifies sorted `pages` of a stopped process. With `track_dirty`, a page
// that was not written and for which `is_remote(page)` is clean; when
// PAGEMAP_SCAN fails (or without tracking) every page there counts as
// written. EIO when the pagemap cannot be read.
Result<VictimClasses> classify_victims(int pagemap, const std::vector<uint64_t>& pages,
                                       bool track_dirty,
                                       const std::function<bool(uint64_t)>& is_remote);

}  // namespace sk::pcomponent::memory
