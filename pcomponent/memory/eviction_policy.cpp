#include "pcomponent/memory/eviction_policy.h"

#include <list>
#include <unordered_map>
#include <unordered_set>

namespace sk::pcomponent::memory {

namespace {

// First in, first out: a list in insertion order and an index into it, so
// that removal of any page is O(1).
class FifoPolicy final : public EvictionPolicy {
 public:
  void on_insert(const PageKey& page) override {
    m_order.push_back(page);
    m_index[page] = std::prev(m_order.end());
  }
  void on_remove(const PageKey& page) override {
    auto it = m_index.find(page);
    if (it == m_index.end()) return;
    m_order.erase(it->second);
    m_index.erase(it);
  }
  std::vector<PageKey> victims(size_t count) override {
    std::vector<PageKey> chosen;
    for (auto it = m_order.begin(); it != m_order.end() && chosen.size() < count; ++it) {
      chosen.push_back(*it);
    }
    return chosen;
  }
  size_t size() const override { return m_index.size(); }
  std::string_view name() const override { return "fifo"; }

 private:
  std::list<PageKey> m_order;
  std::unordered_map<PageKey, std::list<PageKey>::iterator, PageKeyHash> m_index;
};

// CLOCK (second chance): like FIFO, but a page inserted again soon after it
// was evicted (it was still needed) gets its reference bit set and is passed
// over once by the hand. Without access bits from the page tables, refaults
// are the signal of use this cache can see.
class ClockPolicy final : public EvictionPolicy {
 public:
  void on_insert(const PageKey& page) override {
    bool referenced = m_recently_evicted.erase(page) > 0;
    // New pages go just behind the hand: the last the hand will reach.
    auto at = m_ring.insert(m_hand == m_ring.end() ? m_ring.end() : m_hand, Entry{page, referenced});
    m_index[page] = at;
  }
  void on_remove(const PageKey& page) override {
    auto it = m_index.find(page);
    if (it == m_index.end()) return;
    if (m_recently_evicted.size() >= kRememberedEvictions) m_recently_evicted.clear();
    m_recently_evicted.insert(page);
    if (m_hand == it->second) ++m_hand;
    m_ring.erase(it->second);
    m_index.erase(it);
  }
  std::vector<PageKey> victims(size_t count) override {
    std::vector<PageKey> chosen;
    std::unordered_set<PageKey, PageKeyHash> picked;
    // Two turns of the hand at most: the first may only clear bits.
    for (size_t steps = 2 * m_ring.size(); steps > 0 && chosen.size() < count; --steps) {
      if (m_hand == m_ring.end()) m_hand = m_ring.begin();
      Entry& entry = *m_hand;
      if (entry.referenced) {
        entry.referenced = false;
      } else if (picked.insert(entry.page).second) {
        chosen.push_back(entry.page);
      }
      ++m_hand;
    }
    return chosen;
  }
  size_t size() const override { return m_index.size(); }
  std::string_view name() const override { return "clock"; }

 private:
  struct Entry {
    PageKey page;
    bool referenced;
  };
  // How many evicted pages are remembered for refault detection.
  static constexpr size_t kRememberedEvictions = 1 << 16;
  std::list<Entry> m_ring;
  std::list<Entry>::iterator m_hand = m_ring.end();
  std::unordered_map<PageKey, std::list<Entry>::iterator, PageKeyHash> m_index;
  std::unordered_set<PageKey, PageKeyHash> m_recently_evicted;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_policy(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kFifo: return std::make_unique<FifoPolicy>();
    case PolicyKind::kClock: return std::make_unique<ClockPolicy>();
  }
  return std::make_unique<FifoPolicy>();
}

}  // namespace sk::pcomponent::memory
