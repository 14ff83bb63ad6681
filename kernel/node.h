// Node identity: who is who in a splitkernel cluster.
//
// The monitor hands out a NodeId to every component when it joins; id 0 is
// "not yet joined" and kMonitorNodeId is the monitor itself. A component's
// kind says which resource it lends to vNodes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sk {

using NodeId = uint32_t;
using VnodeId = uint32_t;

inline constexpr NodeId kNoNode = 0;
inline constexpr NodeId kMonitorNodeId = 1;
// The console is not a cluster member; its requests carry this source id.
inline constexpr NodeId kConsoleNodeId = 0xffffffffu;
inline constexpr VnodeId kNoVnode = 0;

enum class NodeKind : uint8_t {
  kMonitor = 1,
  kPcomponent = 2,
  kMcomponent = 3,
  kScomponent = 4,
};

enum class NodeState : uint8_t {
  kAlive = 1,
  kFailed = 2,  // stopped answering heartbeats; may come back
  kLeft = 3,    // said goodbye
};

std::string_view to_string(NodeKind kind);
std::string_view to_string(NodeState state);
std::optional<NodeKind> node_kind_from_wire(uint8_t raw);
std::optional<NodeState> node_state_from_wire(uint8_t raw);

}  // namespace sk
