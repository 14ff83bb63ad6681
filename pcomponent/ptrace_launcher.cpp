// The ptrace launcher (see ptrace_launcher.h): the tracer thread's event
// loop, and the Launcher methods, which hand their work to that thread.
#include "pcomponent/ptrace_launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <future>
#include <string>

#include "kernel/log.h"
#include "pcomponent/memory/drop.h"

namespace sk::pcomponent {

namespace {

const Logger log("tracer");

// The safety-net wake-up of the tracer loop.
constexpr int kPollTimeoutMs = 50;

}  // namespace

template <typename T>
Result<T> PtraceLauncher::on_tracer(std::function<Result<T>()> fn) {
  if (std::this_thread::get_id() == m_thread.get_id()) return fn();
  auto task = std::make_shared<std::packaged_task<Result<T>()>>(std::move(fn));
  auto future = task->get_future();
  {
    std::lock_guard lock(m_commands_mutex);
    if (m_stopping) return make_error(ESHUTDOWN, "the launcher is stopping");
    m_commands.push_back([task] { (*task)(); });
  }
  wake();
  return future.get();
}

void PtraceLauncher::wake() {
  uint64_t one = 1;
  (void)!::write(m_wake.get(), &one, sizeof one);
}

PtraceLauncher::PtraceLauncher(std::filesystem::path self_exe) : m_inits(std::move(self_exe)) {}

Result<void> PtraceLauncher::start() {
  m_wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m_wake) return Error::from_errno("eventfd");
  m_thread = std::thread([this] { tracer_loop(); });
  return {};
}

PtraceLauncher::~PtraceLauncher() {
  m_stopping = true;
  wake();
  if (m_thread.joinable()) m_thread.join();
}

Result<pid_t> PtraceLauncher::launch(const LaunchSpec& spec, ExitFn on_exit) {
  return on_tracer<pid_t>([&] { return do_launch(spec, std::move(on_exit)); });
}

Result<void> PtraceLauncher::signal(pid_t pid, int signo) {
  if (::kill(pid, signo) != 0) return Error::from_errno("signal " + std::to_string(pid));
  return {};
}

Result<pid_t> PtraceLauncher::vnode_pid(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("NSpid:", 0) == 0) {
      auto last = line.find_last_of(" \t");
      return static_cast<pid_t>(std::stol(line.substr(last + 1)));
    }
  }
  return make_error(ESRCH, "no process " + std::to_string(pid));
}

void PtraceLauncher::drop_vnode(VnodeId vnode) {
  (void)on_tracer<int>([&]() -> Result<int> {
    m_inits.drop(vnode);
    return 0;
  });
}

std::vector<TracedProcess> PtraceLauncher::processes() {
  auto listed = on_tracer<std::vector<TracedProcess>>(
      [&]() -> Result<std::vector<TracedProcess>> { return m_tracer.processes(); });
  return listed ? std::move(listed).value() : std::vector<TracedProcess>{};
}

TracerStats PtraceLauncher::stats() { return m_tracer.counters().snapshot(); }

void PtraceLauncher::attach_memory(memory::AddressSpaceEvents* events) {
  m_tracer.attach_memory(events);
}

Result<void> PtraceLauncher::Dropper::drop(pid_t pid, std::span<const memory::Region> ranges,
                                           const CopyOut& copy_out,
                                           const std::function<void()>& dropped) {
  auto done = m_launcher.on_tracer<int>([&]() -> Result<int> {
    std::vector<memory::TraceeStop> others;
    auto result = memory::drop_pages(pid, ranges, copy_out, dropped, others);
    m_launcher.m_tracer.counters().update([](TracerStats& stats) { ++stats.drops; });
    // Stops that came in while the threads were being stopped are the
    // tracer's, exactly as if its own waitpid had returned them.
    for (const auto& stop : others) m_launcher.handle(stop.tid, stop.status);
    if (!result) return std::move(result).error();
    return 0;
  });
  if (!done) return std::move(done).error();
  return {};
}

Result<pid_t> PtraceLauncher::do_launch(const LaunchSpec& spec, ExitFn on_exit) {
  auto memory = m_tracer.memory_attached() ? tracer::VnodeMemory::kManaged
                                           : tracer::VnodeMemory::kLocal;
  auto spawned = TRY(m_inits.spawn(spec, memory));
  TRY(m_tracer.seize(spawned.pid, spec.vnode, std::move(on_exit)));
  // Traced now: let it exec.
  (void)!::write(spawned.go.get(), "g", 1);
  log.debug("launched {} as host pid {} (vNode pid {})", spec.argv[0], spawned.pid,
            spawned.vnode_pid);
  return spawned.pid;
}

void PtraceLauncher::tracer_loop() {
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &child, nullptr);
  UniqueFd sigchld(::signalfd(-1, &child, SFD_CLOEXEC | SFD_NONBLOCK));

  while (!m_stopping) {
    std::array<pollfd, 2> fds{pollfd{m_wake.get(), POLLIN, 0}, pollfd{sigchld.get(), POLLIN, 0}};
    ::poll(fds.data(), fds.size(), kPollTimeoutMs);
    uint64_t count;
    (void)!::read(m_wake.get(), &count, sizeof count);
    signalfd_siginfo info;
    while (::read(sigchld.get(), &info, sizeof info) == sizeof info) {
    }
    reap();
    std::deque<std::function<void()>> commands;
    {
      std::lock_guard lock(m_commands_mutex);
      commands.swap(m_commands);
    }
    for (auto& command : commands) command();
  }

  // Shutting down: the inits take their vNodes with them; our tracees die
  // by PTRACE_O_EXITKILL when this thread exits.
  std::deque<std::function<void()>> abandoned;
  {
    std::lock_guard lock(m_commands_mutex);
    abandoned.swap(m_commands);
  }
  for (auto& command : abandoned) command();  // they see m_stopping
  m_inits.kill_all();
}

void PtraceLauncher::reap() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL | __WNOTHREAD);
    if (pid <= 0) return;
    handle(pid, status);
  }
}

void PtraceLauncher::handle(pid_t pid, int status) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) m_inits.on_ended(pid);
  m_tracer.handle(pid, status);
}

void block_sigchld() {
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &child, nullptr);
}

Result<std::unique_ptr<Launcher>> make_ptrace_launcher(std::filesystem::path self_exe) {
  auto launcher = std::make_unique<PtraceLauncher>(std::move(self_exe));
  TRY(launcher->start());
  return std::unique_ptr<Launcher>(std::move(launcher));
}

}  // namespace sk::pcomponent
