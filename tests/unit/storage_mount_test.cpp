// A vNode root end to end: an sComponent served over the real tcp fabric
// (loopback), a StorageManager that mounts the vNode's root with FUSE, and
// real file operations through the mount from this process, checked byte for
// byte against the sComponent's tree. Needs root and /dev/fuse (skipped
// otherwise).
//
// SK_STORAGE_BENCH=1 also runs the throughput benchmark (a sequential
// 256 MiB write and read through the mount, and raw fabric round trips).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "kernel/fabric/transport.h"
#include "kernel/wire/storage_messages.h"
#include "pcomponent/launcher.h"
#include "pcomponent/storage_client.h"
#include "pcomponent/storage_manager.h"
#include "scomponent/image.h"
#include "scomponent/scomponent.h"

namespace sk {
namespace {

namespace fs = std::filesystem;

constexpr VnodeId kVnode = 7;
constexpr uid_t kBase = pcomponent::kHostUidBase + kVnode * pcomponent::kIdsPerVnode;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string random_bytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (auto& c : bytes) c = static_cast<char>(random());
  return bytes;
}

bool can_mount() {
  return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0;
}

bool is_mount_point(const fs::path& path) {
  struct stat st, parent;
  return ::stat(path.c_str(), &st) == 0 && ::stat(path.parent_path().c_str(), &parent) == 0 &&
         st.st_dev != parent.st_dev;
}

// One sComponent, one client transport and one mount for the whole suite:
// mounting is the slow part.
class StorageMount : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!can_mount()) return;
    std::string pattern = (fs::temp_directory_path() / "sk-storage-mount-XXXXXX").string();
    s_temp = ::mkdtemp(pattern.data());
    // Other users (the vNode's ids) must reach the mount inside.
    ::chmod(s_temp.c_str(), 0755);
    scomponent::Scomponent::Options options;
    options.data = s_temp / "data";
    options.capacity = 1 << 30;
    s_scomponent = std::move(scomponent::Scomponent::create(options).value());
    ASSERT_TRUE(s_scomponent->store().create_vnode(kVnode, "web", scomponent::make_basic_root));

    s_server = std::move(fabric::make_transport("tcp").value());
    auto bound = s_server->listen(Address{"127.0.0.1", 0}, s_scomponent->dispatcher().handler());
    ASSERT_TRUE(bound) << bound.error().text();
    s_address = *bound;
    s_client = std::move(fabric::make_transport("tcp").value());

    pcomponent::StorageManager::Options storage;
    storage.run_dir = s_temp / "run";
    storage.node_id = [] { return NodeId{5}; };
    s_storage = std::make_unique<pcomponent::StorageManager>(*s_client, storage);
    auto root = s_storage->root(pcomponent::VnodeStorage{kVnode, "web", s_address});
    ASSERT_TRUE(root) << root.error().text();
    s_root = *root;
    s_tree = s_temp / "data" / "vnodes" / "web";
  }

  static void TearDownTestSuite() {
    s_storage.reset();
    if (s_client) s_client->stop();
    if (s_server) s_server->stop();
    s_scomponent.reset();
    std::error_code error;
    if (!s_temp.empty()) fs::remove_all(s_temp, error);
  }

  void SetUp() override {
    if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
    ASSERT_TRUE(s_storage) << "the suite's set-up failed";
    // Each test works in a directory of its own.
    m_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    m_dir = s_root / m_name;
    m_disk = s_tree / m_name;
    ASSERT_EQ(::mkdir(m_dir.c_str(), 0755), 0) << strerror(errno);
  }

  static inline fs::path s_temp;
  static inline std::unique_ptr<scomponent::Scomponent> s_scomponent;
  static inline std::unique_ptr<fabric::Transport> s_server;
  static inline std::unique_ptr<fabric::Transport> s_client;
  static inline std::unique_ptr<pcomponent::StorageManager> s_storage;
  static inline Address s_address;
  static inline fs::path s_root;
  static inline fs::path s_tree;

  std::string m_name;
  fs::path m_dir;   // through the mount
  fs::path m_disk;  // the same directory in the sComponent's tree
};

