// The FUSE side of a vNode root (internal to the storage manager): the
// libfuse operation table that turns each kernel request on the mount into a
// P2S_ call to the vNode's sComponent, and what it needs per mount.
//
// Why libfuse's high-level (path) API rather than the low-level (inode)
// one: the P2S_ protocol is stateless and names files by path, which is
// what the path API hands us. The low-level API would make us keep a table
// of node ids to paths and patch it on every rename, which is exactly what
// the path library already does (with the right locking); it also hides an
// unlinked file that is still open under a ".fuse_hidden*" name and removes
// it on the last close, the same trick NFS clients use, so reading an open
// but deleted file works against a server that keeps no open files.
//
// Threads: the operations run on the mount's libfuse worker threads, many
// at once; a MountContext is read-only after the mount is made, except the
// counters (atomics).
#pragma once

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "kernel/node.h"
#include "pcomponent/storage_client.h"

namespace sk::pcomponent {

// The operations counted for `splitctl stats`.
// clang-format off
#define SK_STORAGE_OPS(X)                                                           \
  X(getattr) X(open) X(read) X(write) X(create) X(mkdir) X(mknod) X(symlink)        \
  X(link) X(unlink) X(rmdir) X(rename) X(readdir) X(readlink) X(chmod) X(chown)     \
  X(truncate) X(utimens) X(fsync) X(statfs)

enum class StorageOp {
#define SK_STORAGE_OP_ENUM(name) k_##name,
  SK_STORAGE_OPS(SK_STORAGE_OP_ENUM)
#undef SK_STORAGE_OP_ENUM
  kCount
};
// clang-format on

std::string_view storage_op_name(StorageOp op);

struct StorageCounters {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(StorageOp::kCount)> served{};
  // Operations that failed because the sComponent could not be reached (EIO).
  std::atomic<uint64_t> io_errors{0};
};

// vNode ids <-> host ids, as the launcher maps them (launcher.h): vNode id
// u is host id base + u. A host id outside the vNode's range (host root, or
// an administrator working in the mount) acts as the vNode's root; an
// on-disk id beyond the range shows as the overflow id.
struct IdMap {
  uint32_t base = 0;

  uint32_t to_vnode(uint32_t host) const;
  uint32_t to_host(uint32_t vnode_id) const;
};

struct MountContext {
  VnodeId vnode = kNoVnode;
  std::shared_ptr<StorageClient> client;
  IdMap ids;
  StorageCounters* counters = nullptr;
  // The mount's /sys/class/bdi/<dev>/read_ahead_kb. The kernel caps the
  // readahead at 128 KiB when it processes FUSE_INIT, after the mount call
  // returned; the first operation (which waits for FUSE_INIT) raises it.
  std::string readahead_file;
  std::atomic<bool> readahead_pending{true};
};

// The operation table; fuse_new() gets a MountContext* as private data.
const fuse_operations& storage_fuse_operations();

}  // namespace sk::pcomponent
