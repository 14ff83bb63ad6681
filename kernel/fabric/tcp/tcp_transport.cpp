// Set-up side of the tcp transport: listeners, outgoing connections, region
// registration and shutdown. The per-message datapath is tcp_connection.cpp.
#include "kernel/fabric/tcp/tcp_transport.h"

#include <future>

#include "kernel/log.h"

namespace sk::fabric {

namespace asio = boost::asio;
using asio::ip::tcp;

static const Logger log("fabric/tcp");

TcpTransport::TcpTransport() : m_context(std::make_shared<TcpContext>()) {
  m_work.emplace(asio::make_work_guard(m_context->io()));
  m_thread = std::thread([context = m_context] { context->io().run(); });
}

TcpTransport::~TcpTransport() { stop(); }

// Resolves host:port on the calling thread (it may block on DNS; callers are
// start-up code, never the io thread).
static Result<tcp::endpoint> resolve(asio::io_context& io, const Address& address) {
  boost::system::error_code error;
  auto ip = asio::ip::make_address(address.host, error);
  if (!error) return tcp::endpoint(ip, address.port);
  tcp::resolver resolver(io);
  auto results = resolver.resolve(address.host, std::to_string(address.port), error);
  if (error || results.empty()) {
    return make_error(EHOSTUNREACH, "cannot resolve " + address.to_string() + ": " +
                                        (error ? error.message() : "no address"));
  }
  return results.begin()->endpoint();
}

Result<Address> TcpTransport::listen(const Address& address, RequestHandler handler) {
  auto endpoint = TRY(resolve(m_context->io(), address));
  auto listener = std::make_shared<Listener>(Listener{tcp::acceptor(m_context->io()), std::move(handler)});
  boost::system::error_code error;
  auto& acceptor = listener->acceptor;
  acceptor.open(endpoint.protocol(), error);
  if (!error) acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor.bind(endpoint, error);
  if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return make_error(error.value(), "listen on " + address.to_string());
  }
  auto bound = acceptor.local_endpoint(error);
  if (error) return make_error(error.value(), "listen on " + address.to_string());

  // From here on the acceptor belongs to the io thread.
  std::promise<void> started;
  bool posted = m_context->post([this, listener, &started] {
    m_listeners.push_back(listener);
    accept_next(listener);
    started.set_value();
  });
  if (!posted) return make_error(ESHUTDOWN, "transport is stopped");
  started.get_future().wait();
  log.debug("listening on {}", address.host + ":" + std::to_string(bound.port()));
  return Address{address.host, bound.port()};
}

void TcpTransport::accept_next(std::shared_ptr<Listener> listener) {
  listener->acceptor.async_accept([this, listener](boost::system::error_code error,
                                                   tcp::socket socket) {
    if (error) {
      if (error != asio::error::operation_aborted) {
        log.warn("accept failed: {}", error.message());
        // Transient failures (EMFILE, ECONNABORTED) must not stop the server.
        accept_next(listener);
      }
      return;
    }
    if (auto connection = adopt(std::move(socket), listener->handler)) {
      m_context->counters().connection_accepted();
      connection->start();
      accept_next(listener);
    }
  });
}

std::shared_ptr<TcpConnection> TcpTransport::adopt(tcp::socket socket, RequestHandler handler) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  std::lock_guard lock(m_context->m_mutex);
  // stop() closes the connections it finds under this lock; one that would
  // come after it must not start reading, or the io thread never ends.
  if (m_context->m_stopping) {
    socket.close(ignored);
    return nullptr;
  }
  auto connection = std::make_shared<TcpConnection>(m_context, std::move(socket), std::move(handler));
  m_context->m_connections.insert(connection);
  return connection;
}

Result<std::shared_ptr<Connection>> TcpTransport::connect(const Address& address,
                                                          RequestHandler handler,
                                                          Duration timeout) {
  auto endpoint = TRY(resolve(m_context->io(), address));
  struct Attempt {
    tcp::socket socket;
    asio::steady_timer timer;
    std::promise<Result<std::shared_ptr<Connection>>> result;
    bool finished = false;
  };
  auto attempt = std::make_shared<Attempt>(Attempt{tcp::socket(m_context->io()),
                                                   asio::steady_timer(m_context->io()), {}, false});
  auto future = attempt->result.get_future();
  bool posted = m_context->post([this, attempt, endpoint, timeout, address,
                                 handler = std::move(handler)]() mutable {
    attempt->timer.expires_after(timeout);
    attempt->timer.async_wait([attempt, address](boost::system::error_code error) {
      if (error || attempt->finished) return;
      attempt->finished = true;
      boost::system::error_code ignored;
      attempt->socket.close(ignored);
      attempt->result.set_value(make_error(ETIMEDOUT, "connect " + address.to_string()));
    });
    attempt->socket.async_connect(endpoint, [this, attempt, address, handler = std::move(handler)](
                                                boost::system::error_code error) mutable {
      if (attempt->finished) return;
      attempt->finished = true;
      attempt->timer.cancel();
      if (error) {
        attempt->result.set_value(make_error(error.value(), "connect " + address.to_string()));
        return;
      }
      auto connection = adopt(std::move(attempt->socket), std::move(handler));
      if (!connection) {
        attempt->result.set_value(make_error(ESHUTDOWN, "transport is stopped"));
        return;
      }
      m_context->counters().connection_made();
      connection->start();
      attempt->result.set_value(std::shared_ptr<Connection>(connection));
    });
  });
  if (!posted) return make_error(ESHUTDOWN, "transport is stopped");
  return future.get();
}

Result<RegionKey> TcpTransport::register_region(std::span<std::byte> memory) {
  return m_context->regions().add(memory);
}

void TcpTransport::deregister_region(uint32_t rkey) {
  m_context->regions().remove(rkey);
}

void TcpTransport::stop() {
  std::call_once(m_stopped, [this] {
    std::vector<std::shared_ptr<TcpConnection>> connections;
    {
      std::lock_guard lock(m_context->m_mutex);
      // Queue the shutdown of listeners while post() still accepts work.
      asio::post(m_context->io(), [this] {
        for (auto& listener : m_listeners) {
          boost::system::error_code ignored;
          listener->acceptor.close(ignored);
        }
        m_listeners.clear();
      });
      m_context->m_stopping = true;
      for (auto& weak : m_context->m_connections) {
        if (auto connection = weak.lock()) connections.push_back(std::move(connection));
      }
    }
    // close() posts through asio directly once stopping: see TcpConnection::close.
    for (auto& connection : connections) connection->close();
    m_work.reset();
    if (m_thread.joinable()) m_thread.join();
  });
}

}  // namespace sk::fabric
