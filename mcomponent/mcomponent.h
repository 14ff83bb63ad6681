// The mComponent's request handlers: the wire side of the page store. It
// serves the monitor (MON2M_VNODE_CREATE/DESTROY) and pComponents (P2M_MM_*,
// P2M_PAGE_*) with typed handlers (kernel/wire/message_list.h): the
// dispatcher decodes and checks every request before the store sees it, and
// every failure goes back as an error status with a message.
//
//   MON2M_VNODE_CREATE  Mon2cVnodeCreateRequest{vnode, cache, memory, name} -> empty
//                       memory is the vNode's quota (0: only the capacity
//                       bounds it); the header's vNode must equal vnode.
//                       Idempotent; an id re-sent with another name
//                       replaces the old vNode (see PageStore).
//   MON2M_VNODE_DESTROY Mon2cVnodeDestroyRequest{vnode} -> empty; frees its mms.
//   P2M_MM_CREATE       empty (vNode in the header) -> P2mMmCreateReply{mm}
//   P2M_MM_FREE         P2mMmFreeRequest{mm} -> empty
//   P2M_MM_FORK         P2mMmForkRequest{mm} -> P2mMmCreateReply{child mm}, a
//                       copy-on-write duplicate (pages shared until written)
//   P2M_PAGE_WRITE      P2mPageRange + count*4096 bytes -> empty
//   P2M_PAGE_READ       P2mPageRange -> count*4096 bytes
//   P2M_PAGE_FREE       P2mPageRange -> empty
//   P2M_PAGE_MOVE       P2mPageMoveRequest -> empty (mremap; kernel/wire/memory_messages.h)
//
// Threads: handlers run on the transport's thread; they only copy memory
// under the store's mutex, so none of them blocks it for long.
#pragma once

#include <cstdint>

#include "kernel/membership_client.h"
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
  MembershipClient::Usage usage() const;
  PageStore& store() { return m_store; }

 private:
  using Message = rpc::Message;

  Result<void> vnode_create(const wire::Mon2cVnodeCreateRequest& setup, const Message& request);
  Result<void> vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown,
                             const Message& request);
  Result<wire::P2mMmCreateReply> mm_create(const wire::Empty&, const Message& request);
  Result<void> mm_free(const wire::P2mMmFreeRequest& free, const Message& request);
  Result<wire::P2mMmCreateReply> mm_fork(const wire::P2mMmForkRequest& fork,
                                         const Message& request);
  Result<void> page_write(const wire::Tailed<wire::P2mPageRange>& write, const Message& request);
  Result<wire::RawBytes> page_read(const wire::P2mPageRange& range, const Message& request);
  Result<void> page_free(const wire::P2mPageRange& range, const Message& request);
  Result<void> page_move(const wire::P2mPageMoveRequest& move, const Message& request);

  PageStore m_store;
  rpc::ControlDispatcher m_control{"mcomponent"};
  rpc::DataDispatcher m_data{"mcomponent"};
  rpc::Dispatcher m_dispatcher{"mcomponent", {&m_control, &m_data}};
};

}  // namespace sk::mcomponent
