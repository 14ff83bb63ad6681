#include "monitor/run_table.h"

namespace sk::monitor {

void RunTable::add(RunEntry entry) {
  uint64_t id = entry.id;
  m_runs[id] = std::move(entry);
}

RunEntry* RunTable::find(uint64_t id) {
  auto it = m_runs.find(id);
  return it == m_runs.end() ? nullptr : &it->second;
}

std::optional<RunEntry> RunTable::remove(uint64_t id) {
  auto it = m_runs.find(id);
  if (it == m_runs.end()) return std::nullopt;
  RunEntry entry = std::move(it->second);
  m_runs.erase(it);
  return entry;
}

std::vector<uint64_t> RunTable::of_console(const fabric::Connection* connection) const {
  std::vector<uint64_t> ids;
  for (const auto& [id, entry] : m_runs) {
    if (entry.console.get() == connection) ids.push_back(id);
  }
  return ids;
}

std::vector<uint64_t> RunTable::on_node(NodeId node) const {
  std::vector<uint64_t> ids;
  for (const auto& [id, entry] : m_runs) {
    if (entry.pcomponent == node) ids.push_back(id);
  }
  return ids;
}

size_t RunTable::count_on(NodeId node) const {
  size_t count = 0;
  for (const auto& [id, entry] : m_runs) count += entry.pcomponent == node ? 1 : 0;
  return count;
}

size_t RunTable::count_of_vnode(VnodeId vnode) const {
  size_t count = 0;
  for (const auto& [id, entry] : m_runs) count += entry.vnode == vnode ? 1 : 0;
  return count;
}

}  // namespace sk::monitor
