// The run pump (see run_pump.h). Everything below `loop()` runs on the
// pump thread; the public entry points only queue commands.
#include "pcomponent/run_pump.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "kernel/log.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/codec.h"

namespace sk::pcomponent {

static const Logger log("runs");

static constexpr int kMaxEvents = 64;

RunPump::Run::~Run() {
  for (int fd : {out, err, in}) {
    if (fd >= 0) ::close(fd);
  }
}

RunPump::RunPump(Options options, std::function<void(const Run&, int)> hang_up,
                 std::function<void(uint64_t)> finished)
    : m_options(options), m_hang_up(std::move(hang_up)), m_finished(std::move(finished)) {}

RunPump::~RunPump() { stop(); }

Result<void> RunPump::start() {
  m_epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (m_epoll < 0) return Error::from_errno("epoll_create1");
  m_wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m_wake < 0) return Error::from_errno("eventfd");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = m_wake;
  if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, m_wake, &event) != 0) {
    return Error::from_errno("epoll_ctl");
  }
  m_thread = std::thread([this] { loop(); });
  return {};
}

void RunPump::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  if (m_wake >= 0) {
    uint64_t one = 1;
    (void)!::write(m_wake, &one, sizeof one);
  }
  if (m_thread.joinable()) m_thread.join();
  // The thread is gone: what it left is ours to clean up.
  for (auto& [id, run] : m_runs) {
    for (int* fd : {&run->out, &run->err, &run->in}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
    run->input.clear();  // their ReplyTos answer EIO
  }
  m_runs.clear();
  m_watched.clear();
  m_commands.clear();
  if (m_epoll >= 0) ::close(m_epoll);
  if (m_wake >= 0) ::close(m_wake);
  m_epoll = m_wake = -1;
}

void RunPump::post(Command command) {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;  // dropped: what it holds is released here
    m_commands.push_back(std::move(command));
  }
  uint64_t one = 1;
  (void)!::write(m_wake, &one, sizeof one);
}

void RunPump::add(std::shared_ptr<Run> run, std::function<void()> started) {
  post([this, run, started = std::move(started)] {
    if (started) started();
    run->added = true;
    m_runs[run->id] = run;
    update_watches(run);
    maybe_finish(run);
  });
}

void RunPump::exited(std::shared_ptr<Run> run, ExitStatus status) {
  post([this, run, status] {
    run->exit = status;
    if (!run->added) return;  // add() finishes it
    // Its stdin has nobody to read it any more.
    if (run->in >= 0) {
      close_fd(*run, Watch::kIn);
      fail_input(*run, make_error(EPIPE, "the program has ended"));
    }
    maybe_finish(run);
  });
}

void RunPump::input(uint64_t id, wire::Tail data, bool eof,
                    rpc::ReplyTo<wire::Opcode::MON2P_STDIN> reply) {
  auto shared = std::make_shared<rpc::ReplyTo<wire::Opcode::MON2P_STDIN>>(std::move(reply));
  auto bytes = std::make_shared<wire::Tail>(std::move(data));
  post([this, id, bytes, eof, shared] {
    auto it = m_runs.find(id);
    if (it == m_runs.end()) {
      shared->fail(make_error(ENOENT, "no run " + std::to_string(id) + " here"));
      return;
    }
    Run& run = *it->second;
    if (run.in < 0) {
      shared->fail(make_error(EPIPE, "the program no longer reads its stdin"));
      return;
    }
    m_counters.input_bytes += bytes->size();
    run.input.push_back(Run::Input{std::move(*bytes), 0, eof, shared});
    write_input(run);
    update_watches(it->second);
  });
}

void RunPump::loop() {
  // A write into the stdin of a program that closed it must fail with EPIPE
  // here rather than kill the pComponent.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);

  std::array<epoll_event, kMaxEvents> events;
  auto next_tick = Clock::now() + m_options.tick;
  for (;;) {
    // Ticks only while there are runs to look after.
    int timeout = -1;
    if (!m_runs.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int ready = ::epoll_wait(m_epoll, events.data(), kMaxEvents, timeout);
    if (Clock::now() >= next_tick) {
      next_tick = Clock::now() + m_options.tick;
      tick();
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      log.error("epoll_wait: {}", std::strerror(errno));
      return;
    }
    bool commands = false;
    for (int i = 0; i < ready; ++i) {
      if (events[i].data.fd == m_wake) {
        commands = true;
        continue;
      }
      on_ready(events[i].data.fd, events[i].events);
    }
    if (!commands) continue;
    uint64_t count;
    (void)!::read(m_wake, &count, sizeof count);
    std::deque<Command> batch;
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      batch.swap(m_commands);
    }
    for (auto& command : batch) command();
    // A pending SIGPIPE of a failed stdin write is consumed here.
    timespec zero{};
    while (::sigtimedwait(&pipe, nullptr, &zero) > 0) {
    }
  }
}

