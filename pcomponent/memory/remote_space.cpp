// RemoteSpace (remote_space.h): a process's holders and mms.
#include "pcomponent/memory/remote_space.h"

namespace sk::pcomponent::memory {

McomponentClient* RemoteSpace::holder(uint64_t vregion) const {
  auto it = m_holders.find(vregion);
  return it == m_holders.end() ? nullptr : it->second;
}

McomponentClient* RemoteSpace::assign(uint64_t vregion, McomponentClient* client) {
  return m_holders.emplace(vregion, client).first->second;
}

Result<uint64_t> RemoteSpace::mm_on(McomponentClient* client, VnodeId vnode) {
  if (auto it = m_mms.find(client); it != m_mms.end()) return it->second;
  uint64_t mm = TRY(client->create_mm(vnode));
  m_mms[client] = mm;
  return mm;
}

std::optional<RemoteSpace::Location> RemoteSpace::locate(uint64_t vregion) const {
  McomponentClient* client = holder(vregion);
  if (client == nullptr) return std::nullopt;
  auto mm = m_mms.find(client);
  if (mm == m_mms.end()) return std::nullopt;
  return Location{client, mm->second};
}

Result<void> RemoteSpace::free_pages(VnodeId vnode, uint64_t vregion, uint64_t address,
                                     uint64_t count) {
  auto where = locate(vregion);
  if (!where) return {};
  return where->client->free(vnode, where->mm, address, count);
}

RemoteSpace RemoteSpace::fork(VnodeId vnode, std::string& failure) const {
  RemoteSpace child;
  child.m_holders = m_holders;
  for (const auto& [client, mm] : m_mms) {
    auto forked = client->fork_mm(vnode, mm);
    if (forked) {
      child.m_mms[client] = *forked;
    } else if (failure.empty()) {
      failure = "its parent's memory on " + client->name() +
                " could not be copied: " + forked.error().text();
    }
  }
  return child;
}

std::map<McomponentClient*, uint64_t> RemoteSpace::take_mms() {
  auto mms = std::move(m_mms);
  m_mms.clear();
  return mms;
}

}  // namespace sk::pcomponent::memory
