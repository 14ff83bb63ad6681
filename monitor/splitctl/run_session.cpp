// `splitctl run`'s client side: one RunSession per run (see client.h and
// kernel/wire/process_messages.h for the protocol).
//
// Threads of a run:
//   caller     sends CTL2MON_RUN, then waits in poll() on the session's
//              event fd and (when forwarding) a signalfd: forwards signals
//              as CTL2MON_SIGNAL, and returns when the run ends;
//   writer     writes the output chunks to stdout/stderr in the order they
//              came, and only then answers their MON2CTL_OUTPUT (the
//              monitor answers the pComponent then: a slow terminal slows
//              the program, and nothing grows); takes the exit last;
//   stdin      reads stdin as it comes and sends each chunk as
//              CTL2MON_STDIN, the next one after the previous was answered
//              (written into the program's stdin); sends the end of file;
//   transport  (the fabric's) only queues what arrives and wakes the others.
// Lock order: Session::mutex only.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <type_traits>

#include "kernel/log.h"
#include "kernel/unique_fd.h"
#include "kernel/wire/codec.h"
#include "monitor/splitctl/client.h"

namespace sk::console {

static const Logger log("splitctl");

// The pComponent may have to start the vNode's init (up to 45 s on the
// monitor's side).
static constexpr Duration kRunStartTimeout = std::chrono::seconds(60);
// A chunk of stdin waits until the program reads it.
static constexpr Duration kStdinTimeout = std::chrono::hours(1);
static constexpr Duration kSignalTimeout = std::chrono::seconds(5);
// A second SIGINT this soon after the first kills the program.
static constexpr auto kDoubleInterrupt = std::chrono::seconds(1);

sigset_t run_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, signo);
  return set;
}

void block_run_signals() {
  // A shell starts background jobs with SIGINT and SIGQUIT ignored, and an
  // ignored signal never reaches the signalfd: whoever sends one to
  // splitctl means the program.
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(signo, SIG_DFL);
  sigset_t set = run_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

namespace {

void notify(int eventfd) {
  uint64_t one = 1;
  (void)!::write(eventfd, &one, sizeof one);
}

// Writes all of `data`, waiting when the fd is non-blocking and full.
Result<void> write_all(int fd, wire::ByteView data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      pollfd wait{fd, POLLOUT, 0};
      ::poll(&wait, 1, -1);
      continue;
    }
    return Error::from_errno("write");
  }
  return {};
}

}  // namespace

class FabricMonitorClient::RunSession {
 public:
  using OutputReply = rpc::ReplyTo<wire::Opcode::MON2CTL_OUTPUT>;

  RunSession(RunStdio stdio, std::string monitor)
      : m_stdio(stdio), m_monitor(std::move(monitor)) {}

  ~RunSession() { stop(); }

