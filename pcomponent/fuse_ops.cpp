// The hot path of a vNode root: libfuse's high-level operations, each one a
// P2S_ call to the vNode's sComponent (see fuse_ops.h for why the path API).
//
// Caching (set in op_init), and why:
// - The kernel's page cache stays on (no direct_io), so mmap and execve of
//   files work and ld.so's repeated reads of a library cost no round trip.
//   `auto_cache` keeps a file's cached pages across opens unless its size or
//   mtime changed (close-to-open consistency, as NFS gives), so running
//   the same binary again reads nothing from the sComponent.
// - Entries, attributes and negative lookups are cached for 1 s. Changes
//   made through this mount update the kernel's caches at once; 1 s bounds
//   how long a change made through another pComponent's mount of the same
//   vNode (a vNode may span pComponents) goes unseen, as NFS's attribute
//   cache does, while a program that stats the same paths over and over
//   (a shell's PATH search, python's imports) pays one round trip a second
//   per path instead of one per call.
// - No writeback cache: every write(2) reaches the sComponent before it
//   returns, so a pComponent that dies loses no acknowledged write and
//   O_APPEND writers on different pComponents do not overwrite each other.
//   Files opened O_APPEND use direct I/O: the kernel would place the bytes
//   at its cached idea of the end of the file, while the sComponent appends
//   at the real end (kWriteAppend), and the two may differ.
// - Requests are up to 1 MiB (max_write, max_read through max_pages, and
//   1 MiB readahead), so a sequential read or write moves 1 MiB per round
//   trip.
//
// Ownership: the vNode's programs run as host ids base + vNode id (see
// launcher.h); the kernel checks permissions itself (default_permissions)
// against the host ids getattr reports, and new files get the caller's
// vNode ids (fuse_get_context), translated here. The sComponent only ever
// sees vNode ids.
#include "pcomponent/fuse_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

#include "kernel/log.h"
#include "pcomponent/launcher.h"

