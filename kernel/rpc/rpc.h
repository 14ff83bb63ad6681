// RPC on top of the fabric: typed calls and server-side dispatchers. This is
// the one place where a wire status becomes an Error (client side) and an
// Error becomes a wire status (server side).
//
// Typed forms take their bodies from kernel/wire/message_list.h:
//
//   dispatcher.on<Opcode::P2M_PAGE_READ>(
//       [](const wire::P2mPageRange& range, const Message& request) -> Result<wire::RawBytes>
//       {...});
//   auto reply = TRY(rpc::call<Opcode::P2M_MM_CREATE>(connection, vnode, wire::Empty{}));
//
// The dispatcher decodes and validates the body (and checks it against the
// header, wire::check_against_header) before the handler runs: a malformed
// request is refused with the decoder's status (EBADMSG for a wrong length,
// EINVAL or what validate() says for a bad field) and never reaches it.
#pragma once

#include <atomic>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/log.h"
#include "kernel/result.h"
#include "kernel/rpc/worker_pool.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/message_list.h"

namespace sk::rpc {

using fabric::Connection;
using fabric::Message;
using fabric::Responder;
using wire::Bytes;
using wire::ByteView;
using wire::ReplyOf;
using wire::RequestOf;

// Turns a reply into its payload, or into Error(status, text) when the peer
// replied with an error.
Result<Message> check_reply(Result<Message> reply);

// Sends a request and waits for its reply; an error status becomes an Error.
Result<Message> call(Connection& connection, wire::Opcode opcode, VnodeId vnode, ByteView payload,
                     Duration timeout = fabric::kDefaultTimeout);

// call() whose reply must be exactly one R.
template <wire::WireMessage R>
Result<R> call_for(Connection& connection, wire::Opcode opcode, VnodeId vnode, ByteView payload,
                   Duration timeout = fabric::kDefaultTimeout) {
  auto reply = TRY(call(connection, opcode, vnode, payload, timeout));
  return wire::decode<R>(reply.payload);
}

// The typed call: encodes the request, waits, decodes the reply. Blocking;
// never from the transport's thread.
template <wire::Opcode Op>
Result<ReplyOf<Op>> call(Connection& connection, VnodeId vnode, RequestOf<Op> request,
                         Duration timeout = fabric::kDefaultTimeout) {
  auto payload = TRY(wire::body_encode(std::move(request)));
  auto reply = TRY(call(connection, Op, vnode, payload, timeout));
  return wire::body_decode<ReplyOf<Op>>(std::move(reply.payload));
}

// The typed call without waiting: `done` gets the decoded reply or the
// error, on the transport's thread (or at once, here). Any thread.
template <wire::Opcode Op>
void call_async(Connection& connection, VnodeId vnode, RequestOf<Op> request, Duration timeout,
                std::function<void(Result<ReplyOf<Op>>)> done) {
  auto payload = wire::body_encode(std::move(request));
  if (!payload) {
    done(std::move(payload).error());
    return;
  }
  connection.call_async(Op, vnode, std::move(payload).value(), timeout,
                        [done = std::move(done)](Result<Message> reply) {
                          auto checked = check_reply(std::move(reply));
                          if (!checked) {
                            done(std::move(checked).error());
                            return;
                          }
                          done(wire::body_decode<ReplyOf<Op>>(std::move(checked->payload)));
                        });
}

// The reply side of a request a handler answers later (on_deferred): it
// takes only the opcode's reply body. Movable, any thread; destroyed
// without a reply, it replies EIO (as Responder does).
template <wire::Opcode Op>
class ReplyTo {
 public:
  explicit ReplyTo(Responder responder) : m_responder(std::move(responder)) {}

  void reply(ReplyOf<Op> body) {
    auto payload = wire::body_encode(std::move(body));
    if (payload) {
      m_responder.reply(std::move(payload).value());
    } else {
      m_responder.fail(payload.error());
    }
  }
  void fail(const Error& error) { m_responder.fail(error); }
  // Replies with `result`'s body or its error.
  void finish(Result<ReplyOf<Op>> result) {
    if (result) {
      reply(std::move(result).value());
    } else {
      fail(result.error());
    }
  }
  const std::shared_ptr<Connection>& connection() const { return m_responder.connection(); }

