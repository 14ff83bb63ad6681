// GMM, the monitor's memory placement: which mComponent holds the next
// vRegion of a vNode's memory (P2MON_MEMORY_PLACE, kernel/wire/
// memory_messages.h).
//
// The rule: among the alive mComponents that have set the vNode up, the
// one with the most free capacity, where free = capacity - usage (from its
// heartbeats) - what this monitor placed on it lately (kPlacementMemory).
// Heartbeats only show pages once they are written back, so without the
// second term every vRegion asked for within a heartbeat or two would land
// on the same mComponent; with it, consecutive vRegions of a vNode spread
// over the mComponents in proportion to their free space. Ties: lowest id.
//
// A vRegion is what a pComponent asks for at a time: 64 MiB of a vNode's
// virtual address space (pcomponent/memory/memory_manager_impl.h,
// kVregionBytes); LegoOS used 1 GiB, which with test working sets of a few
// hundred MiB would put a whole program on one mComponent.
//
// Threads: place_memory() is plain data (the caller holds the lock that
// guards the membership); the handler registered by
// register_memory_placement() runs on the transport's thread, takes
// `mutex` for the moment it decides, and never blocks.
#pragma once

#include <map>
#include <mutex>

#include "kernel/config.h"
#include "kernel/result.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/memory_messages.h"
#include "monitor/membership.h"

namespace sk::monitor {

// How long a placement counts against an mComponent's free space: long
// enough for the pComponent to fill the vRegion and for heartbeats to show it.
inline constexpr Duration kPlacementMemory = std::chrono::seconds(10);

// The placements of the last kPlacementMemory, per mComponent.
class PlacementLedger {
 public:
  void charge(NodeId node, uint64_t bytes, Clock::time_point now);
  uint64_t recent(NodeId node, Clock::time_point now);

 private:
  std::multimap<NodeId, std::pair<Clock::time_point, uint64_t>> m_charges;
};

// Picks the mComponent for `bytes` of `vnode` and charges it in `ledger`.
// EHOSTUNREACH when no alive mComponent serves the vNode.
Result<wire::P2monMemoryPlaceReply> place_memory(const Membership& membership,
                                                 PlacementLedger& ledger, VnodeId vnode,
                                                 uint64_t bytes, Clock::time_point now);

// Serves P2MON_MEMORY_PLACE on `dispatcher` with place_memory(); `mutex`
// guards `membership` (MonitorServer's m_mutex and m_membership). The
// ledger lives in the handler.
void register_memory_placement(rpc::ControlDispatcher& dispatcher, std::mutex& mutex,
                               const Membership& membership);

}  // namespace sk::monitor
