// The tcp transport's datapath: framing, request/reply matching, timeouts and
// the serving of one-sided operations. Everything below runs on the io thread
// except the public entry points, which only post to it.
//
// Framing: a 40-byte wire::Header, then header.payload_length bytes. A header
// that fails check_header() (bad magic, version, flags or an oversized
// length) means the byte stream can no longer be trusted: the connection
// answers with an EPROTO error reply and closes. A well-framed request whose
// content is wrong is the request handler's business and costs only that
// request.
#include <cstring>

#include "kernel/fabric/tcp/tcp_transport.h"
#include "kernel/log.h"

namespace sk::fabric {

namespace asio = boost::asio;
using asio::ip::tcp;

static const Logger log("fabric/tcp");

static std::string endpoint_text(const tcp::socket& socket) {
  boost::system::error_code error;
  auto endpoint = socket.remote_endpoint(error);
  if (error) return "?";
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

TcpConnection::TcpConnection(std::shared_ptr<TcpContext> context, tcp::socket socket,
                             RequestHandler handler)
    : m_context(std::move(context)),
      m_socket(std::move(socket)),
      m_handler(std::move(handler)),
      m_peer(endpoint_text(m_socket)) {}

TcpConnection::~TcpConnection() = default;

void TcpConnection::start() { read_header(); }

void TcpConnection::set_close_handler(std::function<void()> handler) {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  bool posted = m_context->post([self, handler = std::move(handler)]() mutable {
    if (self->m_closed) {
      handler();
    } else {
      self->m_close_handler = std::move(handler);
    }
  });
  if (!posted) handler();
}

void TcpConnection::call_async(wire::Opcode opcode, VnodeId vnode, Bytes payload,
                               Duration timeout, ReplyCallback done) {
  // The callback is shared so that it can still be failed if the post is
  // refused after being moved into the lambda.
  auto callback = std::make_shared<ReplyCallback>(std::move(done));
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  bool posted = m_context->post(
      [self, opcode, vnode, payload = std::move(payload), timeout, callback]() mutable {
        self->start_call(opcode, vnode, std::move(payload), timeout, std::move(*callback));
      });
  if (!posted) (*callback)(make_error(ECONNRESET, "transport stopped"));
}

void TcpConnection::start_call(wire::Opcode opcode, VnodeId vnode, Bytes payload,
                               Duration timeout, ReplyCallback done) {
  if (m_closed) {
    done(make_error(ECONNRESET, "connection to " + m_peer + " is closed"));
    return;
  }
  if (payload.size() > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "request payload too large"));
    return;
  }
  uint64_t id = m_next_request_id++;
  auto timer = std::make_unique<asio::steady_timer>(m_context->io());
  timer->expires_after(timeout);
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  timer->async_wait([self, id, opcode](boost::system::error_code error) {
    if (error) return;  // cancelled: the reply came
    auto it = self->m_pending.find(id);
    if (it == self->m_pending.end()) return;
    auto callback = std::move(it->second.done);
    self->m_pending.erase(it);
    callback(make_error(ETIMEDOUT, std::string(wire::opcode_name(static_cast<uint16_t>(opcode))) +
                                       " to " + self->m_peer + " timed out"));
  });
  m_pending.emplace(id, Pending{std::move(done), std::move(timer)});

  wire::Header header{};
  header.opcode = static_cast<uint16_t>(opcode);
  header.vnode = vnode;
  header.request_id = id;
  enqueue(header, std::move(payload));
}

void TcpConnection::read_async(RegionKey region, uint64_t offset, std::span<std::byte> into,
                               Duration timeout, DoneCallback done) {
  wire::FabricAccess access{region.rkey, static_cast<uint32_t>(into.size()), offset};
  if (into.size() > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "one-sided read larger than a message"));
    return;
  }
  call_async(wire::Opcode::FABRIC_READ, kNoVnode, wire::encode(access), timeout,
             [context = m_context, into, done = std::move(done)](Result<Message> reply) {
               if (!reply) return done(std::move(reply).error());
               const Message& message = reply.value();
               if (message.status() != 0) {
                 return done(make_error(message.status(), wire::to_text(message.payload)));
               }
               if (message.payload.size() != into.size()) {
                 return done(make_error(EPROTO, "one-sided read returned a short reply"));
               }
               std::memcpy(into.data(), message.payload.data(), into.size());
               context->counters().one_sided_read(into.size());
               done({});
             });
}

void TcpConnection::write_async(RegionKey region, uint64_t offset, ByteView from,
                                Duration timeout, DoneCallback done) {
  wire::FabricAccess access{region.rkey, static_cast<uint32_t>(from.size()), offset};
  if (from.size() + sizeof access > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "one-sided write larger than a message"));
    return;
  }
  call_async(wire::Opcode::FABRIC_WRITE, kNoVnode, wire::encode(access, from), timeout,
             [context = m_context, length = from.size(),
              done = std::move(done)](Result<Message> reply) {
               if (!reply) return done(std::move(reply).error());
               const Message& message = reply.value();
               if (message.status() != 0) {
                 return done(make_error(message.status(), wire::to_text(message.payload)));
               }
               context->counters().one_sided_write(length);
               done({});
             });
}

void TcpConnection::send_reply(const wire::Header& request, int status, Bytes payload) {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  m_context->post([self, request, status, payload = std::move(payload)]() mutable {
    if (self->m_closed) return;
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
    self->enqueue(header, std::move(payload));
  });
}

