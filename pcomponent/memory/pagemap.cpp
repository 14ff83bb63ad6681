// Reading /proc/PID/pagemap (pagemap.h).
#include "pcomponent/memory/pagemap.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kernel/log.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

// Bits of a /proc/PID/pagemap entry.
constexpr uint64_t kPagemapPresent = uint64_t{1} << 63;
constexpr uint64_t kPagemapSwapped = uint64_t{1} << 62;
constexpr size_t kPagemapBatch = 8192;  // entries read at a time

}  // namespace

bool pagemap_scan_works(const void* page) {
  int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return false;
  uint64_t start = reinterpret_cast<uint64_t>(page) & ~(kPage - 1);
  bool works =
      scan_pagemap(pagemap, start, start + kPage, kPageIsWritten, [](uint64_t, uint64_t) {});
  ::close(pagemap);
  return works;
}

void for_each_present(int pagemap, const std::vector<Region>& regions,
                      const std::function<void(uint64_t)>& present) {
  std::vector<uint64_t> entries(kPagemapBatch);
  for (const Region& region : regions) {
    if (scan_pagemap(pagemap, region.start, region.end, 0,
                     [&](uint64_t page, uint64_t) { present(page); })) {
      continue;
    }
    // An older kernel: every entry, 8 bytes per page of the region.
    for (uint64_t at = region.start; at < region.end;) {
      size_t count =
          static_cast<size_t>(std::min<uint64_t>((region.end - at) / kPage, kPagemapBatch));
      ssize_t got = ::pread(pagemap, entries.data(), count * sizeof(uint64_t),
                            static_cast<off_t>(at / kPage * sizeof(uint64_t)));
      if (got <= 0) break;
      size_t read = static_cast<size_t>(got) / sizeof(uint64_t);
      for (size_t i = 0; i < read; ++i) {
        if (entries[i] & (kPagemapPresent | kPagemapSwapped)) present(at + i * kPage);
      }
      at += read * kPage;
    }
  }
}

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

namespace {

// One PAGEMAP_SCAN per range says which pages are there and which were
// written since they were installed write-protected; false if it failed.
bool classify_by_scan(int pagemap, const std::vector<uint64_t>& pages,
                      const std::function<bool(uint64_t)>& is_remote, VictimClasses& classes) {
  enum : uint8_t { kAbsent, kWritten, kUnwritten };
  std::vector<uint8_t> state;
  for (const Region& range : to_ranges(pages)) {
    state.assign(static_cast<size_t>(range.size() / kPage), kAbsent);
    bool scanned = scan_pagemap(
        pagemap, range.start, range.end, kPageIsWritten, [&](uint64_t page, uint64_t categories) {
          if (page < range.start || page >= range.end) return;
          state[(page - range.start) / kPage] = categories & kPageIsWritten ? kWritten : kUnwritten;
        });
    if (!scanned) return false;
    for (size_t i = 0; i < state.size(); ++i) {
      uint64_t page = range.start + i * kPage;
      if (state[i] == kAbsent) {
        classes.absent.push_back(page);
      } else if (state[i] == kUnwritten && is_remote(page)) {
        classes.clean.push_back(page);
      } else {
        classes.present.push_back(page);
      }
    }
  }
  return true;
}

}  // namespace

Result<VictimClasses> classify_victims(int pagemap, const std::vector<uint64_t>& pages,
                                       bool track_dirty,
                                       const std::function<bool(uint64_t)>& is_remote) {
  VictimClasses classes;
  if (track_dirty) {
    // A page not written that the mComponent holds is byte for byte that
    // copy (memory_manager_impl.h): it is dropped unread. Any other page is
    // handled as if nothing were tracked.
    if (classify_by_scan(pagemap, pages, is_remote, classes)) return classes;
    log.debug("PAGEMAP_SCAN failed ({}): every victim counts as written", std::strerror(errno));
    classes = {};
  }
  std::vector<uint64_t> entries;
  for (const Region& range : to_ranges(pages)) {
    size_t count = static_cast<size_t>(range.size() / kPage);
    entries.assign(count, 0);
    ssize_t got = ::pread(pagemap, entries.data(), count * sizeof(uint64_t),
                          static_cast<off_t>(range.start / kPage * sizeof(uint64_t)));
    if (got != static_cast<ssize_t>(count * sizeof(uint64_t))) {
      return make_error(EIO, "reading the pagemap");
    }
    for (size_t i = 0; i < count; ++i) {
      uint64_t page = range.start + i * kPage;
      (entries[i] & (kPagemapPresent | kPagemapSwapped) ? classes.present : classes.absent)
          .push_back(page);
    }
  }
  return classes;
}

}  // namespace sk::pcomponent::memory
