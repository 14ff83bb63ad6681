// The verbs transport: the fabric over libibverbs RC queue pairs, for real
// RNICs (InfiniBand, RoCE) and soft-RoCE (rdma_rxe) in the QEMU cluster.
//
// Shape (see verbs_control.h for set-up, verbs_datapath.cpp for the wire):
// - Each connection is one RC QP with its own CQ, a TCP control socket kept
//   open beside it (set-up, key checks, and a prompt "peer gone" signal), and
//   one registered block holding its receive, send and staging buffers.
// - RPC messages are the 40-byte wire::Header + payload, as on tcp, sent as
//   SEND_WITH_IMM fragments of at most one receive buffer; RC delivers them
//   in order, so the receiver reassembles by the header's payload_length.
//   The immediate carries the fragment's type and piggybacked credits.
// - Credits: a sender may only SEND into receive buffers the peer has posted
//   and returned to it, so it never overruns the receiver (no RNR waits).
// - One-sided read/write are real RDMA READ/WRITE on the peer's registered
//   memory, after a once-per-key check over the control socket.
// - Request ids, timeouts, reply matching and dispatch are each
//   connection's rpc::Endpoint's, as on tcp; verbs only moves the bytes.
//
// Threads: one loop thread per transport runs a Boost.Asio io_context, as
// tcp does: it waits on the control sockets and the completion channel
// (posix::stream_descriptor; CQs are armed with ibv_req_notify_cq, so an
// idle transport sleeps), runs posted work and the steady_timers. All
// connection state belongs to that thread; public methods post to it, and
// every callback runs on it. Outgoing connections are set up on the caller's
// thread and then handed over.
//
// Shutdown: VerbsContext::post() refuses work once stopping; stop() queues a
// last task that closes every listener and connection (failing what is
// outstanding), cancels every timer and wait and stops the io_context, then
// joins the loop thread. Lock order: VerbsContext::m_mutex, then
// VerbsContext::m_regions_mutex (never held together in practice).
#pragma once

#include <infiniband/verbs.h>

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernel/fabric/counter_set.h"
#include "kernel/fabric/transport.h"
#include "kernel/fabric/verbs/verbs_control.h"
#include "kernel/fabric/verbs/verbs_device.h"
#include "kernel/rpc/endpoint.h"

namespace sk::fabric {

namespace verbs {

// One receive buffer, and so the largest SEND fragment: big enough that a
// 1 MiB file read is 17 fragments, small enough that the buffers of a
// connection stay a few MiB of pinned memory.
inline constexpr uint32_t kBufferSize = 64 * 1024;
// Receive buffers posted per connection: the credits a peer starts with.
inline constexpr uint32_t kRecvDepth = 16;
// Send buffers per connection; with kRecvDepth this keeps ~1 MiB in flight.
inline constexpr uint32_t kSendBuffers = 16;
// Bounce buffers for one-sided access to memory that is not registered.
inline constexpr uint32_t kStagingBuffers = 8;
// Work requests outstanding on a send queue: fragments, credit updates and
// RDMA chunks (zero-copy ones need no staging buffer, hence the margin).
inline constexpr uint32_t kSendQueueDepth = 64;
// Return credits in a message of their own once this many are owed and no
// outgoing fragment carries them sooner.
inline constexpr uint32_t kCreditBatch = kRecvDepth / 4;
// A zero-copy RDMA chunk (local memory already registered): bounded so that
// one huge access does not monopolise the send queue.
inline constexpr uint32_t kZeroCopyChunk = 1u << 20;

}  // namespace verbs

class VerbsConnection;

// Waits for the peers that checked a key to confirm they forgot it.
struct RevokeWait {
  size_t remaining = 0;
  std::function<void()> done;  // runs once, on the loop thread
  void one_done() {
    if (remaining > 0 && --remaining == 0 && done) std::exchange(done, nullptr)();
  }
};

// What a transport's connections share: the device, the loop (an
// io_context) with its timers and waits, and the registered regions. Kept
// alive by every connection so that one outliving its transport fails
// cleanly.
class VerbsContext : public std::enable_shared_from_this<VerbsContext> {
 public:
  explicit VerbsContext(std::shared_ptr<VerbsDevice> device);
  ~VerbsContext();
  // Starts waiting on the completion channel; before run().
  Result<void> init();

