// The fake fabric (see fake_transport.h): a process-wide registry of fake
// listeners by port, the links between FakeConnections, and the faults.
#include "tests/unit/fake_transport.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <future>

#include "kernel/wire/codec.h"

namespace sk::testing {

namespace asio = boost::asio;
using fabric::Message;
using fabric::Responder;
using wire::Bytes;

// ---- the listener registry ------------------------------------------------------

namespace {

struct Listener {
  std::weak_ptr<FakeContext> context;
  fabric::RequestHandler handler;
  std::string address;
};

struct Registry {
  std::mutex mutex;
  std::map<uint16_t, Listener> listeners;
  uint16_t next_port = 1;
  uint64_t next_client = 1;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

bool hits(const Fault& fault, const wire::Header& header) {
  bool is_reply = (header.flags & wire::kFlagReply) != 0;
  if (fault.on == FaultOn::kRequests && is_reply) return false;
  if (fault.on == FaultOn::kReplies && !is_reply) return false;
  if (fault.opcode && static_cast<uint16_t>(*fault.opcode) != header.opcode) return false;
  return true;
}

}  // namespace

// ---- faults ---------------------------------------------------------------------

void FaultSet::inject(Fault fault) {
  std::lock_guard lock(m_mutex);
  m_faults.push_back(fault);
}

void FaultSet::clear() {
  std::lock_guard lock(m_mutex);
  m_faults.clear();
}

std::optional<Fault> FaultSet::take(const wire::Header& header) {
  std::lock_guard lock(m_mutex);
  for (auto it = m_faults.begin(); it != m_faults.end(); ++it) {
    if (!hits(*it, header)) continue;
    Fault fault = *it;
    if (it->count > 0 && --it->count == 0) m_faults.erase(it);
    return fault;
  }
  return std::nullopt;
}

// ---- the context ----------------------------------------------------------------

bool FakeContext::post(std::function<void()> fn) {
  std::lock_guard lock(m_mutex);
  if (m_stopping) return false;
  asio::post(m_io, std::move(fn));
  return true;
}

bool FakeContext::post_closing(std::function<void()> fn) {
  std::lock_guard lock(m_mutex);
  if (m_finished) return false;
  asio::post(m_io, std::move(fn));
  return true;
}

// ---- a connection ---------------------------------------------------------------

FakeConnection::FakeConnection(std::shared_ptr<FakeContext> context, std::string peer,
                               fabric::RequestHandler handler)
    : EndpointConnection(context->io(), std::move(peer), std::move(handler)),
      m_context(std::move(context)) {
  for (auto opcode : {wire::Opcode::FABRIC_READ, wire::Opcode::FABRIC_WRITE}) {
    m_endpoint.serve_internally(opcode, [this](Message message, Responder responder) {
      m_context->regions().serve(message, std::move(responder));
    });
  }
}

void FakeConnection::read_async(fabric::RegionKey region, uint64_t offset,
                                std::span<std::byte> into, Duration timeout,
                                fabric::DoneCallback done) {
  if (into.size() > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "one-sided read larger than a message"));
    return;
  }
  wire::FabricAccess access{region.rkey, static_cast<uint32_t>(into.size()), offset};
  call_async(wire::Opcode::FABRIC_READ, kNoVnode, wire::encode(access), timeout,
             [context = m_context, into, done = std::move(done)](Result<Message> reply) {
               if (!reply) return done(std::move(reply).error());
               if (reply->status() != 0) {
                 return done(make_error(reply->status(), wire::to_text(reply->payload)));
               }
               if (reply->payload.size() != into.size()) {
                 return done(make_error(EPROTO, "one-sided read returned a short reply"));
               }
               if (!into.empty()) std::memcpy(into.data(), reply->payload.data(), into.size());
               context->counters().one_sided_read(into.size());
               done({});
             });
}

void FakeConnection::write_async(fabric::RegionKey region, uint64_t offset, wire::ByteView from,
                                 Duration timeout, fabric::DoneCallback done) {
  wire::FabricAccess access{region.rkey, static_cast<uint32_t>(from.size()), offset};
  if (from.size() + sizeof access > wire::kMaxPayload) {
    done(make_error(EMSGSIZE, "one-sided write larger than a message"));
    return;
  }
  call_async(
      wire::Opcode::FABRIC_WRITE, kNoVnode, wire::encode(access, from), timeout,
      [context = m_context, length = from.size(), done = std::move(done)](Result<Message> reply) {
        if (!reply) return done(std::move(reply).error());
        if (reply->status() != 0) {
          return done(make_error(reply->status(), wire::to_text(reply->payload)));
        }
        context->counters().one_sided_write(length);
        done({});
      });
}

