// The component daemons' shared start-up and shut-down (see daemon.h).
//
// Signals: parse() blocks SIGINT and SIGTERM; run() takes them with
// sigwait() on a thread of its own, which asks the member to stop (that also
// interrupts a join still in progress) and wakes main. A second signal while
// shutting down exits at once, for a daemon stuck on a dead peer.
//
// Lock order: SignalThread::m_mutex only (MembershipClient has its own, never taken
// while holding this one).
#include "kernel/daemon.h"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "kernel/fabric/transport.h"
#include "kernel/log.h"

namespace sk {

static const Logger log("daemon");

// The monitor a component joins unless told otherwise.
static constexpr const char* kDefaultMonitor = "127.0.0.1:7070";
// How long a starting daemon keeps trying to reach the monitor before it
// gives up: long enough for a cluster whose monitor starts a moment later.
static constexpr Duration kJoinTimeout = std::chrono::seconds(30);

namespace {

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Waits for SIGINT/SIGTERM; on the first one runs `on_signal` (on this
// thread) and wakes wait().
class SignalThread {
 public:
  explicit SignalThread(std::function<void()> on_signal) : m_on_signal(std::move(on_signal)) {
    m_thread = std::thread([this] { loop(); });
  }
  ~SignalThread() {
    m_done.store(true);
    // The thread sleeps in sigwait(); a signal aimed at it alone ends that.
    pthread_kill(m_thread.native_handle(), SIGTERM);
    m_thread.join();
  }

  void wait() {
    std::unique_lock lock(m_mutex);
    m_wake.wait(lock, [&] { return m_signal != 0; });
  }

 private:
  void loop() {
    sigset_t set = shutdown_signals();
    for (;;) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      if (m_done.load()) return;
      bool first;
      {
        std::lock_guard lock(m_mutex);
        first = m_signal == 0;
        if (first) m_signal = signal;
      }
      if (!first) {
        log.warn("second SIG{}: exiting without cleaning up", sigabbrev_np(signal));
        std::_Exit(1);
      }
      log.info("got SIG{}: leaving the cluster", sigabbrev_np(signal));
      m_wake.notify_all();
      m_on_signal();
    }
  }

  std::function<void()> m_on_signal;
  std::atomic<bool> m_done{false};
  std::mutex m_mutex;  // guards m_signal
  std::condition_variable m_wake;
  int m_signal = 0;
  std::thread m_thread;
};

}  // namespace

Daemon::Daemon(std::string name, NodeKind kind, std::string description)
    : m_name(std::move(name)), m_kind(kind), m_app(m_name + ": " + description, m_name) {
  m_flags.monitor = env_or("SPLIT_MONITOR", kDefaultMonitor);
  m_app
      .add_option("--monitor", m_flags.monitor,
                  "the monitor to join (default: $SPLIT_MONITOR, else " +
                      std::string(kDefaultMonitor) + ")")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  m_app
      .add_option("--listen", m_flags.listen,
                  "address to serve peers on; port 0 picks a free one, which is advertised")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  m_app
      .add_option("--fabric", m_flags.fabric,
                  "transport: tcp, or verbs (RDMA: the port named by $SK_VERBS_DEVICE, "
                  "else the first active one)")
      ->type_name("KIND")
      ->capture_default_str();
  m_app.add_option("--log-level", m_flags.log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL")
      ->capture_default_str();
}

int Daemon::bad_flag(std::string_view flag, const Error& error) const {
  std::fprintf(stderr, "%s: %.*s: %s\n", m_name.c_str(), static_cast<int>(flag.size()), flag.data(),
               error.message().c_str());
  return 2;
}

std::optional<int> Daemon::parse(int argc, char** argv) {
  try {
    m_app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) return m_app.exit(error);  // --help
    std::fprintf(stderr, "%s: %s (see --help)\n", m_name.c_str(), error.what());
    return 2;
  }
  auto monitor = parse_address(m_flags.monitor);
  if (!monitor) return bad_flag("--monitor", monitor.error());
  m_monitor = *monitor;
  auto listen = parse_address(m_flags.listen);
  if (!listen) return bad_flag("--listen", listen.error());
  m_listen = *listen;
  if (!init_logging(m_name, m_flags.log_level)) {
    return bad_flag("--log-level", make_error(EINVAL, "unknown level '" + m_flags.log_level +
                                                          "' (expected trace, debug, info, "
                                                          "warn, error or off)"));
  }
  // Before any thread exists, so that all of them inherit the mask.
  sigset_t set = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A peer that vanishes mid-write must be an error, not our death.
  ::signal(SIGPIPE, SIG_IGN);
  // Made here, not in run(), so that an unusable fabric is a flag error.
  auto transport = fabric::make_transport(m_flags.fabric);
  if (!transport) return bad_flag("--fabric", transport.error());
  m_transport = std::move(transport).value();
  return std::nullopt;
}

int Daemon::run(Service service) {
  fabric::Transport& transport = *m_transport;
  auto bound = transport.listen(m_listen, service.dispatcher.handler());
  if (!bound) {
    log.error("listen on {}: {}", m_listen.to_string(), bound.error().text());
    return 1;
  }
  log.info("{} listening on {} (fabric {})", m_name, bound->to_string(), m_flags.fabric);
  if (bound->host == "0.0.0.0" || bound->host == "::") {
    log.warn(
        "advertising the wildcard address {}: peers on other hosts cannot use it; "
        "listen on a specific address instead",
        bound->to_string());
  }

  MembershipClient::Options options;
  options.kind = m_kind;
  options.monitor = m_monitor;
  options.advertised = *bound;
  MembershipClient member(transport, options, service.dispatcher, service.usage);
  {
    std::lock_guard lock(m_member_mutex);
    m_member = &member;
  }

  // Lives until the end so that a second signal can still cut a stuck
  // shutdown short; destroyed before the member it points at.
  SignalThread signals([&member] { member.stop(); });
  int exit_code = 0;
  auto started = member.start(kJoinTimeout);
  if (started) {
    signals.wait();
  } else if (started.error().code() != ECANCELED) {
    log.error("could not join the monitor at {}: {}", m_monitor.to_string(),
              started.error().text());
    exit_code = 1;
  }
  member.stop();
  if (service.stop) service.stop();
  {
    std::lock_guard lock(m_member_mutex);
    m_member = nullptr;
  }
  transport.stop();
  log.info("{} stopped", m_name);
  return exit_code;
}

NodeId Daemon::node_id() const {
  std::lock_guard lock(m_member_mutex);
  return m_member ? m_member->node_id() : kNoNode;
}

}  // namespace sk
