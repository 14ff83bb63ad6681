// Which resident pages leave the ExCache first. A small interface so the
// policy can change without touching the fault path: LegoOS found FIFO beat
// LRU (LRU's bookkeeping on every access cost more than it saved), and a
// userfaultfd-based cache never sees the accesses that hit anyway, so FIFO
// (with CLOCK as the alternative that uses the accessed bits a scan can
// read) is where we start.
//
// Threads: not thread-safe; the ExCache serialises calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace sk::pcomponent::memory {

// A page of one address space: the mm id (as the mComponent names it) and
// the page-aligned virtual address.
struct PageKey {
  uint64_t mm = 0;
  uint64_t address = 0;
  bool operator==(const PageKey&) const = default;
};

struct PageKeyHash {
  size_t operator()(const PageKey& key) const {
    return static_cast<size_t>(key.mm * 0x9e3779b97f4a7c15ull ^ (key.address >> 12));
  }
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // A page became resident. Never called twice without on_remove between.
  virtual void on_insert(const PageKey& page) = 0;
  // A page left the cache for any reason (evicted, unmapped, process gone).
  virtual void on_remove(const PageKey& page) = 0;
  // Up to `count` victims in eviction order; they stay tracked until
  // on_remove (the caller may fail to evict some and keep them).
  virtual std::vector<PageKey> victims(size_t count) = 0;
  virtual size_t size() const = 0;
  virtual std::string_view name() const = 0;
};

enum class PolicyKind { kFifo, kClock };

std::unique_ptr<EvictionPolicy> make_policy(PolicyKind kind);

}  // namespace sk::pcomponent::memory
