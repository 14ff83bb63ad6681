// The sComponent's file store and path confinement: trees per vNode that
// survive restarts, and paths that can never leave their vNode's tree
// (openat2 and the fallback walk must agree).
#include "scomponent/file_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "scomponent/confine.h"

#include "tests/unit/temp_dir.h"

namespace sk::scomponent {
namespace {

namespace fs = std::filesystem;

// Each test's directories carry this file's prefix.
struct TempDir : testing_support::TempDir {
  TempDir() : testing_support::TempDir("sk-file-store") {}
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string read_fd(int fd) {
  std::string text;
  char buffer[256];
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, got);
  return text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- confinement ----------------------------------------------------------

class Confine : public ::testing::TestWithParam<Resolver> {
 protected:
  void SetUp() override {
    m_root = m_temp.path() / "root";
    m_outside = m_temp.path() / "outside";
    fs::create_directories(m_root / "etc");
    fs::create_directories(m_root / "dir" / "sub");
    fs::create_directories(m_outside);
    write_file(m_outside / "secret", "host secret");
    write_file(m_root / "etc" / "shadow", "vnode shadow");
    fs::create_directories(m_root / "outside");
    write_file(m_root / "outside" / "secret", "inside decoy");
    fs::create_directory_symlink("/", m_root / "to_root");
    fs::create_directory_symlink("../../outside", m_root / "escape");
    fs::create_symlink(m_outside / "secret", m_root / "host_path");
    fs::create_symlink("/../../created_by_link", m_root / "dangling");
    fs::create_symlink("loop_b", m_root / "loop_a");
    fs::create_symlink("loop_a", m_root / "loop_b");
    fs::create_directory_symlink("/proc/self/root", m_root / "magic");
    fs::create_directory_symlink("../etc", m_root / "dir" / "etc_link");
    m_root_fd = UniqueFd(::open(m_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(m_root_fd);
  }

  Result<UniqueFd> open(std::string_view path, int flags = O_RDONLY, mode_t mode = 0) {
    return open_confined(m_root_fd.get(), path, flags, mode, GetParam());
  }

  // Reads `path`, which must resolve (inside the tree) to a file.
  std::string read(std::string_view path) {
    auto fd = open(path);
    if (!fd) return "error: " + fd.error().text();
    return read_fd(fd->get());
  }

  TempDir m_temp;
  fs::path m_root;
  fs::path m_outside;
  UniqueFd m_root_fd;
};

TEST_P(Confine, DotDotChainsStopAtTheRoot) {
  EXPECT_EQ(read("../../etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("/../../../../etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("dir/sub/../../../../../../etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("../outside/secret"), "inside decoy");
  EXPECT_EQ(read("dir/../../../../outside/secret"), "inside decoy");
}

TEST_P(Confine, AbsoluteSymlinkToSlashIsTheTreesRoot) {
  EXPECT_EQ(read("to_root/etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("to_root/../../outside/secret"), "inside decoy");
  EXPECT_EQ(read("to_root/to_root/to_root/etc/shadow"), "vnode shadow");
}

TEST_P(Confine, SymlinksPointingOutsideStayInside) {
  // "../../outside" from the root is the tree's own /outside.
  EXPECT_EQ(read("escape/secret"), "inside decoy");
  // A host path in a link is a path inside the tree, where nothing is.
  auto host = open("host_path");
  ASSERT_FALSE(host);
  EXPECT_EQ(host.error().code(), ENOENT);
  EXPECT_EQ(read("dir/etc_link/shadow"), "vnode shadow");
}

TEST_P(Confine, MagicLinkTargetsAreJustPathsInTheTree) {
  auto magic = open("magic/etc/shadow");
  ASSERT_FALSE(magic);
  EXPECT_EQ(magic.error().code(), ENOENT);
}

TEST_P(Confine, CreationThroughLinksLandsInside) {
  auto created = open("escape/new_file", O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_TRUE(created) << created.error().text();
  EXPECT_TRUE(fs::exists(m_root / "outside" / "new_file"));
  EXPECT_FALSE(fs::exists(m_outside / "new_file"));

  auto through_dangling = open("dangling", O_WRONLY | O_CREAT, 0644);
  ASSERT_TRUE(through_dangling) << through_dangling.error().text();
  EXPECT_TRUE(fs::exists(m_root / "created_by_link"));
  EXPECT_FALSE(fs::exists(m_temp.path().parent_path() / "created_by_link"));
  EXPECT_FALSE(fs::exists("/created_by_link"));
}

TEST_P(Confine, NoFollowLoopsAndBadPaths) {
  auto nofollow = open("to_root", O_RDONLY | O_NOFOLLOW);
  ASSERT_FALSE(nofollow);
  EXPECT_EQ(nofollow.error().code(), ELOOP);
  auto link = open("to_root", O_PATH | O_NOFOLLOW);
  ASSERT_TRUE(link) << link.error().text();
  struct stat st;
  ASSERT_EQ(::fstat(link->get(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));

  auto loop = open("loop_a");
  ASSERT_FALSE(loop);
  EXPECT_EQ(loop.error().code(), ELOOP);

  EXPECT_EQ(open("").error().code(), EINVAL);
  EXPECT_EQ(open(std::string_view("etc\0shadow", 10)).error().code(), EINVAL);
  EXPECT_EQ(open("etc/shadow/").error().code(), ENOTDIR);
  EXPECT_EQ(open("etc/shadow/x").error().code(), ENOTDIR);
}

TEST_P(Confine, SlashIsTheRoot) {
  for (auto path : {"/", ".", "..", "/../..", "to_root/"}) {
    auto fd = open(path, O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(fd) << path << ": " << fd.error().text();
    struct stat got, want;
    ASSERT_EQ(::fstat(fd->get(), &got), 0);
    ASSERT_EQ(::stat(m_root.c_str(), &want), 0);
    EXPECT_EQ(got.st_ino, want.st_ino) << path;
  }
}

TEST_P(Confine, ParentAndName) {
  auto parent = open_parent_confined(m_root_fd.get(), "escape/secret", GetParam());
  ASSERT_TRUE(parent) << parent.error().text();
  EXPECT_EQ(parent->name, "secret");
  struct stat got, want;
  ASSERT_EQ(::fstat(parent->dir.get(), &got), 0);
  ASSERT_EQ(::stat((m_root / "outside").c_str(), &want), 0);
  EXPECT_EQ(got.st_ino, want.st_ino);

  // The last component is not followed: it names the link itself.
  auto link = open_parent_confined(m_root_fd.get(), "/../to_root/", GetParam());
  ASSERT_TRUE(link);
  EXPECT_EQ(link->name, "to_root");

  auto root = open_parent_confined(m_root_fd.get(), "/", GetParam());
  ASSERT_TRUE(root);
  EXPECT_EQ(root->name, "");

  EXPECT_EQ(open_parent_confined(m_root_fd.get(), "dir/..", GetParam()).error().code(), EINVAL);
  EXPECT_EQ(open_parent_confined(m_root_fd.get(), "dir/.", GetParam()).error().code(), EINVAL);
  EXPECT_EQ(open_parent_confined(m_root_fd.get(), "nothere/x", GetParam()).error().code(), ENOENT);
}

INSTANTIATE_TEST_SUITE_P(Resolvers, Confine, ::testing::Values(Resolver::kOpenat2, Resolver::kWalk),
                         [](const auto& info) {
                           return info.param == Resolver::kOpenat2 ? "openat2" : "walk";
                         });

// ---- file store -------------------------------------------------------------

TEST(FileStore, OpenCreatesTheLayout) {
  TempDir temp;
  auto data = temp.path() / "a" / "b";
  auto store = FileStore::open(data);
  ASSERT_TRUE(store) << store.error().text();
  EXPECT_TRUE(fs::is_directory(data / "vnodes"));
  EXPECT_EQ((*store)->vnode_count(), 0u);
  EXPECT_GT((*store)->free_space().value(), 0u);
}

TEST(FileStore, CreateAndDestroyTrees) {
  TempDir temp;
  auto store = std::move(FileStore::open(temp.path()).value());
  ASSERT_TRUE(store->create_vnode(3, "web"));
  ASSERT_TRUE(fs::is_directory(temp.path() / "vnodes" / "web"));
  write_file(temp.path() / "vnodes" / "web" / "index.html", "hello");
  EXPECT_EQ(store->vnode_name(3).value(), "web");

  // Through the root the store hands out, confined.
  auto root = store->root(3).value();
  auto fd = open_confined(root->get(), "/../index.html", O_RDONLY);
  ASSERT_TRUE(fd);
  EXPECT_EQ(read_fd(fd->get()), "hello");

  ASSERT_TRUE(store->destroy_vnode(3));
  EXPECT_FALSE(fs::exists(temp.path() / "vnodes" / "web"));
  EXPECT_EQ(store->destroy_vnode(3).error().code(), ENOENT);
  EXPECT_EQ(store->root(3).error().code(), ENOENT);
  EXPECT_TRUE(fs::is_empty(temp.path() / "trash"));
}

TEST(FileStore, TreesSurviveRestarts) {
  TempDir temp;
  {
    auto store = std::move(FileStore::open(temp.path()).value());
    ASSERT_TRUE(store->create_vnode(3, "web"));
    ASSERT_TRUE(store->create_vnode(4, "db"));
    write_file(temp.path() / "vnodes" / "web" / "kept", "still here");
  }
  auto store = std::move(FileStore::open(temp.path()).value());
  auto vnodes = store->vnodes();
  ASSERT_EQ(vnodes.size(), 2u);
  EXPECT_EQ(vnodes[3], "web");
  EXPECT_EQ(vnodes[4], "db");
  // Creating it again (the monitor re-sends) keeps the data.
  ASSERT_TRUE(store->create_vnode(3, "web"));
  EXPECT_EQ(read_file(temp.path() / "vnodes" / "web" / "kept"), "still here");
  // The restarted store still knows which tree vNode 4 is.
  ASSERT_TRUE(store->destroy_vnode(4));
  EXPECT_FALSE(fs::exists(temp.path() / "vnodes" / "db"));
  EXPECT_TRUE(fs::exists(temp.path() / "vnodes" / "web" / "kept"));
}

TEST(FileStore, TreesFollowNamesAcrossRenumbering) {
  TempDir temp;
  auto store = std::move(FileStore::open(temp.path()).value());
  ASSERT_TRUE(store->create_vnode(3, "web"));
  write_file(temp.path() / "vnodes" / "web" / "kept", "data");
  // A monitor that restarted calls "web" vNode 9 and gives 3 to "db".
  ASSERT_TRUE(store->create_vnode(9, "web"));
  ASSERT_TRUE(store->create_vnode(3, "db"));
  EXPECT_EQ(store->vnode_name(9).value(), "web");
  EXPECT_EQ(store->vnode_name(3).value(), "db");
  EXPECT_EQ(store->vnode_count(), 2u);
  auto root = store->root(9).value();
  auto fd = open_confined(root->get(), "kept", O_RDONLY);
  ASSERT_TRUE(fd);
  EXPECT_EQ(read_fd(fd->get()), "data");
  // Rebinding an id leaves the old tree on disk.
  ASSERT_TRUE(store->create_vnode(9, "cache"));
  EXPECT_TRUE(fs::exists(temp.path() / "vnodes" / "web" / "kept"));
}

TEST(FileStore, RefusesBadNamesAndIds) {
  TempDir temp;
  auto store = std::move(FileStore::open(temp.path()).value());
  EXPECT_EQ(store->create_vnode(0, "web").error().code(), EINVAL);
  for (auto name : {"", "..", ".", "a/b", "../x", "Web", "-x", "x y"}) {
    EXPECT_EQ(store->create_vnode(5, name).error().code(), EINVAL) << name;
  }
  EXPECT_EQ(store->vnode_count(), 0u);
  EXPECT_EQ(fs::directory_iterator(temp.path() / "vnodes"), fs::directory_iterator());
}

TEST(FileStore, RefusesACorruptIndex) {
  TempDir temp;
  for (auto text : {"not json", "{\"version\":1}",
                    "{\"version\":1,\"vnodes\":[{\"id\":0,"
                    "\"name\":\"a\"}]}",
                    "{\"version\":1,\"vnodes\":[{\"id\":1,\"name\":\"../etc\"}]}",
                    "{\"version\":1,\"vnodes\":[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":"
                    "\"a\"}]}"}) {
    write_file(temp.path() / "vnodes.json", text);
    auto store = FileStore::open(temp.path());
    ASSERT_FALSE(store) << text;
    EXPECT_EQ(store.error().code(), EINVAL) << text;
  }
}

TEST(FileStore, RefusesATreeThatIsASymlink) {
  TempDir temp;
  auto store = std::move(FileStore::open(temp.path()).value());
  fs::create_directory(temp.path() / "elsewhere");
  fs::create_directory_symlink(temp.path() / "elsewhere", temp.path() / "vnodes" / "web");
  auto created = store->create_vnode(3, "web");
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), ENOTDIR);
}

TEST(FileStore, DestroyRemovesReadOnlyDirectoriesAndEmptiesTrashAtStart) {
  TempDir temp;
  {
    auto store = std::move(FileStore::open(temp.path()).value());
    ASSERT_TRUE(store->create_vnode(3, "web"));
    auto locked = temp.path() / "vnodes" / "web" / "locked";
    fs::create_directory(locked);
    write_file(locked / "file", "x");
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
    ASSERT_TRUE(store->destroy_vnode(3));
    EXPECT_FALSE(fs::exists(temp.path() / "vnodes" / "web"));
  }
  fs::create_directories(temp.path() / "trash" / "old.1.2" / "deep");
  auto store = FileStore::open(temp.path());
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::is_empty(temp.path() / "trash"));
}

TEST(FileStore, MeasuresUsage) {
  TempDir temp;
  auto store = std::move(FileStore::open(temp.path()).value());
  ASSERT_TRUE(store->create_vnode(3, "web"));
  uint64_t before = store->measure_usage();
  write_file(temp.path() / "vnodes" / "web" / "big", std::string(1 << 20, 'x'));
  ::sync();
  uint64_t after = store->measure_usage();
  EXPECT_GE(after, before + (1 << 20) - 4096);
  // A second name for the same file costs nothing.
  fs::create_hard_link(temp.path() / "vnodes" / "web" / "big",
                       temp.path() / "vnodes" / "web" / "alias");
  EXPECT_LE(store->measure_usage(), after + 8192);
}

}  // namespace
}  // namespace sk::scomponent