namespace sk::pcomponent {

static const Logger log("fuse");

// How long the kernel may trust an entry, attribute or negative lookup.
static constexpr double kCacheSeconds = 1.0;
// The largest request: one P2S_READ/P2S_WRITE.
static constexpr unsigned kMaxRequest = wire::kMaxStorageIo;
// The overflow id (nobody) for on-disk ids beyond a vNode's range.
static constexpr uint32_t kOverflowId = 65534;

std::string_view storage_op_name(StorageOp op) {
  switch (op) {
#define SK_STORAGE_OP_NAME(name) \
  case StorageOp::k_##name:      \
    return #name;
    SK_STORAGE_OPS(SK_STORAGE_OP_NAME)
#undef SK_STORAGE_OP_NAME
    case StorageOp::kCount:
      break;
  }
  return "unknown";
}

uint32_t IdMap::to_vnode(uint32_t host) const {
  uint32_t id = host - base;  // wraps for ids below the base
  return id < kIdsPerVnode ? id : 0;
}

uint32_t IdMap::to_host(uint32_t vnode_id) const {
  return base + (vnode_id < kIdsPerVnode ? vnode_id : kOverflowId);
}

namespace {

MountContext& context() {
  return *static_cast<MountContext*>(fuse_get_context()->private_data);
}

void raise_readahead(const MountContext& mount) {
  if (mount.readahead_file.empty()) return;
  int fd = ::open(mount.readahead_file.c_str(), O_WRONLY | O_CLOEXEC);
  std::string value = std::to_string(kMaxRequest / 1024);
  bool ok =
      fd >= 0 && ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  if (fd >= 0) ::close(fd);
  if (!ok) log.debug("cannot raise the readahead in {}: {}", mount.readahead_file, strerror(errno));
}

// Counts the operation and returns the mount's context.
MountContext& serve(StorageOp op) {
  MountContext& mount = context();
  if (mount.readahead_pending.load(std::memory_order_relaxed) &&
      mount.readahead_pending.exchange(false)) {
    raise_readahead(mount);
  }
  mount.counters->served[static_cast<size_t>(op)].fetch_add(1, std::memory_order_relaxed);
  return mount;
}

int fail(MountContext& mount, const Error& error) {
  if (error.code() == EIO) mount.counters->io_errors.fetch_add(1, std::memory_order_relaxed);
  log.debug("vNode {}: {}", mount.vnode, error.text());
  return -(error.code() > 0 ? error.code() : EIO);
}

struct Ids {
  uint32_t uid;
  uint32_t gid;
};

// The caller's ids, as the vNode knows them.
Ids caller(const MountContext& mount) {
  fuse_context* fuse = fuse_get_context();
  return {mount.ids.to_vnode(fuse->uid), mount.ids.to_vnode(fuse->gid)};
}

timespec to_timespec(const wire::StorageTime& time) {
  return timespec{static_cast<time_t>(time.sec), static_cast<long>(time.nsec)};
}

void fill_stat(const MountContext& mount, const wire::StorageStat& attr, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = attr.ino;
  st->st_mode = attr.mode;
  st->st_nlink = attr.nlink;
  st->st_uid = mount.ids.to_host(attr.uid);
  st->st_gid = mount.ids.to_host(attr.gid);
  st->st_rdev = attr.rdev;
  st->st_size = static_cast<off_t>(attr.size);
  st->st_blksize = attr.blksize;
  st->st_blocks = static_cast<blkcnt_t>(attr.blocks);
  st->st_atim = to_timespec(attr.atime);
  st->st_mtim = to_timespec(attr.mtime);
  st->st_ctim = to_timespec(attr.ctime);
}

// The open flags that travel with a file's writes (fi->fh keeps them from
// open: not every write request carries them).
uint32_t write_flags(const fuse_file_info* fi) {
  if (fi == nullptr) return 0;
  uint32_t flags = 0;
  // A page the kernel writes back from an mmap goes where it belongs, even
  // when the file handle it borrows was opened O_APPEND.
  if ((fi->fh & O_APPEND) && !fi->writepage) flags |= wire::kWriteAppend;
  uint64_t open_flags = fi->fh | static_cast<uint64_t>(fi->flags);
  if ((open_flags & O_SYNC) == O_SYNC) {
    flags |= wire::kWriteSync;
  } else if (open_flags & O_DSYNC) {
    flags |= wire::kWriteDataSync;
  }
  return flags;
}

void remember_open(fuse_file_info* fi) {
  fi->fh = static_cast<uint64_t>(static_cast<unsigned>(fi->flags));
  if (fi->flags & O_APPEND) fi->direct_io = 1;
}

void* op_init(fuse_conn_info* conn, fuse_config* config) {
  conn->max_write = kMaxRequest;
  conn->max_read = 0;  // no limit beyond max_pages
  conn->max_readahead = kMaxRequest;
  // Keep several readahead requests in flight per mount.
  conn->max_background = 32;
  conn->congestion_threshold = 24;
  // The kernel clears set-id bits on write and truncate itself (with a
  // setattr), since the path API has no way to tell us to.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;

  config->use_ino = 1;  // st_ino is the sComponent's, so hard links show as one file
  config->readdir_ino = 1;
  config->entry_timeout = kCacheSeconds;
  config->attr_timeout = kCacheSeconds;
  config->negative_timeout = kCacheSeconds;
  config->auto_cache = 1;
  config->kernel_cache = 0;
  config->direct_io = 0;
  config->hard_remove = 0;  // open-but-unlinked files live on as .fuse_hidden*
  config->no_rofd_flush = 1;
  config->nullpath_ok = 0;
  // What fuse_new() got; init's return value replaces it.
  return fuse_get_context()->private_data;
}

int op_getattr(const char* path, struct stat* st, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_getattr);
  auto attr = mount.client->getattr(mount.vnode, path);
  if (!attr) return fail(mount, attr.error());
  fill_stat(mount, *attr, st);
  return 0;
}

int op_open(const char* path, fuse_file_info* fi) {
  auto& mount = serve(StorageOp::k_open);
  // The kernel looked the file up and checked the permissions already;
  // the stateless sComponent has nothing to open. Only a truncation must
  // happen now (O_TRUNC reaches us here with atomic_o_trunc).
  if (fi->flags & O_TRUNC) {
    uint32_t flags = static_cast<uint32_t>(fi->flags) & (O_ACCMODE | O_TRUNC);
    auto opened = mount.client->open(mount.vnode, path, flags);
    if (!opened) return fail(mount, opened.error());
  }
  remember_open(fi);
  return 0;
}

int op_create(const char* path, mode_t mode, fuse_file_info* fi) {
  auto& mount = serve(StorageOp::k_create);
  auto owner = caller(mount);
  uint32_t flags = static_cast<uint32_t>(fi->flags) & (O_ACCMODE | O_EXCL | O_TRUNC);
  auto created = mount.client->create(mount.vnode, path, mode & 07777, flags, owner.uid, owner.gid);
  if (!created) return fail(mount, created.error());
  remember_open(fi);
  return 0;
}

int op_read(const char* path, char* buffer, size_t size, off_t offset, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_read);
  if (offset < 0) return -EINVAL;
  auto got = mount.client->read(mount.vnode, path, static_cast<uint64_t>(offset),
                                std::span(reinterpret_cast<std::byte*>(buffer), size));
  if (!got) return fail(mount, got.error());
  return static_cast<int>(*got);
}