  VerbsDevice& device() { return *m_device; }
  boost::asio::io_context& io() { return m_io; }
  NodeId node_id() const { return m_node.load(std::memory_order_relaxed); }
  void set_node_id(NodeId node) { m_node.store(node, std::memory_order_relaxed); }
  FabricCounterSet& counters() { return m_counters; }

  // Runs fn on the loop thread; false (fn dropped) once stopping. Any thread.
  bool post(std::function<void()> fn);
  // The same, even while stopping, for the shutdown paths; dropped only once
  // the loop has ended. Any thread.
  void post_always(std::function<void()> fn);
  bool stopping();
  bool on_loop_thread() const { return std::this_thread::get_id() == m_loop_thread.load(); }

  // The loop; the transport's thread body. Returns after stop's last task.
  void run();
  // Queues the last task (close everything, end the loop). Any thread, once.
  void begin_stop();

  // ---- loop thread only ----
  using TimerId = uint64_t;
  TimerId add_timer(Duration after, std::function<void()> fn);
  void cancel_timer(TimerId id);
  // Waits on a file descriptor, which stays the caller's (unwatch never
  // closes it): handler runs with kReadable or kWritable (an error or
  // hang-up counts as both) whenever the fd is ready for what `events`
  // asks, until unwatched. The wait is renewed after each call and asio
  // re-checks readiness when a wait starts (EPOLL_CTL_MOD), so as with a
  // level-triggered epoll a handler that leaves data unread runs again.
  enum Interest : uint32_t { kReadable = 1, kWritable = 2 };
  using WatchId = uint64_t;
  WatchId watch(int fd, uint32_t events, std::function<void(uint32_t)> handler);
  void modify(WatchId id, uint32_t events);
  void unwatch(WatchId id);
  // Live connections: the loop owns them until they shut down.
  void adopt(std::shared_ptr<VerbsConnection> connection);
  void forget(VerbsConnection* connection);
  // Accepts connections on a listening socket.
  void add_listener(int fd, RequestHandler handler);
  // Tells every peer that checked rkey to forget it; done runs when all have
  // confirmed, closed, or a second has passed.
  void revoke_everywhere(uint32_t rkey, std::function<void()> done);

  // ---- registered regions, any thread ----
  Result<RegionKey> register_region(std::span<std::byte> memory);
  // Removes the key from the table and returns its MR (null if unknown); the
  // caller deregisters it once peers have forgotten the key.
  ibv_mr* take_region(uint32_t rkey);
  // 0 when [address, address+length) lies in the region rkey, else EINVAL.
  int check_region(uint32_t rkey, uint64_t address, uint64_t length);
  // The lkey of a registered region holding [data, data+length), if any.
  std::optional<uint32_t> local_key(const std::byte* data, size_t length);
  // Deregisters what is left; after the loop has ended.
  void release_regions();

 private:
  struct Watch {
    std::unique_ptr<boost::asio::posix::stream_descriptor> descriptor;
    std::shared_ptr<std::function<void(uint32_t)>> handler;
    uint32_t events = 0;  // Interest bits wanted
    uint32_t waiting = 0;  // Interest bits with an async_wait outstanding
  };
  struct Timer {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::function<void()> fn;
  };
  struct Listener {
    int fd;
    WatchId watch;
    RequestHandler handler;
  };
  // An accepted socket whose peer has not yet sent its hello.
  struct Handshake {
    int fd;
    WatchId watch;
    TimerId timer;
    RequestHandler handler;
    verbs::ControlRecord hello{};
    size_t have = 0;  // bytes of hello received
  };

  void arm(WatchId id);
  void on_ready(WatchId id, uint32_t what, boost::system::error_code error);
  void unwatch_all();
  void on_completion_channel();
  void accept_from(Listener& listener);
  void on_handshake(uint64_t id, uint32_t events);
  void close_handshake(uint64_t id);
  void finish_stop();