void RunPump::on_ready(int fd, uint32_t events) {
  auto it = m_watched.find(fd);
  if (it == m_watched.end()) return;
  auto [run, which] = it->second;  // copies: the entry may go below
  if (which == Watch::kIn) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0 && (events & EPOLLOUT) == 0) {
      close_fd(*run, Watch::kIn);
      fail_input(*run, make_error(EPIPE, "the program no longer reads its stdin"));
    } else {
      write_input(*run);
    }
  } else {
    read_output(*run, which);
  }
  update_watches(run);
  maybe_finish(run);
}

void RunPump::read_output(Run& run, Watch which) {
  int fd = which == Watch::kOut ? run.out : run.err;
  if (fd < 0) return;
  std::array<std::byte, wire::kMaxRunChunk> buffer;
  ssize_t n = ::read(fd, buffer.data(), buffer.size());
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close_fd(run, which);  // end of file (or a broken pipe: the same to us)
    return;
  }
  if (run.detached) {
    m_counters.dropped_bytes += static_cast<uint64_t>(n);
    return;
  }
  wire::P2ctlRunOutput head{};
  head.run = run.id;
  head.stream = static_cast<uint8_t>(which == Watch::kOut ? wire::RunStream::kStdout
                                                          : wire::RunStream::kStderr);
  // Copied once, into room behind the head, so that encoding moves it.
  wire::Tail data = wire::Tail::with_room(sizeof(head), static_cast<size_t>(n));
  std::memcpy(data.span().data(), buffer.data(), static_cast<size_t>(n));
  ++run.in_flight;
  ++m_counters.output_chunks;
  m_counters.output_bytes += static_cast<uint64_t>(n);
  std::shared_ptr<Run> shared = m_runs.at(run.id);
  rpc::call_async<wire::Opcode::P2MON_OUTPUT>(
      *run.monitor, run.vnode, wire::RunOutputBody::of(head, std::move(data)),
      m_options.output_timeout, [this, shared, which](Result<wire::Empty> reply) {
        Result<void> answer = reply ? Result<void>() : Result<void>(std::move(reply).error());
        post([this, shared, which, answer = std::move(answer)]() mutable {
          output_answered(shared, which, std::move(answer));
        });
      });
}

void RunPump::output_answered(const std::shared_ptr<Run>& run, Watch which, Result<void> answer) {
  if (run->in_flight > 0) --run->in_flight;
  if (!answer) {
    int code = answer.error().code();
    if (code == EPIPE) {
      // The console's end of this stream is closed (`splitctl run ... |
      // head -1`): so is the program's, as a pipe's would be. Its next
      // write gets SIGPIPE (or EPIPE), exactly as natively.
      int fd = which == Watch::kOut ? run->out : run->err;
      if (fd >= 0) {
        log.debug("run {}: the console closed its {}", run->id,
                  which == Watch::kOut ? "stdout" : "stderr");
        close_fd(*run, which);
      }
    } else if (!run->detached) {
      log.info("run {}: output not taken ({}); hanging it up", run->id, answer.error().text());
      detach(*run);
    }
  }
  update_watches(run);
  maybe_finish(run);
}

// The console is gone (or unreachable): like a terminal that hung up. The
// program gets SIGHUP (when the console left, the monitor sent one too: a
// second is harmless, and a run the monitor forgot gets none otherwise);
// its output is read and dropped for a grace period, so
// that the hang-up, not a broken pipe, is what it sees first, and then its
// outputs close (a program that ignores SIGHUP gets SIGPIPE or EPIPE on its
// next write instead of running on for nobody).
void RunPump::detach(Run& run) {
  run.detached = true;
  ++m_counters.detached;
  if (!run.exit && m_hang_up) m_hang_up(run, SIGHUP);
  run.close_at = Clock::now() + m_options.hang_up_grace;
}

// Every tick: runs whose monitor connection closed (the monitor died, or
// this pComponent rejoined on a new connection) are hung up, even quiet
// ones; the grace of detached runs ends.
void RunPump::tick() {
  auto now = Clock::now();
  std::vector<std::shared_ptr<Run>> runs;
  for (auto& [id, run] : m_runs) runs.push_back(run);
  for (auto& run : runs) {
    if (!run->detached && !run->monitor->is_open()) {
      log.info("run {}: the monitor connection is gone; hanging it up", run->id);
      detach(*run);
    }
    if (run->close_at && now >= *run->close_at) {
      run->close_at.reset();
      close_fd(*run, Watch::kOut);
      close_fd(*run, Watch::kErr);
      maybe_finish(run);
    }
  }
}

