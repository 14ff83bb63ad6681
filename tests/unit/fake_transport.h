// An in-process fabric for unit tests: FakeTransports in one process listen
// and connect to each other by port ("fake:N") and carry messages between
// their threads without a socket, with faults a test can switch on.
//
// It keeps every promise of kernel/fabric/transport.h: connections are
// symmetric pairs; request ids, timeouts (ETIMEDOUT), closing (ECONNRESET to
// outstanding calls, close handlers on both ends) and request routing are
// the same rpc::Endpoint the real transports use; one-sided read/write are
// FABRIC_READ/FABRIC_WRITE messages served by the target's thread from its
// registered regions, failing with EINVAL (unknown key) or EFAULT (out of
// bounds) as on tcp; counters count as tcp counts. Each FakeTransport has
// its own thread that runs every callback and request handler, so a test
// exercises the threading of a real transport.
//
// Faults (Fault below) apply to messages as their sender hands them to the
// link: per connection (FakeConnection::inject) or for every connection of a
// transport (FakeTransport::inject). A dropped message vanishes (its caller
// times out), a delayed one arrives after its delay, a reordered one is held
// and delivered right after the next message sent on that connection, and a
// closing fault kills the link instead of sending the message.
//
// Locks: the listener registry's mutex, each FakeContext's m_mutex and its
// RegionTable's, and each FaultSet's mutex; none is held while another
// is taken.
#pragma once

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernel/fabric/counter_set.h"
#include "kernel/fabric/region_table.h"
#include "kernel/fabric/transport.h"
#include "kernel/rpc/endpoint.h"
#include "kernel/rpc/rpc.h"

namespace sk::testing {

// What happens to the messages a fault hits.
enum class FaultKind {
  kDrop,     // the message vanishes
  kDelay,    // it arrives `delay` later
  kReorder,  // it is held and delivered after the next message
  kClose,    // the link dies instead of carrying it
};

// Which messages a fault hits.
enum class FaultOn { kAll, kRequests, kReplies };

struct Fault {
  FaultKind kind = FaultKind::kDrop;
  FaultOn on = FaultOn::kAll;
  // Only messages with this opcode (a reply carries its request's opcode).
  std::optional<wire::Opcode> opcode;
  Duration delay{};  // kDelay only
  // How many messages it hits before it is spent; zero or less: every one
  // until cleared.
  int count = -1;
};

// Faults switched on for a connection or a transport. Any thread.
class FaultSet {
 public:
  void inject(Fault fault);
  void clear();
  // The first fault that hits `header` (spending one of its count), if any.
  std::optional<Fault> take(const wire::Header& header);

 private:
  std::mutex m_mutex;
  std::vector<Fault> m_faults;
};

class FakeConnection;

// What a FakeTransport's connections share; held by each of them, so a
// connection outliving its transport fails cleanly.
class FakeContext {
 public:
  boost::asio::io_context& io() { return m_io; }
  // Runs fn on the transport's thread; false (fn dropped) once stopping.
  bool post(std::function<void()> fn);
  // post() that still works while stopping (for closing), until the
  // thread has been joined.
  bool post_closing(std::function<void()> fn);
  NodeId node_id() const { return m_node.load(std::memory_order_relaxed); }
  fabric::FabricCounterSet& counters() { return m_counters; }
  FaultSet& faults() { return m_faults; }

  // One-sided access to a registered region: EINVAL for an unknown key,
  // EFAULT outside the region. Transport thread.
  // The registered regions, served one-sidedly like tcp's.
  fabric::RegionTable& regions() { return m_regions; }

 private:
  friend class FakeTransport;
  friend class FakeConnection;

  boost::asio::io_context m_io;
  std::atomic<NodeId> m_node{kNoNode};
  fabric::FabricCounterSet m_counters;
  FaultSet m_faults;

  std::mutex m_mutex;  // guards m_stopping, m_finished, m_connections
  bool m_stopping = false;
  bool m_finished = false;  // the thread has been joined
  // Open connections, kept alive until they close (as tcp's pending reads
  // keep its connections).
  std::set<std::shared_ptr<FakeConnection>> m_connections;

  fabric::RegionTable m_regions;
};

// One end of a fake link. Its RPC half (ids, timeouts, routing, closing)
// is the rpc::EndpointConnection the tcp and verbs connections share.
class FakeConnection final : public rpc::EndpointConnection {
 public:
  FakeConnection(std::shared_ptr<FakeContext> context, std::string peer,
                 fabric::RequestHandler handler);

  void read_async(fabric::RegionKey region, uint64_t offset, std::span<std::byte> into,
                  Duration timeout, fabric::DoneCallback done) override;
  void write_async(fabric::RegionKey region, uint64_t offset, wire::ByteView from, Duration timeout,
                   fabric::DoneCallback done) override;
  void close() override;

  // Faults for the messages this end sends. Any thread.
  void inject(Fault fault) { m_faults.inject(fault); }
  void clear_faults() { m_faults.clear(); }

 private:
  friend class FakeTransport;

  // rpc::Carrier.
  void send_message(const wire::Header& header, wire::Bytes payload) override;
  bool post(std::function<void()> fn) override { return m_context->post(std::move(fn)); }
  NodeId local_node() const override { return m_context->node_id(); }