 private:
  Responder m_responder;
};

// Routes requests by opcode. A handler returns the reply payload or an Error,
// which goes back as the status with its message; an unknown opcode is
// refused with EOPNOTSUPP. Handlers run on the transport's thread unless the
// server hands them to its own workers. Register every handler before the
// dispatcher serves its first request.
class Dispatcher {
 public:
  using SyncHandler = std::function<Result<Bytes>(const Message&, const Responder&)>;
  using AsyncHandler = std::function<void(Message, Responder)>;

  explicit Dispatcher(std::string_view server_name) : m_name(server_name) {}
  // Serves the handlers of `planes` on one listener: each request by the
  // dispatcher that registered its opcode. Every component serves its
  // control and data planes this way until each plane has a listener of
  // its own. The dispatchers must outlive this one.
  Dispatcher(std::string_view server_name, std::initializer_list<const Dispatcher*> planes)
      : m_name(server_name), m_planes(planes) {}
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Untyped forms, for opcodes outside the message list (tests) and
  // handlers not yet typed. On a plane's dispatcher, an opcode of another
  // plane is refused at registration (std::logic_error).
  void on(wire::Opcode opcode, SyncHandler handler);
  // The handler owns the Responder and replies when it is done, from any
  // thread (for work that blocks, e.g. disk I/O).
  void on_async(wire::Opcode opcode, AsyncHandler handler);

  // Serves one request; usable directly by tests and fuzzers.
  void dispatch(Message request, Responder responder) const;

  // A RequestHandler for Transport::listen/connect that calls dispatch().
  // The Dispatcher must outlive the transport's use of it.
  fabric::RequestHandler handler() const;

  bool serves(uint16_t opcode) const;
  // Requests handled so far, by opcode name (those handled at least once):
  // given to a handler or refused as malformed, and, for handlers on a
  // worker pool, counted once the worker is done. Any thread.
  std::map<std::string, uint64_t> served() const;
  const std::string& name() const { return m_name; }

 protected:
  Dispatcher(std::string_view server_name, wire::Plane plane)
      : m_name(server_name), m_plane(plane) {}

  using Counter = std::shared_ptr<std::atomic<uint64_t>>;
  // Registers `handler`. With `counted_by_handler`, the handler bumps that
  // counter itself (when its work is done); otherwise the route counts
  // every request it is given.
  void route(wire::Opcode opcode, AsyncHandler handler, Counter counted_by_handler = nullptr);

  // Decodes request's body (moving its payload out) and checks it against
  // the header; refuses it through `responder` when malformed, after
  // bumping `count` if given.
  template <wire::Opcode Op>
  std::optional<RequestOf<Op>> decode_or_refuse(Message& request, Responder& responder,
                                                std::atomic<uint64_t>* count = nullptr) const {
    auto body = wire::body_decode<RequestOf<Op>>(std::move(request.payload));
    if (body) {
      auto matches = wire::check_against_header(*body, request.header);
      if (matches) return std::move(body).value();
      body = std::move(matches).error();
    }
    refuse_malformed(request, body.error());
    if (count != nullptr) count->fetch_add(1, std::memory_order_relaxed);
    responder.fail(body.error());
    return std::nullopt;
  }

  // Sends a handler's result: its reply body (Result<void> for an empty
  // one) or its error.
  template <wire::Opcode Op, typename R>
  void finish(const Message& request, Responder& responder, R result) const {
    if (!result) {
      log_failure(request, result.error());
      responder.fail(result.error());
      return;
    }
    if constexpr (std::is_same_v<R, Result<void>>) {
      static_assert(std::is_same_v<ReplyOf<Op>, wire::Empty>,
                    "only a handler of an opcode with an empty reply may return Result<void>");
      responder.reply();
    } else {
      auto payload = wire::body_encode<ReplyOf<Op>>(std::move(result).value());
      if (!payload) {
        log_failure(request, payload.error());
        responder.fail(payload.error());
        return;
      }
      responder.reply(std::move(payload).value());
    }
  }

