#include "kernel/fabric/transport.h"

#include <future>

#include "kernel/fabric/tcp/tcp_transport.h"
#if SK_HAVE_VERBS
#include "kernel/fabric/verbs/verbs_transport.h"
#endif

namespace sk::fabric {

Responder::Responder(std::shared_ptr<Connection> connection, const wire::Header& request)
    : m_connection(std::move(connection)), m_request(request), m_done(false) {}

Responder::Responder(Responder&& other) noexcept
    : m_connection(std::move(other.m_connection)),
      m_request(other.m_request),
      m_done(other.m_done) {
  other.m_done = true;
}

Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    if (!m_done) fail(make_error(EIO, "request dropped"));
    m_connection = std::move(other.m_connection);
    m_request = other.m_request;
    m_done = other.m_done;
    other.m_done = true;
  }
  return *this;
}

Responder::~Responder() {
  if (!m_done) fail(make_error(EIO, "the server dropped the request without a reply"));
}

void Responder::reply(Bytes payload) {
  if (m_done) return;
  m_done = true;
  m_connection->send_reply(m_request, 0, std::move(payload));
}

void Responder::fail(const Error& error) {
  if (m_done) return;
  m_done = true;
  int status = error.code() > 0 ? error.code() : EIO;
  auto text = wire::as_bytes(std::string_view(error.message()));
  m_connection->send_reply(m_request, status, Bytes(text.begin(), text.end()));
}

Result<Message> Connection::call(wire::Opcode opcode, VnodeId vnode, ByteView payload,
                                 Duration timeout) {
  std::promise<Result<Message>> promise;
  auto future = promise.get_future();
  call_async(opcode, vnode, Bytes(payload.begin(), payload.end()), timeout,
             [&promise](Result<Message> reply) { promise.set_value(std::move(reply)); });
  return future.get();
}

Result<void> Connection::read(RegionKey region, uint64_t offset, std::span<std::byte> into,
                              Duration timeout) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  read_async(region, offset, into, timeout,
             [&promise](Result<void> done) { promise.set_value(std::move(done)); });
  return future.get();
}

Result<void> Connection::write(RegionKey region, uint64_t offset, ByteView from,
                               Duration timeout) {
  std::promise<Result<void>> promise;
  auto future = promise.get_future();
  write_async(region, offset, from, timeout,
              [&promise](Result<void> done) { promise.set_value(std::move(done)); });
  return future.get();
}

Result<std::unique_ptr<Transport>> make_transport(std::string_view kind) {
  if (kind == "tcp") return std::unique_ptr<Transport>(std::make_unique<TcpTransport>());
  if (kind == "verbs") {
#if SK_HAVE_VERBS
    auto transport = TRY(VerbsTransport::create());
    return std::unique_ptr<Transport>(std::move(transport));
#else
    return make_error(EPROTONOSUPPORT,
                      "this build has no verbs transport (libibverbs-dev was missing); "
                      "use --fabric tcp");
#endif
  }
  return make_error(EINVAL, "unknown fabric '" + std::string(kind) + "' (expected tcp or verbs)");
}

}  // namespace sk::fabric
