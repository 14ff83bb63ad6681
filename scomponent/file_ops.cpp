// The P2S_ file operations on one tree (see file_ops.h).
#include "scomponent/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstring>
#include <vector>

namespace sk::scomponent {

// One getdents64 call's buffer: a few hundred entries of typical names.
static constexpr size_t kGetdentsBuffer = 64 * 1024;

wire::StorageStat to_storage_stat(const struct stat& st) {
  wire::StorageStat out{};
  out.ino = st.st_ino;
  out.size = static_cast<uint64_t>(st.st_size);
  out.blocks = static_cast<uint64_t>(st.st_blocks);
  out.rdev = st.st_rdev;
  out.mode = st.st_mode;
  out.nlink = static_cast<uint32_t>(st.st_nlink);
  out.uid = st.st_uid;
  out.gid = st.st_gid;
  out.blksize = static_cast<uint32_t>(st.st_blksize);
  out.atime = {st.st_atim.tv_sec, static_cast<uint32_t>(st.st_atim.tv_nsec), 0};
  out.mtime = {st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec), 0};
  out.ctime = {st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), 0};
  return out;
}

static Result<wire::StorageStat> stat_fd(int fd, std::string_view path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Error::from_errno("stat " + std::string(path));
  return to_storage_stat(st);
}

static Result<wire::StorageStat> stat_name(int dir, const std::string& name,
                                           std::string_view path) {
  struct stat st;
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno("stat " + std::string(path));
  }
  return to_storage_stat(st);
}

static std::string proc_fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

// chmod of what an fd (O_PATH will do) refers to: fchmod needs a real fd,
// and fchmodat has no AT_EMPTY_PATH before Linux 6.6. The magic link names
// exactly the fd's inode, so nothing is looked up again.
static Result<void> chmod_fd(int fd, mode_t mode, std::string_view path) {
  if (::chmod(proc_fd_path(fd).c_str(), mode) != 0) {
    return Error::from_errno("chmod " + std::string(path));
  }
  return {};
}

// Gives a new name its owner and exact mode. `fd` refers to it (O_PATH is
// fine; never a symlink here). In a setgid directory the kernel already gave
// it the directory's group, and a new directory inherits the setgid bit, as
// Linux does for any creator.
static Result<void> own_new_name(int fd, mode_t mode, Owner owner, bool parent_setgid, bool is_dir,
                                 std::string_view path) {
  gid_t gid = parent_setgid ? static_cast<gid_t>(-1) : owner.gid;
  if (::fchownat(fd, "", owner.uid, gid, AT_EMPTY_PATH) != 0) {
    return Error::from_errno("chown " + std::string(path));
  }
  if (parent_setgid && is_dir) mode |= S_ISGID;
  // After the chown, which clears set-id bits.
  return chmod_fd(fd, mode & 07777, path);
}

static Result<bool> is_setgid_dir(int dir, std::string_view path) {
  struct stat st;
  if (::fstat(dir, &st) != 0) return Error::from_errno("stat the parent of " + std::string(path));
  return (st.st_mode & S_ISGID) != 0;
}

static Result<void> require_name(const ParentAndName& target, int code, std::string_view what,
                                 std::string_view path) {
  if (target.name.empty()) {
    return make_error(code, std::string(what) + " " + std::string(path) + ": the root");
  }
  return {};
}

Result<UniqueFd> FileOps::open_file(std::string_view path, int flags) const {
  // openat2 refuses O_PATH with anything but O_DIRECTORY and O_NOFOLLOW.
  if (!(flags & O_PATH)) flags |= O_NOCTTY;
  return open_confined(m_root, path, flags, 0, m_resolver);
}

Result<ParentAndName> FileOps::parent(std::string_view path) const {
  return open_parent_confined(m_root, path, m_resolver);
}

Result<wire::StorageStat> FileOps::getattr(std::string_view path) const {
  auto fd = TRY(open_file(path, O_PATH | O_NOFOLLOW));
  return stat_fd(fd.get(), path);
}

Result<wire::StorageStat> FileOps::open(std::string_view path, uint32_t flags) const {
  int kept = static_cast<int>(flags) & (O_ACCMODE | O_TRUNC | O_DIRECTORY | O_NOFOLLOW);
  if ((kept & O_ACCMODE) == O_ACCMODE) return make_error(EINVAL, "open " + std::string(path));
  auto fd = TRY(open_file(path, kept | O_NONBLOCK));
  return stat_fd(fd.get(), path);
}

