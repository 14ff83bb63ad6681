// The ptrace launcher on a small root tree holding a static probe program:
// namespaces, identity, refused syscalls, exit statuses, shell-style errors,
// and the walls of the sandbox. Needs root (as the pComponent does).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <mutex>
#include <thread>

#include "pcomponent/launcher.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct RunResult {
  std::string out;
  std::string err;
  sk::pcomponent::ExitStatus exit;
  pid_t pid = -1;
};

std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return text;
}

class LauncherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    root = fs::temp_directory_path() / ("sk-launcher-" + std::to_string(::getpid()));
    for (const char* dir : {"bin", "proc", "dev", "tmp", "etc"}) fs::create_directories(root / dir);
    fs::copy_file(SK_PROBE_PATH, root / "bin/sandbox_probe");
    std::ofstream(root / "etc/hostname") << "vnode-etc\n";
    std::ofstream(root / "bin/data") << "just some text\n";
    // An ELF header for aarch64: magic, 64-bit, little-endian, e_machine 183.
    std::string elf(64, '\0');
    elf[0] = 0x7f, elf[1] = 'E', elf[2] = 'L', elf[3] = 'F', elf[4] = 2, elf[5] = 1, elf[6] = 1;
    elf[16] = 2;  // ET_EXEC
    elf[18] = static_cast<char>(183);
    std::ofstream(root / "bin/arm", std::ios::binary) << elf;
    for (auto& entry : fs::recursive_directory_iterator(root)) {
      fs::permissions(entry.path(), fs::perms::owner_all | fs::perms::group_read |
                                        fs::perms::group_exec | fs::perms::others_read |
                                        fs::perms::others_exec);
    }
    fs::permissions(root, fs::perms(0755));
    launcher = std::move(sk::pcomponent::make_ptrace_launcher("/proc/self/exe")).value();
  }

  static void TearDownTestSuite() {
    launcher.reset();
    if (!root.empty()) fs::remove_all(root);
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the launcher needs root";
  }

  RunResult run(std::vector<std::string> argv, sk::VnodeId vnode = 7) {
    int out[2], err[2], in[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    sk::pcomponent::LaunchSpec spec;
    spec.vnode = vnode;
    spec.hostname = "vnode" + std::to_string(vnode);
    spec.root = root;
    spec.argv = std::move(argv);
    spec.env = {"PATH=/bin", "HOME=/"};
    spec.stdin_fd = in[0];
    spec.stdout_fd = out[1];
    spec.stderr_fd = err[1];
    auto done = std::make_shared<std::promise<sk::pcomponent::ExitStatus>>();
    auto pid = launcher->launch(spec, [done](sk::pcomponent::ExitStatus exit) { done->set_value(exit); });
    ::close(out[1]);
    ::close(err[1]);
    ::close(in[0]);
    ::close(in[1]);
    RunResult result;
    if (!pid.ok()) {
      ::close(out[0]);
      ::close(err[0]);
      ADD_FAILURE() << "launch: " << pid.error().text();
      return result;
    }
    result.pid = pid.value();
    std::thread err_reader([&] { result.err = read_all(err[0]); });
    result.out = read_all(out[0]);
    err_reader.join();
    auto future = done->get_future();
    EXPECT_EQ(future.wait_for(10s), std::future_status::ready);
    result.exit = future.get();
    return result;
  }

  static inline fs::path root;
  static inline std::unique_ptr<sk::pcomponent::Launcher> launcher;
};

TEST_F(LauncherTest, RootInsideItsVnode) {
  auto result = run({"sandbox_probe", "id"});
  EXPECT_EQ(result.exit.code, 0) << result.err;
  EXPECT_EQ(result.out.substr(0, 14), "uid=0 gid=0 pi");
  EXPECT_NE(result.out.find("ppid=1\n"), std::string::npos) << result.out;
}

