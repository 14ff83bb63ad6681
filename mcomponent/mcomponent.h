// The mComponent's request handlers: the wire side of the page store. It
// serves the monitor (MON2M_VNODE_CREATE/DESTROY) and pComponents (P2M_MM_*,
// P2M_PAGE_*) with typed handlers (kernel/wire/message_list.h): the
// dispatcher decodes and checks every request before the store sees it, and
// every failure goes back as an error status with a message.
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
  // The dispatchers' handlers point at this object.
  Mcomponent(const Mcomponent&) = delete;
  Mcomponent& operator=(const Mcomponent&) = delete;

  // Serves both planes (MON2M_ and P2M_) on one listener.
  const rpc::Dispatcher& dispatcher() const { return m_dispatcher; }
  const rpc::ControlDispatcher& control() const { return m_control; }
  const rpc::DataDispatcher& data() const { return m_data; }
  // For heartbeats: capacity, bytes stored, vNodes served.
  Member::Usage usage() const;
  PageStore& store() { return m_store; }

 private:
  using Message = rpc::Message;

  Result<void> vnode_create(const wire::VnodeSetup& setup, const Message& request);
  Result<void> vnode_destroy(const wire::VnodeTeardown& teardown, const Message& request);
  Result<wire::MmCreateReply> mm_create(const wire::Empty&, const Message& request);
  Result<void> mm_free(const wire::MmFreeRequest& free, const Message& request);
  Result<wire::MmCreateReply> mm_fork(const wire::MmForkRequest& fork, const Message& request);
  Result<void> page_write(const wire::Tailed<wire::PageRange>& write, const Message& request);
  Result<wire::RawBytes> page_read(const wire::PageRange& range, const Message& request);
  Result<void> page_free(const wire::PageRange& range, const Message& request);
  Result<void> page_move(const wire::PageMove& move, const Message& request);

  PageStore m_store;
  rpc::ControlDispatcher m_control{"mcomponent"};
  rpc::DataDispatcher m_data{"mcomponent"};
  rpc::Dispatcher m_dispatcher{"mcomponent", {&m_control, &m_data}};
};

}  // namespace sk::mcomponent
