#include "kernel/node.h"

namespace sk {

std::string_view to_string(NodeKind kind) {
  switch (kind) {
    case NodeKind::kMonitor: return "monitor";
    case NodeKind::kPcomponent: return "pcomponent";
    case NodeKind::kMcomponent: return "mcomponent";
    case NodeKind::kScomponent: return "scomponent";
  }
  return "unknown";
}

std::string_view to_string(NodeState state) {
  switch (state) {
    case NodeState::kAlive: return "alive";
    case NodeState::kFailed: return "failed";
    case NodeState::kLeft: return "left";
  }
  return "unknown";
}

std::optional<NodeKind> node_kind_from_wire(uint8_t raw) {
  if (raw < static_cast<uint8_t>(NodeKind::kMonitor) ||
      raw > static_cast<uint8_t>(NodeKind::kScomponent)) {
    return std::nullopt;
  }
  return static_cast<NodeKind>(raw);
}

std::optional<NodeState> node_state_from_wire(uint8_t raw) {
  if (raw < static_cast<uint8_t>(NodeState::kAlive) ||
      raw > static_cast<uint8_t>(NodeState::kLeft)) {
    return std::nullopt;
  }
  return static_cast<NodeState>(raw);
}

}  // namespace sk