  Result<void> open() {
    m_event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    m_stop.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!m_event || !m_stop) return Error::from_errno("eventfd");
    if (m_stdio.forward_signals) {
      sigset_t set = run_signals();
      m_signals.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
      if (!m_signals) return Error::from_errno("signalfd");
    }
    m_writer = std::thread([this] { write_loop(); });
    return {};
  }

  // Stops and joins the threads; what is still queued is dropped (its
  // requests are answered EIO when their Responders go).
  void stop() {
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      m_stopping = true;
    }
    m_wake.notify_all();
    if (m_stop) notify(m_stop.get());
    if (m_writer.joinable()) m_writer.join();
    if (m_stdin.joinable()) m_stdin.join();
  }

  // ---- transport thread ----

  void on_started(Result<rpc::Message> reply) {
    if (!reply && reply.error().code() == ETIMEDOUT) {
      // The transport's timeout, not the monitor's word.
      reply = make_error(ETIMEDOUT, "the monitor at " + m_monitor + " did not answer in " +
                                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                           kRunStartTimeout)
                                                           .count()) +
                                        " s");
    }
    auto checked = rpc::check_reply(std::move(reply));
    auto started = checked ? wire::decode<wire::Ctl2pRunReply>(checked->payload)
                           : Result<wire::Ctl2pRunReply>(std::move(checked).error());
    {
      std::lock_guard lock(m_mutex);
      if (started) m_run = started->run;
      m_start.emplace(std::move(started));
    }
    notify(m_event.get());
  }

  void on_output(wire::RunOutputBody output, OutputReply reply) {
    {
      std::lock_guard lock(m_mutex);
      // The run's id is known before its output (the monitor answers the
      // start first), but a stray message of an earlier run is refused.
      if (m_run != 0 && output.head.run != m_run) {
        reply.fail(make_error(ENOENT, "no such run here"));
        return;
      }
      Item item;
      item.kind = Item::kOutput;
      item.stream = output.head.stream;
      item.data = std::move(output.tail);
      item.reply = std::make_shared<OutputReply>(std::move(reply));
      m_items.push_back(std::move(item));
    }
    m_wake.notify_all();
  }

  void on_exit(const wire::RunExitBody& exit, rpc::ReplyTo<wire::Opcode::MON2CTL_EXIT> reply) {
    reply.reply(wire::Empty{});
    {
      std::lock_guard lock(m_mutex);
      if (m_run != 0 && exit.head.run != m_run) return;
      Item item;
      item.kind = Item::kExit;
      item.exit = exit.head;
      item.text = std::string(exit.tail.text());
      m_items.push_back(std::move(item));
    }
    m_wake.notify_all();
  }

  void on_closed() {
    {
      std::lock_guard lock(m_mutex);
      Item item;
      item.kind = Item::kLost;
      m_items.push_back(std::move(item));
    }
    m_wake.notify_all();
  }

  // ---- the caller's thread ----

  Result<RunOutcome> wait(const std::shared_ptr<fabric::Connection>& connection) {
    bool started = false;
    std::vector<int> early_signals;  // came before the program started
    std::optional<Clock::time_point> last_interrupt;
    for (;;) {
      std::array<pollfd, 2> fds{pollfd{m_event.get(), POLLIN, 0},
                                pollfd{m_signals.get(), POLLIN, 0}};
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) {
        return Error::from_errno("poll");
      }
      if (m_signals) {
        signalfd_siginfo info;
        while (::read(m_signals.get(), &info, sizeof info) == sizeof info) {
          int signo = static_cast<int>(info.ssi_signo);
          if (!started) {
            // Twice before it even started: the user gives up. The monitor
            // hangs the program up when our connection closes.
            if (!early_signals.empty()) return RunOutcome{128 + signo, {}, {}};
            early_signals.push_back(signo);
            continue;
          }
          if (signo == SIGINT) {
            auto now = Clock::now();
            if (last_interrupt && now - *last_interrupt < kDoubleInterrupt) signo = SIGKILL;
            last_interrupt = now;
          }
          send_signal(*connection, signo);
        }
      }
      uint64_t count;
      (void)!::read(m_event.get(), &count, sizeof count);

      std::optional<RunOutcome> outcome;
      {
        std::lock_guard lock(m_mutex);
        if (!started && m_start) {
          if (!*m_start) {
            const Error& error = m_start->error();
            int code = error.code();
            if (code == ECONNRESET || code == ENOTCONN || code == EPIPE) {
              return RunOutcome{255, "lost the connection to the monitor at " + m_monitor, {}};
            }
            return error;
          }
          started = true;
          m_started = m_start->value();
        }
        outcome = m_outcome;
      }
      if (outcome) {
        outcome->started = m_started;
        return *outcome;
      }
      if (started && !m_stdin.joinable()) {
        if (m_stdio.in >= 0) m_stdin = std::thread([this, connection] { stdin_loop(connection); });
        for (int signo : early_signals) send_signal(*connection, signo);
        early_signals.clear();
      }
    }
  }

 private:
  struct Item {
    enum Kind { kOutput, kExit, kLost } kind = kOutput;
    uint8_t stream = 0;
    wire::Tail data;
    std::shared_ptr<OutputReply> reply;
    wire::P2ctlRunExit exit{};
    std::string text;
  };

  void send_signal(fabric::Connection& connection, int signo) {
    wire::Ctl2pRunSignal message{};
    {
      std::lock_guard lock(m_mutex);
      message.run = m_run;
    }
    message.signo = signo;
    log.debug("forwarding signal {} to run {}", signo, message.run);
    rpc::call_async<wire::Opcode::CTL2MON_SIGNAL>(
        connection, kNoVnode, message, kSignalTimeout, [signo](Result<wire::Empty> reply) {
          if (!reply && reply.error().code() != ENOENT) {
            log.warn("could not forward signal {}: {}", signo, reply.error().message());
          }
        });
  }

  void write_loop() {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(m_mutex);
        m_wake.wait(lock, [&] { return m_stopping || !m_items.empty(); });
        if (m_stopping) return;
        item = std::move(m_items.front());
        m_items.pop_front();
      }
      switch (item.kind) {
        case Item::kOutput: {
          int fd = item.stream == static_cast<uint8_t>(wire::RunStream::kStderr) ? m_stdio.err
                                                                                   : m_stdio.out;
          auto written = write_all(fd, item.data.view());
          if (written) {
            item.reply->reply(wire::Empty{});
          } else {
            // EPIPE: our reader went away (`splitctl run ... | head`); the
            // pComponent then sends the program SIGPIPE.
            item.reply->fail(make_error(written.error().code(),
                                        "the console's output: " + written.error().text()));
          }
          break;
        }
        case Item::kExit:
        case Item::kLost: {
          RunOutcome outcome;
          if (item.kind == Item::kLost) {
            outcome = RunOutcome{255, "lost the connection to the monitor at " + m_monitor, {}};
          } else if ((item.exit.flags & wire::kExitLost) != 0) {
            outcome = RunOutcome{255, item.text.empty() ? "the run was lost" : item.text, {}};
          } else {
            outcome = RunOutcome{item.exit.code, item.text, {}};
          }
          {
            std::lock_guard lock(m_mutex);
            if (!m_outcome) m_outcome = std::move(outcome);
          }
          notify(m_event.get());
          return;
        }
      }
    }
  }

  void stdin_loop(std::shared_ptr<fabric::Connection> connection) {
    std::vector<std::byte> buffer(wire::kMaxRunChunk);
    uint64_t run;
    {
      std::lock_guard lock(m_mutex);
      run = m_run;
    }
    for (;;) {
      std::array<pollfd, 2> fds{pollfd{m_stdio.in, POLLIN, 0}, pollfd{m_stop.get(), POLLIN, 0}};
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      ssize_t n = ::read(m_stdio.in, buffer.data(), buffer.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      // A read error ends the input as end of file does.
      size_t length = n > 0 ? static_cast<size_t>(n) : 0;
      wire::Ctl2pRunInput input{};
      input.run = run;
      input.flags = length == 0 ? wire::kInputEof : 0;
      // Copied once, into room behind the head, so that encoding moves it.
      wire::Tail data = wire::Tail::with_room(sizeof(input), length);
      std::memcpy(data.span().data(), buffer.data(), length);
      auto sent = send_and_wait<wire::Opcode::CTL2MON_STDIN>(
          *connection, wire::RunInputBody::of(input, std::move(data)), kStdinTimeout);
      if (!sent) {
        // EPIPE: the program no longer reads its stdin; anything else: the
        // run is ending. Either way there is nobody to send more to.
        log.debug("stdin: {}", sent.error().text());
        return;
      }
      if (length == 0) return;
    }
  }

  // Sends a request (of an opcode with an empty reply) and waits for its
  // answer, or until stop().
  template <wire::Opcode Op>
  Result<void> send_and_wait(fabric::Connection& connection, wire::RequestOf<Op> request,
                             Duration timeout) {
    static_assert(std::is_same_v<wire::ReplyOf<Op>, wire::Empty>);
    auto answer = std::make_shared<std::optional<Result<wire::Empty>>>();
    rpc::call_async<Op>(connection, kNoVnode, std::move(request), timeout,
                        [this, answer](Result<wire::Empty> reply) {
                          {
                            std::lock_guard lock(m_mutex);
                            answer->emplace(std::move(reply));
                          }
                          m_wake.notify_all();
                        });
    std::unique_lock lock(m_mutex);
    m_wake.wait(lock, [&] { return m_stopping || answer->has_value(); });
    if (!answer->has_value()) return make_error(ECANCELED, "stopping");
    if (!**answer) return (*answer)->error();
    return {};
  }

  const RunStdio m_stdio;
  const std::string m_monitor;
  UniqueFd m_event;    // wakes the caller
  UniqueFd m_stop;     // wakes the stdin thread for good
  UniqueFd m_signals;  // signalfd, when forwarding

  std::mutex m_mutex;  // guards everything below
  std::condition_variable m_wake;
  bool m_stopping = false;
  uint64_t m_run = 0;
  std::optional<Result<wire::Ctl2pRunReply>> m_start;
  wire::Ctl2pRunReply m_started{};  // the caller's thread only
  std::deque<Item> m_items;
  std::optional<RunOutcome> m_outcome;

  std::thread m_writer;
  std::thread m_stdin;  // the caller's thread starts it
};

