// The mComponent's request handlers (see mcomponent.h for the protocol).
// Lock order: none here; PageStore has its own.
#include "mcomponent/mcomponent.h"

#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/memory_messages.h"

namespace sk::mcomponent {

static const Logger log("mcomponent");

using wire::Opcode;
using Message = rpc::Message;

Mcomponent::Mcomponent(uint64_t capacity) : m_store(capacity) {
  auto bind = [this](auto method) {
    return [this, method](const auto& body, const Message& request) {
      return (this->*method)(body, request);
    };
  };
  m_control.on<Opcode::MON2M_VNODE_CREATE>(bind(&Mcomponent::vnode_create));
  m_control.on<Opcode::MON2M_VNODE_DESTROY>(bind(&Mcomponent::vnode_destroy));
  m_data.on<Opcode::P2M_MM_CREATE>(bind(&Mcomponent::mm_create));
  m_data.on<Opcode::P2M_MM_FREE>(bind(&Mcomponent::mm_free));
  m_data.on<Opcode::P2M_MM_FORK>(bind(&Mcomponent::mm_fork));
  m_data.on<Opcode::P2M_PAGE_WRITE>(bind(&Mcomponent::page_write));
  m_data.on<Opcode::P2M_PAGE_READ>(bind(&Mcomponent::page_read));
  m_data.on<Opcode::P2M_PAGE_FREE>(bind(&Mcomponent::page_free));
  m_data.on<Opcode::P2M_PAGE_MOVE>(bind(&Mcomponent::page_move));
}

MembershipClient::Usage Mcomponent::usage() const {
  auto stats = m_store.stats();
  return MembershipClient::Usage{stats.capacity, stats.used, stats.vnodes};
}

Result<void> Mcomponent::vnode_create(const wire::Mon2cVnodeCreateRequest& setup, const Message&) {
  TRY(m_store.create_vnode(setup.vnode, setup.name.view(), setup.memory));
  log.info("serving vNode {} '{}' (memory quota {})", setup.vnode, setup.name.view(),
           setup.memory == 0 ? std::string("none") : format_size(setup.memory));
  return {};
}

Result<void> Mcomponent::vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown,
                                       const Message&) {
  TRY(m_store.destroy_vnode(teardown.vnode));
  log.info("stopped serving vNode {}", teardown.vnode);
  return {};
}

Result<wire::P2mMmCreateReply> Mcomponent::mm_create(const wire::Empty&, const Message& request) {
  wire::P2mMmCreateReply reply{};
  reply.mm = TRY(m_store.create_mm(request.vnode()));
  log.debug("vNode {}: created mm {}", request.vnode(), reply.mm);
  return reply;
}

Result<void> Mcomponent::mm_free(const wire::P2mMmFreeRequest& free, const Message& request) {
  TRY(m_store.free_mm(request.vnode(), free.mm));
  log.debug("vNode {}: freed mm {}", request.vnode(), free.mm);
  return {};
}

Result<wire::P2mMmCreateReply> Mcomponent::mm_fork(const wire::P2mMmForkRequest& fork,
                                                   const Message& request) {
  wire::P2mMmCreateReply reply{};
  reply.mm = TRY(m_store.fork_mm(request.vnode(), fork.mm));
  log.debug("vNode {}: forked mm {} into mm {}", request.vnode(), fork.mm, reply.mm);
  return reply;
}

Result<void> Mcomponent::page_write(const wire::Tailed<wire::P2mPageRange>& write,
                                    const Message& request) {
  const wire::P2mPageRange& range = write.head;
  return m_store.write_pages(request.vnode(), range.mm, range.address, range.count,
                             write.tail.view());
}

Result<wire::RawBytes> Mcomponent::page_read(const wire::P2mPageRange& range,
                                             const Message& request) {
  wire::Tail pages = wire::Tail::with_room(0, static_cast<size_t>(range.count) * wire::kPageSize);
  TRY(m_store.read_pages(request.vnode(), range.mm, range.address, range.count, pages.span()));
  return wire::RawBytes{std::move(pages)};
}

Result<void> Mcomponent::page_free(const wire::P2mPageRange& range, const Message& request) {
  return m_store.free_pages(request.vnode(), range.mm, range.address, range.count);
}

Result<void> Mcomponent::page_move(const wire::P2mPageMoveRequest& move, const Message& request) {
  return m_store.move_pages(request.vnode(), move.mm, move.from, move.to, move.count);
}

}  // namespace sk::mcomponent
