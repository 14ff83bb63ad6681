// The mComponent's request handlers (see mcomponent.h for the protocol).
// Lock order: none here; PageStore has its own.
#include "mcomponent/mcomponent.h"

#include "kernel/daemon.h"
#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/memory_messages.h"

namespace sk::mcomponent {

static const Logger log("mcomponent");

using wire::Opcode;

Mcomponent::Mcomponent(uint64_t capacity) : m_store(capacity) {
  auto bind = [this](Opcode opcode,
                     Result<wire::Bytes> (Mcomponent::*method)(const rpc::Message&)) {
    m_dispatcher.on(opcode, [this, method](const rpc::Message& request, const rpc::Responder&) {
      return (this->*method)(request);
    });
  };
  bind(Opcode::MON2M_VNODE_CREATE, &Mcomponent::vnode_create);
  bind(Opcode::MON2M_VNODE_DESTROY, &Mcomponent::vnode_destroy);
  bind(Opcode::P2M_MM_CREATE, &Mcomponent::mm_create);
  bind(Opcode::P2M_MM_FREE, &Mcomponent::mm_free);
  bind(Opcode::P2M_MM_FORK, &Mcomponent::mm_fork);
  bind(Opcode::P2M_PAGE_WRITE, &Mcomponent::page_write);
  bind(Opcode::P2M_PAGE_READ, &Mcomponent::page_read);
  bind(Opcode::P2M_PAGE_FREE, &Mcomponent::page_free);
  bind(Opcode::P2M_PAGE_MOVE, &Mcomponent::page_move);
}

Member::Usage Mcomponent::usage() const {
  auto stats = m_store.stats();
  return Member::Usage{stats.capacity, stats.used, stats.vnodes};
}

Result<wire::Bytes> Mcomponent::vnode_create(const rpc::Message& request) {
  auto setup = TRY(decode_vnode_setup(request));
  TRY(m_store.create_vnode(setup.vnode, setup.name.view(), setup.memory));
  log.info("serving vNode {} '{}' (memory quota {})", setup.vnode, setup.name.view(),
           setup.memory == 0 ? std::string("none") : format_size(setup.memory));
  return wire::Bytes{};
}

Result<wire::Bytes> Mcomponent::vnode_destroy(const rpc::Message& request) {
  auto teardown = TRY(decode_vnode_teardown(request));
  TRY(m_store.destroy_vnode(teardown.vnode));
  log.info("stopped serving vNode {}", teardown.vnode);
  return wire::Bytes{};
}

Result<wire::Bytes> Mcomponent::mm_create(const rpc::Message& request) {
  if (!request.payload.empty()) {
    return make_error(EBADMSG, "P2M_MM_CREATE takes no body, got " +
                                   std::to_string(request.payload.size()) + " bytes");
  }
  wire::MmCreateReply reply{};
  reply.mm = TRY(m_store.create_mm(request.vnode()));
  log.debug("vNode {}: created mm {}", request.vnode(), reply.mm);
  return wire::encode(reply);
}

Result<wire::Bytes> Mcomponent::mm_free(const rpc::Message& request) {
  auto free = TRY(wire::decode<wire::MmFreeRequest>(request.payload));
  TRY(m_store.free_mm(request.vnode(), free.mm));
  log.debug("vNode {}: freed mm {}", request.vnode(), free.mm);
  return wire::Bytes{};
}

Result<wire::Bytes> Mcomponent::mm_fork(const rpc::Message& request) {
  auto fork = TRY(wire::decode<wire::MmForkRequest>(request.payload));
  wire::MmCreateReply reply{};
  reply.mm = TRY(m_store.fork_mm(request.vnode(), fork.mm));
  log.debug("vNode {}: forked mm {} into mm {}", request.vnode(), fork.mm, reply.mm);
  return wire::encode(reply);
}

Result<wire::Bytes> Mcomponent::page_write(const rpc::Message& request) {
  auto [range, data] = TRY(wire::decode_with_tail<wire::PageRange>(request.payload));
  TRY(m_store.write_pages(request.vnode(), range.mm, range.address, range.count, data));
  return wire::Bytes{};
}

Result<wire::Bytes> Mcomponent::page_read(const rpc::Message& request) {
  auto range = TRY(wire::decode<wire::PageRange>(request.payload));
  wire::Bytes pages(static_cast<size_t>(range.count) * wire::kPageSize);
  TRY(m_store.read_pages(request.vnode(), range.mm, range.address, range.count, pages));
  return pages;
}

Result<wire::Bytes> Mcomponent::page_free(const rpc::Message& request) {
  auto range = TRY(wire::decode<wire::PageRange>(request.payload));
  TRY(m_store.free_pages(request.vnode(), range.mm, range.address, range.count));
  return wire::Bytes{};
}

Result<wire::Bytes> Mcomponent::page_move(const rpc::Message& request) {
  auto move = TRY(wire::decode<wire::PageMove>(request.payload));
  TRY(m_store.move_pages(request.vnode(), move.mm, move.from, move.to, move.count));
  return wire::Bytes{};
}

}  // namespace sk::mcomponent
