// The P2S_ storage protocol without FUSE: its decoders against truncated,
// garbage and escaping input; the sComponent's file operations on a tree
// (confinement: no path or symlink reaches outside; owners; durability);
// image installation; and the sComponent's P2S_ handlers through its
// dispatcher.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "kernel/wire/storage_messages.h"
#include "scomponent/file_ops.h"
#include "scomponent/image.h"
#include "scomponent/scomponent.h"
#include "tests/unit/fake_transport.h"
#include "tests/unit/temp_dir.h"

namespace sk {
namespace {

namespace fs = std::filesystem;
using scomponent::FileOps;
using scomponent::Resolver;
using testing::dispatch;
using testing::make_request;
using wire::Opcode;

// Each test's directories carry this file's prefix.
struct TempDir : testing_support::TempDir {
  TempDir() : testing_support::TempDir("sk-storage") {}
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

wire::Bytes garbage(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  wire::Bytes bytes(size);
  for (auto& b : bytes) b = std::byte(static_cast<uint8_t>(random()));
  return bytes;
}

wire::Bytes path_body(std::string_view path, uint32_t flags = 0) {
  return wire::encode_storage_request(
      wire::P2sPathRequest{static_cast<uint32_t>(path.size()), flags}, path);
}

// ---- decoders -----------------------------------------------------------------

TEST(StorageWire, CanonicalPathsOnly) {
  for (auto good : {"/", "/etc", "/etc/passwd", "/a/b/c.d", "/...", "/.hidden", "/a b"}) {
    EXPECT_TRUE(wire::check_storage_path(good)) << good;
  }
  for (auto bad : {"", "etc", "//", "/etc/", "/./etc", "/etc/.", "/../etc/shadow",
                   "/a/../../etc/shadow", "/a//b", "/..", "../../etc/shadow"}) {
    auto checked = wire::check_storage_path(bad);
    ASSERT_FALSE(checked) << bad;
    EXPECT_EQ(checked.error().code(), EINVAL) << bad;
  }
  EXPECT_FALSE(wire::check_storage_path(std::string_view("/a\0b", 4)));
  EXPECT_EQ(wire::check_storage_path("/" + std::string(256, 'x')).error().code(), ENAMETOOLONG);
  EXPECT_TRUE(wire::check_storage_path("/" + std::string(255, 'x')));
  std::string deep;
  while (deep.size() <= wire::kMaxStoragePath) deep += "/abcdefgh";
  EXPECT_EQ(wire::check_storage_path(deep).error().code(), ENAMETOOLONG);
  // Symlink targets are any text but empty or holding a NUL.
  EXPECT_TRUE(wire::check_link_target("../../../etc/shadow"));
  EXPECT_TRUE(wire::check_link_target("/proc/1/root"));
  EXPECT_FALSE(wire::check_link_target(""));
  EXPECT_FALSE(wire::check_link_target(std::string_view("a\0", 2)));
}

TEST(StorageWire, RoundTripOfEachRequestShape) {
  auto data = garbage(100, 1);
  wire::P2sWriteRequest write{42, 100, 4, wire::kWriteAppend, 0};
  auto bytes = wire::encode_storage_request(write, "/log", {}, data);
  auto decoded = wire::decode_storage_request<wire::P2sWriteRequest>(bytes);
  ASSERT_TRUE(decoded) << decoded.error().text();
  EXPECT_EQ(decoded->path, "/log");
  EXPECT_EQ(decoded->message.offset, 42u);
  ASSERT_EQ(decoded->data.size(), 100u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), decoded->data.begin()));

  wire::P2sTwoPathRequest rename{2, 4, RENAME_NOREPLACE, 0};
  // The decoded views point into the payload, which must outlive them.
  auto rename_bytes = wire::encode_storage_request(rename, "/a", "/b/c");
  auto renamed = wire::decode_storage_request<wire::P2sTwoPathRequest>(rename_bytes);
  ASSERT_TRUE(renamed) << renamed.error().text();
  EXPECT_EQ(renamed->path, "/a");
  EXPECT_EQ(renamed->second, "/b/c");

