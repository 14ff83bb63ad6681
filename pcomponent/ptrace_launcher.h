// The ptrace launcher: the Launcher (launcher.h) that runs vNode programs
// under ptrace and a seccomp filter built from abi/syscall_list.h.
//
// One tracer thread does everything that touches ptrace or waits for
// children, because Linux binds a tracee to the tracing *thread*. It sleeps in
// poll() on an eventfd (commands from other threads) and a signalfd for
// SIGCHLD, with a short timeout as a safety net for a SIGCHLD consumed by a
// thread that did not block it; each wake-up reaps every state change with
// waitpid(WNOHANG | __WALL | __WNOTHREAD): __WNOTHREAD because without it a
// wait reaps the children and tracees of every thread of the process, so
// another launcher's tracer (or any thread that waits) would steal ours.
//
// Parts: the vNode inits that fork the programs (tracer/vnode_inits.h), the
// tracer that handles every stop of them (tracer/tracer.h), and here the
// thread that runs both and the Launcher methods that hand it work.
//
// Lock order: m_commands_mutex and the tracer's counters are leaves (never
// nested).
#pragma once

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "kernel/unique_fd.h"
#include "pcomponent/launcher.h"
#include "pcomponent/tracer/tracer.h"
#include "pcomponent/tracer/vnode_inits.h"

namespace sk::pcomponent {

class PtraceLauncher final : public Launcher {
 public:
  // `self_exe` is the pcomponent binary, re-run with --vnode-init.
  explicit PtraceLauncher(std::filesystem::path self_exe);
  // Kills every vNode init; the tracees die with the tracer thread
  // (PTRACE_O_EXITKILL).
  ~PtraceLauncher() override;

  // Starts the tracer thread. Call once, before anything else.
  Result<void> start();

  Result<pid_t> launch(const LaunchSpec& spec, ExitFn on_exit) override;
  Result<void> signal(pid_t pid, int signo) override;
  Result<pid_t> vnode_pid(pid_t pid) override;
  void drop_vnode(VnodeId vnode) override;
  std::vector<TracedProcess> processes() override;
  TracerStats stats() override;
  void attach_memory(memory::AddressSpaceEvents* events) override;
  memory::PageDropper& page_dropper() override { return m_dropper; }

 private:
  // The PageDropper the memory manager calls; the work runs on the tracer
  // thread, which alone may ptrace.
  class Dropper final : public memory::PageDropper {
   public:
    explicit Dropper(PtraceLauncher& launcher) : m_launcher(launcher) {}
    Result<void> drop(pid_t pid, std::span<const memory::Region> ranges, const CopyOut& copy_out,
                      const std::function<void()>& dropped) override;

   private:
    PtraceLauncher& m_launcher;
  };

  // Runs fn on the tracer thread and waits for its result.
  template <typename T>
  Result<T> on_tracer(std::function<Result<T>()> fn);
  void wake();

  // The tracer thread.
  void tracer_loop();
  void reap();
  // One waitpid status: an init's end, or a tracee's stop or end.
  void handle(pid_t pid, int status);
  Result<pid_t> do_launch(const LaunchSpec& spec, ExitFn on_exit);

  std::atomic<bool> m_stopping{false};
  UniqueFd m_wake;
  std::thread m_thread;

  std::mutex m_commands_mutex;
  std::deque<std::function<void()>> m_commands;

  // Tracer thread only (but see Tracer::attach_memory and counters).
  tracer::VnodeInits m_inits;
  tracer::Tracer m_tracer;
  Dropper m_dropper{*this};
};

}  // namespace sk::pcomponent