TEST_F(StorageMount, TheRootIsMountedWhereTheDesignSays) {
  EXPECT_EQ(s_root, s_temp / "run" / "p5" / "web" / "root");
  EXPECT_TRUE(is_mount_point(s_root));
  // The basic directories of an empty root, owned by the vNode's root.
  for (auto dir : {"proc", "dev", "tmp", "etc", "root"}) {
    struct stat st;
    ASSERT_EQ(::stat((s_root / dir).c_str(), &st), 0) << dir;
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_uid, kBase);
    EXPECT_EQ(st.st_gid, kBase);
  }
  struct stat tmp;
  ASSERT_EQ(::stat((s_root / "tmp").c_str(), &tmp), 0);
  EXPECT_EQ(tmp.st_mode & 07777, 01777u);
  // root(id) finds the same mount.
  EXPECT_EQ(s_storage->root(kVnode).value(), s_root);
  EXPECT_EQ(s_storage->root(VnodeId{99}).error().code(), ENOENT);
}

TEST_F(StorageMount, WriteAppendReadLandByteForByte) {
  std::string data = random_bytes(3 * 1024 * 1024 + 17, 1);  // several 1 MiB requests
  int fd = ::open((m_dir / "file").c_str(), O_CREAT | O_WRONLY | O_EXCL, 0640);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(read_file(m_disk / "file"), data);

  // Owner and mode on disk: host root acts as the vNode's root.
  struct stat disk;
  ASSERT_EQ(::stat((m_disk / "file").c_str(), &disk), 0);
  EXPECT_EQ(disk.st_uid, 0u);
  EXPECT_EQ(disk.st_gid, 0u);
  EXPECT_EQ(disk.st_mode & 07777, 0640u);

  // O_APPEND goes to the real end, even after the file grew behind the
  // mount's back.
  write_file(m_disk / "log", "one\n");
  fd = ::open((m_dir / "log").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << strerror(errno);
  {
    std::ofstream grow(m_disk / "log", std::ios::app);
    grow << "two\n";
  }
  ASSERT_EQ(::write(fd, "three\n", 6), 6);
  ::close(fd);
  EXPECT_EQ(read_file(m_disk / "log"), "one\ntwo\nthree\n");

  // Reads through the mount, at offsets.
  EXPECT_EQ(read_file(m_dir / "file"), data);
  fd = ::open((m_dir / "file").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buffer[100];
  ASSERT_EQ(::pread(fd, buffer, sizeof buffer, 2'000'000), 100);
  EXPECT_EQ(std::string(buffer, 100), data.substr(2'000'000, 100));
  ::close(fd);

  // O_TRUNC empties it; O_EXCL refuses an existing name.
  fd = ::open((m_dir / "file").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(fs::file_size(m_disk / "file"), 0u);
  EXPECT_LT(::open((m_dir / "file").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600), 0);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_LT(::open((m_dir / "missing").c_str(), O_RDONLY), 0);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(StorageMount, MmapReadsAndWritesThroughThePageCache) {
  std::string data = random_bytes(64 * 1024, 2);
  write_file(m_disk / "mapped", data);
  int fd = ::open((m_dir / "mapped").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << strerror(errno);
  void* map = ::mmap(nullptr, data.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << strerror(errno);
  EXPECT_EQ(std::memcmp(map, data.data(), data.size()), 0);
  std::memcpy(static_cast<char*>(map) + 4096, "written through mmap", 20);
  ASSERT_EQ(::msync(map, data.size(), MS_SYNC), 0) << strerror(errno);
  ::munmap(map, data.size());
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
  std::string expected = data;
  expected.replace(4096, 20, "written through mmap");
  EXPECT_EQ(read_file(m_disk / "mapped"), expected);
}

TEST_F(StorageMount, NamespaceOperations) {
  // mkdir, rename, unlink, rmdir.
  ASSERT_EQ(::mkdir((m_dir / "d").c_str(), 0750), 0);
  struct stat st;
  ASSERT_EQ(::stat((m_disk / "d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  write_file(m_dir / "d" / "a", "alpha");
  ASSERT_EQ(::rename((m_dir / "d" / "a").c_str(), (m_dir / "b").c_str()), 0);
  EXPECT_FALSE(fs::exists(m_disk / "d" / "a"));
  EXPECT_EQ(read_file(m_disk / "b"), "alpha");
  EXPECT_EQ(::rmdir((m_dir / "d").c_str()), 0);
  EXPECT_FALSE(fs::exists(m_disk / "d"));
  ASSERT_EQ(::mkdir((m_dir / "full").c_str(), 0755), 0);
  write_file(m_dir / "full" / "x", "x");
  EXPECT_EQ(::rmdir((m_dir / "full").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(::mkdir((m_dir / "full").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(::unlink((m_dir / "b").c_str()), 0);
  EXPECT_FALSE(fs::exists(m_disk / "b"));

  // rename flags.
  write_file(m_dir / "p", "p");
  write_file(m_dir / "q", "q");
  EXPECT_EQ(::renameat2(AT_FDCWD, (m_dir / "p").c_str(), AT_FDCWD, (m_dir / "q").c_str(),
                        RENAME_NOREPLACE),
            -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(::renameat2(AT_FDCWD, (m_dir / "p").c_str(), AT_FDCWD, (m_dir / "q").c_str(),
                        RENAME_EXCHANGE),
            0);
  EXPECT_EQ(read_file(m_disk / "p"), "q");
  EXPECT_EQ(read_file(m_disk / "q"), "p");

  // symlink, readlink; the target is text, kept as given.
  ASSERT_EQ(::symlink("../../etc/shadow", (m_dir / "link").c_str()), 0);
  EXPECT_EQ(fs::read_symlink(m_disk / "link"), "../../etc/shadow");
  EXPECT_EQ(fs::read_symlink(m_dir / "link"), "../../etc/shadow");

  // Hard links are one file: same inode, two links.
  write_file(m_dir / "orig", "shared");
  ASSERT_EQ(::link((m_dir / "orig").c_str(), (m_dir / "hard").c_str()), 0);
  struct stat a, b;
  ASSERT_EQ(::stat((m_dir / "orig").c_str(), &a), 0);
  ASSERT_EQ(::stat((m_dir / "hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(b.st_nlink, 2u);
  struct stat disk_a, disk_b;
  ASSERT_EQ(::stat((m_disk / "orig").c_str(), &disk_a), 0);
  ASSERT_EQ(::stat((m_disk / "hard").c_str(), &disk_b), 0);
  EXPECT_EQ(disk_a.st_ino, disk_b.st_ino);

  // A FIFO.
  ASSERT_EQ(::mkfifo((m_dir / "fifo").c_str(), 0600), 0);
  ASSERT_EQ(::lstat((m_disk / "fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));

  // readdir sees all of it.
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(m_dir)) names.insert(entry.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"full", "p", "q", "link", "orig", "hard", "fifo"}));
}

TEST_F(StorageMount, ReaddirOfABigDirectory) {
  std::set<std::string> made;
  for (int i = 0; i < 3000; ++i) {
    std::string name = "entry-with-a-longish-name-" + std::to_string(i);
    write_file(m_disk / name, "");
    made.insert(name);
  }
  std::set<std::string> seen;
  for (const auto& entry : fs::directory_iterator(m_dir)) seen.insert(entry.path().filename());
  EXPECT_EQ(seen, made);
}

TEST_F(StorageMount, AttributesChmodChownTruncateUtimensFsyncStatfs) {
  write_file(m_dir / "f", "0123456789");
  ASSERT_EQ(::chmod((m_dir / "f").c_str(), 04711), 0);
  struct stat st;
  ASSERT_EQ(::stat((m_disk / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04711u);

  // Host ids of the vNode's range are stored as vNode ids, and shown back.
  ASSERT_EQ(::chown((m_dir / "f").c_str(), kBase + 1000, kBase + 100), 0);
  ASSERT_EQ(::stat((m_disk / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 100u);
  ASSERT_EQ(::stat((m_dir / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase + 1000);
  EXPECT_EQ(st.st_gid, kBase + 100);

  ASSERT_EQ(::truncate((m_dir / "f").c_str(), 4), 0);
  EXPECT_EQ(read_file(m_disk / "f"), "0123");
  int fd = ::open((m_dir / "f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 2), 0);
  EXPECT_EQ(::fsync(fd), 0);
  EXPECT_EQ(::fdatasync(fd), 0);
  ::close(fd);
  EXPECT_EQ(read_file(m_disk / "f"), "01");

  timespec times[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (m_dir / "f").c_str(), times, 0), 0);
  ASSERT_EQ(::stat((m_disk / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
  ASSERT_EQ(::stat((m_dir / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);

  struct statvfs mounted, disk;
  ASSERT_EQ(::statvfs(m_dir.c_str(), &mounted), 0);
  ASSERT_EQ(::statvfs(m_disk.c_str(), &disk), 0);
  EXPECT_EQ(mounted.f_blocks * mounted.f_frsize, disk.f_blocks * disk.f_frsize);
}

TEST_F(StorageMount, NewFilesTakeTheCallersVnodeIds) {
  // A child that becomes a vNode user (host ids base + 1000) creates files.
  ASSERT_EQ(::chmod(m_dir.c_str(), 0777), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setresgid(kBase + 1000, kBase + 1000, kBase + 1000) != 0 ||
        ::setresuid(kBase + 1000, kBase + 1000, kBase + 1000) != 0) {
      ::_exit(2);
    }
    int fd = ::open((m_dir / "mine").c_str(), O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || ::write(fd, "hi", 2) != 2) ::_exit(3);
    ::close(fd);
    if (::mkdir((m_dir / "mydir").c_str(), 0700) != 0) ::_exit(4);
    // Permissions are the kernel's: a root-only file stays closed.
    if (::open((s_root / "root" / ".").c_str(), O_RDONLY) >= 0) ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  struct stat st;
  ASSERT_EQ(::stat((m_disk / "mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((m_disk / "mydir").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(StorageMount, AnUnlinkedOpenFileStaysReadable) {
  write_file(m_dir / "doomed", "still readable");
  int fd = ::open((m_dir / "doomed").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink((m_dir / "doomed").c_str()), 0);
  EXPECT_FALSE(fs::exists(m_dir / "doomed"));
  char buffer[64] = {};
  // Not from the page cache: drop it first.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ASSERT_EQ(::pread(fd, buffer, sizeof buffer, 0), 14);
  EXPECT_EQ(std::string(buffer), "still readable");
  ::close(fd);
  // The hidden name goes with the last close.
  for (int i = 0; i < 100 && !fs::is_empty(m_disk); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(fs::is_empty(m_disk));
}

TEST_F(StorageMount, ExecutesABinaryFromTheMount) {
  fs::copy_file("/usr/bin/true", m_dir / "true");
  ASSERT_EQ(::chmod((m_dir / "true").c_str(), 0755), 0);
  EXPECT_EQ(read_file(m_disk / "true"), read_file("/usr/bin/true"));
  for (int round = 0; round < 2; ++round) {  // the second from the page cache
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      std::string path = (m_dir / "true").string();
      char* argv[] = {path.data(), nullptr};
      ::execve(path.c_str(), argv, environ);
      ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  // A file changed on the sComponent is read anew (auto_cache), not served
  // stale from the page cache.
  write_file(m_disk / "changing", "version one");
  EXPECT_EQ(read_file(m_dir / "changing"), "version one");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the attribute cache
  write_file(m_disk / "changing", "version two!");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(read_file(m_dir / "changing"), "version two!");
}

TEST_F(StorageMount, CountsOperations) {
  write_file(m_dir / "counted", "x");
  (void)read_file(m_dir / "counted");
  auto stats = s_storage->stats();
  EXPECT_GT(stats["getattr"], 0u);
  EXPECT_GT(stats["create"], 0u);
  EXPECT_GT(stats["write"], 0u);
  EXPECT_EQ(stats["mounts"], 1u);
  auto served = s_scomponent->served();
  EXPECT_GT(served["P2S_GETATTR"], 0u);
  EXPECT_GT(served["P2S_WRITE"], 0u);
}

// The launcher runs stock programs with the mount as their vNode's root:
// the vNode init (root of a user namespace, host ids base..) pivots into the
// FUSE mount, and a static and a dynamic binary run from it.
TEST_F(StorageMount, LauncherRunsProgramsFromTheMount) {
  auto made = pcomponent::make_ptrace_launcher("/proc/self/exe");
  ASSERT_TRUE(made) << made.error().text();
  auto launcher = std::move(made).value();
  fs::create_directories(s_tree / "bin");
  fs::copy_file(SK_PROBE_PATH, s_tree / "bin" / "sandbox_probe");
  fs::copy_file("/usr/bin/true", s_tree / "bin" / "true");
  for (const char* library : {"/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"}) {
    fs::create_directories((s_tree / (library + 1)).parent_path());
    fs::copy_file(fs::canonical(library), s_tree / (library + 1));
  }
  for (const char* file : {"bin/sandbox_probe", "bin/true"}) {
    ::chmod((s_tree / file).c_str(), 0755);
  }
  write_file(s_tree / "etc" / "motd", "served by the sComponent\n");

  auto run = [&](std::vector<std::string> argv) {
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pcomponent::LaunchSpec spec;
    spec.vnode = kVnode;
    spec.hostname = "web";
    spec.root = s_root;
    spec.argv = std::move(argv);
    spec.env = {"PATH=/bin"};
    spec.stdin_fd = out[0];
    spec.stdout_fd = out[1];
    spec.stderr_fd = out[1];
    auto done = std::make_shared<std::promise<pcomponent::ExitStatus>>();
    auto pid =
        launcher->launch(spec, [done](pcomponent::ExitStatus exit) { done->set_value(exit); });
    ::close(out[1]);
    std::string text;
    char buffer[4096];
    ssize_t got;
    while ((got = ::read(out[0], buffer, sizeof buffer)) > 0) text.append(buffer, got);
    ::close(out[0]);
    if (!pid) return std::make_pair(-1, "launch: " + pid.error().text());
    auto future = done->get_future();
    if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      return std::make_pair(-2, text);
    }
    return std::make_pair(future.get().code, text);
  };
  auto [id_status, id] = run({"sandbox_probe", "id"});
  EXPECT_EQ(id_status, 0) << id;
  EXPECT_EQ(id.substr(0, 11), "uid=0 gid=0") << id;
  auto [cat_status, motd] = run({"sandbox_probe", "cat", "/etc/motd"});
  EXPECT_EQ(cat_status, 0) << motd;
  EXPECT_EQ(motd, "served by the sComponent\n");
  auto [true_status, output] = run({"true"});
  EXPECT_EQ(true_status, 0) << output;
  launcher->drop_vnode(kVnode);
}

// Last in the suite's order that touches the shared mount: drop and mount
// again.
TEST_F(StorageMount, ZDropUnmountsAndRootMountsAgain) {
  write_file(m_dir / "kept", "kept");
  // A program with its cwd and an open file in the mount does not hold the
  // unmount up; it sees its root go.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t busy = ::fork();
  ASSERT_GE(busy, 0);
  if (busy == 0) {
    int fd = ::open((m_dir / "kept").c_str(), O_RDONLY);
    if (fd < 0 || ::chdir(m_dir.c_str()) != 0) ::_exit(1);
    (void)!::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  auto started = std::chrono::steady_clock::now();
  s_storage->drop(kVnode);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  ::kill(busy, SIGKILL);
  ::waitpid(busy, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_FALSE(is_mount_point(s_root));
  EXPECT_EQ(s_storage->root(kVnode).error().code(), ENOENT);
  auto root = s_storage->root(pcomponent::VnodeStorage{kVnode, "web", s_address});
  ASSERT_TRUE(root) << root.error().text();
  EXPECT_EQ(read_file(*root / m_name / "kept"), "kept");
}

// A dead FUSE mount (its daemon gone) under the run directory is detached
// at start-up; it does not block a new mount on the same path.
TEST(StorageManager, CleansStaleMounts) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  std::string pattern = (fs::temp_directory_path() / "sk-stale-XXXXXX").string();
  fs::path temp = ::mkdtemp(pattern.data());
  fs::path point = temp / "run" / "p9" / "old" / "root";
  fs::create_directories(point);
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string options = "fd=" + std::to_string(fd) + ",rootmode=40000,user_id=0,group_id=0";
  ASSERT_EQ(::mount("splitkernel:old", point.c_str(), "fuse.splitkernel", MS_NOSUID | MS_NODEV,
                    options.c_str()),
            0)
      << strerror(errno);
  ::close(fd);  // the "daemon" dies
  struct stat st;
  EXPECT_EQ(::stat(point.c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(pcomponent::StorageManager::clean_stale_mounts(temp / "run"), 1u);
  EXPECT_EQ(::stat(point.c_str(), &st), 0);
  EXPECT_FALSE(is_mount_point(point));
  std::error_code error;
  fs::remove_all(temp, error);
}

// ---- throughput (SK_STORAGE_BENCH=1) ------------------------------------------

TEST_F(StorageMount, Throughput) {
  if (std::getenv("SK_STORAGE_BENCH") == nullptr) GTEST_SKIP() << "set SK_STORAGE_BENCH=1";
  using Clock = std::chrono::steady_clock;
  constexpr size_t kTotal = 256u << 20;
  constexpr size_t kBlock = 1u << 20;
  std::string block = random_bytes(kBlock, 9);
  auto seconds = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };

  int fd = ::open((m_dir / "big").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  auto start = Clock::now();
  for (size_t done = 0; done < kTotal; done += kBlock) {
    ASSERT_EQ(::write(fd, block.data(), kBlock), static_cast<ssize_t>(kBlock));
  }
  double write_s = seconds(start);
  start = Clock::now();
  ASSERT_EQ(::fsync(fd), 0);
  double fsync_s = seconds(start);
  ::close(fd);

  fd = ::open((m_dir / "big").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  std::string buffer(kBlock, '\0');
  uint64_t reads_before = s_scomponent->served()["P2S_READ"];
  uint64_t writes = s_scomponent->served()["P2S_WRITE"];
  start = Clock::now();
  size_t total = 0;
  for (;;) {
    ssize_t got = ::read(fd, buffer.data(), kBlock);
    ASSERT_GE(got, 0);
    if (got == 0) break;
    total += static_cast<size_t>(got);
  }
  double read_s = seconds(start);
  ::close(fd);
  EXPECT_EQ(total, kTotal);
  uint64_t reads = s_scomponent->served()["P2S_READ"] - reads_before;

  // The raw fabric: 1 MiB P2S_READs straight from a client, no FUSE.
  pcomponent::StorageClient client(*s_client, s_address);
  std::vector<std::byte> into(kBlock);
  std::string path = "/" + m_name + "/big";
  start = Clock::now();
  for (size_t offset = 0; offset < kTotal; offset += kBlock) {
    ASSERT_EQ(client.read(kVnode, path, offset, into).value(), kBlock);
  }
  double raw_s = seconds(start);
  ASSERT_TRUE(client.create(kVnode, path + ".raw", 0644, O_WRONLY, 0, 0));
  start = Clock::now();
  for (size_t offset = 0; offset < kTotal; offset += kBlock) {
    auto data = wire::ByteView(reinterpret_cast<const std::byte*>(block.data()), kBlock);
    ASSERT_TRUE(client.write(kVnode, path + ".raw", offset, data, 0));
  }
  double raw_write_s = seconds(start);
  start = Clock::now();
  constexpr int kRounds = 2000;
  for (int i = 0; i < kRounds; ++i) ASSERT_TRUE(client.getattr(kVnode, "/"));
  double rtt_us = seconds(start) / kRounds * 1e6;
  auto connection = s_client->connect(s_address).value();
  start = Clock::now();
  for (int i = 0; i < kRounds; ++i) ASSERT_TRUE(connection->call(wire::Opcode::FABRIC_PING, 0, {}));
  double ping_us = seconds(start) / kRounds * 1e6;

  auto mib_s = [&](double s) { return kTotal / s / (1 << 20); };
  std::printf("through the mount: write %.0f MiB/s (then fsync %.2f s), read %.0f MiB/s\n",
              mib_s(write_s), fsync_s, mib_s(read_s));
  std::printf("raw fabric: 1 MiB P2S_WRITE %.0f MiB/s, ", mib_s(raw_write_s));
  std::printf(
      "1 MiB P2S_READ %.0f MiB/s; P2S_GETATTR round trip %.1f us; "
      "FABRIC_PING %.1f us\n",
      mib_s(raw_s), rtt_us, ping_us);
  std::printf("requests per MiB: %.2f writes (before the read), %.2f reads\n",
              double(writes) / (kTotal >> 20), double(reads) / (kTotal >> 20));
}

}  // namespace
}  // namespace sk

// The launcher re-runs this binary as each vNode's init.
int main(int argc, char** argv) {
  if (sk::pcomponent::is_vnode_init(argc, argv)) sk::pcomponent::vnode_init_main(argc, argv);
  sk::pcomponent::block_sigchld();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