void RunPump::write_input(Run& run) {
  while (!run.input.empty() && run.in >= 0) {
    Run::Input& front = run.input.front();
    wire::ByteView data = front.data.view();
    while (front.written < data.size()) {
      ssize_t n = ::write(run.in, data.data() + front.written, data.size() - front.written);
      if (n > 0) {
        front.written += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;  // EPOLLOUT resumes
      int error = n < 0 ? errno : EIO;
      close_fd(run, Watch::kIn);
      fail_input(run, make_error(error == EPIPE ? EPIPE : error,
                                 error == EPIPE ? "the program no longer reads its stdin"
                                                : "write to the program's stdin"));
      return;
    }
    bool eof = front.eof;
    front.reply->reply(wire::Empty{});
    run.input.pop_front();
    if (eof) {
      close_fd(run, Watch::kIn);
      fail_input(run, make_error(EPIPE, "the program's stdin is closed"));
    }
  }
}

void RunPump::fail_input(Run& run, const Error& error) {
  for (auto& pending : run.input) pending.reply->fail(error);
  run.input.clear();
}

void RunPump::close_fd(Run& run, Watch which) {
  int& fd = which == Watch::kOut ? run.out : which == Watch::kErr ? run.err : run.in;
  if (fd < 0) return;
  if (m_watched.erase(fd) != 0) ::epoll_ctl(m_epoll, EPOLL_CTL_DEL, fd, nullptr);
  bool& watched = which == Watch::kOut   ? run.out_watched
                  : which == Watch::kErr ? run.err_watched
                                         : run.in_watched;
  watched = false;
  ::close(fd);
  fd = -1;
}

// Watches the outputs while the window has room, and the stdin while data
// waits for room in the pipe. Unwatched fds are out of the epoll set
// entirely, so that a hang-up on them cannot spin the loop.
void RunPump::update_watches(const std::shared_ptr<Run>& run) {
  if (!run->added) return;
  bool room = run->detached || run->in_flight < m_options.window;
  watch(run, Watch::kOut, room && run->out >= 0);
  watch(run, Watch::kErr, room && run->err >= 0);
  watch(run, Watch::kIn, run->in >= 0 && !run->input.empty());
}

void RunPump::watch(const std::shared_ptr<Run>& run, Watch which, bool on) {
  int fd = which == Watch::kOut ? run->out : which == Watch::kErr ? run->err : run->in;
  bool& watched = which == Watch::kOut   ? run->out_watched
                  : which == Watch::kErr ? run->err_watched
                                         : run->in_watched;
  if (fd < 0 || watched == on) return;
  if (on) {
    epoll_event event{};
    event.events = which == Watch::kIn ? EPOLLOUT : EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
      log.error("run {}: epoll_ctl: {}", run->id, std::strerror(errno));
      return;
    }
    m_watched[fd] = {run, which};
  } else {
    ::epoll_ctl(m_epoll, EPOLL_CTL_DEL, fd, nullptr);
    m_watched.erase(fd);
  }
  watched = on;
}

void RunPump::maybe_finish(const std::shared_ptr<Run>& run) {
  if (!run->added || !run->exit || run->out >= 0 || run->err >= 0 || run->in_flight != 0) return;
  if (m_runs.erase(run->id) == 0) return;  // finished already
  close_fd(*run, Watch::kIn);
  fail_input(*run, make_error(EPIPE, "the program has ended"));
  const ExitStatus& status = *run->exit;
  wire::P2ctlRunExit exit{};
  exit.run = run->id;
  exit.code = status.code;
  exit.signal = status.signal;
  exit.flags = status.core_dumped ? wire::kExitCoreDumped : 0;
  std::string_view note = std::string_view(status.note).substr(0, wire::kMaxExitText);
  log.debug("run {}: exit {} reported", run->id, status.code);
  // Forgotten first, so that the load is right by the time the monitor hears.
  if (m_finished) m_finished(run->id);
  rpc::call_async<wire::Opcode::P2MON_EXIT>(
      *run->monitor, run->vnode, wire::RunExitBody::of(exit, wire::Tail(note)),
      m_options.exit_timeout, [id = run->id](Result<wire::Empty> reply) {
        if (!reply && reply.error().code() != ENOENT) {
          log.info("run {}: exit not delivered: {}", id, reply.error().text());
        }
      });
}

}  // namespace sk::pcomponent
