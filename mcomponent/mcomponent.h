// The mComponent's request handlers: the wire side of the page store. It
// serves the monitor (MON2M_VNODE_CREATE/DESTROY) and pComponents (P2M_MM_*,
// P2M_PAGE_*); every request is decoded and checked here before the store
// sees it, and every failure goes back as an error status with a message.
//
//   MON2M_VNODE_CREATE  VnodeSetup{vnode, cache, memory, name} -> empty
//                       memory is the vNode's quota (0: only the capacity
//                       bounds it); the header's vNode must equal vnode.
//                       Idempotent; an id re-sent with another name
//                       replaces the old vNode (see PageStore).
//   MON2M_VNODE_DESTROY VnodeTeardown{vnode} -> empty; frees its mms.
//   P2M_MM_CREATE       empty (vNode in the header) -> MmCreateReply{mm}
//   P2M_MM_FREE         MmFreeRequest{mm} -> empty
//   P2M_MM_FORK         MmForkRequest{mm} -> MmCreateReply{child mm}, a
//                       copy-on-write duplicate (pages shared until written)
//   P2M_PAGE_WRITE      PageRange + count*4096 bytes -> empty
//   P2M_PAGE_READ       PageRange -> count*4096 bytes
//   P2M_PAGE_FREE       PageRange -> empty
//   P2M_PAGE_MOVE       PageMove -> empty (mremap; kernel/wire/memory_messages.h)
//
// Threads: handlers run on the transport's thread; they only copy memory
// under the store's mutex, so none of them blocks it for long.
#pragma once

#include <cstdint>

#include "kernel/member.h"
#include "kernel/rpc/rpc.h"
#include "mcomponent/page_store.h"

namespace sk::mcomponent {

class Mcomponent {
 public:
  // capacity: the memory, in bytes, this component lends to vNodes.
  explicit Mcomponent(uint64_t capacity);
  // The dispatcher's handlers point at this object.
  Mcomponent(const Mcomponent&) = delete;
  Mcomponent& operator=(const Mcomponent&) = delete;

  const rpc::Dispatcher& dispatcher() const { return m_dispatcher; }
  // For heartbeats: capacity, bytes stored, vNodes served.
  Member::Usage usage() const;
  PageStore& store() { return m_store; }

 private:
  Result<wire::Bytes> vnode_create(const rpc::Message& request);
  Result<wire::Bytes> vnode_destroy(const rpc::Message& request);
  Result<wire::Bytes> mm_create(const rpc::Message& request);
  Result<wire::Bytes> mm_free(const rpc::Message& request);
  Result<wire::Bytes> mm_fork(const rpc::Message& request);
  Result<wire::Bytes> page_write(const rpc::Message& request);
  Result<wire::Bytes> page_read(const rpc::Message& request);
  Result<wire::Bytes> page_free(const rpc::Message& request);
  Result<wire::Bytes> page_move(const rpc::Message& request);

  PageStore m_store;
  rpc::Dispatcher m_dispatcher{"mcomponent"};
};

}  // namespace sk::mcomponent
