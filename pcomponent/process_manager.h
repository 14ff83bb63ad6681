// The pComponent's process manager: runs programs for the monitor
// (`splitctl run`), lists the vNodes' processes (`ps`) and reports the
// pComponent's counters (`stats`). The protocol is in
// kernel/wire/process_messages.h; the requests it serves:
//
//   MON2P_RUN     Ctl2pRunRequest{run} + strings, header vnode -> Ctl2pRunReply.
//                 The program starts in the vNode (Launcher::launch) with
//                 the vNode's root (Storage::root: ENOENT when this
//                 pComponent was never told about the vNode), the vNode's
//                 name as hostname, and three fresh pipes as stdio. Its
//                 output and exit then go to the monitor as P2MON_OUTPUT
//                 and P2MON_EXIT on the connection the request came on (the
//                 membership connection), through the RunPump.
//   MON2P_STDIN   Ctl2pRunInput + data -> empty once written into its stdin.
//   MON2P_SIGNAL  Ctl2pRunSignal -> empty; the signal goes to the program's
//                 process group (it is a session leader), as a terminal's
//                 would. ENOENT for an unknown run.
//   MON2P_PS      Mon2pPsRequest -> Ctl2monClusterListReply + ProcessRecord[]: every
//                 traced process (Launcher::processes()) of the vNode (or
//                 of all), from /proc: state, runtime, RSS, command line.
//   MON2P_STATS   empty -> Ctl2monClusterListReply + StatRecord[]: groups
//                 "process", "tracer", "syscalls", "refused", "storage",
//                 and "memory" (memory_counters()) with a memory manager.
//
// Wiring in the pComponent (a few lines):
//   ProcessManager processes(*launcher, storage);
//   processes.register_handlers(dispatcher);         // before serving
//   usage.load = processes.running();                // heartbeats
//   processes.drop_vnode(id);                        // before storage.drop(id)
//   processes.attach_memory(&memory);                // before serving
//   processes.attach_stats(fn);                      // before serving
//   memory on_failure -> processes.memory_failed(pid, why)
//   processes.stop();                                // before storage.stop()
//
// Threads: RUN, PS and STATS block (launching waits for the tracer and may
// start a vNode init; /proc reads), so they run on the manager's own
// workers, never on the transport's thread; SIGNAL and STDIN are served at
// once. Output and input move on the RunPump's thread. Lock order: m_mutex
// only (never held while calling the launcher, the storage or the pump).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernel/rpc/rpc.h"
#include "kernel/wire/process_messages.h"
#include "pcomponent/launcher.h"
#include "pcomponent/memory/memory_manager.h"
#include "pcomponent/run_pump.h"
#include "pcomponent/storage.h"

namespace sk::pcomponent {

class ProcessManager {
 public:
  struct Options {
    RunPump::Options pump;
    // Worker threads for launches, ps and stats.
    unsigned workers = 2;
  };

  // `launcher` and `storage` must outlive the manager.
  ProcessManager(Launcher& launcher, Storage& storage, Options options);
  ProcessManager(Launcher& launcher, Storage& storage)
      : ProcessManager(launcher, storage, Options{}) {}
  ~ProcessManager();
  ProcessManager(const ProcessManager&) = delete;
  ProcessManager& operator=(const ProcessManager&) = delete;

  // Serves MON2P_RUN, _STDIN, _SIGNAL, _PS and _STATS on `dispatcher`.
  void register_handlers(rpc::ControlDispatcher& dispatcher);

  // The memory manager whose per-process pages `ps` shows and whose
  // counters `stats` reports. Call before serving; it must outlive the
  // manager's handlers.
  void attach_memory(const memory::MemoryManager* memory) { m_memory = memory; }

  // More records `stats` appends to its own (the pComponent's fabric, see
  // kernel/fabric/fabric_stats.h). Called on a worker thread. Call before
  // serving; what it uses must outlive the manager's handlers.
  using StatSource = std::function<std::vector<wire::StatRecord>()>;
  void attach_stats(StatSource source) { m_extra_stats = std::move(source); }

  // The memory manager killed host process `pid` (its memory was lost or
  // could not be stored): the run it belongs to (found through its
  // parents, while it still lives) reports `why` with its exit. Never
  // blocks; any thread.
  void memory_failed(pid_t pid, const std::string& why);

  // Programs started and not yet reported ended: the load in heartbeats.
  size_t running() const;

  // Kills the vNode's programs (every process of the vNode, through the
  // launcher); their exits are reported as usual. Call before the vNode's
  // root goes away.
  void drop_vnode(VnodeId vnode);

  // Refuses new requests, kills every program, stops the pump (their exits
  // are not reported: the pComponent is leaving). Idempotent.
  void stop();

  // What the handlers serve (also for tests).
  // Starts a run whose output and exit go to `monitor`. Blocks while the
  // program launches; `reply` runs once: with the error, or with the run's
  // pids on the pump's thread before any of its output is sent.
  void start(const wire::Ctl2pRunCommand& command, VnodeId vnode,
             std::shared_ptr<fabric::Connection> monitor,
             std::function<void(Result<wire::Ctl2pRunReply>)> reply);
  Result<void> signal(uint64_t run, int signo);
  std::vector<wire::ProcessRecord> processes(VnodeId vnode);
  std::vector<wire::StatRecord> counters();

 private:
  struct RunInfo {
    VnodeId vnode = kNoVnode;
    pid_t pid = -1;
  };

  // Posts work to the workers; false when stopping.
  bool post(std::function<void()> work);
  void finished(uint64_t run);

  // What the launcher's exit callbacks reach the pump through: they may
  // run after the manager is gone (the launcher outlives it), and then
  // find no pump.
  struct ExitSink {
    std::mutex mutex;
    RunPump* pump = nullptr;  // null once stopped
    std::map<uint64_t, std::string> notes;  // run -> what its exit says
  };

  Launcher& m_launcher;
  Storage& m_storage;
  const memory::MemoryManager* m_memory = nullptr;
  StatSource m_extra_stats;
  RunPump m_pump;
  std::shared_ptr<ExitSink> m_exits = std::make_shared<ExitSink>();

  mutable std::mutex m_mutex;  // guards everything below
  bool m_stopping = false;
  std::map<uint64_t, RunInfo> m_runs;
  uint64_t m_started = 0;
  uint64_t m_failed = 0;
  uint64_t m_ended = 0;
  uint64_t m_signals = 0;

  boost::asio::thread_pool m_workers;
};

}  // namespace sk::pcomponent
