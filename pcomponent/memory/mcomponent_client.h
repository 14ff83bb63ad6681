// The P2M_ client of the memory manager: typed, blocking calls to one
// mComponent over the fabric (the protocol is in mcomponent/mcomponent.h
// and kernel/wire/memory_messages.h). One client per mComponent address,
// shared by every address space that has pages there.
//
// Order: every call here waits for its replies before it returns, so a
// caller that serialises its calls for an address space (the memory
// manager holds the process's lock) sees them applied in that order, over
// any connection. There are two: reads (the fault path) go on their own, so
// that a fault does not wait behind megabytes of write-back. Batches
// (write, free, move) are pipelined: all their requests are sent, then all
// replies awaited.
//
// Errors: a status the mComponent sends back comes back as it is (ENOMEM:
// the vNode's quota or the mComponent's capacity; ENOENT: no such mm).
// When the mComponent cannot be reached (no connection, reset, timeout,
// garbled reply) the error is EIO and says which mComponent; the memory
// is then lost to the processes that had pages there.
//
// Threads: any thread except the transport's (calls block). The
// connection is guarded by m_mutex (never held during a call).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/message_list.h"

namespace sk::pcomponent::memory {

class McomponentClient {
 public:
  McomponentClient(fabric::Transport& transport, NodeId node, Address address, Duration timeout);

  NodeId node() const { return m_node; }
  const Address& address() const { return m_address; }
  std::string name() const;  // "mComponent 3 (127.0.0.1:4000)"

  Result<uint64_t> create_mm(VnodeId vnode);
  Result<uint64_t> fork_mm(VnodeId vnode, uint64_t mm);
  Result<void> free_mm(VnodeId vnode, uint64_t mm);

  // `count` pages (at most wire::kMaxPagesPerMessage) from `address`.
  Result<wire::Bytes> read(VnodeId vnode, uint64_t mm, uint64_t address, uint32_t count);

  // Pages to store: `data` holds count * 4096 bytes.
  struct Run {
    uint64_t address = 0;
    uint32_t count = 0;  // at most wire::kMaxPagesPerMessage
    wire::ByteView data;
  };
  Result<void> write(VnodeId vnode, uint64_t mm, std::span<const Run> runs);

  // Frees [address, address + pages * 4096), in as many requests as it takes.
  Result<void> free(VnodeId vnode, uint64_t mm, uint64_t address, uint64_t pages);

  // P2M_PAGE_MOVE of `pages` pages (any number; the ranges must not overlap).
  Result<void> move(VnodeId vnode, uint64_t mm, uint64_t from, uint64_t to, uint64_t pages);

 private:
  enum Lane { kBulk = 0, kFaults = 1 };
  // Sends every request, waits for every reply; the first error wins: the
  // transport's as EIO (and the connection is dropped), the mComponent's
  // with its status, a malformed reply as EIO.
  template <wire::Opcode Op>
  Result<std::vector<wire::ReplyOf<Op>>> call_all(VnodeId vnode,
                                                  std::vector<wire::RequestOf<Op>> requests,
                                                  Lane lane = kBulk);
  Result<std::shared_ptr<fabric::Connection>> connection(Lane lane);
  void forget(const std::shared_ptr<fabric::Connection>& broken);

  fabric::Transport& m_transport;
  const NodeId m_node;
  const Address m_address;
  const Duration m_timeout;

  std::mutex m_mutex;  // guards the two below
  std::shared_ptr<fabric::Connection> m_connections[2];
  Clock::time_point m_failed_at{};
};

}  // namespace sk::pcomponent::memory
