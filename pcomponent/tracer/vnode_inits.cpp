// The launcher's side of the vNode inits (see vnode_inits.h and
// init_protocol.h): clone each init into its namespaces, map its uid range,
// wait until it has set up the vNode's root, and send it programs to fork.
#include "pcomponent/tracer/vnode_inits.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <string>

#include "kernel/log.h"
#include "pcomponent/init_protocol.h"

extern char** environ;

namespace sk::pcomponent::tracer {

namespace proto = init_protocol;

namespace {

const Logger log("tracer");

// How long a vNode init may take to build the root (the first FUSE lookups
// go to the sComponent) and to fork a program.
constexpr int kInitReadyTimeoutMs = 30000;
constexpr int kSpawnTimeoutMs = 10000;

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

}  // namespace

// A userfaultfd device node for one vNode, owned by the vNode's root so
// that its unprivileged programs can open it (the host's /dev/userfaultfd
// is root's alone), in a directory only that uid can enter. It lives on
// devtmpfs because other filesystems may be mounted nodev. The vNode init
// binds it at the vNode's /dev/userfaultfd.
Result<std::string> VnodeInits::make_userfault_device(VnodeId vnode, uid_t owner) {
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

Result<VnodeInits::Init*> VnodeInits::ensure(const LaunchSpec& spec, VnodeMemory memory) {
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
  if (memory == VnodeMemory::kManaged) {
    auto device = make_userfault_device(spec.vnode, base);
    if (device) {
      uffd_device = device.value();
    } else {
      log.warn("vNode {}: no userfaultfd device ({}); its memory stays local", spec.vnode,
               device.error().text());
    }
  }
  std::string memory_mode = memory == VnodeMemory::kManaged ? "memory" : "local";
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

Result<VnodeInits::Spawned> VnodeInits::spawn(const LaunchSpec& spec, VnodeMemory memory) {
  if (spec.argv.empty() || spec.argv[0].empty()) return make_error(EINVAL, "empty command");
  Init* init = TRY(ensure(spec, memory));

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
  return Spawned{pid, spawned.reply.vnode_pid, std::move(go_write), std::move(spawned.fd)};
}

void VnodeInits::drop(VnodeId vnode) {
  if (auto it = m_inits.find(vnode); it != m_inits.end()) {
    ::kill(it->second.pid, SIGKILL);
    it->second.control.reset();
  }
}

void VnodeInits::on_ended(pid_t pid) {
  for (auto it = m_inits.begin(); it != m_inits.end(); ++it) {
    if (it->second.pid == pid) {
      log.info("vNode {}: init (host pid {}) ended", it->first, pid);
      m_inits.erase(it);
      break;
    }
  }
}

void VnodeInits::kill_all() {
  for (auto& [vnode, init] : m_inits) ::kill(init.pid, SIGKILL);
  for (const auto& dir : m_device_dirs) {
    ::unlink((dir + "/userfaultfd").c_str());
    ::rmdir(dir.c_str());
  }
}

}  // namespace sk::pcomponent::tracer