  wire::P2sMakeRequest symlink{0, 0, 0, 1000, 1000, 5, 7};
  auto symlink_bytes = wire::encode_storage_request(symlink, "/link", "../../x");
  auto linked = wire::decode_storage_request<wire::P2sMakeRequest>(symlink_bytes);
  ASSERT_TRUE(linked) << linked.error().text();
  EXPECT_EQ(linked->second, "../../x");
}

TEST(StorageWire, TruncatedOversizedAndLyingLengthsAreRejected) {
  auto bytes = wire::encode_storage_request(wire::P2sReadRequest{0, 4096, 9}, "/etc/motd");
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto decoded =
        wire::decode_storage_request<wire::P2sReadRequest>(wire::ByteView(bytes).first(length));
    EXPECT_FALSE(decoded) << "length " << length;
  }
  bytes.push_back(std::byte{'x'});
  EXPECT_EQ(wire::decode_storage_request<wire::P2sReadRequest>(bytes).error().code(), EBADMSG);

  // Lengths the payload does not hold, or past the limits.
  auto lying = wire::encode_storage_request(wire::P2sPathRequest{1000, 0}, "/etc");
  EXPECT_EQ(wire::decode_storage_request<wire::P2sPathRequest>(lying).error().code(), EBADMSG);
  auto huge = wire::encode_storage_request(wire::P2sPathRequest{0xffffffffu, 0}, "/etc");
  EXPECT_EQ(wire::decode_storage_request<wire::P2sPathRequest>(huge).error().code(), ENAMETOOLONG);
  auto big_read =
      wire::encode_storage_request(wire::P2sReadRequest{0, wire::kMaxStorageIo + 1, 2}, "/a");
  EXPECT_EQ(wire::decode_storage_request<wire::P2sReadRequest>(big_read).error().code(), EINVAL);
  auto wrap = wire::encode_storage_request(wire::P2sReadRequest{~uint64_t{0} - 3, 100, 2}, "/a");
  EXPECT_FALSE(wire::decode_storage_request<wire::P2sReadRequest>(wrap));
  auto big_write = wire::encode_storage_request(
      wire::P2sWriteRequest{0, wire::kMaxStorageIo + 1, 2, 0, 0}, "/a");
  EXPECT_FALSE(wire::decode_storage_request<wire::P2sWriteRequest>(big_write));
  auto bad_rename = wire::encode_storage_request(
      wire::P2sTwoPathRequest{2, 2, RENAME_NOREPLACE | RENAME_EXCHANGE, 0}, "/a", "/b");
  EXPECT_FALSE(wire::decode_storage_request<wire::P2sTwoPathRequest>(bad_rename));
  wire::P2sSetattrRequest setattr{};
  setattr.valid = wire::kSetMode;
  setattr.mode = S_IFREG | 0644;
  setattr.path_length = 2;
  EXPECT_FALSE(wire::decode_storage_request<wire::P2sSetattrRequest>(
      wire::encode_storage_request(setattr, "/a")));
  setattr.mode = 0644;
  setattr.valid |= wire::kSetMtime;
  setattr.mtime.nsec = 1'000'000'000;
  EXPECT_FALSE(wire::decode_storage_request<wire::P2sSetattrRequest>(
      wire::encode_storage_request(setattr, "/a")));

  // Escaping paths are not canonical: refused before any lookup.
  for (auto path : {"/../../etc/shadow", "../etc/shadow", "/a/../../../b"}) {
    auto escape = wire::encode_storage_request(
        wire::P2sPathRequest{static_cast<uint32_t>(strlen(path)), 0}, path);
    EXPECT_EQ(wire::decode_storage_request<wire::P2sPathRequest>(escape).error().code(), EINVAL)
        << path;
  }
  auto escape_to =
      wire::encode_storage_request(wire::P2sTwoPathRequest{2, 10, 0, 0}, "/a", "/../../etc");
  EXPECT_EQ(wire::decode_storage_request<wire::P2sTwoPathRequest>(escape_to).error().code(),
            EINVAL);
}

