// The tracer: what the pComponent does at every ptrace stop and exit of the
// programs it runs. The launcher's tracer thread feeds it every waitpid
// status of its tracees (Tracer::handle); it keeps the table of tracees
// (threads and processes, each with its vNode and the launched program it
// descends from), routes each traced system call to its handler
// (syscall_handler.h), tells the memory manager about execs, forks, maps
// and exits, and resumes the tracee.
//
// Files: tracer.cpp (stops and the syscall dispatch), process_events.cpp
// (fork, clone, exit), exec_event.cpp (a new address space),
// memory_calls.cpp (the memory calls' handlers).
//
// Threads: Tracer is the tracer thread's alone, except counters(), which
// any thread may read. Lock order: the counters' mutex is a leaf.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "pcomponent/launcher.h"
#include "pcomponent/memory/memory_manager.h"
#include "pcomponent/tracer/syscall_handler.h"

namespace sk::pcomponent::tracer {

// The counters `splitctl stats` shows: updated on the tracer thread, read
// from any.
class TracerCounters {
 public:
  template <typename Fn>
  void update(Fn&& fn) {
    std::lock_guard lock(m_mutex);
    std::forward<Fn>(fn)(m_stats);
  }
  TracerStats snapshot() const {
    std::lock_guard lock(m_mutex);
    return m_stats;
  }

 private:
  mutable std::mutex m_mutex;
  TracerStats m_stats;
};

class Tracer {
 public:
  // From now on execs hand the new address space to `events`, and the
  // memory calls stop in their handlers. Set once, before the first launch
  // (any thread: the tracer thread reads it only after a launch).
  void attach_memory(memory::AddressSpaceEvents* events) { m_memory = events; }
  bool memory_attached() const { return m_memory != nullptr; }

  // Traces `pid`, a launched program stopped before its exec, as the root
  // of a tree of tracees in `vnode`; on_exit runs when it ends. Errors:
  // ptrace's (the program is killed then).
  Result<void> seize(pid_t pid, VnodeId vnode, Launcher::ExitFn on_exit);

  // One status waitpid (or drop_pages) returned for `pid`: does what the
  // stop or exit calls for and resumes the tracee unless it must stay
  // stopped (a group-stop). Statuses of pids it does not trace are ignored,
  // except stops, which are resumed.
  void handle(pid_t pid, int status);

  // Every traced process (thread group leaders only), in pid order.
  std::vector<TracedProcess> processes() const;

  TracerCounters& counters() { return m_counters; }

 private:
  struct Tracee {
    VnodeId vnode = kNoVnode;
    pid_t launched = -1;
    bool thread = false;  // a thread of another tracee, not a process
    pid_t tgid = -1;      // the process it is a thread of (itself for a leader)
    // A traced call between its seccomp stop and its exit stop (-1: none),
    // and the arguments it was entered with.
    long pending_call = -1;
    std::array<uint64_t, 6> pending_args{};
  };
  struct Launched {
    Launcher::ExitFn on_exit;
  };

  // tracer.cpp
  void on_seccomp(pid_t tid);
  void on_syscall_exit(pid_t tid);
  // process_events.cpp
  void on_new_child(pid_t parent, int event);
  void on_ended(pid_t pid, int status);
  // exec_event.cpp: resumes the tracee itself.
  void attach_after_exec(pid_t pid);

  TracerCounters m_counters;
  memory::AddressSpaceEvents* m_memory = nullptr;
  std::unordered_map<pid_t, Launched> m_launched;
  std::unordered_map<pid_t, Tracee> m_tracees;
  ProcessStates m_processes;
};

}  // namespace sk::pcomponent::tracer