Result<size_t> FileOps::read(std::string_view path, uint64_t offset,
                             std::span<std::byte> into) const {
  auto fd = TRY(open_file(path, O_RDONLY | O_NONBLOCK));
  size_t done = 0;
  while (done < into.size()) {
    ssize_t got = ::pread(fd.get(), into.data() + done, into.size() - done,
                          static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      if (done > 0) break;
      return Error::from_errno("read " + std::string(path));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

Result<FileOps::Written> FileOps::write(std::string_view path, uint64_t offset, wire::ByteView data,
                                        uint32_t flags) const {
  int open_flags = O_WRONLY | O_NONBLOCK;
  if (flags & wire::kWriteAppend) open_flags |= O_APPEND;
  if (flags & wire::kWriteDataSync) open_flags |= O_DSYNC;
  if (flags & wire::kWriteSync) open_flags |= O_SYNC;
  auto fd = TRY(open_file(path, open_flags));
  size_t done = 0;
  while (done < data.size()) {
    // O_APPEND writes go to the end whatever the offset; pwrite would too
    // on Linux, but write() says what is meant.
    ssize_t put = (flags & wire::kWriteAppend)
                      ? ::write(fd.get(), data.data() + done, data.size() - done)
                      : ::pwrite(fd.get(), data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
    if (put < 0) {
      if (errno == EINTR) continue;
      // What was written stays written: report it, as write(2) does.
      if (done > 0) break;
      return Error::from_errno("write " + std::string(path));
    }
    done += static_cast<size_t>(put);
  }
  auto st = TRY(stat_fd(fd.get(), path));
  return Written{static_cast<uint32_t>(done), st.size};
}

Result<wire::StorageStat> FileOps::create(std::string_view path, mode_t mode, uint32_t flags,
                                          Owner owner) const {
  auto target = TRY(parent(path));
  if (target.name.empty()) {
    if (flags & O_EXCL) return make_error(EEXIST, "create " + std::string(path));
    return make_error(EISDIR, "create " + std::string(path));
  }
  // O_EXCL and O_NOFOLLOW: a name that exists in any form, even a symlink
  // planted a moment ago, is never followed from here.
  UniqueFd fd(::openat(target.dir.get(), target.name.c_str(),
                       O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                       static_cast<mode_t>(mode & 0600)));
  if (!fd) {
    if (errno == EEXIST && !(flags & O_EXCL)) {
      // Someone made it since the pComponent looked: open it as it is.
      return open(path, flags & ~static_cast<uint32_t>(O_CREAT | O_EXCL));
    }
    return Error::from_errno("create " + std::string(path));
  }
  bool setgid = TRY(is_setgid_dir(target.dir.get(), path));
  TRY(own_new_name(fd.get(), mode, owner, setgid, false, path));
  return stat_fd(fd.get(), path);
}

Result<wire::StorageStat> FileOps::mkdir(std::string_view path, mode_t mode, Owner owner) const {
  auto target = TRY(parent(path));
  TRY(require_name(target, EEXIST, "mkdir", path));
  if (::mkdirat(target.dir.get(), target.name.c_str(), 0700) != 0) {
    return Error::from_errno("mkdir " + std::string(path));
  }
  // O_NOFOLLOW | O_DIRECTORY: if a program swapped the new directory for a
  // symlink, this fails instead of changing what the link points at.
  UniqueFd fd(::openat(target.dir.get(), target.name.c_str(),
                       O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Error::from_errno("open the new directory " + std::string(path));
  bool setgid = TRY(is_setgid_dir(target.dir.get(), path));
  TRY(own_new_name(fd.get(), mode, owner, setgid, true, path));
  return stat_fd(fd.get(), path);
}

Result<wire::StorageStat> FileOps::mknod(std::string_view path, mode_t mode, dev_t rdev,
                                         Owner owner) const {
  mode_t type = mode & S_IFMT;
  if (type == 0 || type == S_IFREG) return create(path, mode & 07777, O_EXCL, owner);
  if (type == S_IFCHR || type == S_IFBLK) {
    return make_error(EPERM, "mknod " + std::string(path) + ": no device nodes in a vNode tree");
  }
  if (type != S_IFIFO && type != S_IFSOCK) {
    return make_error(EINVAL, "mknod " + std::string(path) + ": bad file type");
  }
  auto target = TRY(parent(path));
  TRY(require_name(target, EEXIST, "mknod", path));
  if (::mknodat(target.dir.get(), target.name.c_str(), type | 0600, rdev) != 0) {
    return Error::from_errno("mknod " + std::string(path));
  }
  UniqueFd fd(::openat(target.dir.get(), target.name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Error::from_errno("open the new node " + std::string(path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || (st.st_mode & S_IFMT) != type) {
    return make_error(EAGAIN, "mknod " + std::string(path) + ": the node changed under us");
  }
  bool setgid = TRY(is_setgid_dir(target.dir.get(), path));
  TRY(own_new_name(fd.get(), mode, owner, setgid, false, path));
  return stat_fd(fd.get(), path);
}

Result<wire::StorageStat> FileOps::symlink(std::string_view path, std::string_view target_text,
                                           Owner owner) const {
  TRY(wire::check_link_target(target_text));
  auto target = TRY(parent(path));
  TRY(require_name(target, EEXIST, "symlink", path));
  std::string text(target_text);
  if (::symlinkat(text.c_str(), target.dir.get(), target.name.c_str()) != 0) {
    return Error::from_errno("symlink " + std::string(path));
  }
  bool setgid = TRY(is_setgid_dir(target.dir.get(), path));
  gid_t gid = setgid ? static_cast<gid_t>(-1) : owner.gid;
  if (::fchownat(target.dir.get(), target.name.c_str(), owner.uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno("chown " + std::string(path));
  }
  return stat_name(target.dir.get(), target.name, path);
}

Result<wire::StorageStat> FileOps::link(std::string_view path, std::string_view new_path) const {
  auto from = TRY(parent(path));
  TRY(require_name(from, EPERM, "link", path));
  auto to = TRY(parent(new_path));
  TRY(require_name(to, EEXIST, "link to", new_path));
  // Flags 0: a symlink is linked itself, never followed.
  if (::linkat(from.dir.get(), from.name.c_str(), to.dir.get(), to.name.c_str(), 0) != 0) {
    return Error::from_errno("link " + std::string(path) + " to " + std::string(new_path));
  }
  return stat_name(to.dir.get(), to.name, new_path);
}

Result<void> FileOps::unlink(std::string_view path) const {
  auto target = TRY(parent(path));
  TRY(require_name(target, EISDIR, "unlink", path));
  if (::unlinkat(target.dir.get(), target.name.c_str(), 0) != 0) {
    return Error::from_errno("unlink " + std::string(path));
  }
  return {};
}

Result<void> FileOps::rmdir(std::string_view path) const {
  auto target = TRY(parent(path));
  TRY(require_name(target, EBUSY, "rmdir", path));
  if (::unlinkat(target.dir.get(), target.name.c_str(), AT_REMOVEDIR) != 0) {
    return Error::from_errno("rmdir " + std::string(path));
  }
  return {};
}

Result<void> FileOps::rename(std::string_view from_path, std::string_view to_path,
                             uint32_t flags) const {
  if ((flags & ~static_cast<uint32_t>(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) {
    return make_error(EINVAL, "rename: unsupported flags");
  }
  auto from = TRY(parent(from_path));
  TRY(require_name(from, EBUSY, "rename", from_path));
  auto to = TRY(parent(to_path));
  TRY(require_name(to, EBUSY, "rename to", to_path));
  if (::renameat2(from.dir.get(), from.name.c_str(), to.dir.get(), to.name.c_str(), flags) != 0) {
    return Error::from_errno("rename " + std::string(from_path) + " to " + std::string(to_path));
  }
  return {};
}

Result<std::string> FileOps::readlink(std::string_view path) const {
  auto target = TRY(parent(path));
  TRY(require_name(target, EINVAL, "readlink", path));
  // One byte more than the longest target tells truncation apart.
  std::string text(PATH_MAX + 1, '\0');
  ssize_t length = ::readlinkat(target.dir.get(), target.name.c_str(), text.data(), text.size());
  if (length < 0) return Error::from_errno("readlink " + std::string(path));
  if (static_cast<size_t>(length) > PATH_MAX) {
    return make_error(ENAMETOOLONG, "readlink " + std::string(path));
  }
  text.resize(static_cast<size_t>(length));
  return text;
}

Result<wire::StorageStat> FileOps::setattr(std::string_view path,
                                           const wire::P2sSetattrRequest& request) const {
  using namespace wire;
  if (request.valid & kSetSize) {
    auto file = TRY(open_file(path, O_WRONLY | O_NONBLOCK));
    if (::ftruncate(file.get(), static_cast<off_t>(request.size)) != 0) {
      return Error::from_errno("truncate " + std::string(path));
    }
  }
  // The name itself (a symlink is changed, never followed).
  auto fd = TRY(open_file(path, O_PATH | O_NOFOLLOW));
  if (request.valid & (kSetUid | kSetGid)) {
    uid_t uid = (request.valid & kSetUid) ? request.uid : static_cast<uid_t>(-1);
    gid_t gid = (request.valid & kSetGid) ? request.gid : static_cast<gid_t>(-1);
    if (::fchownat(fd.get(), "", uid, gid, AT_EMPTY_PATH) != 0) {
      return Error::from_errno("chown " + std::string(path));
    }
  }
  if (request.valid & kSetMode) {
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Error::from_errno("stat " + std::string(path));
    // Linux has no permission bits on symlinks (lchmod fails the same way).
    if (S_ISLNK(st.st_mode)) return make_error(EOPNOTSUPP, "chmod " + std::string(path));
    TRY(chmod_fd(fd.get(), request.mode & 07777, path));
  }
  uint32_t time_bits = kSetAtime | kSetAtimeNow | kSetMtime | kSetMtimeNow;
  if (request.valid & time_bits) {
    auto timespec_of = [&](uint32_t set, uint32_t now, const StorageTime& time) {
      if (request.valid & now) return timespec{0, UTIME_NOW};
      if (request.valid & set) return timespec{time.sec, static_cast<long>(time.nsec)};
      return timespec{0, UTIME_OMIT};
    };
    timespec times[2] = {timespec_of(kSetAtime, kSetAtimeNow, request.atime),
                         timespec_of(kSetMtime, kSetMtimeNow, request.mtime)};
    if (::utimensat(fd.get(), "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return Error::from_errno("set the times of " + std::string(path));
    }
  }
  return stat_fd(fd.get(), path);
}

Result<void> FileOps::fsync(std::string_view path, bool data_only) const {
  auto fd = TRY(open_file(path, O_RDONLY | O_NONBLOCK));
  int done = data_only ? ::fdatasync(fd.get()) : ::fsync(fd.get());
  if (done != 0) return Error::from_errno("fsync " + std::string(path));
  if (!data_only && path != "/") {
    // A file that was just created is durable only once its directory
    // entry is: sync the directory too, so that fsync means "survives a
    // crash" whatever the sComponent's filesystem.
    size_t slash = path.rfind('/');
    std::string parent_path = slash == 0 ? "/" : std::string(path.substr(0, slash));
    auto dir = TRY(open_file(parent_path, O_RDONLY | O_DIRECTORY));
    if (::fsync(dir.get()) != 0) return Error::from_errno("fsync " + parent_path);
  }
  return {};
}

Result<wire::StorageStatfs> FileOps::statfs() const {
  struct statvfs st;
  if (::fstatvfs(m_root, &st) != 0) return Error::from_errno("statfs");
  wire::StorageStatfs out{};
  out.blocks = st.f_blocks;
  out.bfree = st.f_bfree;
  out.bavail = st.f_bavail;
  out.files = st.f_files;
  out.ffree = st.f_ffree;
  out.favail = st.f_favail;
  out.bsize = static_cast<uint32_t>(st.f_bsize);
  out.frsize = static_cast<uint32_t>(st.f_frsize);
  out.namemax = static_cast<uint32_t>(st.f_namemax);
  return out;
}

Result<bool> FileOps::readdir(std::string_view path, uint64_t cookie, uint32_t max_bytes,
                              wire::Bytes& out, uint32_t& count) const {
  auto fd = TRY(open_file(path, O_RDONLY | O_DIRECTORY));
  // A directory offset is the filesystem's own cookie (d_off): stable across
  // opens, which is what lets the listing resume on a fresh descriptor.
  if (cookie != 0 && ::lseek(fd.get(), static_cast<off_t>(cookie), SEEK_SET) < 0) {
    return Error::from_errno("seek in directory " + std::string(path));
  }
  std::vector<std::byte> buffer(kGetdentsBuffer);
  size_t used = 0;
  count = 0;
  for (;;) {
    long got = ::syscall(SYS_getdents64, fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (count > 0) return false;  // what we have is good; the next call reports it
      return Error::from_errno("read directory " + std::string(path));
    }
    if (got == 0) return true;
    for (long at = 0; at < got;) {
      struct linux_dirent64 {
        uint64_t d_ino;
        int64_t d_off;
        uint16_t d_reclen;
        uint8_t d_type;
      } entry;
      std::memcpy(&entry, buffer.data() + at, offsetof(linux_dirent64, d_type) + 1);
      const char* name = reinterpret_cast<const char*>(buffer.data() + at + 19);
      std::string_view name_view(name, strnlen(name, entry.d_reclen - 19));
      at += entry.d_reclen;
      size_t size = wire::dirent_size(name_view.size());
      if (count > 0 && used + size > max_bytes) return false;
      wire::append_dirent(out, entry.d_ino, static_cast<uint64_t>(entry.d_off), entry.d_type,
                          name_view);
      used += size;
      ++count;
    }
  }
}

}  // namespace sk::scomponent