  // All of these run on this end's transport thread.
  void transmit(const wire::Header& header, wire::Bytes payload);
  void receive(const wire::Header& header, wire::Bytes payload);
  void shutdown(const std::string& reason);

  std::shared_ptr<FakeContext> m_context;
  std::weak_ptr<FakeConnection> m_peer;  // set once, before any traffic
  FaultSet m_faults;
  bool m_closed = false;  // transport-thread view of m_open
  struct Held {
    wire::Header header;
    wire::Bytes payload;
  };
  std::optional<Held> m_held;  // a reordered message waiting for the next
  // Delayed messages' timers, cancelled when the link dies.
  std::set<std::shared_ptr<boost::asio::steady_timer>> m_delayed;
};

class FakeTransport final : public fabric::Transport {
 public:
  FakeTransport();
  ~FakeTransport() override;

  // `address.port` 0 picks a free fake port; a port in use is EADDRINUSE.
  // The host is only echoed back ("fake" when empty).
  Result<Address> listen(const Address& address, fabric::RequestHandler handler) override;
  // ECONNREFUSED when nothing listens on the port (or its transport
  // stopped). Both ends exist when it returns, so the timeout is unused.
  Result<std::shared_ptr<fabric::Connection>> connect(
      const Address& address, fabric::RequestHandler handler = {},
      Duration timeout = fabric::kDefaultTimeout) override;
  Result<fabric::RegionKey> register_region(std::span<std::byte> memory) override;
  void deregister_region(uint32_t rkey) override;
  void set_node_id(NodeId node) override { m_context->m_node.store(node); }
  // There is no fake kind on the wire; it stands in for tcp.
  wire::FabricKind kind() const override { return wire::FabricKind::kTcp; }
  fabric::FabricCounters counters() const override { return m_context->counters().snapshot(); }
  void stop() override;

  // Faults for what every connection of this transport sends, after the
  // connection's own. Any thread.
  void inject(Fault fault) { m_context->faults().inject(fault); }
  void clear_faults() { m_context->faults().clear(); }
  // The open connections (accepted and made), e.g. for a server test to
  // reach its end of a link.
  std::vector<std::shared_ptr<FakeConnection>> connections() const;
  // Returns once everything queued on the transport's thread before the
  // call has run (deliveries, replies, closes): a barrier for tests that
  // wait for the fabric to go quiet. Never from the transport's thread.
  void flush();

 private:
  std::shared_ptr<FakeContext> m_context;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> m_work;
  std::vector<uint16_t> m_ports;  // listened on; guarded by m_context->m_mutex
  std::thread m_thread;
  std::once_flag m_stopped;
};

// ---- driving a Dispatcher over the fake fabric ----------------------------

// A reply as the client saw it: the server's status and payload, or, when
// no reply came (timeout, closed link), minus the transport's errno and its
// message, so that it never passes for a server's status.
struct Reply {
  int status = 0;
  wire::Bytes payload;
  std::string text() const { return wire::to_text(payload); }
};

Reply to_reply(Result<fabric::Message> result);

// A request's parts, as a test writes it: opcode (raw, so unknown ones can
// be sent), vNode, payload and the node it comes from.
inline fabric::Message make_request(uint16_t opcode, VnodeId vnode, wire::Bytes payload,
                                    NodeId source = 2) {
  fabric::Message message;
  message.header.magic = wire::kMagic;
  message.header.version = wire::kVersion;
  message.header.opcode = opcode;
  message.header.source = source;
  message.header.vnode = vnode;
  message.header.payload_length = static_cast<uint32_t>(payload.size());
  message.payload = std::move(payload);
  return message;
}

inline fabric::Message make_request(wire::Opcode opcode, VnodeId vnode, wire::Bytes payload = {},
                                    NodeId source = 2) {
  return make_request(static_cast<uint16_t>(opcode), vnode, std::move(payload), source);
}

// A server FakeTransport listening with a dispatcher's handler and a client
// FakeTransport connected to it. The dispatcher must outlive the link.
class DispatchLink {
 public:
  explicit DispatchLink(const rpc::Dispatcher& dispatcher, NodeId client_node = 2);

  // Sends the request's opcode, vNode and payload and waits for the reply.
  Reply call(fabric::Message request, Duration timeout = std::chrono::seconds(5));
  // Sends without waiting; the reply joins replies().
  void send(fabric::Message request, Duration timeout = std::chrono::seconds(5));
  // Waits until `count` replies have come (or 5 s passed) and returns them.
  std::vector<Reply> wait_for_replies(size_t count);
  std::vector<Reply> replies();

  FakeTransport& server() { return m_server; }
  FakeTransport& client() { return m_client; }
  const std::shared_ptr<fabric::Connection>& connection() const { return m_connection; }

 private:
  // Declared first so that they outlive the transports, whose stop() fails
  // what send() still waits for.
  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::vector<Reply> m_replies;
  FakeTransport m_server;
  FakeTransport m_client;
  std::shared_ptr<fabric::Connection> m_connection;
};

// Sends one request from a fresh client (node request.source()) to a fresh
// server serving `dispatcher`, and returns its reply.
Reply dispatch(const rpc::Dispatcher& dispatcher, fabric::Message request);

}  // namespace sk::testing
