#include "pcomponent/memory/region_map.h"

#include <fstream>
#include <sstream>
#include <string>

namespace sk::pcomponent::memory {

void RegionMap::add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  remove(start, end);
  // Merge with the neighbour that ends where this starts, and the one that
  // starts where this ends.
  auto next = m_regions.lower_bound(start);
  if (next != m_regions.begin()) {
    auto previous = std::prev(next);
    if (previous->second == start) {
      start = previous->first;
      m_regions.erase(previous);
    }
  }
  next = m_regions.find(end);
  if (next != m_regions.end()) {
    end = next->second;
    m_regions.erase(next);
  }
  m_regions[start] = end;
}

std::vector<Region> RegionMap::remove(uint64_t start, uint64_t end) {
  std::vector<Region> removed;
  if (start >= end) return removed;
  auto it = m_regions.upper_bound(start);
  if (it != m_regions.begin()) --it;
  while (it != m_regions.end() && it->first < end) {
    uint64_t region_start = it->first;
    uint64_t region_end = it->second;
    if (region_end <= start) {
      ++it;
      continue;
    }
    it = m_regions.erase(it);
    uint64_t cut_start = std::max(region_start, start);
    uint64_t cut_end = std::min(region_end, end);
    removed.push_back(Region{cut_start, cut_end});
    if (region_start < cut_start) m_regions[region_start] = cut_start;
    if (cut_end < region_end) it = m_regions.emplace(cut_end, region_end).first;
  }
  return removed;
}

void RegionMap::move(uint64_t old_start, uint64_t length, uint64_t new_start) {
  auto moved = remove(old_start, old_start + length);
  for (const auto& part : moved) {
    add(part.start - old_start + new_start, part.end - old_start + new_start);
  }
}

std::optional<Region> RegionMap::find(uint64_t address) const {
  auto it = m_regions.upper_bound(address);
  if (it == m_regions.begin()) return std::nullopt;
  --it;
  if (address < it->second) return Region{it->first, it->second};
  return std::nullopt;
}

std::vector<Region> RegionMap::regions() const {
  std::vector<Region> list;
  for (const auto& [start, end] : m_regions) list.push_back(Region{start, end});
  return list;
}

uint64_t RegionMap::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [start, end] : m_regions) total += end - start;
  return total;
}

Result<std::vector<Region>> private_anonymous_regions(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/maps";
  std::ifstream maps(path);
  if (!maps) return make_error(ESRCH, "cannot read " + path);
  RegionMap regions;
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, name;
    uint64_t inode = 0;
    if (!(fields >> range >> perms >> offset >> device >> inode)) continue;
    std::getline(fields >> std::ws, name);
    if (perms.size() < 4 || perms[3] != 'p' || inode != 0) continue;
    bool anonymous = name.empty() || name == "[heap]" || name == "[stack]" ||
                     name.rfind("[anon:", 0) == 0;
    if (!anonymous) continue;
    auto dash = range.find('-');
    if (dash == std::string::npos) continue;
    uint64_t start = std::stoull(range.substr(0, dash), nullptr, 16);
    uint64_t end = std::stoull(range.substr(dash + 1), nullptr, 16);
    regions.add(start, end);
  }
  return regions.regions();
}

}  // namespace sk::pcomponent::memory
