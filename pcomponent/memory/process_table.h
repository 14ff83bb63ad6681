// The memory manager's tables of processes, and the books of fork matching.
//
// ProcessTable: every ManagedProcess by its serial (the ExCache's key) and,
// once it is known, by its pid; and which processes share an mm with a
// vfork/CLONE_VM child (a process must not be evicted while such a child
// may write to its memory unstopped).
//
// ForkBook: the two halves of a fork arrive separately — UFFD_EVENT_FORK
// (the child's uffd, read by the fault thread) and the tracer's on_fork
// (the child's pid) — in either order. The book keeps the children whose
// uffd came first, by parent, in the order the events came, and the
// on_fork calls whose parent was itself not matched yet.
//
// Neither is thread-safe: the memory manager guards both with its m_mutex.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "pcomponent/memory/managed_process.h"

namespace sk::pcomponent::memory {

class ProcessTable {
 public:
  // Gives `process` the next serial and adds it (no pid yet).
  void add(const ProcessPtr& process);
  // Finds it by pid from now on.
  void bind(pid_t pid, const ProcessPtr& process) { m_by_pid[pid] = process; }
  // Takes the pid away (exec, exit) and returns who had it.
  ProcessPtr unbind(pid_t pid);
  // Drops it from the table for good.
  void erase(uint64_t serial) { m_by_serial.erase(serial); }

  ProcessPtr by_pid(pid_t pid) const;
  ProcessPtr by_serial(uint64_t serial) const;
  bool has_pid(pid_t pid) const { return m_by_pid.contains(pid); }
  bool any_of_vnode(VnodeId vnode) const;
  // Calls `visit(process)` (a ProcessPtr) for every process in the table.
  template <typename Fn>
  void for_each(Fn&& visit) const {
    for (const auto& [serial, process] : m_by_serial) visit(process);
  }

  // `child` (a vfork or CLONE_VM child) runs in `parent`'s mm.
  void share(pid_t parent, pid_t child);
  // `pid` stops sharing a parent's mm (it exec'd or exited); at exit its
  // own children's sharing is forgotten too (`Exited::kYes`).
  enum class Exited : bool { kNo, kYes };
  void unshare(pid_t pid, Exited exited);
  // Whether a child runs in `pid`'s mm now.
  bool shared(pid_t pid) const;

 private:
  std::unordered_map<pid_t, ProcessPtr> m_by_pid;
  std::unordered_map<uint64_t, ProcessPtr> m_by_serial;
  uint64_t m_next_serial = 1;
  std::map<pid_t, std::set<pid_t>> m_sharers;  // pid -> vfork/CLONE_VM children sharing its mm
  std::map<pid_t, pid_t> m_shares_with;        // such a child -> its parent
};

class ForkBook {
 public:
  // A child whose UFFD_EVENT_FORK came from the parent with `parent_serial`.
  void add_child(uint64_t parent_serial, const ProcessPtr& child);
  // The parent's children waiting for their pid, oldest first.
  std::deque<ProcessPtr> children(uint64_t parent_serial) const;
  // Removes `matched` and the `stillborn` from the parent's children.
  void remove_children(uint64_t parent_serial, const ProcessPtr& matched,
                       const std::vector<ProcessPtr>& stillborn);
  // Takes every waiting child of a parent that exec'd or exited.
  std::deque<ProcessPtr> take_children(uint64_t parent_serial);

  // on_fork(parent, child) came before `parent` itself was matched.
  void add_early(pid_t parent, pid_t child) { m_early[parent].push_back(child); }
  // The early forks of a process that was just matched (or exited).
  std::vector<pid_t> take_early(pid_t parent);

 private:
  std::map<uint64_t, std::deque<ProcessPtr>> m_children;
  std::map<pid_t, std::vector<pid_t>> m_early;
};

}  // namespace sk::pcomponent::memory
