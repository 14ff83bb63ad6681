// The vNode init: pid 1 of a vNode's pid namespace on this pComponent. It is
// the pcomponent binary re-executed (`pcomponent --vnode-init FD HOST ROOT`)
// inside fresh user, pid, mount, uts and ipc namespaces whose id maps the
// launcher wrote before the exec; being root in that user namespace it can
// build the vNode's root: the vNode tree as /, the local kernel's /proc,
// /dev/{null,zero,full,random,urandom,tty}, a private /tmp and /dev/shm.
// Then it spawns programs on the launcher's request (see init_protocol.h) and
// reaps every orphan of the vNode, as an init does.
//
// It logs nothing: it is a separate process whose stderr is the
// pComponent's; errors go back to the launcher as text.
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "abi/elf_check.h"
#include "pcomponent/init_protocol.h"
#include "pcomponent/launcher.h"
#include "pcomponent/seccomp_filter.h"

namespace sk::pcomponent {

namespace proto = init_protocol;

namespace {

// Sends a reply packet, optionally with one fd and an error text.
void send_reply(int socket, proto::InitReply reply, int fd = -1, std::string_view text = {}) {
  reply.magic = proto::kMagic;
  std::array<iovec, 2> iov{iovec{&reply, sizeof reply},
                           iovec{const_cast<char*>(text.data()), text.size()}};
  msghdr message{};
  message.msg_iov = iov.data();
  message.msg_iovlen = text.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
  }
  (void)sendmsg(socket, &message, MSG_NOSIGNAL);
}

void send_failure(int socket, int error, const std::string& text) {
  send_reply(socket, proto::InitReply{0, proto::kFailed, error, 0}, -1, text);
}

Result<void> mount_or_error(const char* source, const std::string& target, const char* type,
                            unsigned long flags, const char* data) {
  if (::mount(source, target.c_str(), type, flags, data) != 0) {
    return Error::from_errno(std::string("mount ") + (type ? type : source) + " on " + target);
  }
  return {};
}

// Binds the host device node `source` at dev/name (over an empty file).
Result<void> bind_device(const std::string& dev, const char* name, const std::string& source) {
  std::string target = dev + "/" + name;
  int fd = ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) return Error::from_errno("create " + target);
  ::close(fd);
  return mount_or_error(source.c_str(), target, nullptr, MS_BIND, nullptr);
}

