// The monitor's vNode table: every vNode's name, id, the sComponent that
// holds its root (chosen by GSM at creation), its memory quota and ExCache
// budget. Plain data without locking; MonitorServer guards it with the same
// mutex as the node table.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/wire/messages.h"

namespace sk::monitor {

struct VnodeEntry {
  VnodeId id = kNoVnode;
  std::string name;
  NodeId scomponent = kNoNode;
  // Where the root's sComponent serves (pComponents mount the root there).
  std::string scomponent_address;
  uint32_t flags = 0;  // wire::kVnodeEmptyRoot
  std::string image;   // what the root started from; empty for an empty root
  uint64_t cache = 0;  // 0: the pComponent's own ExCache budget
  uint64_t memory = 0;
  uint64_t created_unix_ms = 0;
  uint32_t processes = 0;

  wire::VnodeRecord record() const;
  wire::Mon2cVnodeCreateRequest setup() const;
};

class VnodeTable {
 public:
  // EEXIST when a vNode already has this name.
  Result<void> check_new_name(std::string_view name) const;

  // Ids start at 1 and are never reused, so a late message about a destroyed
  // vNode can never be taken for a newer one with the same name.
  VnodeId allocate_id() { return m_next_id++; }

  // The entry's id must come from allocate_id() and its name must be new.
  void add(VnodeEntry entry);

  const VnodeEntry* find(std::string_view name) const;
  const VnodeEntry* find(VnodeId id) const;

  // ENOENT "no vnode named 'x'" when missing; otherwise removes and returns it.
  Result<VnodeEntry> remove(std::string_view name);

  // Moves every vNode whose root is on `from` to `to`, served at
  // `to_address` (a restarted sComponent that joined again under a new id).
  std::vector<VnodeId> rehome(NodeId from, NodeId to, const std::string& to_address);

  // The vNodes whose root `scomponent` holds.
  std::vector<VnodeId> rooted_on(NodeId scomponent) const;

  // All vNodes, by id.
  std::vector<VnodeEntry> list() const;
  size_t size() const { return m_by_id.size(); }

 private:
  VnodeId m_next_id = 1;
  std::map<VnodeId, VnodeEntry> m_by_id;
  std::map<std::string, VnodeId, std::less<>> m_by_name;
};

}  // namespace sk::monitor
