// The P2S_ client (see storage_client.h).
#include "pcomponent/storage_client.h"

#include <future>

#include "kernel/log.h"
#include "kernel/wire/storage_body.h"

namespace sk::pcomponent {

static const Logger log("storage_client");

using wire::Opcode;

StorageClient::StorageClient(fabric::Transport& transport, Address scomponent, Duration timeout)
    : m_transport(transport), m_address(std::move(scomponent)), m_timeout(timeout) {}

Result<std::shared_ptr<fabric::Connection>> StorageClient::connection() {
  std::lock_guard lock(m_mutex);
  if (m_connection && m_connection->is_open()) return m_connection;
  m_connection.reset();
  auto now = Clock::now();
  if (m_failed_at != Clock::time_point{} && now - m_failed_at < kReconnectBackoff) {
    return make_error(EIO, "sComponent " + m_address.to_string() + " is unreachable");
  }
  // Under the lock: the threads that need the connection meanwhile wait
  // for this attempt rather than each making one.
  auto connected = m_transport.connect(m_address, {}, kConnectTimeout);
  if (!connected) {
    m_failed_at = now;
    log.warn("cannot reach sComponent {}: {}", m_address.to_string(), connected.error().text());
    return make_error(
        EIO, "connect to sComponent " + m_address.to_string() + ": " + connected.error().text());
  }
  if (m_failed_at != Clock::time_point{}) {
    log.info("reconnected to sComponent {}", m_address.to_string());
  }
  m_failed_at = {};
  m_connection = std::move(connected).value();
  return m_connection;
}

void StorageClient::forget(const std::shared_ptr<fabric::Connection>& broken) {
  std::lock_guard lock(m_mutex);
  if (m_connection == broken) m_connection.reset();
}

// The transport errors after which the connection is of no more use.
static bool connection_broke(int code) {
  return code == ECONNRESET || code == ENOTCONN || code == EPIPE || code == ECONNABORTED ||
         code == ESHUTDOWN;
}

// Statuses that say something about the sComponent, not about the file:
// to a program they are an I/O error.
static int file_errno(int status) {
  if (status <= 0 || status == ESHUTDOWN || status == EBADMSG || status == EPROTO ||
      status == EMSGSIZE) {
    return EIO;
  }
  return status;
}

template <Opcode Op, typename Build>
Result<wire::ReplyOf<Op>> StorageClient::call(VnodeId vnode, Retry retry, Duration timeout,
                                              const Build& request) {
  const Opcode opcode = Op;
  for (int attempt = 0;; ++attempt) {
    auto connection = TRY(this->connection());
    auto payload = TRY(wire::body_encode(request()));
    std::promise<Result<fabric::Message>> promise;
    auto future = promise.get_future();
    connection->call_async(
        opcode, vnode, std::move(payload), timeout,
        [&promise](Result<fabric::Message> reply) { promise.set_value(std::move(reply)); });
    auto reply = future.get();
    if (reply) {
      if (reply->status() != 0) {
        return make_error(file_errno(reply->status()), wire::to_text(reply->payload));
      }
      auto body = wire::body_decode<wire::ReplyOf<Op>>(std::move(reply->payload));
      if (!body) {
        return make_error(EIO, "bad reply to " +
                                   std::string(wire::opcode_name(static_cast<uint16_t>(opcode))) +
                                   ": " + body.error().text());
      }
      return body;
    }
    int code = reply.error().code();
    bool broke = connection_broke(code);
    if (broke) forget(connection);
    if (broke && retry == Retry::kIdempotent && attempt == 0) {
      log.info("{} to {}: {}; sending it again", wire::opcode_name(static_cast<uint16_t>(opcode)),
               m_address.to_string(), reply.error().text());
      continue;
    }
    log.warn("{} to {}: {}", wire::opcode_name(static_cast<uint16_t>(opcode)),
             m_address.to_string(), reply.error().text());
    return make_error(EIO, reply.error().text());
  }
}

static uint32_t length_of(std::string_view text) {
  return static_cast<uint32_t>(text.size());
}

// A request that is a P2sPathRequest and a path.
static auto path_request(std::string_view path, uint32_t flags = 0) {
  return [path, flags] {
    return wire::StorageBody<wire::P2sPathRequest>::make(
        wire::P2sPathRequest{length_of(path), flags}, path);
  };
}

Result<wire::StorageStat> StorageClient::getattr(VnodeId vnode, std::string_view path) {
  return call<Opcode::P2S_GETATTR>(vnode, Retry::kIdempotent, m_timeout, path_request(path));
}

Result<wire::StorageStat> StorageClient::open(VnodeId vnode, std::string_view path,
                                              uint32_t flags) {
  return call<Opcode::P2S_OPEN>(vnode, Retry::kIdempotent, m_timeout, path_request(path, flags));
}

Result<size_t> StorageClient::read(VnodeId vnode, std::string_view path, uint64_t offset,
                                   std::span<std::byte> into) {
  size_t done = 0;
  while (done < into.size()) {
    uint32_t length =
        static_cast<uint32_t>(std::min<size_t>(into.size() - done, wire::kMaxStorageIo));
    wire::P2sReadRequest request{offset + done, length, length_of(path)};
    auto reply = TRY(call<Opcode::P2S_READ>(vnode, Retry::kIdempotent, m_timeout, [&] {
      return wire::StorageBody<wire::P2sReadRequest>::make(request, path);
    }));
    wire::ByteView data = reply.tail.view();
    if (data.size() > length) return make_error(EIO, "bad reply to P2S_READ");
    std::memcpy(into.data() + done, data.data(), data.size());
    done += data.size();
    if (data.size() < length) break;  // the end of the file
  }
  return done;
}

Result<wire::P2sWriteReply> StorageClient::write(VnodeId vnode, std::string_view path,
                                                 uint64_t offset, wire::ByteView data,
                                                 uint32_t flags) {
  wire::P2sWriteReply total{};
  // An append that may have happened must not happen twice.
  Retry retry = (flags & wire::kWriteAppend) ? Retry::kNo : Retry::kIdempotent;
  do {
    auto piece = data.subspan(total.written,
                              std::min<size_t>(data.size() - total.written, wire::kMaxStorageIo));
    wire::P2sWriteRequest request{offset + total.written, static_cast<uint32_t>(piece.size()),
                                  length_of(path), flags, 0};
    auto reply = TRY(call<Opcode::P2S_WRITE>(vnode, retry, m_timeout, [&] {
      return wire::StorageBody<wire::P2sWriteRequest>::make(request, path, {}, piece);
    }));
    if (reply.written > piece.size()) return make_error(EIO, "bad reply to P2S_WRITE");
    total.written += reply.written;
    total.size = reply.size;
    if (reply.written < piece.size()) break;  // the disk is full: report what was written
  } while (total.written < data.size());
  return total;
}

static auto make_request(std::string_view path, uint32_t mode, uint32_t flags, uint32_t uid,
                         uint32_t gid, uint64_t rdev = 0, std::string_view target = {}) {
  return [=] {
    wire::P2sMakeRequest request{rdev, mode, flags, uid, gid, length_of(path), length_of(target)};
    return wire::StorageBody<wire::P2sMakeRequest>::make(request, path, target);
  };
}

Result<wire::StorageStat> StorageClient::create(VnodeId vnode, std::string_view path, uint32_t mode,
                                                uint32_t flags, uint32_t uid, uint32_t gid) {
  return call<Opcode::P2S_CREATE>(vnode, Retry::kNo, m_timeout,
                                  make_request(path, mode, flags, uid, gid));
}

Result<wire::StorageStat> StorageClient::mkdir(VnodeId vnode, std::string_view path, uint32_t mode,
                                               uint32_t uid, uint32_t gid) {
  return call<Opcode::P2S_MKDIR>(vnode, Retry::kNo, m_timeout,
                                 make_request(path, mode, 0, uid, gid));
}

Result<wire::StorageStat> StorageClient::mknod(VnodeId vnode, std::string_view path, uint32_t mode,
                                               uint64_t rdev, uint32_t uid, uint32_t gid) {
  return call<Opcode::P2S_MKNOD>(vnode, Retry::kNo, m_timeout,
                                 make_request(path, mode, 0, uid, gid, rdev));
}

Result<wire::StorageStat> StorageClient::symlink(VnodeId vnode, std::string_view path,
                                                 std::string_view target, uint32_t uid,
                                                 uint32_t gid) {
  return call<Opcode::P2S_SYMLINK>(vnode, Retry::kNo, m_timeout,
                                   make_request(path, 0, 0, uid, gid, 0, target));
}

static auto two_path_request(std::string_view path, std::string_view second, uint32_t flags) {
  return [=] {
    wire::P2sTwoPathRequest request{length_of(path), length_of(second), flags, 0};
    return wire::StorageBody<wire::P2sTwoPathRequest>::make(request, path, second);
  };
}

Result<wire::StorageStat> StorageClient::link(VnodeId vnode, std::string_view path,
                                              std::string_view new_path) {
  return call<Opcode::P2S_LINK>(vnode, Retry::kNo, m_timeout, two_path_request(path, new_path, 0));
}

Result<void> StorageClient::unlink(VnodeId vnode, std::string_view path) {
  TRY(call<Opcode::P2S_UNLINK>(vnode, Retry::kNo, m_timeout, path_request(path)));
  return {};
}

Result<void> StorageClient::rmdir(VnodeId vnode, std::string_view path) {
  TRY(call<Opcode::P2S_RMDIR>(vnode, Retry::kNo, m_timeout, path_request(path)));
  return {};
}

Result<void> StorageClient::rename(VnodeId vnode, std::string_view from, std::string_view to,
                                   uint32_t flags) {
  TRY(call<Opcode::P2S_RENAME>(vnode, Retry::kNo, m_timeout, two_path_request(from, to, flags)));
  return {};
}

Result<std::vector<wire::DirEntry>> StorageClient::readdir(VnodeId vnode, std::string_view path) {
  std::vector<wire::DirEntry> entries;
  uint64_t cookie = 0;
  for (;;) {
    wire::P2sReaddirRequest request{cookie, wire::kMaxReaddirBytes, length_of(path)};
    auto listing = TRY(call<Opcode::P2S_READDIR>(vnode, Retry::kIdempotent, m_timeout, [&] {
      return wire::StorageBody<wire::P2sReaddirRequest>::make(request, path);
    }));
    auto batch = listing.list();
    if (!batch) return make_error(EIO, "bad reply to P2S_READDIR: " + batch.error().text());
    bool end = listing.head.flags & wire::kReaddirEnd;
    if (batch->empty() && !end) return make_error(EIO, "P2S_READDIR made no progress");
    for (auto& entry : *batch) entries.push_back(std::move(entry));
    if (end) return entries;
    cookie = entries.back().next_cookie;
  }
}

Result<std::string> StorageClient::readlink(VnodeId vnode, std::string_view path) {
  auto target =
      TRY(call<Opcode::P2S_READLINK>(vnode, Retry::kIdempotent, m_timeout, path_request(path)));
  return std::string(target.tail.text());
}

Result<wire::StorageStat> StorageClient::setattr(VnodeId vnode, std::string_view path,
                                                 wire::P2sSetattrRequest request) {
  request.path_length = length_of(path);
  return call<Opcode::P2S_SETATTR>(vnode, Retry::kIdempotent, m_timeout, [&] {
    return wire::StorageBody<wire::P2sSetattrRequest>::make(request, path);
  });
}

Result<void> StorageClient::fsync(VnodeId vnode, std::string_view path, bool data_only) {
  TRY(call<Opcode::P2S_FSYNC>(vnode, Retry::kIdempotent, kFsyncTimeout,
                              path_request(path, data_only ? wire::kFsyncData : 0)));
  return {};
}

Result<wire::StorageStatfs> StorageClient::statfs(VnodeId vnode) {
  return call<Opcode::P2S_STATFS>(vnode, Retry::kIdempotent, m_timeout, path_request("/"));
}

}  // namespace sk::pcomponent
