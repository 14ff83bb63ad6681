#include "kernel/rpc/endpoint.h"

#include "kernel/log.h"

namespace sk::rpc {

namespace asio = boost::asio;
using fabric::Message;
using fabric::ReplyCallback;
using fabric::RequestHandler;
using fabric::Responder;
using wire::Bytes;

static const Logger log("rpc/endpoint");

Endpoint::Endpoint(asio::io_context& io, Carrier& carrier, std::string peer, RequestHandler handler)
    : m_io(io),
      m_carrier(carrier),
      m_peer(std::move(peer)),
      m_handler(std::move(handler)),
      m_token(std::make_shared<Endpoint*>(this)) {}

Endpoint::~Endpoint() {
  close("connection to " + m_peer + " destroyed");
}

// ---- any thread -----------------------------------------------------------------

void Endpoint::call_async(wire::Opcode opcode, VnodeId vnode, Bytes payload, Duration timeout,
                          ReplyCallback done) {
  // The callback is shared so that it can still be failed if the post is
  // refused after being moved into the task.
  auto callback = std::make_shared<ReplyCallback>(std::move(done));
  auto body = std::make_shared<Bytes>(std::move(payload));
  bool posted =
      m_carrier.post([this, keep = m_carrier.connection(), opcode, vnode, body, timeout, callback] {
        call(opcode, vnode, std::move(*body), timeout, std::move(*callback));
      });
  if (!posted) (*callback)(make_error(ECONNRESET, "transport stopped"));
}

void Endpoint::reply_async(const wire::Header& request, int status, Bytes payload) {
  auto body = std::make_shared<Bytes>(std::move(payload));
  m_carrier.post([this, keep = m_carrier.connection(), request, status, body] {
    reply(request, status, std::move(*body));
  });
}

void Endpoint::set_close_handler(std::function<void()> handler) {
  auto shared = std::make_shared<std::function<void()>>(std::move(handler));
  bool posted = m_carrier.post([this, keep = m_carrier.connection(), shared] {
    if (m_close_notified) {
      (*shared)();
    } else {
      m_close_handler = std::move(*shared);
    }
  });
  if (!posted) (*shared)();
}

// ---- outgoing -------------------------------------------------------------------

void Endpoint::call(wire::Opcode opcode, VnodeId vnode, Bytes payload, Duration timeout,
                    ReplyCallback done) {
  if (m_closed) {
    done(make_error(ECONNRESET, "connection to " + m_peer + " is closed"));
    return;
  }
  if (payload.size() > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "request payload too large"));
    return;
  }
  uint64_t id = m_next_request_id++;
  auto timer = std::make_unique<asio::steady_timer>(m_io);
  timer->expires_after(timeout);
  timer->async_wait(
      [token = std::weak_ptr<Endpoint*>(m_token), id, opcode](boost::system::error_code error) {
        if (error) return;  // cancelled: the reply came, or the connection closed
        if (auto self = token.lock()) (*self)->on_timeout(id, opcode);
      });
  m_pending.emplace(id, Pending{std::move(done), std::move(timer)});

  wire::Header header{};
  header.opcode = static_cast<uint16_t>(opcode);
  header.vnode = vnode;
  header.request_id = id;
  send(header, std::move(payload));
}

void Endpoint::on_timeout(uint64_t id, wire::Opcode opcode) {
  auto it = m_pending.find(id);
  if (it == m_pending.end()) return;
  auto callback = std::move(it->second.done);
  m_pending.erase(it);
  callback(make_error(ETIMEDOUT, std::string(wire::opcode_name(static_cast<uint16_t>(opcode))) +
                                     " to " + m_peer + " timed out"));
}

