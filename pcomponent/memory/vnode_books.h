// Per vNode served by this pComponent: its memory quota, the bytes its
// processes here have committed (mmap, brk: the tracer reserves before the
// kernel maps), and the default holder of each of its vRegions (the first
// process to write a vRegion back places it for the whole vNode).
//
// Not thread-safe: the memory manager guards it with its m_mutex.
#pragma once

#include <cstdint>
#include <map>

#include "kernel/node.h"
#include "kernel/result.h"
#include "pcomponent/memory/mcomponent_client.h"

namespace sk::pcomponent::memory {

class VnodeBooks {
 public:
  // `quota` in bytes; 0: none.
  void set_quota(VnodeId vnode, uint64_t quota) { m_vnodes[vnode].quota = quota; }
  void commit(VnodeId vnode, uint64_t bytes) { m_vnodes[vnode].committed += bytes; }
  void uncommit(VnodeId vnode, uint64_t bytes);
  // ENOMEM when committing `bytes` more would take the vNode over its quota.
  Result<void> check_commit(VnodeId vnode, uint64_t bytes) const;

  // The vNode's holder of `vregion`, or nullptr.
  McomponentClient* holder(VnodeId vnode, uint64_t vregion) const;
  // Records `client` as the holder unless the vRegion has one; returns the
  // holder and whether it is `client`, new.
  std::pair<McomponentClient*, bool> assign(VnodeId vnode, uint64_t vregion,
                                            McomponentClient* client);
  // The mComponent is gone: the vNode's next vRegions go elsewhere.
  void forget_holder(VnodeId vnode, const McomponentClient* client);

  // Forgets the vNode; while `busy` (its processes are still ending) only
  // its placements go. Returns whether it was forgotten.
  bool drop(VnodeId vnode, bool busy);

  // Calls `visit(vnode)` for every vNode in the books.
  template <typename Fn>
  void for_each(Fn&& visit) const {
    for (const auto& [id, vnode] : m_vnodes) visit(id);
  }

 private:
  struct Vnode {
    uint64_t quota = 0;
    uint64_t committed = 0;
    std::map<uint64_t, McomponentClient*> holders;  // vRegion -> default holder
  };
  std::map<VnodeId, Vnode> m_vnodes;
};

}  // namespace sk::pcomponent::memory