 private:
  struct Route {
    AsyncHandler handler;
    bool counted_by_handler = false;
    Counter served;
  };

  void check_plane(wire::Opcode opcode) const;
  void refuse_malformed(const Message& request, const Error& error) const;
  void log_failure(const Message& request, const Error& error) const;

  std::string m_name;
  std::optional<wire::Plane> m_plane;
  std::vector<const Dispatcher*> m_planes;
  std::map<uint16_t, Route> m_routes;
};

// A dispatcher for the opcodes of one plane (wire/message_list.h), with the
// typed forms; registering an opcode of another plane does not compile.
//
//   on<Op>(f)             f(const Request&, const Message&) -> Result<Reply>,
//                         on the transport's thread: must not block.
//   on<Op>(pool, f)       the same on a worker of `pool`, for handlers that
//                         block; ESHUTDOWN once the pool stopped.
//   on_deferred<Op>(f)    f(Request, Message, ReplyTo<Op>) on the transport's
//                         thread; it replies later (from a reply callback or
//                         a job), never blocking.
// A Result<void> handler answers an opcode whose reply is wire::Empty. The
// Message is the request's header (source, vnode); its payload has moved
// into the Request. A deferred handler's ReplyTo has the connection.
template <wire::Plane P>
class PlaneDispatcher : public Dispatcher {
  static_assert(P != wire::Plane::kFabric, "the transports serve the fabric's opcodes");

 public:
  explicit PlaneDispatcher(std::string_view server_name) : Dispatcher(server_name, P) {}

  using Dispatcher::on;

  template <wire::Opcode Op, typename F>
  void on(F handler) {
    static_assert(wire::MessageTraits<Op>::plane == P,
                  "the opcode belongs to the other plane's dispatcher");
    route(Op, [this, handler = std::move(handler)](Message request, Responder responder) {
      auto body = decode_or_refuse<Op>(request, responder);
      if (!body) return;
      finish<Op>(request, responder, handler(*body, static_cast<const Message&>(request)));
    });
  }

  template <wire::Opcode Op, typename F>
  void on(WorkerPool& pool, F handler) {
    static_assert(wire::MessageTraits<Op>::plane == P,
                  "the opcode belongs to the other plane's dispatcher");
    auto counter = std::make_shared<std::atomic<uint64_t>>(0);
    auto shared = std::make_shared<F>(std::move(handler));
    route(
        Op,
        [this, &pool, counter, shared](Message request, Responder responder) {
          pool.post([this, counter, shared, request = std::move(request),
                     responder = std::move(responder)](Result<void> admitted) mutable {
            if (!admitted) {
              responder.fail(admitted.error());
              return;
            }
            auto body = decode_or_refuse<Op>(request, responder, counter.get());
            if (!body) return;
            auto result = (*shared)(*body, static_cast<const Message&>(request));
            // Counted before the reply goes, so that whoever got the reply
            // sees the count.
            counter->fetch_add(1, std::memory_order_relaxed);
            finish<Op>(request, responder, std::move(result));
          });
        },
        counter);
  }

  template <wire::Opcode Op, typename F>
  void on_deferred(F handler) {
    static_assert(wire::MessageTraits<Op>::plane == P,
                  "the opcode belongs to the other plane's dispatcher");
    route(Op, [this, handler = std::move(handler)](Message request, Responder responder) {
      auto body = decode_or_refuse<Op>(request, responder);
      if (!body) return;
      handler(std::move(*body), std::move(request), ReplyTo<Op>(std::move(responder)));
    });
  }
};

using ControlDispatcher = PlaneDispatcher<wire::Plane::kControl>;
using DataDispatcher = PlaneDispatcher<wire::Plane::kData>;

}  // namespace sk::rpc
