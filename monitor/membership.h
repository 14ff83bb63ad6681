// The monitor's node table: who joined, what each component lends, when it
// last heartbeated, and whether it is alive, failed or gone. Also the GSM
// placement rule (which sComponent holds a new vNode's root), because it is
// a pure function of this table.
//
// Membership is plain data with no locking and no clock of its own: every
// call that depends on time takes `now`, so the failure detector can be
// tested with injected time. MonitorServer owns one instance and guards it
// with its mutex.
//
// Node lifecycle, as the monitor sees it:
//   join -> alive --(no heartbeat for failure_timeout, or connection closed)--> failed
//   failed --(heartbeat with the same id)--> alive
//   alive/failed --(C2MON_LEAVE)--> left
// A component that reconnects joins again and gets a new id; its old entry
// (same kind and address, no longer alive) is superseded and dropped once
// the new one has taken over its vNodes (see superseded_by()).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/node.h"
#include "kernel/wire/messages.h"

namespace sk::monitor {

struct NodeEntry {
  NodeId id = kNoNode;
  NodeKind kind = NodeKind::kPcomponent;
  NodeState state = NodeState::kAlive;
  wire::FabricKind fabric = wire::FabricKind::kTcp;
  std::string address;  // where peers reach the component
  uint64_t capacity = 0;
  uint64_t usage = 0;
  uint32_t load = 0;
  Clock::time_point last_heartbeat{};
  uint64_t joined_unix_ms = 0;
  // The connection the component joined on; the monitor sends it MON2x_
  // requests. Null in unit tests.
  std::shared_ptr<fabric::Connection> connection;
  // The vNodes this component has acknowledged setting up (MON2x_VNODE_CREATE)
  // and not yet torn down. Lets a component that missed creates or destroys
  // while failed be brought up to date, and counts NodeRecord::vnodes.
  std::set<VnodeId> vnodes;

  uint64_t free_space() const { return capacity > usage ? capacity - usage : 0; }
  bool alive() const { return state == NodeState::kAlive; }
};

class Membership {
 public:
  // `monitor_address` and `fabric` describe the monitor's own entry (node 1).
  Membership(std::string monitor_address, wire::FabricKind fabric, Duration failure_timeout,
             uint64_t started_unix_ms);

  // The listen address is only known after binding (port 0 picks one).
  void set_monitor_address(std::string address) { m_monitor_address = std::move(address); }

  // Adds a component (the request is already validated) and returns its id.
  // Ids start at 2 and are never reused.
  NodeId join(const wire::C2monJoinRequest& request, std::shared_ptr<fabric::Connection> connection,
              Clock::time_point now, uint64_t now_unix_ms);

  enum class HeartbeatOutcome {
    kUpdated,  // an alive node reported in
    kRevived,  // a failed node reported in again and is alive again
    kUnknown,  // no such node (or it left): it must join again
  };
  HeartbeatOutcome heartbeat(const wire::C2monHeartbeat& heartbeat, Clock::time_point now);

  // C2MON_LEAVE. False when the node is unknown.
  bool leave(NodeId node);

  // The connection `connection` of `node` closed. Marks the node failed
  // unless it already left or failed, or has since been given another
  // connection. Returns true when the node changed state.
  bool connection_closed(NodeId node, const fabric::Connection* connection);

  // Marks failed every alive node whose last heartbeat is older than the
  // failure timeout; returns their ids.
  std::vector<NodeId> detect_failures(Clock::time_point now);

  // GSM: the alive sComponent with the most free space (ties: lowest id).
  std::optional<NodeId> pick_scomponent() const;

  // GPM: the alive pComponent that has set `vnode` up and has the fewest
  // programs running: `running(id)` (the monitor's own count of the runs it
  // placed there, always current), then the load its last heartbeat
  // reported, then the lowest id. ENOENT-like outcomes are told apart:
  // kNoPcomponent when no pComponent is alive at all, kNotSetUp when the
  // alive ones lack the vNode.
  enum class PickFailure { kNoPcomponent, kNotSetUp };
  std::variant<NodeId, PickFailure> pick_pcomponent(
      VnodeId vnode, const std::function<size_t(NodeId)>& running) const;

  // Alive nodes of one kind, by id.
  std::vector<NodeId> alive(NodeKind kind) const;

  // Nodes that are not alive, have the same kind and address as `node`, and
  // so are earlier incarnations of the same component.
  std::vector<NodeId> superseded_by(NodeId node) const;
  void erase(NodeId node);

  // The node that joined on `connection`, or kNoNode.
  NodeId find_by_connection(const fabric::Connection* connection) const;
  NodeEntry* find(NodeId node);
  const NodeEntry* find(NodeId node) const;
  size_t size() const { return m_nodes.size(); }

  // The monitor's own record first, then every component by id.
  // `vnode_count` is the number of vNodes in the cluster (the monitor's
  // `vnodes` field).
  std::vector<wire::NodeRecord> records(Clock::time_point now, uint32_t vnode_count) const;

  Duration failure_timeout() const { return m_failure_timeout; }

 private:
  std::string m_monitor_address;
  wire::FabricKind m_fabric;
  Duration m_failure_timeout;
  uint64_t m_started_unix_ms;
  NodeId m_next_id = kMonitorNodeId + 1;
  std::map<NodeId, NodeEntry> m_nodes;
};

// Milliseconds since the Unix epoch, for the created/joined times users see.
uint64_t unix_now_ms();

}  // namespace sk::monitor
