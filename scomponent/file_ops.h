// The file operations of the P2S_ protocol (kernel/wire/storage_messages.h)
// on one vNode tree, without the wire: what each request does to the disk.
//
// Every path is resolved confined to the tree (confine.h): operations on a
// name (unlink, rename, symlink, lstat, chown...) open the parent directory
// confined and then act on one plain name with *at() calls that never follow
// a symlink, and operations on a file's contents open it confined. So no
// path, symlink or race with the vNode's own programs reaches outside the
// tree. Nothing is kept between calls: each opens what it needs and closes
// it (the protocol is stateless).
//
// The sComponent runs as root and checks no permissions: the pComponent's
// kernel did (FUSE default_permissions) before the request was sent. New
// files get the owner the request names (vNode ids are stored as they are
// on disk) and exactly the permission bits it names, whatever this
// process's umask.
//
// Data that open(2) would block on (FIFOs) is never opened for reading or
// writing here: opens use O_NONBLOCK, so a FIFO named by a P2S_READ fails
// instead of stalling a worker.
//
// Threads: stateless; any thread except the transport's (it does disk I/O).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kernel/result.h"
#include "kernel/wire/storage_messages.h"
#include "scomponent/confine.h"

namespace sk::scomponent {

// The owner of a new name, in vNode ids.
struct Owner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

class FileOps {
 public:
  // `root` is the tree's root directory (O_PATH is enough); it must stay
  // open while the FileOps is used.
  explicit FileOps(int root, Resolver resolver = Resolver::kAuto)
      : m_root(root), m_resolver(resolver) {}

  // lstat(2) of the name.
  Result<wire::StorageStat> getattr(std::string_view path) const;
  // Checks that open(2) with these flags (storage_open_flags_mask()) works,
  // truncating with O_TRUNC, and returns the file's attributes.
  Result<wire::StorageStat> open(std::string_view path, uint32_t flags) const;
  // Reads up to into.size() bytes at `offset`; fewer only at the end of the
  // file.
  Result<size_t> read(std::string_view path, uint64_t offset, std::span<std::byte> into) const;

  struct Written {
    uint32_t written = 0;
    uint64_t size = 0;  // of the file afterwards
  };
  // Writes all of `data` at `offset` (kWriteAppend: at the end); with
  // kWriteDataSync/kWriteSync the data is durable before it returns.
  Result<Written> write(std::string_view path, uint64_t offset, wire::ByteView data,
                        uint32_t flags) const;

  // Creates a regular file (open flags: O_EXCL fails on an existing name;
  // without it an existing file is opened, and truncated with O_TRUNC).
  Result<wire::StorageStat> create(std::string_view path, mode_t mode, uint32_t flags,
                                   Owner owner) const;
  Result<wire::StorageStat> mkdir(std::string_view path, mode_t mode, Owner owner) const;
  // FIFOs, sockets and regular files; device nodes are refused (EPERM): a
  // vNode's root may not make them on the sComponent's disk.
  Result<wire::StorageStat> mknod(std::string_view path, mode_t mode, dev_t rdev,
                                  Owner owner) const;
  Result<wire::StorageStat> symlink(std::string_view path, std::string_view target,
                                    Owner owner) const;
  // A hard link `new_path` to the file `path` names (not following a symlink).
  Result<wire::StorageStat> link(std::string_view path, std::string_view new_path) const;
  Result<void> unlink(std::string_view path) const;
  Result<void> rmdir(std::string_view path) const;
  // renameat2(2) flags: RENAME_NOREPLACE, RENAME_EXCHANGE.
  Result<void> rename(std::string_view from, std::string_view to, uint32_t flags) const;
  Result<std::string> readlink(std::string_view path) const;
  // Size, owner, mode, times, in that order (see P2sSetattrRequest).
  Result<wire::StorageStat> setattr(std::string_view path,
                                    const wire::P2sSetattrRequest& request) const;
  // The file's data (and with data_only false its metadata and the entry in
  // its directory) is on stable storage when it returns.
  Result<void> fsync(std::string_view path, bool data_only) const;
  Result<wire::StorageStatfs> statfs() const;

  // Appends to `out` the entries of the directory from `cookie` on (0: the
  // start) while they fit in `max_bytes` (at least one entry is always
  // returned if there is one); counts them in `count`. Returns true when
  // the listing is complete.
  Result<bool> readdir(std::string_view path, uint64_t cookie, uint32_t max_bytes, wire::Bytes& out,
                       uint32_t& count) const;

 private:
  Result<UniqueFd> open_file(std::string_view path, int flags) const;
  Result<ParentAndName> parent(std::string_view path) const;

  int m_root;
  Resolver m_resolver;
};

// struct stat -> the wire's StorageStat.
wire::StorageStat to_storage_stat(const struct stat& st);

}  // namespace sk::scomponent
