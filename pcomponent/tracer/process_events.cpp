// The tracer's process lifecycle (see tracer.h): a tracee's fork, vfork or
// clone makes a new tracee of the same vNode (a thread or a process), and a
// tracee's end removes it, tells the memory manager when a whole process is
// gone and runs the launched program's exit callback.
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "pcomponent/tracer/tracer.h"

namespace sk::pcomponent::tracer {

namespace {

// A thread's Tgid differs from its own id.
bool is_thread(pid_t tid) {
  std::ifstream status("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Tgid:", 0) == 0) return std::stol(line.substr(5)) != tid;
  }
  return false;
}

ExitStatus exit_status_of(int status) {
  ExitStatus exit;
  if (WIFEXITED(status)) {
    exit.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
    exit.code = 128 + exit.signal;
    exit.core_dumped = WCOREDUMP(status);
  }
  return exit;
}

}  // namespace

// At the parent's PTRACE_EVENT_FORK/VFORK/CLONE stop (the caller resumes it).
void Tracer::on_new_child(pid_t parent_pid, int event) {
  unsigned long child = 0;
  ::ptrace(PTRACE_GETEVENTMSG, parent_pid, nullptr, &child);
  // A clone that shares the address space and thread group is a thread;
  // anything else is a new process of the same vNode.
  if (auto parent = m_tracees.find(parent_pid); parent != m_tracees.end() && child != 0) {
    bool thread = event == PTRACE_EVENT_CLONE && is_thread(static_cast<pid_t>(child));
    pid_t child_pid = static_cast<pid_t>(child);
    m_tracees[child_pid] = Tracee{parent->second.vnode, parent->second.launched, thread,
                                  thread ? parent->second.tgid : child_pid};
    if (!thread) {
      m_processes[child_pid] = m_processes[parent->second.tgid];
      if (m_memory) m_memory->on_fork(parent->second.tgid, child_pid);
    }
  }
  m_counters.update(
      [&](TracerStats& stats) { ++(event == PTRACE_EVENT_CLONE ? stats.threads : stats.forks); });
}

void Tracer::on_ended(pid_t pid, int status) {
  if (auto tracee = m_tracees.find(pid); tracee != m_tracees.end()) {
    bool process = !tracee->second.thread;
    m_tracees.erase(tracee);
    if (process) {
      m_processes.erase(pid);
      if (m_memory) m_memory->on_exit(pid);
    }
  }
  if (auto it = m_launched.find(pid); it != m_launched.end()) {
    auto on_exit = std::move(it->second.on_exit);
    m_launched.erase(it);
    if (on_exit) on_exit(exit_status_of(status));
  }
}

std::vector<TracedProcess> Tracer::processes() const {
  std::vector<TracedProcess> list;
  for (const auto& [pid, tracee] : m_tracees) {
    if (!tracee.thread) list.push_back(TracedProcess{pid, tracee.vnode, tracee.launched});
  }
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  return list;
}

}  // namespace sk::pcomponent::tracer