int op_write(const char* path, const char* buffer, size_t size, off_t offset, fuse_file_info* fi) {
  auto& mount = serve(StorageOp::k_write);
  if (offset < 0) return -EINVAL;
  auto written = mount.client->write(
      mount.vnode, path, static_cast<uint64_t>(offset),
      wire::ByteView(reinterpret_cast<const std::byte*>(buffer), size), write_flags(fi));
  if (!written) return fail(mount, written.error());
  if (written->written == 0 && size > 0) return -ENOSPC;
  return static_cast<int>(written->written);
}

int op_mkdir(const char* path, mode_t mode) {
  auto& mount = serve(StorageOp::k_mkdir);
  auto owner = caller(mount);
  auto made = mount.client->mkdir(mount.vnode, path, mode & 07777, owner.uid, owner.gid);
  return made ? 0 : fail(mount, made.error());
}

int op_mknod(const char* path, mode_t mode, dev_t rdev) {
  auto& mount = serve(StorageOp::k_mknod);
  auto owner = caller(mount);
  auto made = mount.client->mknod(mount.vnode, path, mode, rdev, owner.uid, owner.gid);
  return made ? 0 : fail(mount, made.error());
}

int op_symlink(const char* target, const char* path) {
  auto& mount = serve(StorageOp::k_symlink);
  auto owner = caller(mount);
  auto made = mount.client->symlink(mount.vnode, path, target, owner.uid, owner.gid);
  return made ? 0 : fail(mount, made.error());
}

int op_link(const char* path, const char* new_path) {
  auto& mount = serve(StorageOp::k_link);
  auto made = mount.client->link(mount.vnode, path, new_path);
  return made ? 0 : fail(mount, made.error());
}

int op_unlink(const char* path) {
  auto& mount = serve(StorageOp::k_unlink);
  auto done = mount.client->unlink(mount.vnode, path);
  return done ? 0 : fail(mount, done.error());
}

int op_rmdir(const char* path) {
  auto& mount = serve(StorageOp::k_rmdir);
  auto done = mount.client->rmdir(mount.vnode, path);
  return done ? 0 : fail(mount, done.error());
}

int op_rename(const char* from, const char* to, unsigned int flags) {
  auto& mount = serve(StorageOp::k_rename);
  auto done = mount.client->rename(mount.vnode, from, to, flags);
  return done ? 0 : fail(mount, done.error());
}