  std::shared_ptr<VerbsDevice> m_device;
  std::atomic<NodeId> m_node{kNoNode};
  FabricCounterSet m_counters;
  std::atomic<std::thread::id> m_loop_thread{};
  // Declared before everything that waits on it, so that it goes last.
  boost::asio::io_context m_io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> m_work;

  std::mutex m_mutex;  // guards m_stopping, m_ended
  bool m_stopping = false;
  bool m_ended = false;

  // Loop thread state.
  WatchId m_next_watch = 1;
  std::unordered_map<WatchId, Watch> m_watches;
  TimerId m_next_timer = 1;
  std::unordered_map<TimerId, Timer> m_timers;
  std::unordered_map<VerbsConnection*, std::shared_ptr<VerbsConnection>> m_live;
  std::vector<std::unique_ptr<Listener>> m_listeners;
  uint64_t m_next_handshake = 1;
  std::map<uint64_t, Handshake> m_handshakes;

  std::mutex m_regions_mutex;  // guards m_regions
  std::map<uint32_t, ibv_mr*> m_regions;
};

// A verbs connection: its QP, buffers and control socket, fragmentation,
// credits and one-sided RDMA; request ids, timeouts, reply matching and
// dispatch are its rpc::Endpoint's (see rpc::EndpointConnection).
class VerbsConnection final : public rpc::EndpointConnection {
 public:
  // Creates the CQ, the QP (in INIT) and the buffers, and posts the receive
  // buffers. Takes ownership of control_fd. Any thread.
  static Result<std::shared_ptr<VerbsConnection>> create(std::shared_ptr<VerbsContext> context,
                                                         int control_fd, RequestHandler handler);
  ~VerbsConnection() override;

  // This end's kHello.
  verbs::ControlRecord hello() const;
  // Moves the QP to RTR and RTS towards the peer described by its kHello.
  // Any thread, before start().
  Result<void> connect_qp(const verbs::ControlRecord& peer);
  // Hands the connection to the loop: watches the control socket and arms
  // the CQ. Loop thread, once.
  void start();
  // The CQ's completion channel fired. Loop thread.
  void on_cq_event();
  // If the peer checked rkey, asks it to forget the key and makes `wait`
  // wait for its answer (or for this connection's end). Loop thread.
  void revoke_key(uint32_t rkey, const std::shared_ptr<RevokeWait>& wait);
  // Closes the connection and fails everything outstanding. Loop thread.
  void shutdown(const char* reason);

  void read_async(RegionKey region, uint64_t offset, std::span<std::byte> into, Duration timeout,
                  DoneCallback done) override;
  void write_async(RegionKey region, uint64_t offset, ByteView from, Duration timeout,
                   DoneCallback done) override;
  void close() override;

 private:
  VerbsConnection(std::shared_ptr<VerbsContext> context, int control_fd, RequestHandler handler);

  struct Outgoing {
    wire::Header header;
    Bytes payload;
    size_t sent = 0;  // bytes of header + payload already posted
  };
  // A one-sided operation, split into chunks of at most one RDMA request.
  struct Access {
    bool is_read;
    RegionKey region;
    uint64_t offset;
    std::byte* local;
    size_t length;
    DoneCallback done;
    VerbsContext::TimerId timer;
    size_t chunks_left = 0;
  };
  struct Chunk {
    uint64_t access;
    uint64_t at;      // offset within the access
    uint32_t length;
    uint32_t staging;  // index of the bounce buffer, or kNoStaging
    std::optional<uint32_t> lkey;  // zero-copy: the lkey of the caller's memory
  };
  static constexpr uint32_t kNoStaging = ~0u;
  // What this end knows of one of the peer's keys.
  struct RemoteKey {
    bool valid = false;
    uint64_t check_token = 0;        // non-zero while a kKeyCheck is out
    std::vector<uint64_t> waiting;   // accesses waiting for the answer
  };
  using RemoteKeyId = std::tuple<uint32_t, uint64_t, uint64_t>;  // rkey, address, length

