// The monitor's table of runs: programs started from a console
// (`splitctl run`) and not yet ended, with the console that waits for each
// and the pComponent that runs it. Plain data without locking;
// MonitorServer guards it with the mutex of its other tables.
//
// A run is added when the monitor sends MON2P_RUN, marked started when the
// pComponent answers, and removed when the pComponent reports its exit
// (P2MON_EXIT), when the start fails, or when the pComponent fails. Its
// console is forgotten when the console's connection closes (the program
// is hung up, and lives on until it exits).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/node.h"

namespace sk::monitor {

struct RunEntry {
  uint64_t id = 0;
  VnodeId vnode = kNoVnode;
  std::string vnode_name;
  NodeId pcomponent = kNoNode;
  // The console that started it; null once that connection closed.
  std::shared_ptr<fabric::Connection> console;
  // The pComponent's membership connection, which MON2P_RUN went out on and
  // its P2MON_ messages come in on.
  std::shared_ptr<fabric::Connection> component;
  bool started = false;  // the pComponent answered MON2P_RUN
  int32_t vnode_pid = 0;
};

class RunTable {
 public:
  // Ids start at 1 and are never reused by this monitor.
  uint64_t allocate_id() { return m_next_id++; }

  void add(RunEntry entry);
  RunEntry* find(uint64_t id);
  std::optional<RunEntry> remove(uint64_t id);

  // The runs started by the console on `connection`.
  std::vector<uint64_t> of_console(const fabric::Connection* connection) const;
  // The runs placed on `node`.
  std::vector<uint64_t> on_node(NodeId node) const;
  // How many runs are placed on `node` (GPM's load).
  size_t count_on(NodeId node) const;
  // How many runs a vNode has.
  size_t count_of_vnode(VnodeId vnode) const;
  size_t size() const { return m_runs.size(); }

 private:
  uint64_t m_next_id = 1;
  std::map<uint64_t, RunEntry> m_runs;
};

}  // namespace sk::monitor
