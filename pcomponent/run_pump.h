// The hot path of the pComponent's runs: one thread that moves every run's
// bytes between its pipes and the monitor (see kernel/wire/process_messages.h
// for the protocol and process_manager.h for the runs themselves).
//
// Per run it reads the program's stdout and stderr as they are written and
// sends each chunk (up to 64 KiB) as P2MON_OUTPUT on the connection the run
// came on, keeping at most `window` chunks unanswered: when the window is
// full it stops reading, so the program blocks on its full pipe and a slow
// console throttles it end to end. It writes MON2P_STDIN data into the
// program's stdin without ever blocking (non-blocking pipe, EPOLLOUT) and
// answers each chunk once written. Once the program exited, both outputs
// reached end of file and every chunk was answered, it sends P2MON_EXIT and
// forgets the run.
//
// If a chunk of output fails because the console's end of that stream is
// closed (EPIPE: `splitctl run ... | head -1`), the program's end of it is
// closed too, so its next write gets SIGPIPE as with a native pipe. If it
// fails otherwise (the console left: ENOENT; the monitor is gone:
// ECONNRESET, ETIMEDOUT), or the monitor connection is found closed (a
// tick looks every `tick`), the run is detached, like a terminal that hung
// up: the program gets SIGHUP (`hang_up`), its output is dropped for
// `hang_up_grace`, then its outputs close.
//
// Threads: every public method from any thread; they only queue a command
// and wake the pump thread (epoll over the runs' pipes and an eventfd), so
// transport callbacks and the tracer's exit callbacks may call them. The
// pump never waits on the network: replies come back as commands.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/process_messages.h"
#include "pcomponent/launcher.h"

namespace sk::pcomponent {

class RunPump {
 public:
  struct Options {
    uint32_t window = wire::kRunOutputWindow;
    // A chunk of output waits this long for the console's answer.
    Duration output_timeout = std::chrono::hours(1);
    Duration exit_timeout = std::chrono::seconds(30);
    Duration tick = std::chrono::milliseconds(250);
    Duration hang_up_grace = std::chrono::seconds(1);
  };

  // One run as the pump sees it. The process manager fills the first
  // fields and hands it over with add(); from then on the pump owns the
  // fds (non-blocking, close-on-exec; -1 for none) and closes them.
  struct Run {
    uint64_t id = 0;
    VnodeId vnode = kNoVnode;
    pid_t pid = -1;
    std::shared_ptr<fabric::Connection> monitor;
    int out = -1;
    int err = -1;
    int in = -1;

    Run() = default;
    Run(const Run&) = delete;
    Run& operator=(const Run&) = delete;
    ~Run();  // closes the fds still open

   private:
    friend class RunPump;
    struct Input {
      wire::Tail data;
      size_t written = 0;  // data's bytes written so far
      bool eof = false;
      std::shared_ptr<rpc::ReplyTo<wire::Opcode::MON2P_STDIN>> reply;
    };
    bool added = false;
    bool out_watched = false;
    bool err_watched = false;
    bool in_watched = false;
    uint32_t in_flight = 0;
    bool detached = false;
    std::optional<Clock::time_point> close_at;  // detached: when the outputs close
    std::optional<ExitStatus> exit;
    std::deque<Input> input;
  };

  struct Counters {
    std::atomic<uint64_t> output_chunks{0};
    std::atomic<uint64_t> output_bytes{0};
    std::atomic<uint64_t> dropped_bytes{0};  // read after the run was detached
    std::atomic<uint64_t> input_bytes{0};
    std::atomic<uint64_t> detached{0};
  };

  // hang_up(run, signo): signal a detached run's program. finished(run):
  // the run's exit was reported (or it was abandoned); it is forgotten.
  RunPump(Options options, std::function<void(const Run&, int)> hang_up,
          std::function<void(uint64_t)> finished);
  ~RunPump();
  RunPump(const RunPump&) = delete;
  RunPump& operator=(const RunPump&) = delete;

  Result<void> start();
  // Joins the thread and closes every fd; runs still there are abandoned
  // (no exit is reported; stdin requests are answered EIO). Idempotent.
  void stop();

  // A started run: watch its pipes. `started` runs on the pump thread
  // first (it answers MON2P_RUN), so that the answer goes out before any
  // of the run's output, and no stdin can come for a run not yet here.
  void add(std::shared_ptr<Run> run, std::function<void()> started);
  // Its program ended (the launcher's exit callback; may come before add()).
  void exited(std::shared_ptr<Run> run, ExitStatus status);
  // MON2P_STDIN's data: written, then answered.
  void input(uint64_t run, wire::Tail data, bool eof,
             rpc::ReplyTo<wire::Opcode::MON2P_STDIN> reply);

  const Counters& counters() const { return m_counters; }

 private:
  using Command = std::function<void()>;
  enum class Watch { kOut, kErr, kIn };

  void post(Command command);
  void loop();
  void on_ready(int fd, uint32_t events);
  void read_output(Run& run, Watch which);
  void output_answered(const std::shared_ptr<Run>& run, Watch which, Result<void> answer);
  void write_input(Run& run);
  void close_fd(Run& run, Watch which);
  void update_watches(const std::shared_ptr<Run>& run);
  void watch(const std::shared_ptr<Run>& run, Watch which, bool on);
  void detach(Run& run);
  void maybe_finish(const std::shared_ptr<Run>& run);
  void tick();
  void fail_input(Run& run, const Error& error);

  const Options m_options;
  std::function<void(const Run&, int)> m_hang_up;
  std::function<void(uint64_t)> m_finished;
  Counters m_counters;

  int m_epoll = -1;
  int m_wake = -1;
  std::thread m_thread;

  std::mutex m_mutex;  // guards m_commands, m_stopping
  std::deque<Command> m_commands;
  bool m_stopping = false;

  // Pump thread only.
  std::map<uint64_t, std::shared_ptr<Run>> m_runs;
  std::unordered_map<int, std::pair<std::shared_ptr<Run>, Watch>> m_watched;
};

}  // namespace sk::pcomponent