// The whole listing at once (libfuse's "no offsets" mode): the library
// keeps it with the open directory and answers the kernel's page-sized
// readdir requests from it, so a directory costs one round trip per
// kMaxReaddirBytes of entries rather than one per page.
int op_readdir(const char* path, void* buffer, fuse_fill_dir_t fill, off_t, fuse_file_info*,
               fuse_readdir_flags) {
  auto& mount = serve(StorageOp::k_readdir);
  auto entries = mount.client->readdir(mount.vnode, path);
  if (!entries) return fail(mount, entries.error());
  for (const auto& entry : *entries) {
    struct stat st {};
    st.st_ino = entry.ino;
    st.st_mode = DTTOIF(entry.type);
    if (fill(buffer, entry.name.c_str(), &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}

int op_readlink(const char* path, char* buffer, size_t size) {
  auto& mount = serve(StorageOp::k_readlink);
  if (size == 0) return -EINVAL;
  auto target = mount.client->readlink(mount.vnode, path);
  if (!target) return fail(mount, target.error());
  // libfuse's contract: NUL-terminated, truncated to fit.
  size_t length = std::min(target->size(), size - 1);
  std::memcpy(buffer, target->data(), length);
  buffer[length] = '\0';
  return 0;
}

int setattr(MountContext& mount, const char* path, const wire::P2sSetattrRequest& request) {
  auto done = mount.client->setattr(mount.vnode, path, request);
  return done ? 0 : fail(mount, done.error());
}

int op_chmod(const char* path, mode_t mode, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_chmod);
  wire::P2sSetattrRequest request{};
  request.valid = wire::kSetMode;
  request.mode = mode & 07777;
  return setattr(mount, path, request);
}

int op_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_chown);
  wire::P2sSetattrRequest request{};
  if (uid != static_cast<uid_t>(-1)) {
    request.valid |= wire::kSetUid;
    request.uid = mount.ids.to_vnode(uid);
  }
  if (gid != static_cast<gid_t>(-1)) {
    request.valid |= wire::kSetGid;
    request.gid = mount.ids.to_vnode(gid);
  }
  return setattr(mount, path, request);
}

int op_truncate(const char* path, off_t size, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_truncate);
  if (size < 0) return -EINVAL;
  wire::P2sSetattrRequest request{};
  request.valid = wire::kSetSize;
  request.size = static_cast<uint64_t>(size);
  return setattr(mount, path, request);
}

int op_utimens(const char* path, const timespec times[2], fuse_file_info*) {
  auto& mount = serve(StorageOp::k_utimens);
  wire::P2sSetattrRequest request{};
  auto set = [&](const timespec& time, uint32_t given, uint32_t now, wire::StorageTime& out) {
    if (time.tv_nsec == UTIME_OMIT) return;
    if (time.tv_nsec == UTIME_NOW) {
      request.valid |= now;
      return;
    }
    request.valid |= given;
    out = {static_cast<int64_t>(time.tv_sec), static_cast<uint32_t>(time.tv_nsec), 0};
  };
  set(times[0], wire::kSetAtime, wire::kSetAtimeNow, request.atime);
  set(times[1], wire::kSetMtime, wire::kSetMtimeNow, request.mtime);
  if (request.valid == 0) return 0;
  return setattr(mount, path, request);
}

int op_fsync(const char* path, int data_only, fuse_file_info*) {
  auto& mount = serve(StorageOp::k_fsync);
  auto done = mount.client->fsync(mount.vnode, path, data_only != 0);
  return done ? 0 : fail(mount, done.error());
}

int op_statfs(const char*, struct statvfs* st) {
  auto& mount = serve(StorageOp::k_statfs);
  auto fs = mount.client->statfs(mount.vnode);
  if (!fs) return fail(mount, fs.error());
  std::memset(st, 0, sizeof *st);
  st->f_bsize = fs->bsize;
  st->f_frsize = fs->frsize;
  st->f_blocks = fs->blocks;
  st->f_bfree = fs->bfree;
  st->f_bavail = fs->bavail;
  st->f_files = fs->files;
  st->f_ffree = fs->ffree;
  st->f_favail = fs->favail;
  st->f_namemax = fs->namemax;
  return 0;
}

fuse_operations make_operations() {
  fuse_operations ops{};
  ops.init = op_init;
  ops.getattr = op_getattr;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  ops.mkdir = op_mkdir;
  ops.mknod = op_mknod;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.readdir = op_readdir;
  ops.readlink = op_readlink;
  ops.chmod = op_chmod;
  ops.chown = op_chown;
  ops.truncate = op_truncate;
  ops.utimens = op_utimens;
  ops.fsync = op_fsync;
  ops.fsyncdir = op_fsync;
  ops.statfs = op_statfs;
  return ops;
}

}  // namespace

const fuse_operations& storage_fuse_operations() {
  static const fuse_operations operations = make_operations();
  return operations;
}

}  // namespace sk::pcomponent
