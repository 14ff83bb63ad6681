#include "monitor/vnode_table.h"

namespace sk::monitor {

wire::VnodeRecord VnodeEntry::record() const {
  wire::VnodeRecord record{};
  record.id = id;
  record.scomponent = scomponent;
  record.cache = cache;
  record.memory = memory;
  record.created_unix_ms = created_unix_ms;
  record.processes = processes;
  record.flags = flags;
  record.name.set(name);
  record.image.set(image);
  return record;
}

wire::Mon2cVnodeCreateRequest VnodeEntry::setup() const {
  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = id;
  setup.flags = flags;
  setup.cache = cache;
  setup.memory = memory;
  setup.name.set(name);
  setup.image.set(image);
  setup.scomponent.set(scomponent_address);
  return setup;
}

Result<void> VnodeTable::check_new_name(std::string_view name) const {
  if (m_by_name.find(name) != m_by_name.end()) {
    return make_error(EEXIST, "vnode '" + std::string(name) + "' already exists");
  }
  return {};
}

void VnodeTable::add(VnodeEntry entry) {
  m_by_name.emplace(entry.name, entry.id);
  VnodeId id = entry.id;
  m_by_id.emplace(id, std::move(entry));
}

const VnodeEntry* VnodeTable::find(std::string_view name) const {
  auto it = m_by_name.find(name);
  if (it == m_by_name.end()) return nullptr;
  return find(it->second);
}

const VnodeEntry* VnodeTable::find(VnodeId id) const {
  auto it = m_by_id.find(id);
  return it == m_by_id.end() ? nullptr : &it->second;
}

Result<VnodeEntry> VnodeTable::remove(std::string_view name) {
  auto it = m_by_name.find(name);
  if (it == m_by_name.end()) {
    return make_error(ENOENT, "no vnode named '" + std::string(name) + "'");
  }
  auto node = m_by_id.extract(it->second);
  m_by_name.erase(it);
  return std::move(node.mapped());
}

std::vector<VnodeId> VnodeTable::rehome(NodeId from, NodeId to, const std::string& to_address) {
  std::vector<VnodeId> moved;
  for (auto& [id, entry] : m_by_id) {
    if (entry.scomponent == from) {
      entry.scomponent = to;
      entry.scomponent_address = to_address;
      moved.push_back(id);
    }
  }
  return moved;
}

std::vector<VnodeId> VnodeTable::rooted_on(NodeId scomponent) const {
  std::vector<VnodeId> ids;
  for (const auto& [id, entry] : m_by_id) {
    if (entry.scomponent == scomponent) ids.push_back(id);
  }
  return ids;
}

std::vector<VnodeEntry> VnodeTable::list() const {
  std::vector<VnodeEntry> entries;
  entries.reserve(m_by_id.size());
  for (const auto& [id, entry] : m_by_id) entries.push_back(entry);
  return entries;
}

}  // namespace sk::monitor
