// VnodeBooks (vnode_books.h).
#include "pcomponent/memory/vnode_books.h"

#include <algorithm>
#include <string>

#include "kernel/config.h"

namespace sk::pcomponent::memory {

void VnodeBooks::uncommit(VnodeId vnode, uint64_t bytes) {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return;
  it->second.committed -= std::min(it->second.committed, bytes);
}

Result<void> VnodeBooks::check_commit(VnodeId vnode, uint64_t bytes) const {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return {};
  const Vnode& books = it->second;
  // FIXME: the quota is the vNode's across the cluster, but each
  // pComponent counts only its own processes, so a vNode running on two
  // pComponents may commit up to twice its quota. The mComponents enforce
  // the quota on the pages actually written (a write-back over quota kills
  // the process, like the OOM killer); a cluster-wide commit count needs
  // the monitor to lease quota to pComponents.
  if (books.quota != 0 && books.committed + bytes > books.quota) {
    return make_error(ENOMEM, "vNode " + std::to_string(vnode) + " would commit " +
                                  format_size(books.committed + bytes) + ", over its quota of " +
                                  format_size(books.quota));
  }
  return {};
}

McomponentClient* VnodeBooks::holder(VnodeId vnode, uint64_t vregion) const {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return nullptr;
  auto holder = it->second.holders.find(vregion);
  return holder == it->second.holders.end() ? nullptr : holder->second;
}

std::pair<McomponentClient*, bool> VnodeBooks::assign(VnodeId vnode, uint64_t vregion,
                                                      McomponentClient* client) {
  auto [it, inserted] = m_vnodes[vnode].holders.emplace(vregion, client);
  return {it->second, inserted};
}

void VnodeBooks::forget_holder(VnodeId vnode, const McomponentClient* client) {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return;
  std::erase_if(it->second.holders, [client](const auto& entry) { return entry.second == client; });
}

bool VnodeBooks::drop(VnodeId vnode, bool busy) {
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) return false;
  if (busy) {
    it->second.holders.clear();
    return false;
  }
  m_vnodes.erase(it);
  return true;
}

}  // namespace sk::pcomponent::memory
