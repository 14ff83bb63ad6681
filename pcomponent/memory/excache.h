// The ExCache: how many remote-backed anonymous pages a pComponent keeps
// resident, in total (--excache) and per vNode (vnode create --cache), and
// which pages go when a budget is exceeded. Pure bookkeeping: the memory
// manager does the faults, write-backs and drops and tells the ExCache.
//
// Eviction runs in batches (kEvictBatch) so that the cost of stopping a
// process to drop pages is paid once per batch, and it starts only when a
// budget is exceeded, so a budget is a hard ceiling plus at most one batch
// in flight.
//
// Threads: not thread-safe; the memory manager serialises calls.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernel/node.h"
#include "pcomponent/memory/eviction_policy.h"

namespace sk::pcomponent::memory {

inline constexpr size_t kEvictBatch = 64;

struct ExCacheStats {
  uint64_t resident = 0;   // pages now
  uint64_t inserted = 0;   // pages that became resident
  uint64_t evicted = 0;    // pages chosen as victims and then removed
};

class ExCache {
 public:
  ExCache(uint64_t budget_pages, PolicyKind policy);

  // A vNode's own ceiling; 0 means only the pComponent's budget applies.
  void set_vnode_budget(VnodeId vnode, uint64_t pages);
  void drop_vnode(VnodeId vnode);

  // A page of `vnode` became resident. Returns the victims to evict now (up
  // to a batch) if that took the vNode or the pComponent over budget; they
  // stay counted until remove().
  std::vector<PageKey> insert(VnodeId vnode, const PageKey& page);

  // A page became resident, without choosing victims: for a caller that
  // asks victims() itself (the memory manager's eviction thread), so that
  // the policy's hand moves only when pages are really evicted.
  void add(VnodeId vnode, const PageKey& page);

  // Up to `count` victims, as insert() chooses them (a vNode over its own
  // budget first, else the vNode holding the most when the pComponent is
  // over its budget), or none when every budget holds.
  std::vector<PageKey> victims(size_t count);

  // Pages over budget now for a page of `vnode`: the most over of the
  // vNode's own budget and the pComponent's (0 when both hold).
  uint64_t excess(VnodeId vnode) const;

  // A page is no longer resident (evicted, unmapped, or its process ended).
  void remove(VnodeId vnode, const PageKey& page, bool evicted);

  uint64_t resident() const { return m_stats.resident; }
  uint64_t resident(VnodeId vnode) const;
  uint64_t budget() const { return m_budget; }
  ExCacheStats stats() const { return m_stats; }

 private:
  struct Vnode {
    uint64_t budget = 0;
    std::unique_ptr<EvictionPolicy> policy;
  };
  Vnode& vnode_entry(VnodeId vnode);

  uint64_t m_budget;
  PolicyKind m_policy;
  std::unordered_map<VnodeId, Vnode> m_vnodes;
  ExCacheStats m_stats;
};

}  // namespace sk::pcomponent::memory