Result<void> setup_root(const std::string& root, const std::string& uffd_device) {
  // Nothing we mount may propagate back to the pComponent's namespace.
  TRY(mount_or_error(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  TRY(mount_or_error(root.c_str(), root, nullptr, MS_BIND | MS_REC, nullptr));
  for (const char* dir : {"/proc", "/dev", "/tmp"}) {
    std::string path = root + dir;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error::from_errno("mkdir " + path);
    }
  }
  TRY(mount_or_error("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  std::string dev = root + "/dev";
  TRY(mount_or_error("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m"));
  for (const char* name : {"null", "zero", "full", "random", "urandom", "tty"}) {
    TRY(bind_device(dev, name, std::string("/dev/") + name));
  }
  // The vNode's own userfaultfd device (owned by its root, see the launcher),
  // through which the memory manager creates each program's userfaultfd.
  if (uffd_device != "-") TRY(bind_device(dev, "userfaultfd", uffd_device));
  for (auto [link, target] : {std::pair{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                              {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}}) {
    if (::symlink(target, (dev + "/" + link).c_str()) != 0) {
      return Error::from_errno("symlink /dev/" + std::string(link));
    }
  }
  if (::mkdir((dev + "/shm").c_str(), 01777) != 0) return Error::from_errno("mkdir /dev/shm");
  TRY(mount_or_error("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  TRY(mount_or_error("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));

  if (::chdir(root.c_str()) != 0) return Error::from_errno("chdir " + root);
  // pivot_root(".", ".") stacks the old root on the new one; detaching it
  // leaves the vNode tree as the only root this namespace can reach.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return Error::from_errno("pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return Error::from_errno("detach the old root");
  if (::chdir("/") != 0) return Error::from_errno("chdir /");
  return {};
}

// Received strings of a spawn request.
struct Spawn {
  std::string cwd;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::array<int, 4> fds{-1, -1, -1, -1};  // stdin, stdout, stderr, go
};

Result<Spawn> receive_spawn(int socket, bool& closed) {
  static std::vector<char> buffer(sizeof(proto::SpawnRequest) + proto::kMaxStrings);
  iovec iov{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t length = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  if (length <= 0) {
    closed = true;
    return make_error(length == 0 ? ECONNRESET : errno, "control socket");
  }
  Spawn spawn;
  int fd_count = 0;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
      fd_count = static_cast<int>((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      std::memcpy(spawn.fds.data(), CMSG_DATA(header), std::min(fd_count, 4) * sizeof(int));
    }
  }
  proto::SpawnRequest request;
  if (static_cast<size_t>(length) < sizeof request || fd_count != 4 ||
      (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    for (int fd : spawn.fds) if (fd >= 0) ::close(fd);
    return make_error(EBADMSG, "malformed spawn request");
  }
  std::memcpy(&request, buffer.data(), sizeof request);
  const char* strings = buffer.data() + sizeof request;
  size_t available = static_cast<size_t>(length) - sizeof request;
  if (request.magic != proto::kMagic || request.strings_length != available) {
    for (int fd : spawn.fds) ::close(fd);
    return make_error(EBADMSG, "malformed spawn request");
  }
  std::vector<std::string> all;
  size_t start = 0;
  for (size_t i = 0; i < available; ++i) {
    if (strings[i] == '\0') {
      all.emplace_back(strings + start, i - start);
      start = i + 1;
    }
  }
  if (all.size() != 1 + static_cast<size_t>(request.argc) + request.envc || request.argc == 0) {
    for (int fd : spawn.fds) ::close(fd);
    return make_error(EBADMSG, "spawn request string count mismatch");
  }
  spawn.cwd = all[0];
  spawn.argv.assign(all.begin() + 1, all.begin() + 1 + request.argc);
  spawn.env.assign(all.begin() + 1 + request.argc, all.end());
  return spawn;
}

[[noreturn]] void fail_exec(const std::string& command, const std::string& why, int status) {
  std::string text = "splitkernel: " + command + ": " + why + "\n";
  (void)!::write(STDERR_FILENO, text.data(), text.size());
  ::_exit(status);
}

// Finds a command as a shell does: a name with a slash is a path, anything
// else is searched in PATH.
std::string resolve_command(const std::string& command, const std::vector<std::string>& env) {
  if (command.find('/') != std::string::npos) return command;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& entry : env) {
    if (entry.rfind("PATH=", 0) == 0) path = entry.substr(5);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + command;
    struct stat info;
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  fail_exec(command, "command not found", 127);
}

// In the forked child: wait to be traced, become the program.
[[noreturn]] void exec_program(const Spawn& spawn, scmp_filter_ctx filter) {
  char go = 0;
  if (::read(spawn.fds[3], &go, 1) != 1) ::_exit(127);  // the launcher gave up
  ::setsid();
  // A program starts as it would from a shell: every signal at its default
  // action (ignored dispositions survive exec, and the pComponent ignores
  // SIGPIPE) and none blocked.
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo != SIGKILL && signo != SIGSTOP) ::signal(signo, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int i = 0; i < 3; ++i) ::dup2(spawn.fds[i], i);
  ::close_range(3, ~0u, 0);

  if (::chdir(spawn.cwd.c_str()) != 0) fail_exec(spawn.cwd, std::strerror(errno), 1);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail_exec("no_new_privs", std::strerror(errno), 126);
  if (int error = seccomp_load(filter); error != 0) {
    fail_exec("seccomp", std::strerror(-error), 126);
  }

  const std::string& command = spawn.argv[0];
  std::string path = resolve_command(command, spawn.env);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_exec(command, std::strerror(errno), errno == ENOENT ? 127 : 126);
  struct stat info;
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) fail_exec(command, "Is a directory", 126);
  if (::access(path.c_str(), X_OK) != 0) fail_exec(command, std::strerror(errno), 126);
  std::array<unsigned char, 64> head{};
  ssize_t got = ::read(fd, head.data(), head.size());
  ::close(fd);
  auto kind = abi::classify_executable(std::span(head.data(), got > 0 ? static_cast<size_t>(got) : 0));
  if (kind == abi::ExecKind::kForeignElf || kind == abi::ExecKind::kNotExecutable) {
    fail_exec(command, "cannot execute binary file: Exec format error (" +
                           std::string(abi::to_string(kind)) + ")", 126);
  }

  std::vector<char*> argv;
  for (const auto& arg : spawn.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : spawn.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  ::execve(path.c_str(), argv.data(), envp.data());
  int error = errno;
  fail_exec(command, std::strerror(error), error == ENOENT ? 127 : 126);
}

void serve_spawn(int socket, Spawn spawn, scmp_filter_ctx filter) {
  pid_t pid = ::fork();
  if (pid < 0) {
    send_failure(socket, errno, std::string("fork: ") + std::strerror(errno));
  } else if (pid == 0) {
    ::close(socket);
    exec_program(spawn, filter);
  } else {
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      ::kill(pid, SIGKILL);
      send_failure(socket, errno, std::string("pidfd_open: ") + std::strerror(errno));
    } else {
      send_reply(socket, proto::InitReply{0, proto::kSpawned, 0, pid}, pidfd);
      ::close(pidfd);
    }
  }
  for (int fd : spawn.fds) ::close(fd);
}

}  // namespace

bool is_vnode_init(int argc, char** argv) {
  return argc >= 2 && std::strcmp(argv[1], "--vnode-init") == 0;
}

// argv: pcomponent --vnode-init CONTROL_FD HOSTNAME ROOT UFFD_DEVICE MEMORY
// UFFD_DEVICE is a host device node for the vNode's /dev/userfaultfd, or
// "-"; MEMORY is "memory" when mmap/brk/mremap are traced, else "local".
[[noreturn]] void vnode_init_main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "vnode init: expected 5 arguments, got %d\n", argc - 2);
    ::_exit(2);
  }
  int control_fd = std::atoi(argv[2]);
  std::string hostname = argv[3];
  std::string root = argv[4];
  std::string uffd_device = argv[5];
  auto trace_memory = std::string(argv[6]) == "memory" ? TraceMemory::kYes : TraceMemory::kNo;
  ::prctl(PR_SET_NAME, "vnode-init");
  // If the pComponent dies, so does the vNode on it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::sethostname(hostname.data(), hostname.size()) != 0) {
    send_failure(control_fd, errno, std::string("sethostname: ") + std::strerror(errno));
    ::_exit(1);
  }
  if (auto ok = setup_root(root, uffd_device); !ok) {
    send_failure(control_fd, ok.error().code(), ok.error().text());
    ::_exit(1);
  }
  auto filter = build_seccomp_filter(trace_memory);
  if (!filter) {
    send_failure(control_fd, filter.error().code(), filter.error().text());
    ::_exit(1);
  }

  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &child, nullptr);
  int sigchld = ::signalfd(-1, &child, SFD_CLOEXEC | SFD_NONBLOCK);
  send_reply(control_fd, proto::InitReply{0, proto::kReady, 0, 0});

  for (;;) {
    std::array<pollfd, 2> fds{pollfd{control_fd, POLLIN, 0}, pollfd{sigchld, POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) ::_exit(1);
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sigchld, &info, sizeof info) == sizeof info) {
      }
      while (::waitpid(-1, nullptr, WNOHANG | __WALL) > 0) {
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      bool closed = false;
      auto spawn = receive_spawn(control_fd, closed);
      // The launcher went away: the vNode ends here (pid 1's exit kills the
      // rest of the namespace).
      if (closed) ::_exit(0);
      if (!spawn) {
        send_failure(control_fd, spawn.error().code(), spawn.error().text());
        continue;
      }
      serve_spawn(control_fd, std::move(spawn).value(), filter.value());
    }
  }
}

}  // namespace sk::pcomponent