TEST_F(LauncherTest, UnprivilegedOnTheHost) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  // A probe that waits on stdin so we can look at it from outside.
  sk::pcomponent::LaunchSpec spec;
  spec.vnode = 7;
  spec.hostname = "vnode7";
  spec.root = root;
  spec.argv = {"sandbox_probe", "wait"};
  spec.env = {"PATH=/bin"};
  int in[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  spec.stdin_fd = in[0];
  spec.stdout_fd = out[1];
  spec.stderr_fd = out[1];
  std::promise<sk::pcomponent::ExitStatus> done;
  auto pid = launcher->launch(spec, [&](sk::pcomponent::ExitStatus exit) { done.set_value(exit); });
  ASSERT_TRUE(pid.ok()) << pid.error().text();
  ::close(in[0]);
  ::close(out[1]);
  std::this_thread::sleep_for(200ms);
  std::ifstream status("/proc/" + std::to_string(*pid) + "/status");
  std::string line, uid_line, cap_line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) uid_line = line;
    if (line.rfind("CapEff:", 0) == 0) cap_line = line;
  }
  EXPECT_NE(uid_line.find(std::to_string(sk::pcomponent::kHostUidBase + 7 * 65536)),
            std::string::npos) << uid_line;
  EXPECT_EQ(uid_line.find("\t0\t"), std::string::npos) << uid_line;
  ASSERT_EQ(::write(in[1], "abc", 3), 3);
  ::close(in[1]);
  EXPECT_EQ(read_all(out[0]), "3\n");
  EXPECT_EQ(done.get_future().get().code, 0);
}

TEST_F(LauncherTest, HostnameAndNoNewPrivs) {
  EXPECT_EQ(run({"sandbox_probe", "hostname"}).out, "vnode7\n");
  EXPECT_EQ(run({"sandbox_probe", "nnp"}).out, "1\n");
  EXPECT_EQ(run({"sandbox_probe", "hostname"}, 8).out, "vnode8\n");
}

TEST_F(LauncherTest, RefusedSyscallsFailEnosysAndAreCounted) {
  auto before = launcher->stats().refused["mount"];
  auto result = run({"sandbox_probe", "mount"});
  EXPECT_EQ(result.out, "ENOSYS\n");
  EXPECT_EQ(launcher->stats().refused["mount"], before + 1);
  EXPECT_EQ(run({"sandbox_probe", "syscall", "272"}).out, "ENOSYS\n");  // unshare
  // A native call still works.
  EXPECT_EQ(run({"sandbox_probe", "syscall", "39"}).exit.code, 0);  // getpid
}

TEST_F(LauncherTest, ExitStatuses) {
  EXPECT_EQ(run({"sandbox_probe", "exit", "7"}).exit.code, 7);
  auto killed = run({"sandbox_probe", "signal", "9"});
  EXPECT_EQ(killed.exit.code, 137);
  EXPECT_EQ(killed.exit.signal, 9);
  EXPECT_EQ(run({"sandbox_probe", "signal", "15"}).exit.code, 143);
}

TEST_F(LauncherTest, ShellStyleErrors) {
  auto missing = run({"nosuch"});
  EXPECT_EQ(missing.exit.code, 127);
  EXPECT_NE(missing.err.find("nosuch: command not found"), std::string::npos) << missing.err;
  auto data = run({"/bin/data"});
  EXPECT_EQ(data.exit.code, 126);
  EXPECT_NE(data.err.find("Exec format error"), std::string::npos) << data.err;
  auto arm = run({"/bin/arm"});
  EXPECT_EQ(arm.exit.code, 126);
  EXPECT_NE(arm.err.find("another machine"), std::string::npos) << arm.err;
  auto dir = run({"/bin"});
  EXPECT_EQ(dir.exit.code, 126);
}

TEST_F(LauncherTest, TheHostIsOutOfReach) {
  // A marker on the host's /tmp must not be visible: the vNode's /tmp is its
  // own, and no path climbs out of the root.
  std::string marker = "sk-marker-" + std::to_string(::getpid());
  std::ofstream("/tmp/" + marker) << "host secret\n";
  EXPECT_EQ(run({"sandbox_probe", "cat", "/tmp/" + marker}).out, "ENOENT\n");
  EXPECT_EQ(run({"sandbox_probe", "cat", "/../../../tmp/" + marker}).out, "ENOENT\n");
  EXPECT_EQ(run({"sandbox_probe", "cat", "/proc/1/root/etc/hostname"}).out, "vnode-etc\n");
  auto shadow = run({"sandbox_probe", "cat", "/../../etc/shadow"});
  EXPECT_NE(shadow.exit.code, 0);
  fs::remove("/tmp/" + marker);
}

