// The ptrace launcher: vNode inits, program spawning, and the tracer loop.
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
// Lock order: m_commands_mutex and m_stats_mutex are leaves (never nested).
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <sstream>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "abi/syscall_table.h"
#include "kernel/log.h"
#include "kernel/unique_fd.h"
#include "pcomponent/init_protocol.h"
#include "pcomponent/inject.h"
#include "pcomponent/memory/drop.h"
#include "pcomponent/launcher.h"
#include "pcomponent/userfault.h"

extern char** environ;

namespace sk::pcomponent {

namespace proto = init_protocol;

namespace {

const Logger log("tracer");

// How long a vNode init may take to build the root (the first FUSE lookups
// go to the sComponent) and to fork a program.
constexpr int kInitReadyTimeoutMs = 30000;
constexpr int kSpawnTimeoutMs = 10000;
// The safety-net wake-up of the tracer loop.
constexpr int kPollTimeoutMs = 50;

// TRACESYSGOOD marks syscall-exit stops (SIGTRAP | 0x80), which the memory
// hooks ask for after a traced mmap/brk/mremap.
constexpr long kTraceOptions = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK |
                               PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                               PTRACE_O_TRACESYSGOOD;
constexpr int kSyscallExitStop = SIGTRAP | 0x80;
constexpr uint64_t kPage = 4096;

uint64_t page_up(uint64_t value) { return (value + kPage - 1) & ~(kPage - 1); }

// Field 47 of /proc/PID/stat, start_brk: the program break right after exec.
uint64_t start_brk(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 47) return std::stoull(field);
  }
  return 0;
}

Result<void> write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("open " + path);
  ssize_t written = ::write(fd, text.data(), text.size());
  int error = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(text.size())) return make_error(error, "write " + path);
  return {};
}

// Waits for one reply packet from a vNode init; returns it, its fd (or -1)
// and, for kFailed, the error text.
struct Received {
  proto::InitReply reply{};
  UniqueFd fd;
  std::string text;
};

Result<Received> receive_reply(int socket, int timeout_ms) {
  pollfd waiting{socket, POLLIN, 0};
  int ready = ::poll(&waiting, 1, timeout_ms);
  if (ready == 0) return make_error(ETIMEDOUT, "the vNode init did not answer");
  if (ready < 0) return Error::from_errno("poll the vNode init");
  Received received;
  std::array<char, 4096> text{};
  std::array<iovec, 2> iov{iovec{&received.reply, sizeof received.reply},
                           iovec{text.data(), text.size()}};
  msghdr message{};
  message.msg_iov = iov.data();
  message.msg_iovlen = iov.size();
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t length = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  if (length <= 0) return make_error(length == 0 ? EPIPE : errno, "the vNode init hung up");
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
      received.fd.reset(fd);
    }
  }
  if (static_cast<size_t>(length) < sizeof received.reply ||
      received.reply.magic != proto::kMagic) {
    return make_error(EBADMSG, "malformed reply from the vNode init");
  }
  received.text.assign(text.data(), static_cast<size_t>(length) - sizeof received.reply);
  if (received.reply.kind == proto::kFailed) {
    return make_error(received.reply.error > 0 ? received.reply.error : EIO, received.text);
  }
  return received;
}

