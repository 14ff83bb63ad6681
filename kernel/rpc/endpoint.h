// The transport-neutral half of a fabric connection: request ids, the
// outstanding calls and their timeouts, reply matching, the check of every
// incoming header, and the routing of requests to the RequestHandler and of
// replies to their callbacks. Each transport (tcp, verbs) keeps one Endpoint
// per connection, feeds it the complete messages its framing produces and
// sends what the Endpoint hands to its Carrier; the transport itself only
// moves bytes and registered memory. Authentication, limits and
// back-pressure belong here, once for every fabric.
//
// Semantics are those transport.h promises for a Connection: a call's
// callback runs exactly once, with the reply, ETIMEDOUT when its timeout
// passes first, or ECONNRESET when the connection closes first; a reply
// after its timeout (or one never asked for) is dropped; FABRIC_PING is
// echoed without the handler; without a handler requests are refused with
// EOPNOTSUPP.
//
// Threads: the endpoint belongs to its transport's io thread, which runs the
// Asio io_context given to the constructor (timeouts are steady_timers on
// it). The *_async entry points may be called from any thread: they post to
// the io thread through Carrier::post. Every callback runs on the io thread.
//
// Life: the endpoint lives inside its connection. Posted work holds the
// connection (Carrier::connection()); timers hold only a weak token, so one
// that fires after the endpoint is gone does nothing.
#pragma once

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "kernel/fabric/transport.h"

namespace sk::rpc {

// What an Endpoint needs of the transport that carries its messages.
// Implemented by each transport's connection.
class Carrier {
 public:
  virtual ~Carrier() = default;

  // Queues one message for the peer. The header is complete: magic,
  // version, source and payload_length are set. Io thread.
  virtual void send_message(const wire::Header& header, wire::Bytes payload) = 0;
  // Runs fn on the io thread; false (fn dropped) once the transport is
  // stopping. Any thread.
  virtual bool post(std::function<void()> fn) = 0;
  // The node id stamped as `source` on what is sent. Any thread.
  virtual NodeId local_node() const = 0;
  // The connection the endpoint belongs to, for Responders and for keeping
  // it alive across a post. Any thread.
  virtual std::shared_ptr<fabric::Connection> connection() = 0;
};

class Endpoint {
 public:
  // `peer` names the other end in errors and logs; `handler` serves its
  // requests (may be empty).
  Endpoint(boost::asio::io_context& io, Carrier& carrier, std::string peer,
           fabric::RequestHandler handler);
  // Fails whatever is still outstanding with ECONNRESET (a connection closes
  // its endpoint first, so this is a safety net).
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  const std::string& peer() const { return m_peer; }

  // ---- any thread: each posts to the io thread ---------------------------

  // Connection::call_async. Fails with ECONNRESET at once if the transport
  // is stopping.
  void call_async(wire::Opcode opcode, VnodeId vnode, wire::Bytes payload, Duration timeout,
                  fabric::ReplyCallback done);
  // Connection::send_reply; dropped once the endpoint is closed.
  void reply_async(const wire::Header& request, int status, wire::Bytes payload);
  // Connection::set_close_handler: the handler runs once, when the
  // connection closes, or at once if it already has (or the transport is
  // stopping).
  void set_close_handler(std::function<void()> handler);

  // ---- io thread ----------------------------------------------------------

  // Sends a request with a fresh id and waits for its reply up to timeout.
  // ECONNRESET when closed, EMSGSIZE for a payload over wire::kMaxPayload.
  void call(wire::Opcode opcode, VnodeId vnode, wire::Bytes payload, Duration timeout,
            fabric::ReplyCallback done);
  // Sends the reply to a request; an oversized payload becomes EMSGSIZE.
  void reply(const wire::Header& request, int status, wire::Bytes payload);

  // Requests with this opcode are served by `handler` (the transport's own,
  // e.g. tcp's one-sided FABRIC_READ/FABRIC_WRITE) instead of the
  // connection's RequestHandler. Before the first message.
  void serve_internally(wire::Opcode opcode, fabric::RequestHandler handler);

  // Checks a received header before the transport reads its payload. A bad
  // one (magic, version, flags, length) rejects the stream (see reject) and
  // is returned.
  Result<void> check_incoming(const wire::Header& header);
  // The byte stream from the peer can no longer be trusted: tells the peer
  // why in an error reply. The transport then takes nothing more from the
  // peer and closes once what is queued has gone out.
  void reject(const Error& error);
  bool rejected() const { return m_rejected; }

  // A complete, checked message from the peer: a reply goes to its call (or
  // is dropped when none waits for it), a request to its handler.
  void deliver(fabric::Message message);

  // The connection has closed: every outstanding call fails with ECONNRESET
  // and `why`, and later calls fail at once. Idempotent.
  void close(const std::string& why);
  bool closed() const { return m_closed; }
  // Runs the close handler (once). Call after close(), when the transport
  // has finished its own teardown.
  void notify_closed();

  // Calls waiting for their reply; for tests.
  size_t outstanding() const { return m_pending.size(); }

 private:
  struct Pending {
    fabric::ReplyCallback done;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  void on_request(fabric::Message message);
  void on_timeout(uint64_t id, wire::Opcode opcode);
  void send(wire::Header header, wire::Bytes payload);

  boost::asio::io_context& m_io;
  Carrier& m_carrier;
  std::string m_peer;
  fabric::RequestHandler m_handler;
  std::map<uint16_t, fabric::RequestHandler> m_internal;
  // Held weakly by timers: gone (and the timer's wait ignored) with the
  // endpoint.
  std::shared_ptr<Endpoint*> m_token;

  bool m_closed = false;
  bool m_rejected = false;
  uint64_t m_next_request_id = 1;
  std::unordered_map<uint64_t, Pending> m_pending;
  std::function<void()> m_close_handler;
  bool m_close_notified = false;
};

// A fabric::Connection whose RPC half is an Endpoint: the base of the tcp and
// verbs connections. They add one-sided access, close() and the Carrier
// (moving the endpoint's messages), and feed m_endpoint what arrives.
class EndpointConnection : public fabric::Connection, protected Carrier {
 public:
  void call_async(wire::Opcode opcode, VnodeId vnode, wire::Bytes payload, Duration timeout,
                  fabric::ReplyCallback done) override;
  void send_reply(const wire::Header& request, int status, wire::Bytes payload) override;
  void set_close_handler(std::function<void()> handler) override;
  bool is_open() const override { return m_open.load(); }
  std::string peer() const override { return m_endpoint.peer(); }

 protected:
  // The endpoint's timers run on `io`, the transport's io thread.
  EndpointConnection(boost::asio::io_context& io, std::string peer, fabric::RequestHandler handler);

  std::shared_ptr<fabric::Connection> connection() override { return shared_from_this(); }

  Endpoint m_endpoint;
  // False from close() or the connection's end on; read from any thread.
  std::atomic<bool> m_open{true};
};

}  // namespace sk::rpc
