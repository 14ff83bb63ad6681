// The P2S_ protocol: a pComponent's storage manager asks the sComponent that
// holds a vNode's tree to operate on the files of that tree.
//
// Stateless, NFSv2-style, as LegoOS's storage protocol: every request names
// the vNode (in the header), the full path inside the vNode's tree and
// absolute offsets. The sComponent keeps no open files, sessions or cursors,
// so it may restart between any two requests and the next one still works; a
// directory listing resumes from the cookie the previous reply handed out.
//
// Layout: each request is a fixed struct followed by a tail holding, in this
// order, the path, then a second path or a symlink target where the operation
// has one, then data (P2S_WRITE). The struct states each length, and the
// decoder checks that the tail is exactly their sum. Paths are canonical
// vNode-absolute paths ("/", "/etc/passwd"): a leading '/', no empty, "." or
// ".." component, no NUL, no trailing '/', components of at most NAME_MAX
// bytes. The sComponent resolves them confined to the tree anyway
// (scomponent/confine.h), so a symlink can never lead outside either. Owner
// ids on the wire are vNode ids, never host ids. Failures come back as errno
// statuses (kernel/rpc).
//
//   opcode       request, tail                        reply
//   P2S_GETATTR  P2sPathRequest, path             StorageStat (of the name: lstat)
//   P2S_OPEN     P2sPathRequest{open flags}, path StorageStat (checks the open
//                                                     would work; O_TRUNC truncates)
//   P2S_READ     P2sReadRequest, path             P2sDataReply, bytes (short
//                                                     at end of file)
//   P2S_WRITE    P2sWriteRequest, path, data      P2sWriteReply
//   P2S_CREATE   P2sMakeRequest{open flags}, path StorageStat (O_EXCL: EEXIST if
//                                                     the name exists)
//   P2S_MKDIR    P2sMakeRequest, path             StorageStat
//   P2S_MKNOD    P2sMakeRequest{rdev}, path       StorageStat (FIFOs, sockets and
//                                                     regular files; devices: EPERM)
//   P2S_SYMLINK  P2sMakeRequest, path, target     StorageStat
//   P2S_LINK     P2sTwoPathRequest, path, new     StorageStat of the new name
//   P2S_UNLINK   P2sPathRequest, path             empty
//   P2S_RMDIR    P2sPathRequest, path             empty
//   P2S_RENAME   P2sTwoPathRequest{flags}, from, to  empty (flags: RENAME_NOREPLACE,
//                                                     RENAME_EXCHANGE)
//   P2S_READDIR  P2sReaddirRequest, path          P2sReaddirReply, entries
//   P2S_READLINK P2sPathRequest, path             P2sDataReply, target
//   P2S_SETATTR  P2sSetattrRequest, path          StorageStat (truncate, chmod,
//                                                     chown, utimens in one)
//   P2S_FSYNC    P2sPathRequest{flags}, path      empty, sent once durable
//   P2S_STATFS   P2sPathRequest, path             StorageStatfs
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/result.h"
#include "kernel/wire/codec.h"

