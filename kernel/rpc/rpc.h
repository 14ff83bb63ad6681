// RPC on top of the fabric: typed calls and a server-side dispatcher. This is
// the one place where a wire status becomes an Error (client side) and an
// Error becomes a wire status (server side).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "kernel/fabric/transport.h"
#include "kernel/log.h"
#include "kernel/result.h"
#include "kernel/wire/codec.h"

namespace sk::rpc {

using fabric::Connection;
using fabric::Message;
using fabric::Responder;
using wire::Bytes;
using wire::ByteView;

// Turns a reply into its payload, or into Error(status, text) when the peer
// replied with an error.
Result<Message> check_reply(Result<Message> reply);

// Sends a request and waits for its reply; an error status becomes an Error.
Result<Message> call(Connection& connection, wire::Opcode opcode, VnodeId vnode,
                     ByteView payload, Duration timeout = fabric::kDefaultTimeout);

// call() whose reply must be exactly one R.
template <wire::WireMessage R>
Result<R> call_for(Connection& connection, wire::Opcode opcode, VnodeId vnode, ByteView payload,
                   Duration timeout = fabric::kDefaultTimeout) {
  auto reply = TRY(call(connection, opcode, vnode, payload, timeout));
  return wire::decode<R>(reply.payload);
}

// Routes requests by opcode. A handler returns the reply payload or an Error,
// which goes back as the status with its message; an unknown opcode is
// refused with EOPNOTSUPP. Handlers run on the transport's thread unless the
// server hands them to its own workers (on_async).
class Dispatcher {
 public:
  using SyncHandler = std::function<Result<Bytes>(const Message&, const Responder&)>;
  using AsyncHandler = std::function<void(Message, Responder)>;

  explicit Dispatcher(std::string_view server_name) : m_name(server_name) {}

  void on(wire::Opcode opcode, SyncHandler handler);
  // The handler owns the Responder and replies when it is done, from any
  // thread (for work that blocks, e.g. disk I/O).
  void on_async(wire::Opcode opcode, AsyncHandler handler);

  // Serves one request; usable directly by tests and fuzzers.
  void dispatch(Message request, Responder responder) const;

  // A RequestHandler for Transport::listen/connect that calls dispatch().
  // The Dispatcher must outlive the transport's use of it.
  fabric::RequestHandler handler() const;

 private:
  std::string m_name;
  std::map<uint16_t, SyncHandler> m_sync;
  std::map<uint16_t, AsyncHandler> m_async;
};

}  // namespace sk::rpc
