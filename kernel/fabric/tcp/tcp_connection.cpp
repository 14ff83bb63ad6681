// The tcp transport's datapath: framing and the serving of one-sided
// operations; request ids, timeouts, reply matching and dispatch are the
// connection's rpc::Endpoint's. Everything below runs on the io thread except
// the public entry points, which only post to it.
//
// Framing: a 40-byte wire::Header, then header.payload_length bytes. A header
// that fails check_header() (bad magic, version, flags or an oversized
// length) means the byte stream can no longer be trusted: the connection
// answers with an EPROTO error reply (Endpoint::reject) and closes. A
// well-framed request whose content is wrong is the request handler's
// business and costs only that request.
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
    : EndpointConnection(context->io(), endpoint_text(socket), std::move(handler)),
      m_context(std::move(context)),
      m_socket(std::move(socket)) {
  // One-sided access is served here, from the registered regions, without
  // the request handler.
  auto one_sided = [this](Message message, Responder responder) {
    m_context->regions().serve(message, std::move(responder));
  };
  m_endpoint.serve_internally(wire::Opcode::FABRIC_READ, one_sided);
  m_endpoint.serve_internally(wire::Opcode::FABRIC_WRITE, one_sided);
}

TcpConnection::~TcpConnection() = default;

void TcpConnection::start() { read_header(); }

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

void TcpConnection::send_message(const wire::Header& header, Bytes payload) {
  m_out.push_back(Outgoing{header, std::move(payload)});
  if (!m_writing) write_next();
}

void TcpConnection::write_next() {
  if (m_closed) return;
  if (m_out.empty()) {
    m_writing = false;
    if (m_endpoint.rejected()) shutdown("malformed message");
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
                     // A bad header is rejected (an error reply, then close).
                     if (!self->m_endpoint.check_incoming(self->m_in_header)) return;
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
                     self->m_endpoint.deliver(std::move(message));
                     if (!self->m_closed) self->read_header();
                   });
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
  log.debug("connection {} closed: {}", peer(), reason);
  boost::system::error_code ignored;
  m_socket.shutdown(tcp::socket::shutdown_both, ignored);
  m_socket.close(ignored);
  // m_out is left alone: an aborted async_write may still refer to its front.
  m_endpoint.close("connection to " + peer() + " lost");
  {
    std::lock_guard lock(m_context->m_mutex);
    auto it = m_context->m_connections.find(weak_from_this());
    if (it != m_context->m_connections.end()) m_context->m_connections.erase(it);
  }
  m_endpoint.notify_closed();
}

}  // namespace sk::fabric
