// GMM (see memory_placement.h). Lock order: the caller's mutex only.
#include "monitor/memory_placement.h"

#include <memory>

#include "kernel/log.h"
#include "kernel/wire/codec.h"

namespace sk::monitor {

static const Logger log("placement");

void PlacementLedger::charge(NodeId node, uint64_t bytes, Clock::time_point now) {
  m_charges.emplace(node, std::pair(now, bytes));
}

uint64_t PlacementLedger::recent(NodeId node, Clock::time_point now) {
  uint64_t total = 0;
  auto [first, last] = m_charges.equal_range(node);
  for (auto it = first; it != last;) {
    if (now - it->second.first >= kPlacementMemory) {
      it = m_charges.erase(it);
    } else {
      total += it->second.second;
      ++it;
    }
  }
  return total;
}

Result<wire::P2monMemoryPlaceReply> place_memory(const Membership& membership,
                                                 PlacementLedger& ledger, VnodeId vnode,
                                                 uint64_t bytes, Clock::time_point now) {
  const NodeEntry* best = nullptr;
  uint64_t best_free = 0;
  for (NodeId id : membership.alive(NodeKind::kMcomponent)) {
    const NodeEntry* node = membership.find(id);
    if (node == nullptr || !node->vnodes.contains(vnode)) continue;
    uint64_t placed = ledger.recent(id, now);
    uint64_t free = node->free_space();
    free = free > placed ? free - placed : 0;
    if (best == nullptr || free > best_free) {  // alive() is by id: ties keep the lowest
      best = node;
      best_free = free;
    }
  }
  if (best == nullptr) {
    return make_error(EHOSTUNREACH, "no alive mComponent serves vNode " + std::to_string(vnode));
  }
  ledger.charge(best->id, bytes, now);
  wire::P2monMemoryPlaceReply reply{};
  reply.node = best->id;
  reply.address.set(best->address);
  return reply;
}

void register_memory_placement(rpc::ControlDispatcher& dispatcher, std::mutex& mutex,
                               const Membership& membership) {
  auto ledger = std::make_shared<PlacementLedger>();
  // The dispatcher has checked that the body names the header's vNode
  // (wire::matches_header).
  dispatcher.on<wire::Opcode::P2MON_MEMORY_PLACE>(
      [ledger, &mutex, &membership](
          const wire::P2monMemoryPlaceRequest& place,
          const rpc::Message& request) -> Result<wire::P2monMemoryPlaceReply> {
        Result<wire::P2monMemoryPlaceReply> reply = [&] {
          std::lock_guard lock(mutex);
          return place_memory(membership, *ledger, place.vnode, place.bytes, Clock::now());
        }();
        if (!reply) {
          log.warn("memory for vNode {} from node {}: {}", place.vnode, request.source(),
                   reply.error().text());
          return reply;
        }
        log.debug("vNode {}: {} from node {} placed on mComponent {}", place.vnode,
                  format_size(place.bytes), request.source(), reply->node);
        return reply;
      });
}

}  // namespace sk::monitor
