#include "monitor/membership.h"

#include <algorithm>

namespace sk::monitor {

uint64_t unix_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Membership::Membership(std::string monitor_address, wire::FabricKind fabric,
                       Duration failure_timeout, uint64_t started_unix_ms)
    : m_monitor_address(std::move(monitor_address)),
      m_fabric(fabric),
      m_failure_timeout(failure_timeout),
      m_started_unix_ms(started_unix_ms) {}

NodeId Membership::join(const wire::C2monJoinRequest& request,
                        std::shared_ptr<fabric::Connection> connection, Clock::time_point now,
                        uint64_t now_unix_ms) {
  NodeEntry entry;
  entry.id = m_next_id++;
  entry.kind = static_cast<NodeKind>(request.kind);
  entry.state = NodeState::kAlive;
  entry.fabric = static_cast<wire::FabricKind>(request.fabric);
  entry.address = request.address.str();
  entry.capacity = request.capacity;
  entry.last_heartbeat = now;
  entry.joined_unix_ms = now_unix_ms;
  entry.connection = std::move(connection);
  NodeId id = entry.id;
  m_nodes.emplace(id, std::move(entry));
  return id;
}

Membership::HeartbeatOutcome Membership::heartbeat(const wire::C2monHeartbeat& heartbeat,
                                                   Clock::time_point now) {
  NodeEntry* entry = find(heartbeat.node);
  // A node that said goodbye has no membership left to refresh.
  if (entry == nullptr || entry->state == NodeState::kLeft) return HeartbeatOutcome::kUnknown;
  entry->capacity = heartbeat.capacity;
  entry->usage = heartbeat.usage;
  entry->load = heartbeat.load;
  entry->last_heartbeat = now;
  if (entry->state == NodeState::kFailed) {
    entry->state = NodeState::kAlive;
    return HeartbeatOutcome::kRevived;
  }
  return HeartbeatOutcome::kUpdated;
}

bool Membership::leave(NodeId node) {
  NodeEntry* entry = find(node);
  if (entry == nullptr) return false;
  entry->state = NodeState::kLeft;
  return true;
}

bool Membership::connection_closed(NodeId node, const fabric::Connection* connection) {
  NodeEntry* entry = find(node);
  if (entry == nullptr || entry->connection.get() != connection) return false;
  if (entry->state != NodeState::kAlive) return false;
  entry->state = NodeState::kFailed;
  return true;
}

std::vector<NodeId> Membership::detect_failures(Clock::time_point now) {
  std::vector<NodeId> failed;
  for (auto& [id, entry] : m_nodes) {
    if (entry.alive() && now - entry.last_heartbeat > m_failure_timeout) {
      entry.state = NodeState::kFailed;
      failed.push_back(id);
    }
  }
  return failed;
}

std::optional<NodeId> Membership::pick_scomponent() const {
  const NodeEntry* best = nullptr;
  for (const auto& [id, entry] : m_nodes) {
    if (entry.kind != NodeKind::kScomponent || !entry.alive()) continue;
    // Strictly greater keeps the lowest id on ties (the map is ordered).
    if (best == nullptr || entry.free_space() > best->free_space()) best = &entry;
  }
  if (best == nullptr) return std::nullopt;
  return best->id;
}

std::variant<NodeId, Membership::PickFailure> Membership::pick_pcomponent(
    VnodeId vnode, const std::function<size_t(NodeId)>& running) const {
  bool any_alive = false;
  const NodeEntry* best = nullptr;
  size_t best_running = 0;
  for (const auto& [id, entry] : m_nodes) {
    if (entry.kind != NodeKind::kPcomponent || !entry.alive()) continue;
    any_alive = true;
    if (entry.vnodes.count(vnode) == 0) continue;
    size_t here = running ? running(id) : 0;
    // Strictly less keeps the lowest id on ties (the map is ordered).
    if (best == nullptr || here < best_running ||
        (here == best_running && entry.load < best->load)) {
      best = &entry;
      best_running = here;
    }
  }
  if (best != nullptr) return best->id;
  return any_alive ? PickFailure::kNotSetUp : PickFailure::kNoPcomponent;
}

std::vector<NodeId> Membership::alive(NodeKind kind) const {
  std::vector<NodeId> ids;
  for (const auto& [id, entry] : m_nodes) {
    if (entry.kind == kind && entry.alive()) ids.push_back(id);
  }
  return ids;
}

std::vector<NodeId> Membership::superseded_by(NodeId node) const {
  std::vector<NodeId> ids;
  const NodeEntry* current = find(node);
  if (current == nullptr) return ids;
  for (const auto& [id, entry] : m_nodes) {
    if (id != node && !entry.alive() && entry.kind == current->kind &&
        entry.address == current->address) {
      ids.push_back(id);
    }
  }
  return ids;
}

void Membership::erase(NodeId node) {
  m_nodes.erase(node);
}

NodeId Membership::find_by_connection(const fabric::Connection* connection) const {
  if (connection == nullptr) return kNoNode;
  for (const auto& [id, entry] : m_nodes) {
    if (entry.connection.get() == connection) return id;
  }
  return kNoNode;
}

NodeEntry* Membership::find(NodeId node) {
  auto it = m_nodes.find(node);
  return it == m_nodes.end() ? nullptr : &it->second;
}

const NodeEntry* Membership::find(NodeId node) const {
  auto it = m_nodes.find(node);
  return it == m_nodes.end() ? nullptr : &it->second;
}

std::vector<wire::NodeRecord> Membership::records(Clock::time_point now,
                                                  uint32_t vnode_count) const {
  std::vector<wire::NodeRecord> records;
  records.reserve(m_nodes.size() + 1);

  wire::NodeRecord self{};
  self.id = kMonitorNodeId;
  self.kind = static_cast<uint8_t>(NodeKind::kMonitor);
  self.state = static_cast<uint8_t>(NodeState::kAlive);
  self.fabric = static_cast<uint8_t>(m_fabric);
  self.vnodes = vnode_count;
  self.joined_unix_ms = m_started_unix_ms;
  self.address.set(m_monitor_address);
  records.push_back(self);

  for (const auto& [id, entry] : m_nodes) {
    wire::NodeRecord record{};
    record.id = id;
    record.kind = static_cast<uint8_t>(entry.kind);
    record.state = static_cast<uint8_t>(entry.state);
    record.fabric = static_cast<uint8_t>(entry.fabric);
    record.load = entry.load;
    record.vnodes = static_cast<uint32_t>(entry.vnodes.size());
    record.capacity = entry.capacity;
    record.usage = entry.usage;
    // A heartbeat stamped after `now` (the caller read the clock first)
    // counts as fresh rather than wrapping around.
    auto age = std::max(Duration::zero(), now - entry.last_heartbeat);
    record.heartbeat_age_ms =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(age).count());
    record.joined_unix_ms = entry.joined_unix_ms;
    record.address.set(entry.address);
    records.push_back(record);
  }
  return records;
}

}  // namespace sk::monitor
