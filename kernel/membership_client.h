// A component's membership in its cluster, shared by the p/m/sComponent
// daemons: connect to the monitor, join (kind, advertised address, fabric,
// capacity) and keep heartbeating with the current usage and load. If the
// monitor connection drops or the monitor no longer knows this node (it
// restarted, or declared us failed), the member reconnects and joins again,
// with backoff (100 ms doubling to 2 s), for as long as it runs. Requests the
// monitor sends on the connection (MON2P_, MON2M_, MON2S_) go to the
// component's dispatcher.
//
// Threads: start() and stop() from main (stop() may also come from a signal
// thread, concurrently with start()); the heartbeat thread calls the usage
// callback; node_id() from anywhere. No blocking call ever runs on the
// transport's thread: replies and connection closes only record their
// outcome in the shared State and wake the waiting thread.
//
// Lock order: m_stop_mutex, then State::mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/node.h"
#include "kernel/rpc/rpc.h"

namespace sk {

class MembershipClient {
 public:
  struct Usage {
    uint64_t capacity = 0;
    uint64_t usage = 0;
    uint32_t load = 0;
  };
  using UsageFn = std::function<Usage()>;

  struct Options {
    NodeKind kind = NodeKind::kPcomponent;
    Address monitor;
    Address advertised;  // where peers reach this component's listener
    // Used until the monitor's C2monJoinReply names its own interval.
    Duration heartbeat_interval = std::chrono::milliseconds(500);
  };

  // `dispatcher` serves the monitor's requests; it must outlive the MembershipClient
  // and the transport's use of the monitor connection.
  MembershipClient(fabric::Transport& transport, Options options, const rpc::Dispatcher& dispatcher,
                   UsageFn usage);
  ~MembershipClient();

  MembershipClient(const MembershipClient&) = delete;
  MembershipClient& operator=(const MembershipClient&) = delete;

  // Joins, retrying with backoff until `timeout`; then keeps the membership
  // alive in the background. Fails with the last error if the monitor could
  // not be reached in time, or ECANCELED if stop() was called meanwhile.
  // Call once.
  Result<void> start(Duration timeout);

  // Stops the heartbeat thread promptly, then says goodbye (C2MON_LEAVE,
  // best-effort, bounded wait) and closes the monitor connection.
  // Idempotent; a second caller waits until the first one is done.
  void stop();

  NodeId node_id() const { return m_node.load(); }
  // How many times this member has joined (1 after start(); more after
  // rejoins). For logs and tests.
  uint32_t joins() const { return m_joins.load(); }

 private:
  // What transport callbacks touch. Shared with them so that a callback that
  // runs after the MembershipClient is gone (the transport fails pending calls when it
  // stops) touches live memory.
  struct State {
    std::mutex mutex;  // guards everything below
    std::condition_variable wake;
    bool stopping = false;
    uint64_t generation = 0;       // bumped per monitor connection
    bool connection_lost = false;  // the current generation's connection closed
  };

  // Connects and joins once; on success the connection is current.
  Result<void> join_once();
  // Joins until it works (backoff) or `deadline` passes or stop() is called.
  Result<void> join_with_backoff(Clock::time_point deadline);
  // Sends a request on `connection` and waits for its reply, for the timeout
  // or until stop() is called (ECANCELED), whichever comes first.
  template <wire::Opcode Op>
  Result<wire::ReplyOf<Op>> call(fabric::Connection& connection, wire::RequestOf<Op> request,
                                 Duration timeout, bool interruptible);
  Result<void> heartbeat_once();
  void drop_connection();
  void run();

  fabric::Transport& m_transport;
  Options m_options;
  const rpc::Dispatcher& m_dispatcher;
  UsageFn m_usage;

  std::atomic<NodeId> m_node{kNoNode};
  std::atomic<uint32_t> m_joins{0};
  std::shared_ptr<State> m_state = std::make_shared<State>();

  // The monitor connection; guarded by State::mutex because stop() may run
  // on another thread while start() is still joining.
  std::shared_ptr<fabric::Connection> m_connection;
  // Written by whoever joins, read by the heartbeat thread, which starts (or
  // loops) only after the join that wrote it.
  Duration m_interval;

  std::mutex m_stop_mutex;  // serializes stop(); guards m_stopped
  bool m_stopped = false;
  std::thread m_thread;  // assigned under State::mutex, only while not stopping
};

}  // namespace sk