void TcpConnection::enqueue(wire::Header header, Bytes payload) {
  header.magic = wire::kMagic;
  header.version = wire::kVersion;
  header.source = m_context->node_id();
  header.payload_length = static_cast<uint32_t>(payload.size());
  m_out.push_back(Outgoing{header, std::move(payload)});
  if (!m_writing) write_next();
}

void TcpConnection::write_next() {
  if (m_closed) return;
  if (m_out.empty()) {
    m_writing = false;
    if (m_close_after_flush) shutdown("malformed message");
    return;
  }
  m_writing = true;
  Outgoing& front = m_out.front();
  std::array<asio::const_buffer, 2> buffers{asio::buffer(&front.header, sizeof front.header),
                                            asio::buffer(front.payload)};
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  asio::async_write(m_socket, buffers, [self](boost::system::error_code error, size_t) {
    if (error) {
      self->shutdown(error.message().c_str());
      return;
    }
    self->m_context->counters().message_sent(sizeof(wire::Header) +
                                             self->m_out.front().payload.size());
    self->m_out.pop_front();
    self->write_next();
  });
}

void TcpConnection::read_header() {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  asio::async_read(m_socket, asio::buffer(&m_in_header, sizeof m_in_header),
                   [self](boost::system::error_code error, size_t) {
                     if (error) {
                       self->shutdown(error == asio::error::eof ? "closed by peer"
                                                                : error.message().c_str());
                       return;
                     }
                     if (auto ok = wire::check_header(self->m_in_header); !ok) {
                       self->reject_stream(ok.error());
                       return;
                     }
                     self->read_payload();
                   });
}

void TcpConnection::read_payload() {
  m_in_payload.assign(m_in_header.payload_length, std::byte{0});
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  asio::async_read(m_socket, asio::buffer(m_in_payload),
                   [self](boost::system::error_code error, size_t) {
                     if (error) {
                       self->shutdown(error == asio::error::eof ? "closed mid-message"
                                                                : error.message().c_str());
                       return;
                     }
                     Message message{self->m_in_header, std::move(self->m_in_payload)};
                     self->m_in_payload = {};
                     self->m_context->counters().message_received(sizeof(wire::Header) +
                                                                  message.payload.size());
                     self->on_message(std::move(message));
                     if (!self->m_closed) self->read_header();
                   });
}

void TcpConnection::on_message(Message message) {
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

void TcpConnection::on_request(Message message) {
  uint16_t opcode = message.opcode();
  if (opcode == static_cast<uint16_t>(wire::Opcode::FABRIC_READ) ||
      opcode == static_cast<uint16_t>(wire::Opcode::FABRIC_WRITE)) {
    serve_one_sided(std::move(message));
    return;
  }
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  Responder responder(self, message.header);
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

void TcpConnection::serve_one_sided(Message message) {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  Responder responder(self, message.header);
  auto decoded = wire::decode_with_tail<wire::FabricAccess>(message.payload);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  auto [access, tail] = decoded.value();
  if (message.opcode() == static_cast<uint16_t>(wire::Opcode::FABRIC_READ)) {
    if (!tail.empty() || access.length > wire::kMaxPayload) {
      responder.fail(make_error(EBADMSG, "malformed one-sided read"));
      return;
    }
    Bytes data(access.length);
    if (auto ok = m_context->region_read(access.rkey, access.offset, data); !ok) {
      responder.fail(ok.error());
      return;
    }
    responder.reply(std::move(data));
  } else {
    if (tail.size() != access.length) {
      responder.fail(make_error(EBADMSG, "one-sided write length does not match its data"));
      return;
    }
    if (auto ok = m_context->region_write(access.rkey, access.offset, tail); !ok) {
      responder.fail(ok.error());
      return;
    }
    responder.reply();
  }
}

void TcpConnection::reject_stream(const Error& error) {
  log.warn("malformed message from {}: {}; closing the connection", m_peer, error.text());
  // Tell the peer why, then close once everything queued has been written.
  wire::Header header{};
  header.flags = wire::kFlagReply;
  header.status = error.code();
  auto text = wire::as_bytes(std::string_view(error.message()));
  m_close_after_flush = true;
  enqueue(header, Bytes(text.begin(), text.end()));
}

void TcpConnection::close() {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  // Bypasses TcpContext::post's stopping check: stop() relies on closing.
  asio::post(m_context->io(), [self] { self->shutdown("closed locally"); });
  m_open = false;
}

void TcpConnection::shutdown(const char* reason) {
  if (m_closed) return;
  m_closed = true;
  m_open = false;
  log.debug("connection {} closed: {}", m_peer, reason);
  boost::system::error_code ignored;
  m_socket.shutdown(tcp::socket::shutdown_both, ignored);
  m_socket.close(ignored);
  // m_out is left alone: an aborted async_write may still refer to its front.
  auto pending = std::move(m_pending);
  m_pending.clear();
  for (auto& [id, call] : pending) {
    call.timer->cancel();
    call.done(make_error(ECONNRESET, "connection to " + m_peer + " lost"));
  }
  {
    std::lock_guard lock(m_context->m_mutex);
    auto it = m_context->m_connections.find(weak_from_this());
    if (it != m_context->m_connections.end()) m_context->m_connections.erase(it);
  }
  if (m_close_handler) {
    auto handler = std::move(m_close_handler);
    m_close_handler = nullptr;
    handler();
  }
}

}  // namespace sk::fabric
