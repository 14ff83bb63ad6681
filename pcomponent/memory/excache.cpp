#include "pcomponent/memory/excache.h"

#include <algorithm>

namespace sk::pcomponent::memory {

ExCache::ExCache(uint64_t budget_pages, PolicyKind policy)
    : m_budget(budget_pages), m_policy(policy) {}

ExCache::Vnode& ExCache::vnode_entry(VnodeId vnode) {
  auto& entry = m_vnodes[vnode];
  if (!entry.policy) entry.policy = make_policy(m_policy);
  return entry;
}

void ExCache::set_vnode_budget(VnodeId vnode, uint64_t pages) { vnode_entry(vnode).budget = pages; }

void ExCache::drop_vnode(VnodeId vnode) {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return;
  m_stats.resident -= it->second.policy->size();
  m_vnodes.erase(it);
}

uint64_t ExCache::resident(VnodeId vnode) const {
  auto it = m_vnodes.find(vnode);
  return it == m_vnodes.end() ? 0 : it->second.policy->size();
}

std::vector<PageKey> ExCache::insert(VnodeId vnode, const PageKey& page) {
  Vnode& entry = vnode_entry(vnode);
  entry.policy->on_insert(page);
  ++m_stats.resident;
  ++m_stats.inserted;
  // The vNode's own ceiling first: it must not push other vNodes out.
  if (entry.budget != 0 && entry.policy->size() > entry.budget) {
    return entry.policy->victims(kEvictBatch);
  }
  if (m_stats.resident > m_budget) {
    // Over the pComponent's budget: take from the vNode holding the most.
    Vnode* largest = &entry;
    for (auto& [id, other] : m_vnodes) {
      if (other.policy->size() > largest->policy->size()) largest = &other;
    }
    return largest->policy->victims(kEvictBatch);
  }
  return {};
}

void ExCache::add(VnodeId vnode, const PageKey& page) {
  vnode_entry(vnode).policy->on_insert(page);
  ++m_stats.resident;
  ++m_stats.inserted;
}

std::vector<PageKey> ExCache::victims(size_t count) {
  for (auto& [id, entry] : m_vnodes) {
    if (entry.budget != 0 && entry.policy->size() > entry.budget) {
      return entry.policy->victims(count);
    }
  }
  if (m_stats.resident > m_budget) {
    Vnode* largest = nullptr;
    for (auto& [id, other] : m_vnodes) {
      if (largest == nullptr || other.policy->size() > largest->policy->size()) largest = &other;
    }
    if (largest != nullptr) return largest->policy->victims(count);
  }
  return {};
}

uint64_t ExCache::excess(VnodeId vnode) const {
  uint64_t most = m_stats.resident > m_budget ? m_stats.resident - m_budget : 0;
  auto it = m_vnodes.find(vnode);
  if (it != m_vnodes.end() && it->second.budget != 0 &&
      it->second.policy->size() > it->second.budget) {
    most = std::max<uint64_t>(most, it->second.policy->size() - it->second.budget);
  }
  return most;
}

void ExCache::remove(VnodeId vnode, const PageKey& page, bool evicted) {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return;
  size_t before = it->second.policy->size();
  it->second.policy->on_remove(page);
  if (it->second.policy->size() < before) {
    --m_stats.resident;
    if (evicted) ++m_stats.evicted;
  }
}

}  // namespace sk::pcomponent::memory
