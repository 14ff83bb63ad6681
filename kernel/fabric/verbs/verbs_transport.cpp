// Set-up side of the verbs transport: the loop (an Asio io_context: waits on
// file descriptors, posted work, timers), listeners and the accepting half of
// the handshake, outgoing connections, region registration and shutdown.
// Per-connection set-up is verbs_connection.cpp; the per-message datapath is
// verbs_datapath.cpp.
#include "kernel/fabric/verbs/verbs_transport.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <future>

#include "kernel/log.h"

namespace sk::fabric {

namespace asio = boost::asio;

static const Logger log("fabric/verbs");

// How long an accepted socket may take to send its hello.
static constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
// How long deregister_region waits for peers to confirm they forgot a key.
static constexpr auto kRevokeTimeout = std::chrono::seconds(1);

VerbsContext::VerbsContext(std::shared_ptr<VerbsDevice> device)
    : m_device(std::move(device)), m_work(asio::make_work_guard(m_io)) {}

VerbsContext::~VerbsContext() {
  // Every descriptor is released first: the fds are their owners' to close.
  unwatch_all();
  m_timers.clear();
  release_regions();
}

Result<void> VerbsContext::init() {
  int channel_fd = m_device->channel()->fd;
  int flags = ::fcntl(channel_fd, F_GETFL);
  if (flags < 0 || ::fcntl(channel_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Error::from_errno("make the completion channel non-blocking");
  }
  watch(channel_fd, kReadable, [this](uint32_t) { on_completion_channel(); });
  return {};
}

bool VerbsContext::post(std::function<void()> fn) {
  std::lock_guard lock(m_mutex);
  if (m_stopping) return false;
  asio::post(m_io, std::move(fn));
  return true;
}

void VerbsContext::post_always(std::function<void()> fn) {
  {
    std::lock_guard lock(m_mutex);
    if (!m_ended) {
      asio::post(m_io, std::move(fn));
      return;
    }
  }
  // A task dropped after the loop ended is destroyed outside the lock (on
  // return): it may hold the last reference to a connection.
}

bool VerbsContext::stopping() {
  std::lock_guard lock(m_mutex);
  return m_stopping;
}

void VerbsContext::run() {
  m_loop_thread = std::this_thread::get_id();
  m_io.run();  // until finish_stop stops it
  {
    std::lock_guard lock(m_mutex);
    m_ended = true;
  }
  // What was still queued (closes posted by post_always, the cancelled waits
  // and timers) runs now, so that nothing it holds outlives the loop; every
  // connection is closed by now, so none of it does anything.
  m_io.restart();
  m_io.poll();
  m_timers.clear();
  unwatch_all();
}

VerbsContext::TimerId VerbsContext::add_timer(Duration after, std::function<void()> fn) {
  TimerId id = m_next_timer++;
  auto timer = std::make_unique<asio::steady_timer>(m_io);
  timer->expires_after(after);
  timer->async_wait([this, id](boost::system::error_code error) {
    if (error) return;  // cancelled
    auto node = m_timers.extract(id);
    if (node.empty()) return;  // cancelled after it had expired
    node.mapped().fn();
  });
  m_timers.emplace(id, Timer{std::move(timer), std::move(fn)});
  return id;
}

void VerbsContext::cancel_timer(TimerId id) { m_timers.erase(id); }

VerbsContext::WatchId VerbsContext::watch(int fd, uint32_t events,
                                          std::function<void(uint32_t)> handler) {
  WatchId id = m_next_watch++;
  auto descriptor = std::make_unique<asio::posix::stream_descriptor>(m_io);
  boost::system::error_code error;
  descriptor->assign(fd, error);
  if (error) log.error("watch fd {}: {}", fd, error.message());
  m_watches.emplace(id, Watch{std::move(descriptor),
                              std::make_shared<std::function<void(uint32_t)>>(std::move(handler)),
                              events, 0});
  arm(id);
  return id;
}

void VerbsContext::modify(WatchId id, uint32_t events) {
  auto it = m_watches.find(id);
  if (it == m_watches.end()) return;
  it->second.events = events;
  arm(id);
}

void VerbsContext::unwatch(WatchId id) {
  auto node = m_watches.extract(id);
  if (node.empty()) return;
  // Leaves the fd open; the waits complete with operation_aborted and find
  // the watch gone.
  node.mapped().descriptor->release();
}

void VerbsContext::unwatch_all() {
  for (auto& [id, watch] : m_watches) watch.descriptor->release();
  m_watches.clear();
}

void VerbsContext::arm(WatchId id) {
  auto it = m_watches.find(id);
  if (it == m_watches.end() || !it->second.descriptor->is_open()) return;
  Watch& watch = it->second;
  for (uint32_t what : {uint32_t{kReadable}, uint32_t{kWritable}}) {
    if (!(watch.events & what) || (watch.waiting & what)) continue;
    watch.waiting |= what;
    auto type = what == kReadable ? asio::posix::stream_descriptor::wait_read
                                  : asio::posix::stream_descriptor::wait_write;
    watch.descriptor->async_wait(type, [this, id, what](boost::system::error_code error) {
      on_ready(id, what, error);
    });
  }
}

void VerbsContext::on_ready(WatchId id, uint32_t what, boost::system::error_code error) {
  auto it = m_watches.find(id);
  if (it == m_watches.end()) return;  // unwatched
  it->second.waiting &= ~what;
  if (error == asio::error::operation_aborted) return;
  if (error) {
    // Not a readiness the handler can act on; it is told once (its read or
    // write then fails) and the wait is not renewed, so it cannot spin.
    log.warn("waiting on a descriptor failed: {}", error.message());
  }
  if (it->second.events & what) {
    auto handler = it->second.handler;  // survives an unwatch inside the call
    (*handler)(what);
  }
  if (!error) arm(id);
}

void VerbsContext::adopt(std::shared_ptr<VerbsConnection> connection) {
  auto* raw = connection.get();
  m_live.emplace(raw, std::move(connection));
}

void VerbsContext::forget(VerbsConnection* connection) { m_live.erase(connection); }

void VerbsContext::on_completion_channel() {
  for (;;) {
    ibv_cq* cq = nullptr;
    void* cq_context = nullptr;
    if (ibv_get_cq_event(m_device->channel(), &cq, &cq_context) != 0) break;  // EAGAIN: drained
    ibv_ack_cq_events(cq, 1);
    // The CQ of a connection that shut down is destroyed with its events;
    // the lookup guards against anything else.
    auto it = m_live.find(static_cast<VerbsConnection*>(cq_context));
    if (it == m_live.end()) continue;
    auto connection = it->second;
    connection->on_cq_event();
  }
}

// ---- listeners and the accepting half of the handshake ----------------------

void VerbsContext::add_listener(int fd, RequestHandler handler) {
  auto listener = std::make_unique<Listener>(Listener{fd, 0, std::move(handler)});
  Listener* raw = listener.get();
  raw->watch = watch(fd, kReadable, [this, raw](uint32_t) { accept_from(*raw); });
  m_listeners.push_back(std::move(listener));
}

void VerbsContext::accept_from(Listener& listener) {
  for (;;) {
    int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      // EAGAIN: all taken. Others (EMFILE, ECONNABORTED) are transient and
      // must not stop the listener.
      if (errno != EAGAIN && errno != EWOULDBLOCK) log.warn("accept: {}", std::strerror(errno));
      return;
    }
    uint64_t id = m_next_handshake++;
    Handshake handshake{fd, 0, 0, listener.handler};
    handshake.watch = watch(fd, kReadable,
                            [this, id](uint32_t events) { on_handshake(id, events); });
    handshake.timer = add_timer(kHandshakeTimeout, [this, id] {
      log.warn("a verbs peer sent no hello in time; closing its socket");
      close_handshake(id);
    });
    m_handshakes.emplace(id, std::move(handshake));
  }
}

void VerbsContext::close_handshake(uint64_t id) {
  auto it = m_handshakes.find(id);
  if (it == m_handshakes.end()) return;
  unwatch(it->second.watch);
  cancel_timer(it->second.timer);
  ::close(it->second.fd);
  m_handshakes.erase(it);
}

void VerbsContext::on_handshake(uint64_t id, uint32_t) {
  auto it = m_handshakes.find(id);
  if (it == m_handshakes.end()) return;
  Handshake& handshake = it->second;
  auto* bytes = reinterpret_cast<char*>(&handshake.hello);
  ssize_t got = ::recv(handshake.fd, bytes + handshake.have,
                       sizeof handshake.hello - handshake.have, 0);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (got <= 0) {
    close_handshake(id);  // the peer gave up (a refused or stopped connector)
    return;
  }
  handshake.have += static_cast<size_t>(got);
  if (handshake.have < sizeof handshake.hello) return;

  // The whole hello is here: the socket now belongs to a connection.
  verbs::ControlRecord hello = handshake.hello;
  int fd = handshake.fd;
  RequestHandler handler = std::move(handshake.handler);
  unwatch(handshake.watch);
  cancel_timer(handshake.timer);
  m_handshakes.erase(it);

  std::string peer = verbs::peer_name(fd);
  auto checked = verbs::check_record(hello);
  if (checked && hello.kind != static_cast<uint16_t>(verbs::ControlKind::kHello)) {
    checked = make_error(EPROTO, "the first control record is not a hello");
  }
  if (!checked) {
    log.warn("refused verbs connection from {}: {}", peer, checked.error().text());
    ::close(fd);
    return;
  }
  auto created = VerbsConnection::create(shared_from_this(), fd, std::move(handler));
  if (!created) {
    // create() closed fd: the connector sees EOF and reports it.
    log.warn("cannot accept verbs connection from {}: {}", peer, created.error().text());
    return;
  }
  auto connection = std::move(created).value();
  auto ready = connection->connect_qp(hello);
  if (ready) {
    // Our QP is ready to receive; only now may the connector send.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    ready = verbs::send_record(fd, connection->hello(), deadline);
  }
  if (!ready) {
    log.warn("cannot accept verbs connection from {}: {}", peer, ready.error().text());
    return;  // the connection's destructor releases the QP and closes fd
  }
  m_counters.connection_accepted();
  adopt(connection);
  connection->start();
}

// ---- keys -------------------------------------------------------------------

void VerbsContext::revoke_everywhere(uint32_t rkey, std::function<void()> done) {
  auto wait = std::make_shared<RevokeWait>();
  wait->remaining = 1;  // held until every connection has been asked
  wait->done = std::move(done);
  // A copy: a failing control socket shuts its connection down, which
  // leaves m_live.
  std::vector<std::shared_ptr<VerbsConnection>> live;
  for (auto& [raw, connection] : m_live) live.push_back(connection);
  for (auto& connection : live) connection->revoke_key(rkey, wait);
  if (wait->remaining > 1) {
    add_timer(kRevokeTimeout, [wait] {
      if (wait->done) {
        log.warn("peers did not confirm forgetting a region key; deregistering anyway");
        std::exchange(wait->done, nullptr)();
      }
    });
  }
  wait->one_done();
}

Result<RegionKey> VerbsContext::register_region(std::span<std::byte> memory) {
  if (memory.empty()) return make_error(EINVAL, "cannot register an empty region");
  ibv_mr* mr = ibv_reg_mr(m_device->pd(), memory.data(), memory.size(),
                          IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                              IBV_ACCESS_REMOTE_WRITE);
  if (!mr) return Error::from_errno("register a region of " + std::to_string(memory.size()) +
                                    " bytes (is RLIMIT_MEMLOCK too low?)");
  std::lock_guard lock(m_regions_mutex);
  m_regions[mr->rkey] = mr;
  RegionKey key;
  key.rkey = mr->rkey;
  key.length = memory.size();
  key.address = reinterpret_cast<uint64_t>(memory.data());
  return key;
}

ibv_mr* VerbsContext::take_region(uint32_t rkey) {
  std::lock_guard lock(m_regions_mutex);
  auto it = m_regions.find(rkey);
  if (it == m_regions.end()) return nullptr;
  ibv_mr* mr = it->second;
  m_regions.erase(it);
  return mr;
}

int VerbsContext::check_region(uint32_t rkey, uint64_t address, uint64_t length) {
  std::lock_guard lock(m_regions_mutex);
  auto it = m_regions.find(rkey);
  if (it == m_regions.end()) return EINVAL;
  auto base = reinterpret_cast<uint64_t>(it->second->addr);
  uint64_t size = it->second->length;
  if (address < base || address - base > size || length > size - (address - base)) return EINVAL;
  return 0;
}

std::optional<uint32_t> VerbsContext::local_key(const std::byte* data, size_t length) {
  auto start = reinterpret_cast<uint64_t>(data);
  std::lock_guard lock(m_regions_mutex);
  // A process registers a handful of regions; a scan is cheaper than an index.
  for (auto& [rkey, mr] : m_regions) {
    auto base = reinterpret_cast<uint64_t>(mr->addr);
    if (start >= base && start - base <= mr->length && length <= mr->length - (start - base)) {
      return mr->lkey;
    }
  }
  return std::nullopt;
}

void VerbsContext::release_regions() {
  std::map<uint32_t, ibv_mr*> regions;
  {
    std::lock_guard lock(m_regions_mutex);
    regions.swap(m_regions);
  }
  for (auto& [rkey, mr] : regions) ibv_dereg_mr(mr);
}

// ---- shutdown -----------------------------------------------------------------

void VerbsContext::begin_stop() {
  std::lock_guard lock(m_mutex);
  m_stopping = true;
  asio::post(m_io, [this] { finish_stop(); });
}

void VerbsContext::finish_stop() {
  for (auto& listener : m_listeners) {
    unwatch(listener->watch);
    ::close(listener->fd);
  }
  m_listeners.clear();
  while (!m_handshakes.empty()) close_handshake(m_handshakes.begin()->first);
  std::vector<std::shared_ptr<VerbsConnection>> live;
  for (auto& [raw, connection] : m_live) live.push_back(connection);
  for (auto& connection : live) connection->shutdown("transport stopped");
  m_live.clear();
  // Nothing may wait any more (the completion channel is the last watch);
  // run() returns once this task does.
  m_timers.clear();
  unwatch_all();
  m_work.reset();
  m_io.stop();
}

// ---- the transport ----------------------------------------------------------

Result<std::unique_ptr<VerbsTransport>> VerbsTransport::create() {
  auto device = TRY(VerbsDevice::open());
  auto context = std::make_shared<VerbsContext>(std::move(device));
  TRY(context->init());
  return std::unique_ptr<VerbsTransport>(new VerbsTransport(std::move(context)));
}

VerbsTransport::VerbsTransport(std::shared_ptr<VerbsContext> context)
    : m_context(std::move(context)) {
  m_thread = std::thread([context = m_context] { context->run(); });
}

VerbsTransport::~VerbsTransport() { stop(); }

Result<Address> VerbsTransport::listen(const Address& address, RequestHandler handler) {
  auto [fd, bound] = TRY(verbs::listen_socket(address));
  bool posted = m_context->post([context = m_context.get(), fd, handler = std::move(handler)] {
    context->add_listener(fd, handler);
  });
  if (!posted) {
    ::close(fd);
    return make_error(ESHUTDOWN, "transport is stopped");
  }
  log.debug("listening on {} ({})", bound.to_string(), m_context->device().name());
  return bound;
}

Result<std::shared_ptr<Connection>> VerbsTransport::connect(const Address& address,
                                                            RequestHandler handler,
                                                            Duration timeout) {
  if (m_context->stopping()) return make_error(ESHUTDOWN, "transport is stopped");
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  int fd = TRY(verbs::connect_socket(address, deadline));
  auto connection = TRY(VerbsConnection::create(m_context, fd, std::move(handler)));
  auto fail = [&](const Error& error) {
    return make_error(error.code(), "verbs connect " + address.to_string() + ": " +
                                        error.message());
  };
  if (auto sent = verbs::send_record(fd, connection->hello(), deadline); !sent) {
    return fail(sent.error());
  }
  auto peer = verbs::receive_record(fd, deadline);
  if (!peer) return fail(peer.error());
  if (peer->kind != static_cast<uint16_t>(verbs::ControlKind::kHello)) {
    return fail(make_error(EPROTO, "the listener's first control record is not a hello"));
  }
  if (auto ready = connection->connect_qp(*peer); !ready) return fail(ready.error());
  bool posted = m_context->post([context = m_context.get(), connection] {
    context->adopt(connection);
    connection->start();
  });
  if (!posted) return make_error(ESHUTDOWN, "transport is stopped");
  m_context->counters().connection_made();
  return std::shared_ptr<Connection>(connection);
}

Result<RegionKey> VerbsTransport::register_region(std::span<std::byte> memory) {
  return m_context->register_region(memory);
}

void VerbsTransport::deregister_region(uint32_t rkey) {
  ibv_mr* mr = m_context->take_region(rkey);
  if (!mr) return;
  if (m_context->on_loop_thread()) {
    // Cannot wait here: peers learn of it, but one racing an access with the
    // key may see its connection fail.
    m_context->revoke_everywhere(rkey, [] {});
  } else {
    auto forgotten = std::make_shared<std::promise<void>>();
    auto future = forgotten->get_future();
    bool posted = m_context->post([context = m_context.get(), rkey, forgotten] {
      context->revoke_everywhere(rkey, [forgotten] { forgotten->set_value(); });
    });
    if (posted) future.wait_for(kRevokeTimeout * 2);
  }
  ibv_dereg_mr(mr);
}

void VerbsTransport::stop() {
  std::call_once(m_stopped, [this] {
    m_context->begin_stop();
    if (m_thread.joinable()) m_thread.join();
    m_context->release_regions();
  });
}

}  // namespace sk::fabric