  // Set-up and teardown (verbs_connection.cpp).
  Result<void> create_resources();
  void release_resources();
  void on_control(uint32_t events);
  void on_record(const verbs::ControlRecord& record);
  void send_control(const verbs::ControlRecord& record);
  void flush_control();
  std::byte* recv_buffer(uint32_t index) const;
  std::byte* send_buffer(uint32_t index) const;
  std::byte* staging_buffer(uint32_t index) const;

  // rpc::Carrier (verbs_datapath.cpp).
  void send_message(const wire::Header& header, Bytes payload) override;
  bool post(std::function<void()> fn) override { return m_context->post(std::move(fn)); }
  NodeId local_node() const override { return m_context->node_id(); }

  // Datapath (verbs_datapath.cpp). Loop thread.
  void pump();
  bool post_fragment();
  bool post_credit_update();
  Result<void> post_receive(uint32_t index);
  void on_completion(const ibv_wc& completion);
  void on_fragment(const std::byte* data, size_t length);
  void reject_stream(const Error& error);
  void start_access(Access access, Duration timeout);
  void on_key_answer(RemoteKeyId key, int status);
  void issue_access(uint64_t id);
  void pump_rdma();
  void finish_access(uint64_t id, Result<void> result);
  void fail_everything(const std::string& why);

  std::shared_ptr<VerbsContext> m_context;

  // Verbs resources; released on shutdown or destruction.
  int m_fd = -1;
  ibv_cq* m_cq = nullptr;
  ibv_qp* m_qp = nullptr;
  ibv_mr* m_mr = nullptr;
  std::byte* m_buffers = nullptr;
  size_t m_buffers_size = 0;
  uint32_t m_psn = 0;

  // Loop thread state from here on.
  bool m_started = false;
  bool m_closed = false;
  VerbsContext::WatchId m_watch = 0;
  bool m_want_out = false;
  std::vector<char> m_control_in;
  std::vector<char> m_control_out;

  uint32_t m_credits = 0;      // SENDs the peer has buffers for
  uint32_t m_owed = 0;         // buffers reposted here, not yet returned
  uint32_t m_peer_recv_size = 0;
  uint32_t m_send_queue_used = 0;
  std::vector<uint32_t> m_free_send;
  std::vector<uint32_t> m_free_staging;
  std::deque<Outgoing> m_out;

  bool m_in_message = false;
  wire::Header m_in_header{};
  Bytes m_in_payload;

  uint64_t m_next_access = 1;
  std::unordered_map<uint64_t, Access> m_accesses;
  std::deque<Chunk> m_rdma_queue;
  uint64_t m_next_chunk = 1;
  std::unordered_map<uint64_t, Chunk> m_rdma_posted;
  std::map<RemoteKeyId, RemoteKey> m_remote_keys;
  uint64_t m_next_token = 1;
  std::unordered_map<uint64_t, RemoteKeyId> m_key_checks;  // token -> key
  std::set<uint32_t> m_granted;  // own keys the peer has checked
  std::unordered_map<uint64_t, std::shared_ptr<RevokeWait>> m_revokes;  // token -> wait
};

class VerbsTransport final : public Transport {
 public:
  // Opens the device (see VerbsDevice) and starts the loop thread.
  static Result<std::unique_ptr<VerbsTransport>> create();
  ~VerbsTransport() override;

  Result<Address> listen(const Address& address, RequestHandler handler) override;
  Result<std::shared_ptr<Connection>> connect(const Address& address, RequestHandler handler,
                                              Duration timeout) override;
  Result<RegionKey> register_region(std::span<std::byte> memory) override;
  void deregister_region(uint32_t rkey) override;
  void set_node_id(NodeId node) override { m_context->set_node_id(node); }
  wire::FabricKind kind() const override { return wire::FabricKind::kVerbs; }
  FabricCounters counters() const override { return m_context->counters().snapshot(); }
  void stop() override;

 private:
  explicit VerbsTransport(std::shared_ptr<VerbsContext> context);

  std::shared_ptr<VerbsContext> m_context;
  std::thread m_thread;
  std::once_flag m_stopped;
};

}  // namespace sk::fabric
