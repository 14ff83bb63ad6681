// Checks of the P2S_ messages (see storage_messages.h). Nothing here trusts
// a length before comparing it with the bytes that are really there.
#include "kernel/wire/storage_messages.h"

#include <fcntl.h>
#include <linux/fs.h>

#include <algorithm>
#include <cstring>

namespace sk::wire {

static constexpr uint32_t kNanosecondsPerSecond = 1'000'000'000;

uint32_t storage_open_flags_mask() {
  return O_ACCMODE | O_TRUNC | O_EXCL | O_CREAT | O_DIRECTORY | O_NOFOLLOW;
}

static Result<void> check_path_length(uint32_t length, const char* what) {
  if (length == 0) return make_error(EINVAL, std::string("empty ") + what);
  if (length > kMaxStoragePath) {
    return make_error(ENAMETOOLONG, std::string(what) + " of " + std::to_string(length) +
                                        " bytes is longer than " + std::to_string(kMaxStoragePath));
  }
  return {};
}

static Result<void> check_time(const StorageTime& time) {
  if (time.nsec >= kNanosecondsPerSecond) return make_error(EINVAL, "bad nanoseconds");
  return {};
}

Result<void> check_storage_path(std::string_view path) {
  TRY(check_path_length(static_cast<uint32_t>(std::min<size_t>(path.size(), UINT32_MAX)), "path"));
  if (path.find('\0') != std::string_view::npos) return make_error(EINVAL, "path holds a NUL");
  if (path.front() != '/') return make_error(EINVAL, "path does not start with '/'");
  if (path == "/") return {};
  std::string_view rest = path.substr(1);
  for (;;) {
    size_t slash = rest.find('/');
    std::string_view name = rest.substr(0, slash);
    if (name.empty() || name == "." || name == "..") {
      return make_error(EINVAL, "path '" + std::string(path) + "' is not canonical");
    }
    if (name.size() > kMaxStorageName) {
      return make_error(ENAMETOOLONG, "a name in the path is longer than " +
                                          std::to_string(kMaxStorageName) + " bytes");
    }
    if (slash == std::string_view::npos) return {};
    rest.remove_prefix(slash + 1);
  }
}

Result<void> check_link_target(std::string_view target) {
  TRY(check_path_length(static_cast<uint32_t>(std::min<size_t>(target.size(), UINT32_MAX)),
                        "symlink target"));
  if (target.find('\0') != std::string_view::npos) {
    return make_error(EINVAL, "symlink target holds a NUL");
  }
  return {};
}

Result<void> P2sPathRequest::validate() const {
  return check_path_length(path_length, "path");
}

Result<void> P2sReadRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  if (length > kMaxStorageIo) {
    return make_error(EINVAL, "read of " + std::to_string(length) + " bytes is over the limit");
  }
  if (offset > static_cast<uint64_t>(INT64_MAX) - length) {
    return make_error(EINVAL, "read offset out of range");
  }
  return {};
}

Result<void> P2sDataReply::validate() const {
  if (length > std::max(kMaxStorageIo, kMaxStoragePath)) {
    return make_error(EBADMSG, "data reply of " + std::to_string(length) + " bytes");
  }
  return {};
}

Result<void> P2sWriteRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  if (length > kMaxStorageIo) {
    return make_error(EINVAL, "write of " + std::to_string(length) + " bytes is over the limit");
  }
  if (offset > static_cast<uint64_t>(INT64_MAX) - length) {
    return make_error(EFBIG, "write offset out of range");
  }
  if ((flags & ~(kWriteAppend | kWriteDataSync | kWriteSync)) != 0) {
    return make_error(EINVAL, "unknown write flags");
  }
  return {};
}

Result<void> P2sMakeRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  if (target_length != 0) TRY(check_path_length(target_length, "symlink target"));
  if ((flags & ~storage_open_flags_mask()) != 0) return make_error(EINVAL, "unknown open flags");
  return {};
}

Result<void> P2sTwoPathRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  TRY(check_path_length(new_path_length, "new path"));
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) {
    return make_error(EINVAL, "unknown rename flags");
  }
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) {
    return make_error(EINVAL, "RENAME_NOREPLACE and RENAME_EXCHANGE exclude each other");
  }
  return {};
}

