// Two bits per page of one address space: resident (installed by the
// memory manager, counted in the ExCache) and remote (the mComponent
// holds a copy). A page can be both (fetched back, not yet evicted again),
// either, or neither (never touched, or dropped by the program: it reads as
// zeroes on its next fault).
//
// Kept in 2 MiB chunks (512 pages, 128 bytes of bits) in an ordered map,
// so range operations (unmap, remap, eviction) visit only chunks that hold
// something.
//
// Threads: not thread-safe; the owner's lock guards it.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <map>
#include <vector>

namespace sk::pcomponent::memory {

class PageBits {
 public:
  enum Kind { kResident = 0, kRemote = 1 };

  bool test(Kind kind, uint64_t address) const {
    auto it = m_chunks.find(address >> kChunkShift);
    if (it == m_chunks.end()) return false;
    size_t bit = index(address);
    return (it->second.bits[kind][bit / 64] >> (bit % 64)) & 1;
  }
  bool resident(uint64_t address) const { return test(kResident, address); }
  bool remote(uint64_t address) const { return test(kRemote, address); }

  // Sets or clears a bit; returns whether it changed.
  bool set(Kind kind, uint64_t address, bool value) {
    uint64_t key = address >> kChunkShift;
    size_t bit = index(address);
    uint64_t mask = uint64_t{1} << (bit % 64);
    if (value) {
      uint64_t& word = m_chunks[key].bits[kind][bit / 64];
      if (word & mask) return false;
      word |= mask;
      ++m_count[kind];
      return true;
    }
    auto it = m_chunks.find(key);
    if (it == m_chunks.end()) return false;
    uint64_t& word = it->second.bits[kind][bit / 64];
    if (!(word & mask)) return false;
    word &= ~mask;
    --m_count[kind];
    if (it->second.empty()) m_chunks.erase(it);
    return true;
  }

  // The page addresses with the bit set in [start, end), in order.
  std::vector<uint64_t> list(Kind kind, uint64_t start, uint64_t end) const {
    std::vector<uint64_t> pages;
    if (start >= end) return pages;
    for (auto it = m_chunks.lower_bound(start >> kChunkShift);
         it != m_chunks.end() && (it->first << kChunkShift) < end; ++it) {
      uint64_t base = it->first << kChunkShift;
      for (size_t word = 0; word < kWords; ++word) {
        uint64_t bits = it->second.bits[kind][word];
        while (bits != 0) {
          int low = std::countr_zero(bits);
          bits &= bits - 1;
          uint64_t address = base + (word * 64 + static_cast<size_t>(low)) * kPage;
          if (address >= start && address < end) pages.push_back(address);
        }
      }
    }
    return pages;
  }
  std::vector<uint64_t> list(Kind kind) const { return list(kind, 0, ~uint64_t{0}); }

  uint64_t count(Kind kind) const { return m_count[kind]; }

 private:
  static constexpr uint64_t kPage = 4096;
  static constexpr int kChunkShift = 21;  // 2 MiB
  static constexpr size_t kWords = (uint64_t{1} << kChunkShift) / kPage / 64;
  struct Chunk {
    std::array<std::array<uint64_t, kWords>, 2> bits{};
    bool empty() const {
      for (const auto& kind : bits) {
        for (uint64_t word : kind) {
          if (word != 0) return false;
        }
      }
      return true;
    }
  };
  static size_t index(uint64_t address) {
    return static_cast<size_t>((address & ((uint64_t{1} << kChunkShift) - 1)) / kPage);
  }

  std::map<uint64_t, Chunk> m_chunks;
  std::array<uint64_t, 2> m_count{};
};

}  // namespace sk::pcomponent::memory
