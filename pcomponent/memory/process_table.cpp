// ProcessTable and ForkBook (process_table.h).
#include "pcomponent/memory/process_table.h"

#include <algorithm>

namespace sk::pcomponent::memory {

void ProcessTable::add(const ProcessPtr& process) {
  process->serial = m_next_serial++;
  m_by_serial[process->serial] = process;
}

ProcessPtr ProcessTable::unbind(pid_t pid) {
  auto it = m_by_pid.find(pid);
  if (it == m_by_pid.end()) return nullptr;
  ProcessPtr process = std::move(it->second);
  m_by_pid.erase(it);
  return process;
}

ProcessPtr ProcessTable::by_pid(pid_t pid) const {
  auto it = m_by_pid.find(pid);
  return it == m_by_pid.end() ? nullptr : it->second;
}

ProcessPtr ProcessTable::by_serial(uint64_t serial) const {
  auto it = m_by_serial.find(serial);
  return it == m_by_serial.end() ? nullptr : it->second;
}

bool ProcessTable::any_of_vnode(VnodeId vnode) const {
  return std::any_of(m_by_serial.begin(), m_by_serial.end(),
                     [vnode](const auto& entry) { return entry.second->vnode == vnode; });
}

void ProcessTable::share(pid_t parent, pid_t child) {
  m_sharers[parent].insert(child);
  m_shares_with[child] = parent;
}

void ProcessTable::unshare(pid_t pid, Exited exited) {
  if (exited == Exited::kYes) m_sharers.erase(pid);
  if (auto it = m_shares_with.find(pid); it != m_shares_with.end()) {
    m_sharers[it->second].erase(pid);
    m_shares_with.erase(it);
  }
}

bool ProcessTable::shared(pid_t pid) const {
  auto it = m_sharers.find(pid);
  return it != m_sharers.end() && !it->second.empty();
}

void ForkBook::add_child(uint64_t parent_serial, const ProcessPtr& child) {
  m_children[parent_serial].push_back(child);
}

std::deque<ProcessPtr> ForkBook::children(uint64_t parent_serial) const {
  auto it = m_children.find(parent_serial);
  return it == m_children.end() ? std::deque<ProcessPtr>{} : it->second;
}

void ForkBook::remove_children(uint64_t parent_serial, const ProcessPtr& matched,
                               const std::vector<ProcessPtr>& stillborn) {
  auto it = m_children.find(parent_serial);
  if (it == m_children.end()) return;
  std::erase_if(it->second, [&](const ProcessPtr& entry) {
    return entry == matched ||
           std::find(stillborn.begin(), stillborn.end(), entry) != stillborn.end();
  });
  if (it->second.empty()) m_children.erase(it);
}

std::deque<ProcessPtr> ForkBook::take_children(uint64_t parent_serial) {
  std::deque<ProcessPtr> children;
  if (auto it = m_children.find(parent_serial); it != m_children.end()) {
    children.swap(it->second);
    m_children.erase(it);
  }
  return children;
}

std::vector<pid_t> ForkBook::take_early(pid_t parent) {
  std::vector<pid_t> early;
  if (auto it = m_early.find(parent); it != m_early.end()) {
    early = std::move(it->second);
    m_early.erase(it);
  }
  return early;
}

}  // namespace sk::pcomponent::memory
