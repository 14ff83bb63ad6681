// The fabric: how splitkernel components talk. One interface, several
// transports (tcp on Boost.Asio; verbs on libibverbs RC queue pairs), chosen
// at start-up; everything above this file is transport-blind.
//
// Semantics every transport provides:
// - Connections are symmetric: either end may send requests. The listener's
//   RequestHandler serves requests on accepted connections; connect() takes
//   the handler for requests the listener sends back.
// - Two-sided RPC: call_async() sends a request with a fresh request id; the
//   callback runs exactly once with the reply, or with ETIMEDOUT when the
//   timeout passes first, or ECONNRESET when the connection dies first. A late
//   reply after a timeout is dropped. Many requests may be outstanding.
// - One-sided access: a process registers a memory region and hands its
//   RegionKey to a peer, which may then read or write any byte range inside it
//   without the owner's request handler running (on verbs the NIC serves it;
//   on tcp the owner's fabric thread does). Out-of-bounds or unknown keys fail
//   with EFAULT/EINVAL at the requester.
// - Callbacks run on the transport's own thread and must not block; the
//   blocking helpers below must not be called from that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kernel/config.h"
#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/header.h"
#include "kernel/wire/messages.h"

namespace sk::fabric {

using wire::Bytes;
using wire::ByteView;

inline constexpr Duration kDefaultTimeout = std::chrono::seconds(5);

// A received message: its header (already checked by the transport) and its
// payload.
struct Message {
  wire::Header header{};
  Bytes payload;

  uint16_t opcode() const { return header.opcode; }
  VnodeId vnode() const { return header.vnode; }
  NodeId source() const { return header.source; }
  int status() const { return header.status; }
};

// What a peer needs to access a registered region one-sidedly. Hand it over
// whole: verbs addresses the peer's memory by `address` (the region's start
// in the owner's address space) and the NIC checks `rkey`; tcp needs only
// the rkey and ignores the address.
struct RegionKey {
  uint32_t rkey = 0;
  uint64_t length = 0;
  uint64_t address = 0;
};

// Traffic a transport has carried since it was made, for `splitctl stats`.
// Messages and their bytes (40-byte header + payload) count every framed
// message on the wire, requests and replies alike; on tcp that includes the
// FABRIC_READ/FABRIC_WRITE messages that carry one-sided access. One-sided
// operations count at the requester only (on verbs the target's NIC serves
// them and its CPU never sees them), with the bytes read or written.
struct FabricCounters {
  uint64_t messages_sent = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t one_sided_reads = 0;
  uint64_t one_sided_writes = 0;
  uint64_t one_sided_bytes = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_made = 0;
};

class Connection;

// Handed to a request handler with each request. Exactly one of reply() or
// fail() is sent; a Responder destroyed without either replies EIO, so a
// caller never waits for a reply that cannot come. Movable, any thread.
class Responder {
 public:
  Responder(std::shared_ptr<Connection> connection, const wire::Header& request);
  Responder(Responder&&) noexcept;
  Responder& operator=(Responder&&) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void reply(Bytes payload = {});
  // Sends error.code() as the status and error.message() as the payload.
  void fail(const Error& error);

  // The connection the request came on (for peers the server keeps talking to).
  const std::shared_ptr<Connection>& connection() const { return m_connection; }
  const wire::Header& request() const { return m_request; }

 private:
  std::shared_ptr<Connection> m_connection;
  wire::Header m_request{};
  bool m_done = true;
};

using RequestHandler = std::function<void(Message, Responder)>;
using ReplyCallback = std::function<void(Result<Message>)>;
using DoneCallback = std::function<void(Result<void>)>;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  virtual ~Connection() = default;

  // Sends a request. `done` gets the reply message (whose header.status may
  // be non-zero: kernel/rpc turns that into an Error), or ETIMEDOUT /
  // ECONNRESET / ENOTCONN. Any thread.
  virtual void call_async(wire::Opcode opcode, VnodeId vnode, Bytes payload, Duration timeout,
                          ReplyCallback done) = 0;

  // One-sided read of [offset, offset+into.size()) of the peer's region into
  // `into`, which must stay valid until `done` runs. Any thread.
  virtual void read_async(RegionKey region, uint64_t offset, std::span<std::byte> into,
                          Duration timeout, DoneCallback done) = 0;

  // One-sided write of `from` at `offset` of the peer's region; `from` must
  // stay valid until `done` runs. Any thread.
  virtual void write_async(RegionKey region, uint64_t offset, ByteView from, Duration timeout,
                           DoneCallback done) = 0;

  // Sends the reply to a request; used by Responder. Any thread.
  virtual void send_reply(const wire::Header& request, int status, Bytes payload) = 0;

  // Closes the connection; outstanding calls fail with ECONNRESET. Idempotent.
  virtual void close() = 0;
  virtual bool is_open() const = 0;
  // "host:port" of the peer, for logs and the console.
  virtual std::string peer() const = 0;
  // Runs once, on the transport's thread, when the connection closes for any
  // reason. Set it right after connect/accept.
  virtual void set_close_handler(std::function<void()> handler) = 0;

  // Blocking forms. Never call them from the transport's thread.
  Result<Message> call(wire::Opcode opcode, VnodeId vnode, ByteView payload,
                       Duration timeout = kDefaultTimeout);
  Result<void> read(RegionKey region, uint64_t offset, std::span<std::byte> into,
                    Duration timeout = kDefaultTimeout);
  Result<void> write(RegionKey region, uint64_t offset, ByteView from,
                     Duration timeout = kDefaultTimeout);
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Accepts connections on `address` (port 0 picks a free port) and serves
  // their requests with `handler`. Returns the address actually bound.
  virtual Result<Address> listen(const Address& address, RequestHandler handler) = 0;

  // Connects to a listener. Requests the listener sends back on this
  // connection go to `handler`; without one they are refused (EOPNOTSUPP).
  virtual Result<std::shared_ptr<Connection>> connect(const Address& address,
                                                      RequestHandler handler = {},
                                                      Duration timeout = kDefaultTimeout) = 0;

  // Registers memory peers may read and write one-sidedly until it is
  // deregistered. The memory must outlive the registration. Any thread.
  virtual Result<RegionKey> register_region(std::span<std::byte> memory) = 0;
  // After it returns, peers' new accesses with the key fail with EINVAL. On
  // verbs it waits (up to a second) for the peers that used the key to
  // forget it, unless called on the transport's thread; an access racing the
  // deregistration may then cost its connection. Any thread.
  virtual void deregister_region(uint32_t rkey) = 0;

  // The node id stamped as `source` on every message sent from now on.
  virtual void set_node_id(NodeId node) = 0;
  virtual wire::FabricKind kind() const = 0;
  // A snapshot of the traffic counters; each field is read on its own
  // (relaxed), so fields may be a few messages apart. Cheap. Any thread.
  virtual FabricCounters counters() const = 0;

  // Closes every connection and listener and joins the transport's thread.
  // Idempotent; the destructor calls it.
  virtual void stop() = 0;
};

// Makes a transport by name: "tcp", or "verbs" (which opens the RDMA device
// now, so a machine without one is a clear error here: see verbs_device.h for
// $SK_VERBS_DEVICE and $SK_VERBS_GID_INDEX). Unknown names and transports
// this build lacks are a clear error too.
Result<std::unique_ptr<Transport>> make_transport(std::string_view kind);

}  // namespace sk::fabric
