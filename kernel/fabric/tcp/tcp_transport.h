// The tcp transport: the fabric over TCP with Boost.Asio, for clusters on
// one host (loopback) and Ethernet-only machines.
//
// One io thread per transport runs every socket operation, timer and
// callback, so connection state needs no locks: public methods post work to
// that thread. One-sided READ/WRITE are ordinary messages (FABRIC_READ,
// FABRIC_WRITE) served by the target's io thread straight from its
// registered regions, without its request handler.
//
// Shutdown: TcpContext::post() refuses work once the transport is stopping,
// and stop() closes every socket and fails every pending call before joining
// the io thread, so no callback is ever lost (a blocking call() always
// returns). Lock order: TcpContext::m_mutex, then the RegionTable's
// (never held together in practice).
#pragma once

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "kernel/fabric/counter_set.h"
#include "kernel/fabric/region_table.h"
#include "kernel/fabric/transport.h"
#include "kernel/rpc/endpoint.h"

namespace sk::fabric {

class TcpConnection;

// What the transport's connections share; kept alive by each connection so
// that a connection outliving its transport fails cleanly.
class TcpContext {
 public:
  boost::asio::io_context& io() { return m_io; }

  // Runs fn on the io thread; false (fn dropped) once stopping.
  template <typename Fn>
  bool post(Fn&& fn) {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return false;
    boost::asio::post(m_io, std::forward<Fn>(fn));
    return true;
  }

  NodeId node_id() const { return m_node.load(std::memory_order_relaxed); }
  void set_node_id(NodeId node) { m_node.store(node, std::memory_order_relaxed); }

  // The registered regions, served one-sidedly by the io thread.
  RegionTable& regions() { return m_regions; }

  FabricCounterSet& counters() { return m_counters; }

 private:
  friend class TcpTransport;
  friend class TcpConnection;

  boost::asio::io_context m_io;
  std::atomic<NodeId> m_node{kNoNode};
  FabricCounterSet m_counters;

  std::mutex m_mutex;  // guards m_stopping, m_connections
  bool m_stopping = false;
  std::set<std::weak_ptr<TcpConnection>, std::owner_less<>> m_connections;

  RegionTable m_regions;
};

// A tcp connection: framing over the socket and the serving of one-sided
// FABRIC_READ/FABRIC_WRITE; request ids, timeouts, reply matching and
// dispatch are its rpc::Endpoint's (see rpc::EndpointConnection).
class TcpConnection final : public rpc::EndpointConnection {
 public:
  TcpConnection(std::shared_ptr<TcpContext> context, boost::asio::ip::tcp::socket socket,
                RequestHandler handler);
  ~TcpConnection() override;

  // Starts reading; call once, on the io thread, after registering.
  void start();

  void read_async(RegionKey region, uint64_t offset, std::span<std::byte> into, Duration timeout,
                  DoneCallback done) override;
  void write_async(RegionKey region, uint64_t offset, ByteView from, Duration timeout,
                   DoneCallback done) override;
  void close() override;

 private:
  struct Outgoing {
    wire::Header header;
    Bytes payload;
  };

  // rpc::Carrier.
  void send_message(const wire::Header& header, Bytes payload) override;
  bool post(std::function<void()> fn) override { return m_context->post(std::move(fn)); }
  NodeId local_node() const override { return m_context->node_id(); }

  // All of these run on the io thread.
  void write_next();
  void read_header();
  void read_payload();
  void shutdown(const char* reason);

  std::shared_ptr<TcpContext> m_context;
  boost::asio::ip::tcp::socket m_socket;

  wire::Header m_in_header{};
  Bytes m_in_payload;
  std::deque<Outgoing> m_out;
  bool m_writing = false;
  bool m_closed = false;  // io-thread view of m_open; shutdown ran
};

class TcpTransport final : public Transport {
 public:
  TcpTransport();
  ~TcpTransport() override;

  Result<Address> listen(const Address& address, RequestHandler handler) override;
  Result<std::shared_ptr<Connection>> connect(const Address& address, RequestHandler handler,
                                              Duration timeout) override;
  Result<RegionKey> register_region(std::span<std::byte> memory) override;
  void deregister_region(uint32_t rkey) override;
  void set_node_id(NodeId node) override { m_context->set_node_id(node); }
  wire::FabricKind kind() const override { return wire::FabricKind::kTcp; }
  FabricCounters counters() const override { return m_context->counters().snapshot(); }
  void stop() override;

 private:
  struct Listener {
    boost::asio::ip::tcp::acceptor acceptor;
    RequestHandler handler;
  };

  void accept_next(std::shared_ptr<Listener> listener);
  // A connection for an accepted or connected socket; null (socket closed)
  // once the transport is stopping.
  std::shared_ptr<TcpConnection> adopt(boost::asio::ip::tcp::socket socket,
                                       RequestHandler handler);

  std::shared_ptr<TcpContext> m_context;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> m_work;
  std::vector<std::shared_ptr<Listener>> m_listeners;  // io thread after listen()
  std::thread m_thread;
  std::once_flag m_stopped;
};

}  // namespace sk::fabric