TEST(StorageWire, GarbageNeverDecodesIntoNonsense) {
  for (uint32_t seed = 0; seed < 2000; ++seed) {
    auto bytes = garbage(seed % 300, seed);
    // Whatever decodes must be self-consistent.
    if (auto d = wire::decode_storage_request<wire::P2sPathRequest>(bytes)) {
      EXPECT_TRUE(wire::check_storage_path(d->path));
    }
    if (auto d = wire::decode_storage_request<wire::P2sWriteRequest>(bytes)) {
      EXPECT_EQ(d->data.size(), d->message.length);
    }
    (void)wire::decode_storage_request<wire::P2sMakeRequest>(bytes);
    (void)wire::decode_storage_request<wire::P2sSetattrRequest>(bytes);
    (void)wire::decode_storage_request<wire::P2sReaddirRequest>(bytes);
    (void)wire::decode_dirents(bytes, seed % 7);
    (void)wire::decode_data_reply(bytes);
  }
}

TEST(StorageWire, DirectoryEntries) {
  wire::Bytes out;
  wire::append_dirent(out, 11, 100, DT_REG, "file");
  wire::append_dirent(out, 12, 200, DT_DIR, "dir");
  auto entries = wire::decode_dirents(out, 2);
  ASSERT_TRUE(entries) << entries.error().text();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[1].name, "dir");
  EXPECT_EQ((*entries)[1].next_cookie, 200u);
  EXPECT_EQ((*entries)[0].type, DT_REG);
  EXPECT_FALSE(wire::decode_dirents(out, 3));  // more than there are
  EXPECT_FALSE(wire::decode_dirents(out, 1));  // bytes left over
  EXPECT_FALSE(wire::decode_dirents(wire::ByteView(out).first(out.size() - 1), 2));
  EXPECT_FALSE(wire::decode_dirents(out, 0xffffffffu));
  wire::Bytes bad;
  wire::append_dirent(bad, 1, 1, DT_REG, "a/b");
  EXPECT_FALSE(wire::decode_dirents(bad, 1));
  wire::Bytes empty_name;
  wire::append_dirent(empty_name, 1, 1, DT_REG, "");
  EXPECT_FALSE(wire::decode_dirents(empty_name, 1));
}

// ---- file operations on a tree ---------------------------------------------------