void FakeConnection::close() {
  m_open = false;
  auto self = std::static_pointer_cast<FakeConnection>(shared_from_this());
  // Past FakeContext::post's stopping check: stop() relies on closing. Once
  // the thread is joined stop() has closed everything already.
  m_context->post_closing([self] { self->shutdown("closed locally"); });
}

// The sender's side: faults, then the hand-over to the peer's thread.
void FakeConnection::send_message(const wire::Header& header, Bytes payload) {
  if (m_closed) return;
  auto fault = m_faults.take(header);
  if (!fault) fault = m_context->faults().take(header);
  if (!fault) {
    transmit(header, std::move(payload));
    if (m_held) {
      auto held = std::move(*m_held);
      m_held.reset();
      transmit(held.header, std::move(held.payload));
    }
    return;
  }
  switch (fault->kind) {
    case FaultKind::kDrop:
      m_context->counters().message_sent(sizeof header + payload.size());
      return;
    case FaultKind::kDelay: {
      auto timer = std::make_shared<asio::steady_timer>(m_context->io(), fault->delay);
      m_delayed.insert(timer);
      auto self = std::static_pointer_cast<FakeConnection>(shared_from_this());
      auto body = std::make_shared<Bytes>(std::move(payload));
      timer->async_wait([self, timer, header, body](boost::system::error_code error) {
        self->m_delayed.erase(timer);
        if (!error) self->transmit(header, std::move(*body));
      });
      return;
    }
    case FaultKind::kReorder:
      if (m_held) {
        // Only one message is held at a time: the earlier goes first.
        auto held = std::move(*m_held);
        transmit(held.header, std::move(held.payload));
      }
      m_held = Held{header, std::move(payload)};
      return;
    case FaultKind::kClose:
      shutdown("the link died (injected)");
      return;
  }
}

void FakeConnection::transmit(const wire::Header& header, Bytes payload) {
  if (m_closed) return;
  m_context->counters().message_sent(sizeof header + payload.size());
  auto peer = m_peer.lock();
  if (!peer) return;
  auto body = std::make_shared<Bytes>(std::move(payload));
  // Refused when the peer's transport is stopping: its stop() closes it.
  peer->m_context->post([peer, header, body] { peer->receive(header, std::move(*body)); });
}

void FakeConnection::receive(const wire::Header& header, Bytes payload) {
  if (m_closed) return;
  m_context->counters().message_received(sizeof header + payload.size());
  if (!m_endpoint.check_incoming(header)) {
    shutdown("malformed message");
    return;
  }
  m_endpoint.deliver(Message{header, std::move(payload)});
}

void FakeConnection::shutdown(const std::string& reason) {
  if (m_closed) return;
  auto self = std::static_pointer_cast<FakeConnection>(shared_from_this());
  m_closed = true;
  m_open = false;
  m_held.reset();
  for (const auto& timer : m_delayed) timer->cancel();
  m_endpoint.close("connection to " + peer() + " lost: " + reason);
  {
    std::lock_guard lock(m_context->m_mutex);
    m_context->m_connections.erase(self);
  }
  m_endpoint.notify_closed();
  if (auto peer = m_peer.lock()) {
    peer->m_context->post_closing([peer] { peer->shutdown("closed by peer"); });
  }
}

// ---- the transport --------------------------------------------------------------

FakeTransport::FakeTransport() : m_context(std::make_shared<FakeContext>()) {
  m_work.emplace(asio::make_work_guard(m_context->io()));
  m_thread = std::thread([context = m_context] { context->io().run(); });
}

FakeTransport::~FakeTransport() {
  stop();
}

Result<Address> FakeTransport::listen(const Address& address, fabric::RequestHandler handler) {
  Address bound{address.host.empty() ? "fake" : address.host, address.port};
  auto& reg = registry();
  {
    std::lock_guard lock(reg.mutex);
    if (bound.port == 0) {
      while (reg.listeners.contains(reg.next_port) || reg.next_port == 0) ++reg.next_port;
      bound.port = reg.next_port++;
    } else if (reg.listeners.contains(bound.port)) {
      return make_error(EADDRINUSE, "fake port " + std::to_string(bound.port) + " in use");
    }
    reg.listeners[bound.port] = Listener{m_context, std::move(handler), bound.to_string()};
  }
  std::lock_guard lock(m_context->m_mutex);
  m_ports.push_back(bound.port);
  return bound;
}