TEST_F(LauncherTest, VnodesHaveTheirOwnPidSpaces) {
  auto a = run({"sandbox_probe", "ls", "/proc"}, 9);
  auto b = run({"sandbox_probe", "id"}, 10);
  EXPECT_NE(b.out.find("ppid=1"), std::string::npos);
  // Only vNode 9's init and the probe itself are visible in its /proc.
  int pids = 0;
  std::istringstream lines(a.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0]))) ++pids;
  }
  EXPECT_EQ(pids, 2) << a.out;
}

// Records what the tracer reports about address spaces; refuses
// reservations above a limit.
class RecordingEvents final : public sk::pcomponent::memory::AddressSpaceEvents {
 public:
  void on_exec(pid_t pid, sk::VnodeId, sk::pcomponent::Userfault uffd,
               std::vector<sk::pcomponent::memory::Region> regions) override {
    std::lock_guard lock(mutex);
    ::close(uffd.fd);  // nothing registered: the program runs on local memory
    execs.push_back(pid);
    exec_regions = std::move(regions);
  }
  sk::Result<void> reserve(pid_t, uint64_t bytes) override {
    if (bytes > limit) return sk::make_error(ENOMEM, "over the test's limit");
    return {};
  }
  void on_fork(pid_t parent, pid_t child) override {
    std::lock_guard lock(mutex);
    forks.emplace_back(parent, child);
  }
  void on_map(pid_t pid, uint64_t start, uint64_t length, bool) override {
    std::lock_guard lock(mutex);
    maps.push_back({pid, start, length});
  }
  void on_exit(pid_t pid) override {
    std::lock_guard lock(mutex);
    exits.push_back(pid);
  }

  struct Map {
    pid_t pid;
    uint64_t start;
    uint64_t length;
  };
  std::mutex mutex;
  std::vector<pid_t> execs;
  std::vector<sk::pcomponent::memory::Region> exec_regions;
  std::vector<Map> maps;
  std::vector<pid_t> exits;
  std::vector<std::pair<pid_t, pid_t>> forks;
  uint64_t limit = ~0ull;
};

TEST_F(LauncherTest, MemoryHooksSeeExecMapsAndExitsAndEnforceTheQuota) {
  if (::access("/dev/userfaultfd", F_OK) != 0) GTEST_SKIP() << "no /dev/userfaultfd";
  RecordingEvents events;
  auto memory_launcher = std::move(sk::pcomponent::make_ptrace_launcher("/proc/self/exe")).value();
  memory_launcher->attach_memory(&events);
  std::swap(launcher, memory_launcher);

  auto mapped = run({"sandbox_probe", "mmap", "4"}, 20);
  EXPECT_EQ(mapped.out, "ok\n") << mapped.err;
  {
    std::lock_guard lock(events.mutex);
    ASSERT_EQ(events.execs.size(), 1u);
    EXPECT_EQ(events.execs[0], mapped.pid);
    EXPECT_FALSE(events.exec_regions.empty()) << "the stack at least";
    bool four_mib = false;
    for (const auto& map : events.maps) four_mib |= map.pid == mapped.pid && map.length == 4u << 20;
    EXPECT_TRUE(four_mib);
    EXPECT_EQ(events.exits, std::vector<pid_t>{mapped.pid});
  }
  EXPECT_EQ(launcher->stats().userfaults, 1u);
  EXPECT_EQ(launcher->stats().fallbacks, 0u);

  events.limit = 32u << 20;
  EXPECT_EQ(run({"sandbox_probe", "mmap", "64"}, 20).out, "ENOMEM\n");
  EXPECT_EQ(run({"sandbox_probe", "mmap", "16"}, 20).out, "ok\n");
  EXPECT_EQ(run({"sandbox_probe", "sbrk", "16"}, 20).out, "ok\n");
  EXPECT_EQ(run({"sandbox_probe", "sbrk", "65536"}, 20).out, "ENOMEM\n");

  std::swap(launcher, memory_launcher);
  memory_launcher.reset();  // stops its tracer before `events` goes away
}

}  // namespace

int main(int argc, char** argv) {
  if (sk::pcomponent::is_vnode_init(argc, argv)) sk::pcomponent::vnode_init_main(argc, argv);
  sk::pcomponent::block_sigchld();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