std::shared_ptr<FabricMonitorClient::RunSession> FabricMonitorClient::session() {
  std::lock_guard lock(m_session_mutex);
  return m_session;
}

void FabricMonitorClient::register_run_handlers() {
  m_dispatcher.on_deferred<wire::Opcode::MON2CTL_OUTPUT>(
      [this](wire::RunOutputBody output, rpc::Message, RunSession::OutputReply reply) {
        if (auto current = session()) {
          current->on_output(std::move(output), std::move(reply));
        } else {
          reply.fail(make_error(ENOENT, "no run in progress"));
        }
      });
  m_dispatcher.on_deferred<wire::Opcode::MON2CTL_EXIT>(
      [this](wire::RunExitBody exit, rpc::Message, rpc::ReplyTo<wire::Opcode::MON2CTL_EXIT> reply) {
        if (auto current = session()) {
          current->on_exit(exit, std::move(reply));
        } else {
          reply.fail(make_error(ENOENT, "no run in progress"));
        }
      });
}

Result<RunOutcome> FabricMonitorClient::run(const RunSpec& spec, const RunStdio& stdio) {
  TRY(wire::validate_vnode_name(spec.vnode));
  wire::Ctl2pRunRequest request{};
  request.vnode_name.set(spec.vnode);
  request.flags = stdio.in < 0 ? wire::kRunNoStdin : 0;
  auto payload = TRY(wire::encode_run(request, spec.cwd, spec.argv, spec.env));

  TRY(connection());
  std::shared_ptr<fabric::Connection> connection = m_connection;
  auto current = std::make_shared<RunSession>(stdio, m_monitor.to_string());
  TRY(current->open());
  {
    std::lock_guard lock(m_session_mutex);
    m_session = current;
  }
  std::weak_ptr<RunSession> weak = current;
  connection->set_close_handler([weak] {
    if (auto alive = weak.lock()) alive->on_closed();
  });
  connection->call_async(wire::Opcode::CTL2MON_RUN, kNoVnode, std::move(payload),
                         kRunStartTimeout, [current](Result<rpc::Message> reply) {
                           current->on_started(std::move(reply));
                         });
  auto outcome = current->wait(connection);
  current->stop();
  {
    std::lock_guard lock(m_session_mutex);
    m_session.reset();
  }
  return outcome;
}

}  // namespace sk::console