void Endpoint::reply(const wire::Header& request, int status, Bytes payload) {
  if (m_closed) return;
  wire::Header header{};
  header.opcode = request.opcode;
  header.flags = wire::kFlagReply;
  header.vnode = request.vnode;
  header.request_id = request.request_id;
  header.status = status;
  if (payload.size() > wire::kMaxPayload) {
    header.status = EMSGSIZE;
    payload.clear();
  }
  send(header, std::move(payload));
}

void Endpoint::send(wire::Header header, Bytes payload) {
  header.magic = wire::kMagic;
  header.version = wire::kVersion;
  header.source = m_carrier.local_node();
  header.payload_length = static_cast<uint32_t>(payload.size());
  m_carrier.send_message(header, std::move(payload));
}

// ---- incoming -------------------------------------------------------------------

void Endpoint::serve_internally(wire::Opcode opcode, RequestHandler handler) {
  m_internal[static_cast<uint16_t>(opcode)] = std::move(handler);
}

Result<void> Endpoint::check_incoming(const wire::Header& header) {
  auto ok = wire::check_header(header);
  if (!ok) reject(ok.error());
  return ok;
}

void Endpoint::reject(const Error& error) {
  log.warn("malformed message from {}: {}; closing the connection", m_peer, error.text());
  m_rejected = true;
  // Tell the peer why; the transport closes once this has gone out.
  wire::Header header{};
  header.flags = wire::kFlagReply;
  header.status = error.code();
  auto text = wire::as_bytes(std::string_view(error.message()));
  send(header, Bytes(text.begin(), text.end()));
}

void Endpoint::deliver(Message message) {
  if ((message.header.flags & wire::kFlagReply) == 0) {
    on_request(std::move(message));
    return;
  }
  auto it = m_pending.find(message.header.request_id);
  if (it == m_pending.end()) {
    // A reply after its timeout, or one we never asked for: drop it.
    log.debug("dropped reply {} from {}: no pending request", message.header.request_id, m_peer);
    return;
  }
  auto callback = std::move(it->second.done);
  it->second.timer->cancel();
  m_pending.erase(it);
  callback(std::move(message));
}

void Endpoint::on_request(Message message) {
  Responder responder(m_carrier.connection(), message.header);
  uint16_t opcode = message.opcode();
  if (auto it = m_internal.find(opcode); it != m_internal.end()) {
    it->second(std::move(message), std::move(responder));
    return;
  }
  if (opcode == static_cast<uint16_t>(wire::Opcode::FABRIC_PING)) {
    responder.reply(std::move(message.payload));
    return;
  }
  if (!m_handler) {
    responder.fail(make_error(EOPNOTSUPP, "this peer serves no requests on this connection"));
    return;
  }
  m_handler(std::move(message), std::move(responder));
}

// ---- closing --------------------------------------------------------------------

void Endpoint::close(const std::string& why) {
  m_closed = true;
  auto pending = std::move(m_pending);
  m_pending.clear();
  for (auto& [id, call] : pending) {
    call.timer->cancel();
    call.done(make_error(ECONNRESET, why));
  }
}

void Endpoint::notify_closed() {
  if (m_close_notified) return;
  m_close_notified = true;
  if (m_close_handler) std::exchange(m_close_handler, nullptr)();
}

// ---- EndpointConnection ---------------------------------------------------------

EndpointConnection::EndpointConnection(asio::io_context& io, std::string peer,
                                       RequestHandler handler)
    : m_endpoint(io, *this, std::move(peer), std::move(handler)) {}

void EndpointConnection::call_async(wire::Opcode opcode, VnodeId vnode, Bytes payload,
                                    Duration timeout, ReplyCallback done) {
  m_endpoint.call_async(opcode, vnode, std::move(payload), timeout, std::move(done));
}

void EndpointConnection::send_reply(const wire::Header& request, int status, Bytes payload) {
  m_endpoint.reply_async(request, status, std::move(payload));
}

void EndpointConnection::set_close_handler(std::function<void()> handler) {
  m_endpoint.set_close_handler(std::move(handler));
}

}  // namespace sk::rpc