Result<std::shared_ptr<fabric::Connection>> FakeTransport::connect(const Address& address,
                                                                   fabric::RequestHandler handler,
                                                                   Duration) {
  std::shared_ptr<FakeContext> server;
  fabric::RequestHandler server_handler;
  std::string listener_address;
  uint64_t client_number = 0;
  {
    auto& reg = registry();
    std::lock_guard lock(reg.mutex);
    auto it = reg.listeners.find(address.port);
    if (it != reg.listeners.end()) {
      server = it->second.context.lock();
      server_handler = it->second.handler;
      listener_address = it->second.address;
    }
    client_number = reg.next_client++;
  }
  if (!server) return make_error(ECONNREFUSED, "nothing listens on " + address.to_string());

  auto ours = std::make_shared<FakeConnection>(m_context, listener_address, std::move(handler));
  auto theirs = std::make_shared<FakeConnection>(
      server, "fake-client:" + std::to_string(client_number), std::move(server_handler));
  ours->m_peer = theirs;
  theirs->m_peer = ours;
  // Both ends are registered before either can carry a message; the lock
  // order between two contexts does not matter, as neither is held long.
  {
    std::lock_guard lock(server->m_mutex);
    if (server->m_stopping) {
      return make_error(ECONNREFUSED, "the listener at " + address.to_string() + " stopped");
    }
    server->m_connections.insert(theirs);
  }
  {
    std::lock_guard lock(m_context->m_mutex);
    if (m_context->m_stopping) {
      theirs->close();
      return make_error(ESHUTDOWN, "transport is stopped");
    }
    m_context->m_connections.insert(ours);
  }
  server->counters().connection_accepted();
  m_context->counters().connection_made();
  return std::shared_ptr<fabric::Connection>(ours);
}

Result<fabric::RegionKey> FakeTransport::register_region(std::span<std::byte> memory) {
  return m_context->regions().add(memory);
}

void FakeTransport::deregister_region(uint32_t rkey) {
  m_context->regions().remove(rkey);
}

std::vector<std::shared_ptr<FakeConnection>> FakeTransport::connections() const {
  std::lock_guard lock(m_context->m_mutex);
  return {m_context->m_connections.begin(), m_context->m_connections.end()};
}

void FakeTransport::flush() {
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  if (!m_context->post([done] { done->set_value(); })) return;
  future.wait();
}

void FakeTransport::stop() {
  std::call_once(m_stopped, [this] {
    std::vector<uint16_t> ports;
    std::vector<std::shared_ptr<FakeConnection>> connections;
    {
      std::lock_guard lock(m_context->m_mutex);
      m_context->m_stopping = true;
      ports = m_ports;
      connections.assign(m_context->m_connections.begin(), m_context->m_connections.end());
    }
    {
      auto& reg = registry();
      std::lock_guard lock(reg.mutex);
      for (auto port : ports) reg.listeners.erase(port);
    }
    for (auto& connection : connections) connection->close();
    m_work.reset();
    if (m_thread.joinable()) m_thread.join();
    {
      std::lock_guard lock(m_context->m_mutex);
      m_context->m_finished = true;
    }
    // What was posted between the thread's end and m_finished (a peer's
    // close, most likely) runs here, so that nothing stays queued holding
    // a connection that holds this context.
    m_context->io().restart();
    m_context->io().poll();
  });
}

// ---- driving a Dispatcher -------------------------------------------------------

Reply to_reply(Result<Message> result) {
  if (!result) {
    auto text = wire::as_bytes(std::string_view(result.error().message()));
    return Reply{-result.error().code(), Bytes(text.begin(), text.end())};
  }
  return Reply{result->status(), std::move(result->payload)};
}

DispatchLink::DispatchLink(const rpc::Dispatcher& dispatcher, NodeId client_node) {
  m_server.set_node_id(1);
  m_client.set_node_id(client_node);
  auto address = m_server.listen(Address{"fake", 0}, dispatcher.handler());
  if (!address) throw std::runtime_error(address.error().text());
  auto connection = m_client.connect(address.value());
  if (!connection) throw std::runtime_error(connection.error().text());
  m_connection = std::move(connection).value();
}

Reply DispatchLink::call(Message request, Duration timeout) {
  return to_reply(m_connection->call(static_cast<wire::Opcode>(request.header.opcode),
                                     request.vnode(), request.payload, timeout));
}

void DispatchLink::send(Message request, Duration timeout) {
  m_connection->call_async(static_cast<wire::Opcode>(request.header.opcode), request.vnode(),
                           std::move(request.payload), timeout, [this](Result<Message> reply) {
                             {
                               std::lock_guard lock(m_mutex);
                               m_replies.push_back(to_reply(std::move(reply)));
                             }
                             m_wake.notify_all();
                           });
}

std::vector<Reply> DispatchLink::wait_for_replies(size_t count) {
  std::unique_lock lock(m_mutex);
  m_wake.wait_for(lock, std::chrono::seconds(5), [&] { return m_replies.size() >= count; });
  return m_replies;
}

std::vector<Reply> DispatchLink::replies() {
  std::lock_guard lock(m_mutex);
  return m_replies;
}

Reply dispatch(const rpc::Dispatcher& dispatcher, Message request) {
  DispatchLink link(dispatcher, request.source());
  return link.call(std::move(request));
}

}  // namespace sk::testing
