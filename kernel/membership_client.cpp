// Membership of a p/m/sComponent in its cluster: join, heartbeat, rejoin,
// leave. See member.h for the threads and the lock order.
//
// The protocol with the monitor, as spoken here:
//   C2MON_JOIN      C2monJoinRequest{kind, fabric, capacity, address}
//                   -> C2monJoinReply{node, heartbeat_interval_ms}
//   C2MON_HEARTBEAT C2monHeartbeat{node, load, capacity, usage} -> empty, or
//                   ENOENT when the monitor does not know the node (it
//                   restarted or declared us failed): we join again.
//   C2MON_LEAVE     C2monLeaveRequest{node} -> empty; best-effort on stop().
// Every request carries vNode 0. A connection loss also means "join again".
#include "kernel/membership_client.h"

#include <algorithm>

#include "kernel/log.h"
#include "kernel/wire/codec.h"

namespace sk {

static const Logger log("member");

// Backoff between join attempts: short at first so a monitor that restarts
// is rejoined quickly, capped so a long outage costs little.
static constexpr Duration kFirstBackoff = std::chrono::milliseconds(100);
static constexpr Duration kMaxBackoff = std::chrono::seconds(2);
// One join attempt (connect, then the JOIN call) gives up after this.
static constexpr Duration kJoinStepTimeout = std::chrono::seconds(2);
// A heartbeat reply later than this counts as missed.
static constexpr Duration kHeartbeatTimeout = std::chrono::seconds(2);
// This many missed heartbeat replies in a row mean the monitor is wedged or
// the connection is half-dead: reconnect rather than keep talking into it.
static constexpr int kMaxMissedHeartbeats = 3;
// LEAVE is a courtesy; do not hold up shutdown for a slow monitor.
static constexpr Duration kLeaveTimeout = std::chrono::milliseconds(500);
// The monitor's heartbeat interval is taken within these bounds so that a
// bad value can neither flood it nor make it think we died.
static constexpr Duration kMinInterval = std::chrono::milliseconds(10);
static constexpr Duration kMaxInterval = std::chrono::seconds(60);
// The transport promises every callback runs; this margin only guards
// against a transport bug turning into a hang.
static constexpr Duration kCallbackGrace = std::chrono::seconds(1);

MembershipClient::MembershipClient(fabric::Transport& transport, Options options,
                                   const rpc::Dispatcher& dispatcher, UsageFn usage)
    : m_transport(transport),
      m_options(std::move(options)),
      m_dispatcher(dispatcher),
      m_usage(std::move(usage)),
      m_interval(m_options.heartbeat_interval) {}

MembershipClient::~MembershipClient() {
  stop();
}

template <wire::Opcode Op>
Result<wire::ReplyOf<Op>> MembershipClient::call(fabric::Connection& connection,
                                                 wire::RequestOf<Op> request, Duration timeout,
                                                 bool interruptible) {
  auto state = m_state;
  auto reply = std::make_shared<std::optional<Result<wire::ReplyOf<Op>>>>();
  rpc::call_async<Op>(connection, kNoVnode, std::move(request), timeout,
                      [state, reply](Result<wire::ReplyOf<Op>> result) {
                        {
                          std::lock_guard lock(state->mutex);
                          reply->emplace(std::move(result));
                        }
                        state->wake.notify_all();
                      });
  std::unique_lock lock(state->mutex);
  state->wake.wait_for(lock, timeout + kCallbackGrace,
                       [&] { return reply->has_value() || (interruptible && state->stopping); });
  if (reply->has_value()) return std::move(**reply);
  if (state->stopping) return make_error(ECANCELED, "stopping");
  return make_error(ETIMEDOUT, std::string(wire::opcode_name(static_cast<uint16_t>(Op))) +
                                   " got no answer from the transport");
}

Result<void> MembershipClient::join_once() {
  auto connection =
      TRY(m_transport.connect(m_options.monitor, m_dispatcher.handler(), kJoinStepTimeout));
  uint64_t generation;
  {
    std::lock_guard lock(m_state->mutex);
    generation = ++m_state->generation;
  }
  // Registered before the JOIN goes out so a close during the join is seen.
  std::weak_ptr<State> weak_state = m_state;
  connection->set_close_handler([weak_state, generation] {
    auto state = weak_state.lock();
    if (!state) return;
    {
      std::lock_guard lock(state->mutex);
      if (state->generation != generation) return;
      state->connection_lost = true;
    }
    state->wake.notify_all();
  });

  wire::C2monJoinRequest request{};
  request.kind = static_cast<uint8_t>(m_options.kind);
  request.fabric = static_cast<uint8_t>(m_transport.kind());
  request.capacity = m_usage ? m_usage().capacity : 0;
  request.address.set(m_options.advertised.to_string());

  auto joined = call<wire::Opcode::C2MON_JOIN>(*connection, request, kJoinStepTimeout,
                                               /*interruptible=*/true);
  if (joined && joined->node == kNoNode) {
    joined = make_error(EPROTO, "the monitor assigned node id 0");
  }
  if (!joined) {
    connection->close();
    return make_error(joined.error().code(),
                      "join " + m_options.monitor.to_string() + ": " + joined.error().message());
  }

  Duration interval = m_options.heartbeat_interval;
  if (joined->heartbeat_interval_ms != 0) {
    interval = std::clamp<Duration>(std::chrono::milliseconds(joined->heartbeat_interval_ms),
                                    kMinInterval, kMaxInterval);
  }
  {
    std::lock_guard lock(m_state->mutex);
    if (m_state->stopping) {
      connection->close();
      return make_error(ECANCELED, "stopping");
    }
    m_connection = connection;
    m_state->connection_lost = !connection->is_open();
    m_interval = interval;
  }
  m_node.store(joined->node);
  m_transport.set_node_id(joined->node);
  ++m_joins;
  log.info("joined the monitor at {} as {} node {} (advertising {}, heartbeat every {} ms)",
           m_options.monitor.to_string(), to_string(m_options.kind), joined->node,
           m_options.advertised.to_string(),
           std::chrono::duration_cast<std::chrono::milliseconds>(interval).count());
  return {};
}

Result<void> MembershipClient::join_with_backoff(Clock::time_point deadline) {
  Duration backoff = kFirstBackoff;
  std::string last_error;
  for (;;) {
    auto joined = join_once();
    if (joined) return {};
    const Error& error = joined.error();
    if (error.code() == ECANCELED) return std::move(joined).error();
    // Log the first failure and each change of cause; a monitor that stays
    // down would otherwise fill the log every two seconds.
    if (error.text() != last_error) {
      log.warn("{}; retrying (backoff up to {} ms)", error.text(),
               std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff).count());
      last_error = error.text();
    } else {
      log.debug("{}; retrying", error.text());
    }
    if (Clock::now() + backoff > deadline) return std::move(joined).error();
    std::unique_lock lock(m_state->mutex);
    if (m_state->wake.wait_for(lock, backoff, [&] { return m_state->stopping; })) {
      return make_error(ECANCELED, "stopping");
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

Result<void> MembershipClient::start(Duration timeout) {
  TRY(join_with_backoff(Clock::now() + timeout));
  std::lock_guard lock(m_state->mutex);
  if (m_state->stopping) {
    // stop() ran while we joined and found no thread to join and, maybe, no
    // connection yet: leave quietly; the monitor will time us out.
    if (m_connection) m_connection->close();
    return make_error(ECANCELED, "stopping");
  }
  m_thread = std::thread([this] { run(); });
  return {};
}

Result<void> MembershipClient::heartbeat_once() {
  std::shared_ptr<fabric::Connection> connection;
  {
    std::lock_guard lock(m_state->mutex);
    connection = m_connection;
  }
  if (!connection) return make_error(ENOTCONN, "no monitor connection");
  Usage usage = m_usage ? m_usage() : Usage{};
  wire::C2monHeartbeat heartbeat{};
  heartbeat.node = m_node.load();
  heartbeat.load = usage.load;
  heartbeat.capacity = usage.capacity;
  heartbeat.usage = usage.usage;
  TRY(call<wire::Opcode::C2MON_HEARTBEAT>(*connection, heartbeat, kHeartbeatTimeout,
                                          /*interruptible=*/true));
  return {};
}

void MembershipClient::drop_connection() {
  std::shared_ptr<fabric::Connection> connection;
  {
    std::lock_guard lock(m_state->mutex);
    connection = std::move(m_connection);
    m_connection.reset();
    // Later closes of this connection are not news any more.
    ++m_state->generation;
    m_state->connection_lost = false;
  }
  if (connection) connection->close();
}

void MembershipClient::run() {
  int missed = 0;
  for (;;) {
    bool lost;
    {
      std::unique_lock lock(m_state->mutex);
      m_state->wake.wait_for(lock, m_interval,
                             [&] { return m_state->stopping || m_state->connection_lost; });
      if (m_state->stopping) return;
      lost = m_state->connection_lost;
    }
    if (!lost) {
      auto beat = heartbeat_once();
      if (beat) {
        missed = 0;
        continue;
      }
      int code = beat.error().code();
      if (code == ECANCELED) return;
      if (code == ETIMEDOUT && ++missed < kMaxMissedHeartbeats) {
        log.warn("heartbeat: {} ({} missed in a row)", beat.error().text(), missed);
        continue;
      }
      if (code != ENOENT && code != ETIMEDOUT && code != ECONNRESET && code != ENOTCONN &&
          code != EPIPE) {
        // The monitor answered but refused; joining again would not help.
        log.warn("heartbeat refused: {}", beat.error().text());
        continue;
      }
      log.warn("heartbeat: {}; joining the monitor again", beat.error().text());
    } else {
      log.warn("lost the connection to the monitor at {}; joining again",
               m_options.monitor.to_string());
    }
    missed = 0;
    drop_connection();
    if (!join_with_backoff(Clock::time_point::max())) return;  // only when stopping
  }
}

void MembershipClient::stop() {
  std::lock_guard stop_lock(m_stop_mutex);
  if (m_stopped) return;
  m_stopped = true;
  std::thread thread;
  {
    std::lock_guard lock(m_state->mutex);
    m_state->stopping = true;
    thread = std::move(m_thread);
  }
  m_state->wake.notify_all();
  if (thread.joinable()) thread.join();

  std::shared_ptr<fabric::Connection> connection;
  {
    std::lock_guard lock(m_state->mutex);
    connection = std::move(m_connection);
    m_connection.reset();
  }
  if (!connection) return;
  if (connection->is_open() && m_node.load() != kNoNode) {
    wire::C2monLeaveRequest leave{};
    leave.node = m_node.load();
    auto left = call<wire::Opcode::C2MON_LEAVE>(*connection, leave, kLeaveTimeout,
                                                /*interruptible=*/false);
    if (left) {
      log.info("left the cluster (node {})", leave.node);
    } else {
      log.warn("leave: {} (the monitor will notice the silence)", left.error().text());
    }
  }
  connection->close();
}

}  // namespace sk