// The host pid behind a pidfd (fdinfo translates it into our namespace).
Result<pid_t> pid_of_pidfd(int pidfd) {
  std::ifstream info("/proc/self/fdinfo/" + std::to_string(pidfd));
  std::string line;
  while (std::getline(info, line)) {
    if (line.rfind("Pid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(4)));
  }
  return make_error(ESRCH, "no pid behind the pidfd");
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

class PtraceLauncher final : public Launcher {
 public:
  explicit PtraceLauncher(std::filesystem::path self_exe) : m_self_exe(std::move(self_exe)) {}

  Result<void> start() {
    m_wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!m_wake) return Error::from_errno("eventfd");
    m_thread = std::thread([this] { tracer_loop(); });
    return {};
  }

  ~PtraceLauncher() override {
    m_stopping = true;
    wake();
    if (m_thread.joinable()) m_thread.join();
  }

  Result<pid_t> launch(const LaunchSpec& spec, ExitFn on_exit) override {
    return on_tracer<pid_t>([&] { return do_launch(spec, std::move(on_exit)); });
  }

  Result<void> signal(pid_t pid, int signo) override {
    if (::kill(pid, signo) != 0) return Error::from_errno("signal " + std::to_string(pid));
    return {};
  }

  Result<pid_t> vnode_pid(pid_t pid) override {
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

  void drop_vnode(VnodeId vnode) override {
    (void)on_tracer<int>([&]() -> Result<int> {
      if (auto it = m_inits.find(vnode); it != m_inits.end()) {
        ::kill(it->second.pid, SIGKILL);
        it->second.control.reset();
      }
      return 0;
    });
  }

  std::vector<TracedProcess> processes() override {
    auto listed = on_tracer<std::vector<TracedProcess>>([&]() -> Result<std::vector<TracedProcess>> {
      std::vector<TracedProcess> list;
      for (const auto& [pid, tracee] : m_tracees) {
        if (!tracee.thread) list.push_back(TracedProcess{pid, tracee.vnode, tracee.launched});
      }
      std::sort(list.begin(), list.end(),
                [](const auto& a, const auto& b) { return a.pid < b.pid; });
      return list;
    });
    return listed ? std::move(listed).value() : std::vector<TracedProcess>{};
  }

  TracerStats stats() override {
    std::lock_guard lock(m_stats_mutex);
    return m_stats;
  }

  void attach_memory(memory::AddressSpaceEvents* events) override { m_events = events; }
  memory::PageDropper& page_dropper() override { return m_dropper; }

 private:
  struct VnodeInit {
    pid_t pid = -1;
    UniqueFd control;
  };
  struct Launched {
    ExitFn on_exit;
  };
  struct Tracee {
    VnodeId vnode = kNoVnode;
    pid_t launched = -1;
    bool thread = false;  // a thread of another tracee, not a process
    pid_t tgid = -1;      // the process it is a thread of (itself for a leader)
    // A traced memory call between its seccomp stop and its exit stop.
    long pending_call = -1;
    uint64_t pending_args[3] = {};
  };
  // Per process (thread group), for the memory hooks.
  struct Process {
    uint64_t brk = 0;  // the program break as last seen
  };

  // The PageDropper the memory manager calls; the work runs on the tracer
  // thread, which alone may ptrace.
  class Dropper final : public memory::PageDropper {
   public:
    explicit Dropper(PtraceLauncher& launcher) : m_launcher(launcher) {}
    Result<void> drop(pid_t pid, std::span<const memory::Region> ranges, const CopyOut& copy_out,
                      const std::function<void()>& dropped) override {
      auto done = m_launcher.on_tracer<int>([&]() -> Result<int> {
        std::vector<memory::TraceeStop> others;
        auto result = memory::drop_pages(pid, ranges, copy_out, dropped, others);
        {
          std::lock_guard lock(m_launcher.m_stats_mutex);
          ++m_launcher.m_stats.drops;
        }
        // Stops that came in while the threads were being stopped are the
        // tracer's, exactly as if its own waitpid had returned them.
        for (const auto& stop : others) m_launcher.handle(stop.tid, stop.status);
        if (!result) return std::move(result).error();
        return 0;
      });
      if (!done) return std::move(done).error();
      return {};
    }

   private:
    PtraceLauncher& m_launcher;
  };


  // Runs fn on the tracer thread and waits for its result.
  template <typename T>
  Result<T> on_tracer(std::function<Result<T>()> fn) {
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

  void wake() {
    uint64_t one = 1;
    (void)!::write(m_wake.get(), &one, sizeof one);
  }

  // A userfaultfd device node for one vNode, owned by the vNode's root so
  // that its unprivileged programs can open it (the host's /dev/userfaultfd
  // is root's alone), in a directory only that uid can enter. It lives on
  // devtmpfs because other filesystems may be mounted nodev. The vNode init
  // binds it at the vNode's /dev/userfaultfd.
  Result<std::string> make_userfault_device(VnodeId vnode, uid_t owner) {
    struct stat host;
    if (::stat("/dev/userfaultfd", &host) != 0 || !S_ISCHR(host.st_mode)) {
      return make_error(ENODEV, "this kernel has no /dev/userfaultfd");
    }
    std::string dir = "/dev/splitkernel";
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno("mkdir " + dir);
    dir += "/" + std::to_string(::getpid()) + "-" + std::to_string(vnode);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno("mkdir " + dir);
    std::string node = dir + "/userfaultfd";
    ::unlink(node.c_str());
    if (::mknod(node.c_str(), S_IFCHR | 0600, host.st_rdev) != 0) {
      return Error::from_errno("mknod " + node);
    }
    if (::chown(dir.c_str(), owner, owner) != 0 || ::chown(node.c_str(), owner, owner) != 0) {
      return Error::from_errno("chown " + node);
    }
    m_device_dirs.push_back(dir);
    return node;
  }

  Result<VnodeInit*> ensure_init(const LaunchSpec& spec) {
    if (auto it = m_inits.find(spec.vnode); it != m_inits.end() && it->second.control.get() >= 0) {
      return &it->second;
    }
    if (spec.vnode >= (0xffffffffu - kHostUidBase) / kIdsPerVnode) {
      return make_error(ERANGE, "vNode id too large for the host uid range");
    }
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      return Error::from_errno("socketpair");
    }
    UniqueFd host(pair[0]);
    UniqueFd child_end(pair[1]);
    int sync[2];
    if (::pipe2(sync, O_CLOEXEC) != 0) return Error::from_errno("pipe");
    UniqueFd sync_read(sync[0]);
    UniqueFd sync_write(sync[1]);
    // Give the init a large enough receive buffer for a spawn packet.
    int buffer = static_cast<int>(2 * proto::kMaxStrings);
    ::setsockopt(host.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);
    ::setsockopt(child_end.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);

    // Everything the child needs is prepared before clone(): between clone
    // and execve it may only make async-signal-safe calls.
    uid_t base = kHostUidBase + spec.vnode * kIdsPerVnode;
    std::string exe = m_self_exe.string();
    std::string fd_text = std::to_string(child_end.get());
    std::string root = spec.root.string();
    std::string uffd_device = "-";
    if (m_events) {
      auto device = make_userfault_device(spec.vnode, base);
      if (device) {
        uffd_device = device.value();
      } else {
        log.warn("vNode {}: no userfaultfd device ({}); its memory stays local", spec.vnode,
                 device.error().text());
      }
    }
    std::string memory_mode = m_events ? "memory" : "local";
    std::array<char*, 8> argv{exe.data(),         const_cast<char*>("--vnode-init"),
                              fd_text.data(),     const_cast<char*>(spec.hostname.c_str()),
                              root.data(),        uffd_device.data(),
                              memory_mode.data(), nullptr};
    int child_fd = child_end.get();
    int sync_fd = sync_read.get();

    long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
    pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, 0));
    if (pid < 0) return Error::from_errno("clone the vNode init");
    if (pid == 0) {
      char go;
      if (::read(sync_fd, &go, 1) != 1) ::_exit(126);
      // Still host root's kuid, which the new namespace cannot name: become
      // the namespace's uid/gid 0 (the mapped host range). Raw syscalls,
      // because glibc's wrappers would try to sync threads this child lacks.
      if (::syscall(SYS_setgroups, 0, nullptr) != 0 || ::syscall(SYS_setresgid, 0, 0, 0) != 0 ||
          ::syscall(SYS_setresuid, 0, 0, 0) != 0) {
        ::_exit(125);
      }
      ::fcntl(child_fd, F_SETFD, 0);
      ::execve(argv[0], argv.data(), environ);
      ::_exit(127);
    }
    child_end.reset();
    sync_read.reset();

    std::string map = "0 " + std::to_string(base) + " " + std::to_string(kIdsPerVnode) + "\n";
    std::string proc = "/proc/" + std::to_string(pid);
    auto mapped = write_file(proc + "/uid_map", map);
    if (mapped) mapped = write_file(proc + "/gid_map", map);
    if (!mapped) {
      ::kill(pid, SIGKILL);
      return std::move(mapped).error();
    }
    (void)!::write(sync_write.get(), "g", 1);
    sync_write.reset();

    auto ready = receive_reply(host.get(), kInitReadyTimeoutMs);
    if (!ready) {
      ::kill(pid, SIGKILL);
      return make_error(ready.error().code(),
                        "setting up vNode " + spec.hostname + ": " + ready.error().message());
    }
    log.info("vNode {} ({}): init is host pid {}, uid 0 -> host uid {}", spec.vnode, spec.hostname,
             pid, base);
    auto& init = m_inits[spec.vnode];
    init.pid = pid;
    init.control = std::move(host);
    return &init;
  }

  Result<pid_t> do_launch(const LaunchSpec& spec, ExitFn on_exit) {
    if (spec.argv.empty() || spec.argv[0].empty()) return make_error(EINVAL, "empty command");
    VnodeInit* init = TRY(ensure_init(spec));

    std::string strings = spec.cwd + '\0';
    for (const auto& arg : spec.argv) strings += arg + '\0';
    for (const auto& entry : spec.env) strings += entry + '\0';
    if (strings.size() > proto::kMaxStrings) {
      return make_error(E2BIG, "arguments and environment exceed " +
                                   std::to_string(proto::kMaxStrings) + " bytes");
    }
    for (const auto& text : spec.argv) {
      if (text.find('\0') != std::string::npos) return make_error(EINVAL, "NUL in an argument");
    }
    int go[2];
    if (::pipe2(go, O_CLOEXEC) != 0) return Error::from_errno("pipe");
    UniqueFd go_read(go[0]);
    UniqueFd go_write(go[1]);

    proto::SpawnRequest request{proto::kMagic, static_cast<uint32_t>(spec.argv.size()),
                                static_cast<uint32_t>(spec.env.size()),
                                static_cast<uint32_t>(strings.size())};
    std::array<iovec, 2> iov{iovec{&request, sizeof request}, iovec{strings.data(), strings.size()}};
    std::array<int, 4> fds{spec.stdin_fd, spec.stdout_fd, spec.stderr_fd, go_read.get()};
    msghdr message{};
    message.msg_iov = iov.data();
    message.msg_iovlen = iov.size();
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)];
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof fds);
    if (::sendmsg(init->control.get(), &message, MSG_NOSIGNAL) < 0) {
      int error = errno;
      init->control.reset();  // the init is gone; the next launch makes a new one
      return make_error(error, "send the program to the vNode init");
    }
    go_read.reset();

    auto spawned = TRY(receive_reply(init->control.get(), kSpawnTimeoutMs));
    if (spawned.reply.kind != proto::kSpawned || spawned.fd.get() < 0) {
      return make_error(EPROTO, "the vNode init did not return the program");
    }
    pid_t pid = TRY(pid_of_pidfd(spawned.fd.get()));
    if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(kTraceOptions)) != 0) {
      int error = errno;
      ::kill(pid, SIGKILL);
      return make_error(error, "ptrace the program");
    }
    m_launched[pid] = Launched{std::move(on_exit)};
    m_tracees[pid] = Tracee{spec.vnode, pid, false, pid};
    {
      std::lock_guard lock(m_stats_mutex);
      ++m_stats.launched;
    }
    // Traced now: let it exec.
    (void)!::write(go_write.get(), "g", 1);
    log.debug("launched {} as host pid {} (vNode pid {})", spec.argv[0], pid,
              spawned.reply.vnode_pid);
    return pid;
  }

  void tracer_loop() {
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
    for (auto& [vnode, init] : m_inits) ::kill(init.pid, SIGKILL);
    for (const auto& dir : m_device_dirs) {
      ::unlink((dir + "/userfaultfd").c_str());
      ::rmdir(dir.c_str());
    }
  }

  void reap() {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL | __WNOTHREAD);
      if (pid <= 0) return;
      handle(pid, status);
    }
  }

  void handle(pid_t pid, int status) {
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      for (auto it = m_inits.begin(); it != m_inits.end(); ++it) {
        if (it->second.pid == pid) {
          log.info("vNode {}: init (host pid {}) ended", it->first, pid);
          m_inits.erase(it);
          break;
        }
      }
      if (auto tracee = m_tracees.find(pid); tracee != m_tracees.end()) {
        bool process = !tracee->second.thread;
        m_tracees.erase(tracee);
        if (process) {
          m_processes.erase(pid);
          if (m_events) m_events->on_exit(pid);
        }
      }
      if (auto it = m_launched.find(pid); it != m_launched.end()) {
        auto on_exit = std::move(it->second.on_exit);
        m_launched.erase(it);
        if (on_exit) on_exit(exit_status_of(status));
      }
      return;
    }
    if (!WIFSTOPPED(status)) return;
    {
      std::lock_guard lock(m_stats_mutex);
      ++m_stats.stops;
    }
    int signo = WSTOPSIG(status);
    int event = status >> 16;
    if (event == 0 && signo == kSyscallExitStop) {
      on_syscall_exit(pid);
      return;
    }
    switch (event) {
      case PTRACE_EVENT_SECCOMP:
        on_seccomp(pid);
        return;
      case PTRACE_EVENT_FORK:
      case PTRACE_EVENT_VFORK:
      case PTRACE_EVENT_CLONE: {
        unsigned long child = 0;
        ::ptrace(PTRACE_GETEVENTMSG, pid, nullptr, &child);
        // A clone that shares the address space and thread group is a
        // thread; anything else is a new process of the same vNode.
        if (auto parent = m_tracees.find(pid); parent != m_tracees.end() && child != 0) {
          bool thread = event == PTRACE_EVENT_CLONE && is_thread(static_cast<pid_t>(child));
          pid_t child_pid = static_cast<pid_t>(child);
          m_tracees[child_pid] = Tracee{parent->second.vnode, parent->second.launched, thread,
                                        thread ? parent->second.tgid : child_pid};
          if (!thread) {
            m_processes[child_pid] = m_processes[parent->second.tgid];
            if (m_events) m_events->on_fork(parent->second.tgid, child_pid);
          }
        }
        std::lock_guard lock(m_stats_mutex);
        ++(event == PTRACE_EVENT_CLONE ? m_stats.threads : m_stats.forks);
        break;
      }
      case PTRACE_EVENT_EXEC: {
        {
          std::lock_guard lock(m_stats_mutex);
          ++m_stats.execs;
        }
        if (m_events) {
          attach_after_exec(pid);  // resumes the tracee itself
          return;
        }
        break;
      }
      case PTRACE_EVENT_STOP:
        // A group-stop (SIGSTOP and friends) must stay stopped until SIGCONT:
        // PTRACE_LISTEN does that while still reporting the next event. Any
        // other event-stop is a new tracee's first stop.
        if (signo == SIGSTOP || signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU) {
          ::ptrace(PTRACE_LISTEN, pid, nullptr, nullptr);
          return;
        }
        break;
      case 0:
        // A signal on its way to the tracee: deliver it unchanged.
        ::ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(signo)));
        return;
      default:
        break;
    }
    ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
  }

  // A thread's Tgid differs from its own id.
  static bool is_thread(pid_t tid) {
    std::ifstream status("/proc/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Tgid:", 0) == 0) return std::stol(line.substr(5)) != tid;
    }
    return false;
  }

  void on_seccomp(pid_t pid) {
    user_regs_struct regs;
    if (::ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return;  // it died meanwhile
    int number = static_cast<int>(regs.orig_rax);
    auto call = abi::find_syscall(number);
    std::string name = call ? std::string(call->name) : "syscall_" + std::to_string(number);
    bool refuse = !call || call->route == abi::Route::kRefused;
    {
      std::lock_guard lock(m_stats_mutex);
      ++m_stats.syscalls[name];
      if (refuse) ++m_stats.refused[name];
    }
    if (refuse) {
      fail_syscall(pid, regs, -ENOSYS);
      log.debug("refused {} from host pid {}", name, pid);
    } else if (m_events && call->route == abi::Route::kTraced) {
      on_memory_call(pid, regs);
      return;
    }
    ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
  }

  // Skips the call the tracee is entering; `result` becomes its return value.
  static void fail_syscall(pid_t pid, user_regs_struct& regs, long result) {
    regs.orig_rax = static_cast<unsigned long long>(-1);
    regs.rax = static_cast<unsigned long long>(result);
    ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
  }

  // ---- memory hooks (see memory/memory_manager.h) ---------------------------

  // At the exec event: take the new mm's userfaultfd and hand the process's
  // anonymous regions to the memory manager, then let it run.
  void attach_after_exec(pid_t pid) {
    auto tracee = m_tracees.find(pid);
    VnodeId vnode = tracee != m_tracees.end() ? tracee->second.vnode : kNoVnode;
    // The event stop is inside execve; injection needs it finished.
    auto stepped = step_out_of_syscall(pid);
    Result<Userfault> uffd = stepped ? Result<Userfault>(Userfault{}) : stepped.error();
    if (stepped) {
      Injector injector(pid);
      uffd = acquire_userfault(pid, injector);
    }
    m_processes[pid].brk = start_brk(pid);
    {
      std::lock_guard lock(m_stats_mutex);
      ++(uffd ? m_stats.userfaults : m_stats.fallbacks);
    }
    if (!uffd) {
      // Its memory stays local; its commits still count against the quota.
      log.warn("host pid {}: memory stays local: {}", pid, uffd.error().text());
      uffd = Userfault{};
    }
    auto regions = memory::private_anonymous_regions(pid);
    m_events->on_exec(pid, vnode, uffd.value(),
                      regions ? std::move(regions).value() : std::vector<memory::Region>{});
    ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
  }

  // At the seccomp stop of mmap, brk, mremap or mprotect: refuse what the
  // vNode's quota cannot hold (ENOMEM, as Linux does at its commit limit),
  // else let the call run and stop again at its exit to learn what it mapped.
  // What counts is what Linux commits: writable private anonymous memory.
  void on_memory_call(pid_t tid, user_regs_struct& regs) {
    auto tracee = m_tracees.find(tid);
    if (tracee == m_tracees.end()) {
      ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
      return;
    }
    pid_t tgid = tracee->second.tgid;
    long number = static_cast<long>(regs.orig_rax);
    uint64_t commit = 0;
    if (number == SYS_mmap) {
      uint64_t flags = regs.r10;
      if (!(flags & MAP_ANONYMOUS) || (flags & MAP_TYPE) != MAP_PRIVATE) {
        ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);  // not the memory manager's
        return;
      }
      if (regs.rdx & PROT_WRITE) commit = page_up(regs.rsi);
    } else if (number == SYS_brk) {
      uint64_t current = m_processes[tgid].brk;
      if (current != 0 && regs.rdi > current) commit = page_up(regs.rdi) - page_up(current);
    } else if (number == SYS_mremap) {
      if (regs.rdx > regs.rsi) commit = page_up(regs.rdx) - page_up(regs.rsi);
    } else if (number == SYS_mprotect) {
      if (!(regs.rdx & PROT_WRITE)) {
        ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
        return;
      }
      commit = page_up(regs.rsi);
    }
    if (commit > 0) {
      if (auto allowed = m_events->reserve(tgid, commit); !allowed) {
        // brk reports failure by returning the unchanged break.
        long result = number == SYS_brk ? static_cast<long>(m_processes[tgid].brk) : -ENOMEM;
        fail_syscall(tid, regs, result);
        ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
        return;
      }
    }
    tracee->second.pending_call = number;
    tracee->second.pending_args[0] = regs.rdi;
    tracee->second.pending_args[1] = regs.rsi;
    tracee->second.pending_args[2] = regs.rdx;
    ::ptrace(PTRACE_SYSCALL, tid, nullptr, nullptr);
  }

  void on_syscall_exit(pid_t tid) {
    auto tracee = m_tracees.find(tid);
    user_regs_struct regs;
    if (tracee == m_tracees.end() || tracee->second.pending_call < 0 ||
        ::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
      ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
      return;
    }
    pid_t tgid = tracee->second.tgid;
    long number = std::exchange(tracee->second.pending_call, -1);
    const uint64_t* args = tracee->second.pending_args;
    uint64_t result = regs.rax;
    bool failed = result > static_cast<uint64_t>(-4096);
    if (number == SYS_mmap && !failed) {
      m_events->on_map(tgid, result, page_up(args[1]), (args[2] & PROT_WRITE) != 0);
    } else if (number == SYS_brk) {
      uint64_t& brk = m_processes[tgid].brk;
      if (brk != 0 && page_up(result) > page_up(brk)) {
        m_events->on_map(tgid, page_up(brk), page_up(result) - page_up(brk), true);
      }
      brk = result;
    } else if (number == SYS_mremap && !failed && args[2] > args[1]) {
      // Grown in place or moved: the part beyond the old length is new.
      m_events->on_map(tgid, result + page_up(args[1]), page_up(args[2]) - page_up(args[1]), true);
    } else if (number == SYS_mprotect && !failed) {
      // Made writable: committed now (the memory manager ignores ranges
      // that are not its private anonymous regions).
      m_events->on_map(tgid, args[0], page_up(args[1]), true);
    }
    ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
  }

  std::filesystem::path m_self_exe;
  std::atomic<bool> m_stopping{false};
  UniqueFd m_wake;
  std::thread m_thread;

  std::mutex m_commands_mutex;
  std::deque<std::function<void()>> m_commands;

  std::mutex m_stats_mutex;
  TracerStats m_stats;

  // Tracer thread only.
  std::unordered_map<VnodeId, VnodeInit> m_inits;
  std::unordered_map<pid_t, Launched> m_launched;
  std::unordered_map<pid_t, Tracee> m_tracees;
  std::unordered_map<pid_t, Process> m_processes;

  // Set once, before the first launch (attach_memory).
  memory::AddressSpaceEvents* m_events = nullptr;
  Dropper m_dropper{*this};
  std::vector<std::string> m_device_dirs;  // tracer thread
};

}  // namespace

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
