// The P2S_ client: typed, blocking calls to one sComponent over the fabric
// (the protocol is described in kernel/wire/storage_messages.h). One client
// per sComponent address, shared by the vNodes whose trees live there.
//
// Errors: a status the sComponent sends back is the errno of the file
// operation and comes back as it is (ENOENT, EEXIST, ENOTEMPTY...). When the
// sComponent cannot be reached (no connection, reset, timeout, garbled
// reply) the error is EIO, as a disk that went away, and the cause is
// logged.
//
// Reconnection: the connection is made on the first call and made again
// when it has closed. A call whose connection breaks under it is sent again
// on a new connection only when it is idempotent (everything but create,
// mkdir, mknod, symlink, link, unlink, rmdir, rename and appending writes),
// so a request that may already have run is never run twice. After a failed
// connect, calls fail at once for kReconnectBackoff rather than each waiting
// for a connect timeout.
//
// Threads: any thread except the transport's (calls block). The connection
// is guarded by m_mutex (the only lock, never held during a call).
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/wire/message_list.h"
#include "kernel/wire/storage_messages.h"

namespace sk::pcomponent {

class StorageClient {
 public:
  // `timeout` bounds each call; fsync gets kFsyncTimeout.
  StorageClient(fabric::Transport& transport, Address scomponent,
                Duration timeout = std::chrono::seconds(30));

  const Address& address() const { return m_address; }

  Result<wire::StorageStat> getattr(VnodeId vnode, std::string_view path);
  Result<wire::StorageStat> open(VnodeId vnode, std::string_view path, uint32_t flags);
  // Reads into `into` (at most kMaxStorageIo bytes a call; larger buffers
  // take several); returns the bytes read, fewer only at the end of file.
  Result<size_t> read(VnodeId vnode, std::string_view path, uint64_t offset,
                      std::span<std::byte> into);
  // Writes all of `data` (in kMaxStorageIo pieces); returns the bytes
  // written and the file's size afterwards.
  Result<wire::P2sWriteReply> write(VnodeId vnode, std::string_view path, uint64_t offset,
                                    wire::ByteView data, uint32_t flags);
  Result<wire::StorageStat> create(VnodeId vnode, std::string_view path, uint32_t mode,
                                   uint32_t flags, uint32_t uid, uint32_t gid);
  Result<wire::StorageStat> mkdir(VnodeId vnode, std::string_view path, uint32_t mode, uint32_t uid,
                                  uint32_t gid);
  Result<wire::StorageStat> mknod(VnodeId vnode, std::string_view path, uint32_t mode,
                                  uint64_t rdev, uint32_t uid, uint32_t gid);
  Result<wire::StorageStat> symlink(VnodeId vnode, std::string_view path, std::string_view target,
                                    uint32_t uid, uint32_t gid);
  Result<wire::StorageStat> link(VnodeId vnode, std::string_view path, std::string_view new_path);
  Result<void> unlink(VnodeId vnode, std::string_view path);
  Result<void> rmdir(VnodeId vnode, std::string_view path);
  Result<void> rename(VnodeId vnode, std::string_view from, std::string_view to, uint32_t flags);
  // The whole directory, in as many requests as it takes.
  Result<std::vector<wire::DirEntry>> readdir(VnodeId vnode, std::string_view path);
  Result<std::string> readlink(VnodeId vnode, std::string_view path);
  // `request.path_length` is filled in here.
  Result<wire::StorageStat> setattr(VnodeId vnode, std::string_view path,
                                    wire::P2sSetattrRequest request);
  Result<void> fsync(VnodeId vnode, std::string_view path, bool data_only);
  Result<wire::StorageStatfs> statfs(VnodeId vnode);

  // An fsync may wait for a slow disk to flush gigabytes.
  static constexpr Duration kFsyncTimeout = std::chrono::seconds(120);
  static constexpr Duration kConnectTimeout = std::chrono::seconds(2);
  static constexpr Duration kReconnectBackoff = std::chrono::milliseconds(500);

 private:
  enum class Retry { kNo, kIdempotent };

  // Sends the request built by `payload` (built again for a retry) and
  // returns the reply payload; see the top of the file for the errors.
  // `request()` builds Op's request body (once per attempt); a reply that
  // is not Op's reply body is EIO.
  template <wire::Opcode Op, typename Build>
  Result<wire::ReplyOf<Op>> call(VnodeId vnode, Retry retry, Duration timeout,
                                 const Build& request);
  Result<std::shared_ptr<fabric::Connection>> connection();
  void forget(const std::shared_ptr<fabric::Connection>& broken);

  fabric::Transport& m_transport;
  const Address m_address;
  const Duration m_timeout;

  std::mutex m_mutex;  // guards the two below
  std::shared_ptr<fabric::Connection> m_connection;
  Clock::time_point m_failed_at{};
};

}  // namespace sk::pcomponent
