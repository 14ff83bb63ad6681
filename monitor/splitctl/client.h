// How splitctl talks to the monitor: a small interface (so the console's
// commands can be tested against a fake) and its implementation over the
// fabric, which speaks CTL2MON_* (see monitor/monitor_server.h).
//
// Errors come back ready for the user: Error::message() is a complete
// sentence such as "cannot reach monitor at 127.0.0.1:7070: Connection
// refused" or the monitor's own text ("vnode 'x' already exists"); the
// console prints message(), never text().
//
// Threads: one caller at a time (the console's thread). run() starts
// threads of its own for the run's stdin and output and joins them before
// it returns.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/result.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/messages.h"
#include "kernel/wire/process_messages.h"

namespace sk::console {

// What `vnode create` asks for beyond the name.
struct VnodeOptions {
  uint64_t cache = 0;   // bytes; 0: the pComponent's ExCache budget
  uint64_t memory = 0;  // bytes; 0: the monitor's --default-memory
  std::string image;    // empty: the default image
  bool empty = false;   // an empty root instead of an image
};

// What `run` starts: the program's words, its whole environment and its
// working directory inside the vNode.
struct RunSpec {
  std::string vnode;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/";
};

// The console's end of a run: where the program's stdin comes from and its
// output goes.
struct RunStdio {
  int in = STDIN_FILENO;  // -1: none (the program's stdin is empty)
  int out = STDOUT_FILENO;
  int err = STDERR_FILENO;
  // Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT to the program (a second
  // SIGINT within a second sends SIGKILL). The caller must have blocked
  // them in every thread (block_run_signals()) before the client made its
  // first connection, so that they queue for the run instead of killing
  // splitctl.
  bool forward_signals = false;
};

// The signals a run forwards; block_run_signals() blocks them in the
// calling thread (and so in every thread it starts afterwards), after
// undoing an inherited SIG_IGN.
sigset_t run_signals();
void block_run_signals();

// How a run ended, when it ran at all.
struct RunOutcome {
  int status = 0;     // what splitctl exits with: the program's $?, or 255
  // Not empty: why the run was lost (status 255), or why the program
  // ended as it did, when its pComponent knows (its memory was lost).
  std::string note;
  wire::Ctl2pRunReply started{};
};

struct ProcessListing {
  std::vector<wire::ProcessRecord> processes;
  uint32_t unanswered = 0;  // pComponents that did not answer
};

struct StatsListing {
  std::vector<wire::StatRecord> counters;  // the monitor's first, then by node
  uint32_t unanswered = 0;
};

class MonitorClient {
 public:
  virtual ~MonitorClient() = default;

  // Runs a program on a vNode and streams its stdio until it ends. An
  // Error when it could not start (no such vNode, no pComponent, the
  // monitor unreachable); otherwise how it ended.
  virtual Result<RunOutcome> run(const RunSpec& spec, const RunStdio& stdio) = 0;
  // The processes of one vNode (empty name: of all).
  virtual Result<ProcessListing> ps(std::string_view vnode) = 0;
  virtual Result<StatsListing> stats() = 0;

  virtual Result<std::vector<wire::NodeRecord>> nodes() = 0;
  virtual Result<wire::VnodeRecord> vnode_create(std::string_view name,
                                                 const VnodeOptions& options) = 0;
  virtual Result<std::vector<wire::VnodeRecord>> vnode_list() = 0;
  virtual Result<void> vnode_destroy(std::string_view name) = 0;
};

// The real client. Connects on first use and again after the connection
// drops, so an interactive console survives a monitor restart.
class FabricMonitorClient final : public MonitorClient {
 public:
  FabricMonitorClient(Address monitor, std::string fabric = "tcp");
  ~FabricMonitorClient() override;

  Result<std::vector<wire::NodeRecord>> nodes() override;
  Result<wire::VnodeRecord> vnode_create(std::string_view name,
                                         const VnodeOptions& options) override;
  Result<std::vector<wire::VnodeRecord>> vnode_list() override;
  Result<void> vnode_destroy(std::string_view name) override;
  Result<RunOutcome> run(const RunSpec& spec, const RunStdio& stdio) override;
  Result<ProcessListing> ps(std::string_view vnode) override;
  Result<StatsListing> stats() override;

 private:
  class RunSession;

  void register_run_handlers();
  std::shared_ptr<RunSession> session();
  Result<fabric::Connection*> connection();
  // Sends Op's request to the monitor and decodes its reply; the
  // transport's failures, the monitor's errors and a malformed reply each
  // become an Error that says which it was.
  template <wire::Opcode Op>
  Result<wire::ReplyOf<Op>> call(wire::RequestOf<Op> request, Duration timeout);
  Error transport_error(const Error& error, Duration timeout) const;

  Address m_monitor;
  std::string m_fabric;
  // Serves the monitor's MON2CTL_ requests (a run's output and exit) on the
  // connection; they go to the current run.
  rpc::ControlDispatcher m_dispatcher{"splitctl"};
  std::mutex m_session_mutex;  // guards m_session
  std::shared_ptr<RunSession> m_session;
  std::unique_ptr<fabric::Transport> m_transport;
  std::shared_ptr<fabric::Connection> m_connection;
};

}  // namespace sk::console