Result<void> P2sSetattrRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  if ((valid & ~kSetAll) != 0) return make_error(EINVAL, "unknown attributes to set");
  if ((valid & kSetMode) && (mode & ~07777u) != 0) {
    return make_error(EINVAL, "mode holds more than permission bits");
  }
  if ((valid & kSetSize) && size > static_cast<uint64_t>(INT64_MAX)) {
    return make_error(EFBIG, "size out of range");
  }
  if ((valid & kSetAtime) && (valid & kSetAtimeNow)) {
    return make_error(EINVAL, "atime both given and now");
  }
  if ((valid & kSetMtime) && (valid & kSetMtimeNow)) {
    return make_error(EINVAL, "mtime both given and now");
  }
  TRY(check_time(atime));
  TRY(check_time(mtime));
  return {};
}

Result<void> P2sReaddirRequest::validate() const {
  TRY(check_path_length(path_length, "path"));
  if (max_bytes == 0 || max_bytes > kMaxReaddirBytes) {
    return make_error(EINVAL, "readdir of " + std::to_string(max_bytes) + " bytes");
  }
  return {};
}

StorageTail storage_tail(const P2sPathRequest& request) {
  return {request.path_length};
}
StorageTail storage_tail(const P2sReadRequest& request) {
  return {request.path_length};
}
StorageTail storage_tail(const P2sWriteRequest& request) {
  return {request.path_length, 0, request.length};
}
StorageTail storage_tail(const P2sMakeRequest& request) {
  return {request.path_length, request.target_length};
}
StorageTail storage_tail(const P2sTwoPathRequest& request) {
  return {request.path_length, request.new_path_length, 0, true};
}
StorageTail storage_tail(const P2sSetattrRequest& request) {
  return {request.path_length};
}
StorageTail storage_tail(const P2sReaddirRequest& request) {
  return {request.path_length};
}

Result<void> check_storage_tail(const StorageTail& layout, ByteView tail) {
  // Each length is bounded by validate(): the sum cannot wrap in 64 bits.
  uint64_t expected = uint64_t{layout.path} + layout.second + layout.data;
  if (tail.size() != expected) {
    return make_error(EBADMSG, "request tail of " + std::to_string(tail.size()) +
                                   " bytes, expected " + std::to_string(expected));
  }
  auto text = [&](size_t offset, size_t length) {
    return std::string_view(reinterpret_cast<const char*>(tail.data()) + offset, length);
  };
  TRY(check_storage_path(text(0, layout.path)));
  if (layout.second_is_path) {
    TRY(check_storage_path(text(layout.path, layout.second)));
  } else if (layout.second != 0) {
    TRY(check_link_target(text(layout.path, layout.second)));
  }
  return {};
}

void append_dirent(Bytes& out, uint64_t ino, uint64_t next_cookie, uint8_t type,
                   std::string_view name) {
  StorageDirent entry{};
  entry.ino = ino;
  entry.next_cookie = next_cookie;
  entry.name_length = static_cast<uint16_t>(name.size());
  entry.type = type;
  size_t at = out.size();
  out.resize(at + dirent_size(name.size()));
  std::memcpy(out.data() + at, &entry, sizeof entry);
  std::memcpy(out.data() + at + sizeof entry, name.data(), name.size());
}

Result<std::vector<DirEntry>> decode_dirents(ByteView tail, uint32_t count) {
  // Every entry takes at least one header: a count the tail cannot hold is
  // refused before reserving memory for it.
  if (count > tail.size() / sizeof(StorageDirent)) {
    return make_error(
        EBADMSG, std::to_string(count) + " entries in " + std::to_string(tail.size()) + " bytes");
  }
  std::vector<DirEntry> entries;
  entries.reserve(count);
  size_t at = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (tail.size() - at < sizeof(StorageDirent)) {
      return make_error(EBADMSG, "truncated directory entry");
    }
    StorageDirent header;
    std::memcpy(&header, tail.data() + at, sizeof header);
    at += sizeof header;
    if (header.name_length == 0 || header.name_length > kMaxStorageName ||
        tail.size() - at < header.name_length) {
      return make_error(EBADMSG, "bad directory entry name length");
    }
    std::string name(reinterpret_cast<const char*>(tail.data()) + at, header.name_length);
    at += header.name_length;
    if (name.find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
      return make_error(EBADMSG, "bad directory entry name");
    }
    entries.push_back(DirEntry{header.ino, header.next_cookie, header.type, std::move(name)});
  }
  if (at != tail.size()) return make_error(EBADMSG, "bytes after the directory entries");
  return entries;
}

Result<ByteView> decode_data_reply(ByteView payload) {
  auto [reply, tail] = TRY(decode_with_tail<P2sDataReply>(payload));
  if (tail.size() != reply.length) {
    return make_error(EBADMSG, "data reply says " + std::to_string(reply.length) +
                                   " bytes and carries " + std::to_string(tail.size()));
  }
  return tail;
}

}  // namespace sk::wire