class TreeOps : public ::testing::TestWithParam<Resolver> {
 protected:
  void SetUp() override {
    m_tree = m_temp.path() / "tree";
    m_outside = m_temp.path() / "outside";
    fs::create_directories(m_tree / "etc");
    fs::create_directories(m_outside);
    write_file(m_outside / "shadow", "host secret");
    write_file(m_tree / "etc" / "shadow", "vnode shadow");
    fs::create_directory_symlink("/", m_tree / "to_root");
    fs::create_directory_symlink("../../outside", m_tree / "escape");
    fs::create_directory_symlink("/proc/1/root", m_tree / "proc_root");
    fs::create_symlink(m_outside / "shadow", m_tree / "host_path");
    m_root = UniqueFd(::open(m_tree.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(m_root);
  }
  FileOps ops() const { return FileOps(m_root.get(), GetParam()); }

  TempDir m_temp;
  fs::path m_tree;
  fs::path m_outside;
  UniqueFd m_root;
};

TEST_P(TreeOps, EscapingPathsAndSymlinksStayInside) {
  auto read = [&](std::string_view path) -> std::string {
    std::string buffer(100, '\0');
    auto got = ops().read(path, 0, std::span(reinterpret_cast<std::byte*>(buffer.data()), 100));
    if (!got) return "error " + std::to_string(got.error().code());
    buffer.resize(*got);
    return buffer;
  };
  // FileOps is below the decoder, which would refuse these; it must still
  // keep them inside.
  EXPECT_EQ(read("../../etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("/../../../etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("/to_root/etc/shadow"), "vnode shadow");
  EXPECT_EQ(read("/escape/shadow"), "error " + std::to_string(ENOENT));
  EXPECT_EQ(read("/host_path"), "error " + std::to_string(ENOENT));
  EXPECT_EQ(read("/proc_root/etc/shadow"), "error " + std::to_string(ENOENT));

  // Writing and creating through escaping links land inside, or fail.
  auto data = wire::ByteView(reinterpret_cast<const std::byte*>("pwned"), 5);
  EXPECT_FALSE(ops().write("/host_path", 0, data, 0));
  EXPECT_EQ(read_file(m_outside / "shadow"), "host secret");
  ASSERT_TRUE(ops().write("/to_root/etc/shadow", 0, data, 0));
  EXPECT_EQ(read_file(m_tree / "etc" / "shadow"), "pwned shadow");
  EXPECT_FALSE(ops().create("/escape/new", 0644, 0, {}));
  EXPECT_FALSE(fs::exists(m_outside / "new"));
  ASSERT_TRUE(ops().create("/to_root/new", 0644, 0, {}));
  EXPECT_TRUE(fs::exists(m_tree / "new"));
  EXPECT_FALSE(ops().mkdir("/escape/dir", 0755, {}));
  EXPECT_FALSE(ops()
                   .setattr("/host_path",
                            [] {
                              wire::P2sSetattrRequest r{};
                              r.valid = wire::kSetSize;
                              return r;
                            }())
                   .ok() &&
               fs::file_size(m_outside / "shadow") == 0);
  EXPECT_EQ(read_file(m_outside / "shadow"), "host secret");

  // Operations on names act on the link itself, never its target.
  ASSERT_TRUE(ops().unlink("/host_path"));
  EXPECT_TRUE(fs::exists(m_outside / "shadow"));
  EXPECT_EQ(ops().getattr("/escape").value().mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
  wire::P2sSetattrRequest chown{};
  chown.valid = wire::kSetUid | wire::kSetGid;
  chown.uid = 1234;
  chown.gid = 1234;
  ASSERT_TRUE(ops().setattr("/escape", chown));
  struct stat st;
  ASSERT_EQ(::lstat((m_tree / "escape").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  ASSERT_EQ(::stat(m_outside.c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 1234u);
  wire::P2sSetattrRequest chmod{};
  chmod.valid = wire::kSetMode;
  chmod.mode = 0777;
  EXPECT_EQ(ops().setattr("/escape", chmod).error().code(), EOPNOTSUPP);
  // rename and link through a link to "/" stay in the tree.
  ASSERT_TRUE(ops().rename("/to_root/new", "/to_root/etc/moved", 0));
  EXPECT_TRUE(fs::exists(m_tree / "etc" / "moved"));
  EXPECT_FALSE(ops().rename("/etc/moved", "/escape/moved", 0));
  EXPECT_FALSE(fs::exists(m_outside / "moved"));
  EXPECT_FALSE(ops().link("/etc/moved", "/escape/linked"));
  // The root itself cannot be removed, renamed or linked.
  EXPECT_FALSE(ops().rmdir("/"));
  EXPECT_FALSE(ops().rename("/", "/x", 0));
  EXPECT_FALSE(ops().unlink("/"));
}

TEST_P(TreeOps, CreateGivesTheOwnerAndExactMode) {
  ::umask(022);
  auto st = ops().create("/f", 0666, O_EXCL, {1000, 100});
  ASSERT_TRUE(st) << st.error().text();
  EXPECT_EQ(st->uid, 1000u);
  EXPECT_EQ(st->gid, 100u);
  EXPECT_EQ(st->mode, static_cast<uint32_t>(S_IFREG | 0666));  // not masked by our umask
  EXPECT_EQ(ops().create("/f", 0600, O_EXCL, {}).error().code(), EEXIST);
  // Without O_EXCL an existing file is opened (and kept: no O_TRUNC).
  write_file(m_tree / "f", "data");
  EXPECT_EQ(ops().create("/f", 0600, 0, {}).value().size, 4u);
  EXPECT_EQ(ops().create("/f", 0600, O_WRONLY | O_TRUNC, {}).value().size, 0u);

  auto dir = ops().mkdir("/d", 02775, {5, 6});
  ASSERT_TRUE(dir) << dir.error().text();
  EXPECT_EQ(dir->mode & 07777, 02775u);
  EXPECT_EQ(dir->uid, 5u);
  // In a setgid directory, new names take its group and new directories
  // its setgid bit, as on Linux.
  auto inner = ops().mkdir("/d/inner", 0755, {7, 8});
  ASSERT_TRUE(inner);
  EXPECT_EQ(inner->gid, 6u);
  EXPECT_EQ(inner->mode & 07777, 02755u);
  auto file = ops().create("/d/file", 0644, 0, {7, 8});
  ASSERT_TRUE(file);
  EXPECT_EQ(file->gid, 6u);
  EXPECT_EQ(file->uid, 7u);

  auto link = ops().symlink("/l", "/etc/shadow", {9, 9});
  ASSERT_TRUE(link);
  EXPECT_EQ(link->mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
  EXPECT_EQ(link->uid, 9u);
  EXPECT_EQ(ops().readlink("/l").value(), "/etc/shadow");
  EXPECT_EQ(ops().readlink("/f").error().code(), EINVAL);

  auto fifo = ops().mknod("/fifo", S_IFIFO | 0640, 0, {3, 3});
  ASSERT_TRUE(fifo) << fifo.error().text();
  EXPECT_EQ(fifo->mode, static_cast<uint32_t>(S_IFIFO | 0640));
  EXPECT_EQ(ops().mknod("/null", S_IFCHR | 0666, makedev(1, 3), {}).error().code(), EPERM);
  // A FIFO is never opened for data (a worker would block).
  std::byte buffer[8];
  EXPECT_FALSE(ops().read("/fifo", 0, buffer));
}

TEST_P(TreeOps, ReadWriteAppendTruncateTimes) {
  ASSERT_TRUE(ops().create("/f", 0644, 0, {}));
  auto bytes = [](std::string_view text) {
    return wire::ByteView(reinterpret_cast<const std::byte*>(text.data()), text.size());
  };
  EXPECT_EQ(ops().write("/f", 0, bytes("hello world"), 0).value().size, 11u);
  EXPECT_EQ(ops().write("/f", 20, bytes("!"), 0).value().size, 21u);  // a hole
  auto appended = ops().write("/f", 0, bytes("+end"), wire::kWriteAppend);
  ASSERT_TRUE(appended);
  EXPECT_EQ(appended->written, 4u);
  EXPECT_EQ(appended->size, 25u);
  EXPECT_EQ(read_file(m_tree / "f"), std::string("hello world") + std::string(9, '\0') + "!+end");
  EXPECT_TRUE(ops().write("/f", 0, bytes("sync"), wire::kWriteSync | wire::kWriteDataSync));

  std::string buffer(64, '\0');
  auto got = ops().read("/f", 6, std::span(reinterpret_cast<std::byte*>(buffer.data()), 64));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 19u);  // short at the end of the file
  EXPECT_EQ(
      ops().read("/f", 1000, std::span(reinterpret_cast<std::byte*>(buffer.data()), 64)).value(),
      0u);
  EXPECT_EQ(ops()
                .read("/etc", 0, std::span(reinterpret_cast<std::byte*>(buffer.data()), 64))
                .error()
                .code(),
            EISDIR);

  wire::P2sSetattrRequest request{};
  request.valid = wire::kSetSize | wire::kSetMode | wire::kSetAtime | wire::kSetMtime;
  request.size = 3;
  request.mode = 0600;
  request.atime = {1000, 5, 0};
  request.mtime = {2000, 6, 0};
  auto st = ops().setattr("/f", request);
  ASSERT_TRUE(st) << st.error().text();
  EXPECT_EQ(st->size, 3u);
  EXPECT_EQ(st->mode & 07777, 0600u);
  EXPECT_EQ(st->mtime.sec, 2000);
  EXPECT_EQ(st->mtime.nsec, 6u);
  EXPECT_EQ(st->atime.sec, 1000);
  request.valid = wire::kSetMtimeNow;
  EXPECT_GT(ops().setattr("/f", request).value().mtime.sec, 2000);

  // open: O_TRUNC truncates; a directory cannot be opened for writing.
  EXPECT_EQ(ops().open("/f", O_WRONLY | O_TRUNC).value().size, 0u);
  EXPECT_EQ(ops().open("/etc", O_WRONLY).error().code(), EISDIR);
  EXPECT_EQ(ops().open("/missing", O_RDONLY).error().code(), ENOENT);
}

TEST_P(TreeOps, FsyncAndStatfs) {
  ASSERT_TRUE(ops().create("/etc/durable", 0644, 0, {}));
  auto data = wire::ByteView(reinterpret_cast<const std::byte*>("x"), 1);
  ASSERT_TRUE(ops().write("/etc/durable", 0, data, 0));
  // Durability itself needs a power cut to test; what we can check is that
  // fsync and fdatasync reach a file, a directory and the root, and fail on
  // what is not there.
  EXPECT_TRUE(ops().fsync("/etc/durable", false));
  EXPECT_TRUE(ops().fsync("/etc/durable", true));
  EXPECT_TRUE(ops().fsync("/etc", false));
  EXPECT_TRUE(ops().fsync("/", false));
  EXPECT_EQ(ops().fsync("/missing", false).error().code(), ENOENT);
  auto fs = ops().statfs();
  ASSERT_TRUE(fs);
  EXPECT_GT(fs->blocks, 0u);
  EXPECT_EQ(fs->namemax, 255u);
}

TEST_P(TreeOps, ReaddirResumesFromCookies) {
  std::set<std::string> made;
  for (int i = 0; i < 500; ++i) {
    std::string name = "n" + std::to_string(i);
    write_file(m_tree / "etc" / name, "");
    made.insert(name);
  }
  made.insert("shadow");
  std::set<std::string> seen;
  uint64_t cookie = 0;
  int batches = 0;
  for (;;) {
    wire::Bytes out;
    uint32_t count = 0;
    auto end = ops().readdir("/etc", cookie, 1024, out, count);
    ASSERT_TRUE(end) << end.error().text();
    auto entries = wire::decode_dirents(out, count);
    ASSERT_TRUE(entries);
    ++batches;
    for (auto& entry : *entries) {
      if (entry.name != "." && entry.name != "..") {
        EXPECT_TRUE(seen.insert(entry.name).second) << entry.name << " twice";
      }
      cookie = entry.next_cookie;
    }
    if (*end) break;
    ASSERT_GT(count, 0u);
  }
  EXPECT_EQ(seen, made);
  EXPECT_GT(batches, 5);  // 1 KiB batches: it really resumed
  wire::Bytes out;
  uint32_t count = 0;
  EXPECT_EQ(ops().readdir("/etc/shadow", 0, 1024, out, count).error().code(), ENOTDIR);
}

INSTANTIATE_TEST_SUITE_P(Resolvers, TreeOps, ::testing::Values(Resolver::kOpenat2, Resolver::kWalk),
                         [](const auto& info) {
                           return info.param == Resolver::kOpenat2 ? "openat2" : "walk";
                         });

// ---- images -------------------------------------------------------------------------

TEST(Image, CopyKeepsModesLinksOwnersAndTimes) {
  TempDir temp;
  fs::path image = temp.path() / "images" / "tiny";
  fs::create_directories(image / "usr" / "bin");
  write_file(image / "usr" / "bin" / "tool", "#!/bin/sh\necho hi\n");
  ::chmod((image / "usr" / "bin" / "tool").c_str(), 04755);
  fs::create_symlink("usr/bin", image / "bin");
  fs::create_hard_link(image / "usr" / "bin" / "tool", image / "usr" / "bin" / "tool2");
  ::mkdir((image / "tmp").c_str(), 01777);
  ::chmod((image / "tmp").c_str(), 01777);
  write_file(image / "owned", "x");
  ::chown((image / "owned").c_str(), 1000, 1000);
  timespec times[2] = {{1000000, 0}, {1500000, 0}};
  ::utimensat(AT_FDCWD, (image / "owned").c_str(), times, 0);

  EXPECT_EQ(scomponent::find_image(temp.path() / "images", "missing").error().code(), ENOENT);
  EXPECT_EQ(scomponent::find_image(temp.path() / "images", "../images").error().code(), EINVAL);
  auto found = scomponent::find_image(temp.path() / "images", "tiny");
  ASSERT_TRUE(found) << found.error().text();

  fs::path tree = temp.path() / "tree";
  fs::create_directories(tree);
  auto copied = scomponent::copy_image(*found, tree);
  ASSERT_TRUE(copied) << copied.error().text();
  EXPECT_EQ(read_file(tree / "usr" / "bin" / "tool"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(fs::read_symlink(tree / "bin"), "usr/bin");
  struct stat st, st2;
  ASSERT_EQ(::stat((tree / "usr" / "bin" / "tool").c_str(), &st), 0);
  ASSERT_EQ(::stat((tree / "usr" / "bin" / "tool2").c_str(), &st2), 0);
  EXPECT_EQ(st.st_ino, st2.st_ino);  // hard links kept
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_mode & 07777, 04755u);
    ASSERT_EQ(::stat((tree / "owned").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1000u);
  }
  ASSERT_EQ(::stat((tree / "owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000);
  ASSERT_EQ(::stat((tree / "tmp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
}

TEST(Image, RunProgramReportsFailures) {
  EXPECT_TRUE(scomponent::run_program({"true"}));
  auto failed = scomponent::run_program({"sh", "-c", "echo oops >&2; exit 3"});
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("oops"), std::string::npos) << failed.error().message();
  EXPECT_NE(failed.error().message().find("exit status 3"), std::string::npos);
  EXPECT_FALSE(scomponent::run_program({"/nonexistent/program"}));
}

// ---- the sComponent's handlers ---------------------------------------------------

class ScomponentFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    scomponent::Scomponent::Options options;
    options.data = m_temp.path() / "data";
    options.capacity = 1 << 30;
    m_component = std::move(scomponent::Scomponent::create(options).value());
  }
  wire::Bytes setup_body(VnodeId vnode, std::string_view name, std::string_view image = {},
                         uint32_t flags = 0) {
    wire::Mon2cVnodeCreateRequest setup{};
    setup.vnode = vnode;
    setup.flags = flags;
    setup.name.set(name);
    // FixedString::set() memcpys from data(), which an empty string_view
    // may leave null: pass a string.
    setup.image.set(std::string(image));
    return wire::encode(setup);
  }
  testing::Reply call(Opcode opcode, VnodeId vnode, wire::Bytes body) {
    return dispatch(m_component->dispatcher(), make_request(opcode, vnode, std::move(body)));
  }
  fs::path tree(std::string_view name) { return m_temp.path() / "data" / "vnodes" / name; }

  TempDir m_temp;
  std::unique_ptr<scomponent::Scomponent> m_component;
};

TEST_F(ScomponentFiles, NewTreesFromAnImageOrEmpty) {
  fs::path image = m_temp.path() / "data" / "images" / "base";
  fs::create_directories(image / "etc");
  write_file(image / "etc" / "hostname", "vnode\n");

  auto missing = call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a", "nope"));
  EXPECT_EQ(missing.status, ENOENT);
  EXPECT_NE(missing.text().find("no image 'nope' on this sComponent"), std::string::npos)
      << missing.text();
  EXPECT_FALSE(fs::exists(tree("a")));
  EXPECT_TRUE(fs::is_empty(m_temp.path() / "data" / "trash"));

  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a", "base")).status, 0);
  EXPECT_EQ(read_file(tree("a") / "etc" / "hostname"), "vnode\n");
  // An existing tree is kept as it is, image or not.
  write_file(tree("a") / "mine", "kept");
  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a", "base")).status, 0);
  EXPECT_EQ(read_file(tree("a") / "mine"), "kept");
  fs::remove_all(image);
  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a", "base")).status, 0);

  ASSERT_EQ(
      call(Opcode::MON2S_VNODE_CREATE, 2, setup_body(2, "b", "", wire::kVnodeEmptyRoot)).status, 0);
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(tree("b"))) names.insert(entry.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"proc", "dev", "tmp", "etc", "root"}));
  EXPECT_EQ(fs::status(tree("b") / "tmp").permissions(), fs::perms::all | fs::perms::sticky_bit);
}

TEST_F(ScomponentFiles, ServesFileOperationsPerVnode) {
  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a")).status, 0);
  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 2, setup_body(2, "b")).status, 0);
  write_file(tree("a") / "etc" / "only-a", "a's");

  wire::P2sMakeRequest make{0, 0644, O_EXCL, 1000, 1000, 4, 0};
  auto created = call(Opcode::P2S_CREATE, 1, wire::encode_storage_request(make, "/new"));
  ASSERT_EQ(created.status, 0) << created.text();
  auto st = wire::decode<wire::StorageStat>(created.payload);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->uid, 1000u);

  auto data = garbage(5000, 3);
  wire::P2sWriteRequest write{0, 5000, 4, 0, 0};
  auto written = call(Opcode::P2S_WRITE, 1, wire::encode_storage_request(write, "/new", {}, data));
  ASSERT_EQ(written.status, 0) << written.text();
  EXPECT_EQ(wire::decode<wire::P2sWriteReply>(written.payload)->size, 5000u);

  auto read = call(Opcode::P2S_READ, 1,
                   wire::encode_storage_request(wire::P2sReadRequest{1000, 8000, 4}, "/new"));
  ASSERT_EQ(read.status, 0) << read.text();
  auto bytes = wire::decode_data_reply(read.payload);
  ASSERT_TRUE(bytes);
  ASSERT_EQ(bytes->size(), 4000u);
  EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), data.begin() + 1000));

  // Each vNode sees its own tree only.
  EXPECT_EQ(call(Opcode::P2S_GETATTR, 1, path_body("/etc/only-a")).status, 0);
  EXPECT_EQ(call(Opcode::P2S_GETATTR, 2, path_body("/etc/only-a")).status, ENOENT);
  EXPECT_EQ(call(Opcode::P2S_GETATTR, 9, path_body("/")).status, ENOENT);

  auto listed = call(Opcode::P2S_READDIR, 1,
                     wire::encode_storage_request(wire::P2sReaddirRequest{0, 65536, 1}, "/"));
  ASSERT_EQ(listed.status, 0);
  auto [header, tail] = wire::decode_with_tail<wire::P2sReaddirReply>(listed.payload).value();
  EXPECT_TRUE(header.flags & wire::kReaddirEnd);
  std::set<std::string> names;
  auto entries = wire::decode_dirents(tail, header.count);
  ASSERT_TRUE(entries);
  for (auto& entry : *entries) names.insert(entry.name);
  EXPECT_TRUE(names.contains("new") && names.contains("etc") && names.contains("tmp"));

  EXPECT_EQ(call(Opcode::P2S_FSYNC, 1, path_body("/new", wire::kFsyncData)).status, 0);
  EXPECT_EQ(call(Opcode::P2S_FSYNC, 1, path_body("/new", 0x80)).status, EINVAL);
  EXPECT_EQ(call(Opcode::P2S_STATFS, 1, path_body("/")).status, 0);
  EXPECT_EQ(call(Opcode::P2S_UNLINK, 1, path_body("/new")).status, 0);
  EXPECT_FALSE(fs::exists(tree("a") / "new"));
  EXPECT_EQ(call(Opcode::P2S_UNLINK, 1, path_body("/../../etc/passwd")).status, EINVAL);
  EXPECT_EQ(call(Opcode::P2S_RMDIR, 1, path_body("/etc")).status, ENOTEMPTY);

  auto served = m_component->served();
  EXPECT_EQ(served["P2S_CREATE"], 1u);
  EXPECT_EQ(served["P2S_GETATTR"], 3u);
  EXPECT_EQ(served["P2S_UNLINK"], 2u);
}

TEST_F(ScomponentFiles, EveryP2sRequestIsAnswered) {
  ASSERT_EQ(call(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "a")).status, 0);
  uint32_t seed = 7;
  testing::DispatchLink link(m_component->dispatcher());
  uint64_t sent = 0;
  for (uint16_t raw = 0x0500; raw <= 0x05ff; ++raw) {
    if (!wire::is_known_opcode(raw)) continue;
    for (size_t size : {0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 65, 200, 5000}) {
      ++seed;
      auto reply = link.call(make_request(raw, 1 + seed % 2, garbage(size, seed)));
      ++sent;
      // A negative status is the transport's: no reply came.
      EXPECT_GE(reply.status, 0) << wire::opcode_name(raw) << " with " << size << " bytes";
      EXPECT_EQ(link.client().counters().messages_received, sent)
          << wire::opcode_name(raw) << " with " << size << " bytes";
    }
  }
  // Still serving, and nothing escaped into the data directory.
  EXPECT_EQ(call(Opcode::P2S_GETATTR, 1, path_body("/")).status, 0);
  std::set<std::string> top;
  for (const auto& entry : fs::directory_iterator(m_temp.path() / "data")) {
    top.insert(entry.path().filename());
  }
  EXPECT_EQ(top, (std::set<std::string>{"vnodes", "trash", "images", "vnodes.json"}));
}

}  // namespace
}  // namespace sk