namespace sk::wire {

// PATH_MAX: the longest path, and the longest symlink target.
inline constexpr uint32_t kMaxStoragePath = 4096;
// NAME_MAX: the longest path component.
inline constexpr uint32_t kMaxStorageName = 255;
// The most bytes one P2S_READ or P2S_WRITE carries: the FUSE side's
// max_read/max_write, so one kernel request is one round trip.
inline constexpr uint32_t kMaxStorageIo = 1u << 20;
// The most bytes of entries one P2S_READDIR reply carries.
inline constexpr uint32_t kMaxReaddirBytes = 256u << 10;

struct StorageTime {
  int64_t sec;
  uint32_t nsec;  // < 1e9
  uint32_t reserved;
};
static_assert(sizeof(StorageTime) == 16);

// What stat(2) says of a file in a vNode tree. uid and gid are vNode ids.
struct StorageStat {
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;  // 512-byte blocks allocated
  uint64_t rdev;
  uint32_t mode;  // type and permission bits
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  uint32_t blksize;
  uint32_t reserved;
  StorageTime atime;
  StorageTime mtime;
  StorageTime ctime;
};
static_assert(sizeof(StorageStat) == 104);

// P2S_GETATTR, P2S_OPEN, P2S_UNLINK, P2S_RMDIR, P2S_READLINK, P2S_FSYNC,
// P2S_STATFS. `flags` is the open(2) flags for P2S_OPEN (kOpenFlags),
// kFsyncData or 0 for P2S_FSYNC, 0 otherwise.
struct P2sPathRequest {
  uint32_t path_length;
  uint32_t flags;
  Result<void> validate() const;
};
static_assert(sizeof(P2sPathRequest) == 8);

// The open(2) flags that P2S_OPEN and P2S_CREATE honour; the others
// (O_APPEND, O_SYNC, O_NONBLOCK...) describe the open file, which lives on
// the pComponent.
uint32_t storage_open_flags_mask();

// P2S_FSYNC: fdatasync instead of fsync.
inline constexpr uint32_t kFsyncData = 1u << 0;

struct P2sReadRequest {
  uint64_t offset;
  uint32_t length;  // 0..kMaxStorageIo
  uint32_t path_length;
  Result<void> validate() const;
};
static_assert(sizeof(P2sReadRequest) == 16);

// P2S_READ, P2S_READLINK: `length` bytes follow.
struct P2sDataReply {
  uint32_t length;
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(P2sDataReply) == 8);

// P2S_WRITE flags.
inline constexpr uint32_t kWriteAppend = 1u << 0;    // at the end of the file (O_APPEND)
inline constexpr uint32_t kWriteDataSync = 1u << 1;  // durable before the reply (O_DSYNC)
inline constexpr uint32_t kWriteSync = 1u << 2;      // the same, metadata too (O_SYNC)

struct P2sWriteRequest {
  uint64_t offset;  // ignored with kWriteAppend
  uint32_t length;  // 0..kMaxStorageIo
  uint32_t path_length;
  uint32_t flags;
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(P2sWriteRequest) == 24);

struct P2sWriteReply {
  uint64_t size;  // of the file after the write
  uint32_t written;
  uint32_t reserved;
};
static_assert(sizeof(P2sWriteReply) == 16);

// P2S_CREATE, P2S_MKDIR, P2S_MKNOD, P2S_SYMLINK: a new name owned by
// uid:gid (vNode ids; the gid is the parent's when the parent is setgid, as
// on Linux) with permission bits `mode` (P2S_MKNOD: and its type).
struct P2sMakeRequest {
  uint64_t rdev;  // P2S_MKNOD only
  uint32_t mode;
  uint32_t flags;  // P2S_CREATE: open(2) flags (O_EXCL, O_TRUNC); else 0
  uint32_t uid;
  uint32_t gid;
  uint32_t path_length;
  uint32_t target_length;  // P2S_SYMLINK only; else 0
  Result<void> validate() const;
};
static_assert(sizeof(P2sMakeRequest) == 32);

// P2S_LINK (flags 0) and P2S_RENAME (RENAME_NOREPLACE, RENAME_EXCHANGE).
struct P2sTwoPathRequest {
  uint32_t path_length;
  uint32_t new_path_length;
  uint32_t flags;
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(P2sTwoPathRequest) == 16);

// P2sSetattrRequest::valid bits; applied in the order size, owner, mode,
// times.
inline constexpr uint32_t kSetMode = 1u << 0;
inline constexpr uint32_t kSetUid = 1u << 1;
inline constexpr uint32_t kSetGid = 1u << 2;
inline constexpr uint32_t kSetSize = 1u << 3;
inline constexpr uint32_t kSetAtime = 1u << 4;
inline constexpr uint32_t kSetAtimeNow = 1u << 5;
inline constexpr uint32_t kSetMtime = 1u << 6;
inline constexpr uint32_t kSetMtimeNow = 1u << 7;
inline constexpr uint32_t kSetAll = (1u << 8) - 1;

struct P2sSetattrRequest {
  uint32_t valid;
  uint32_t mode;  // permission bits only
  uint32_t uid;
  uint32_t gid;
  uint64_t size;
  StorageTime atime;
  StorageTime mtime;
  uint32_t path_length;
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(P2sSetattrRequest) == 64);

struct P2sReaddirRequest {
  uint64_t cookie;     // 0: from the start; else a next_cookie of an earlier reply
  uint32_t max_bytes;  // of entries in the reply, 1..kMaxReaddirBytes
  uint32_t path_length;
  Result<void> validate() const;
};
static_assert(sizeof(P2sReaddirRequest) == 16);

inline constexpr uint32_t kReaddirEnd = 1u << 0;  // no entries after these

// P2S_READDIR's reply: `count` entries follow, each a StorageDirent and its
// name (name_length bytes, not padded).
struct P2sReaddirReply {
  uint32_t count;
  uint32_t flags;  // kReaddirEnd
};
static_assert(sizeof(P2sReaddirReply) == 8);

struct StorageDirent {
  uint64_t ino;
  uint64_t next_cookie;  // where the listing goes on after this entry
  uint16_t name_length;
  uint8_t type;  // DT_*
  uint8_t reserved[5];
};
static_assert(sizeof(StorageDirent) == 24);

struct StorageStatfs {
  uint64_t blocks;  // in frsize units
  uint64_t bfree;
  uint64_t bavail;
  uint64_t files;
  uint64_t ffree;
  uint64_t favail;
  uint32_t bsize;
  uint32_t frsize;
  uint32_t namemax;
  uint32_t reserved;
};
static_assert(sizeof(StorageStatfs) == 64);

// ---- checked decoding -------------------------------------------------------

// A path as the protocol carries it (see the top of this file). EINVAL for a
// non-canonical one, ENAMETOOLONG for a long one.
Result<void> check_storage_path(std::string_view path);
// A symlink target: 1..kMaxStoragePath bytes without NUL (any text: it is
// resolved, confined, only when followed).
Result<void> check_link_target(std::string_view target);

// What follows a request's fixed part, by length.
struct StorageTail {
  uint32_t path = 0;
  uint32_t second = 0;  // a second path, or a symlink target
  uint32_t data = 0;
  bool second_is_path = false;
};
StorageTail storage_tail(const P2sPathRequest& request);
StorageTail storage_tail(const P2sReadRequest& request);
StorageTail storage_tail(const P2sWriteRequest& request);
StorageTail storage_tail(const P2sMakeRequest& request);
StorageTail storage_tail(const P2sTwoPathRequest& request);
StorageTail storage_tail(const P2sSetattrRequest& request);
StorageTail storage_tail(const P2sReaddirRequest& request);

// A decoded request: its fixed part and views into the payload it came in
// (which must outlive them).
template <typename T>
struct StorageRequest {
  T message;
  std::string_view path;
  std::string_view second;  // the new path (LINK, RENAME) or target (SYMLINK)
  ByteView data;            // P2S_WRITE
};

Result<void> check_storage_tail(const StorageTail& layout, ByteView tail);

template <typename T>
Result<StorageRequest<T>> decode_storage_request(ByteView payload) {
  auto [message, tail] = TRY(decode_with_tail<T>(payload));
  StorageTail layout = storage_tail(message);
  TRY(check_storage_tail(layout, tail));
  auto text = [&](size_t offset, size_t length) {
    return std::string_view(reinterpret_cast<const char*>(tail.data()) + offset, length);
  };
  StorageRequest<T> request{message, text(0, layout.path), text(layout.path, layout.second),
                            tail.subspan(size_t{layout.path} + layout.second, layout.data)};
  return request;
}

// Builds a request: the fixed part, then the tail pieces in order. The
// caller sets the lengths in `message`.
template <WireMessage T>
Bytes encode_storage_request(const T& message, std::string_view path, std::string_view second = {},
                             ByteView data = {}) {
  Bytes bytes(sizeof(T) + path.size() + second.size() + data.size());
  std::byte* out = bytes.data();
  std::memcpy(out, &message, sizeof(T));
  out += sizeof(T);
  std::memcpy(out, path.data(), path.size());
  out += path.size();
  if (!second.empty()) std::memcpy(out, second.data(), second.size());
  out += second.size();
  if (!data.empty()) std::memcpy(out, data.data(), data.size());
  return bytes;
}

// A directory entry of a P2S_READDIR reply.
struct DirEntry {
  uint64_t ino = 0;
  uint64_t next_cookie = 0;
  uint8_t type = 0;
  std::string name;
};

// Appends one entry to a reply under construction.
void append_dirent(Bytes& out, uint64_t ino, uint64_t next_cookie, uint8_t type,
                   std::string_view name);
// The bytes append_dirent() adds for a name of this length.
inline size_t dirent_size(size_t name_length) {
  return sizeof(StorageDirent) + name_length;
}
// Decodes the `count` entries of a reply's tail; EBADMSG unless the tail is
// exactly that many well-formed entries (names 1..NAME_MAX bytes, no '/' or
// NUL).
Result<std::vector<DirEntry>> decode_dirents(ByteView tail, uint32_t count);

// A reply that is a P2sDataReply and its bytes: the bytes.
Result<ByteView> decode_data_reply(ByteView payload);

}  // namespace sk::wire
