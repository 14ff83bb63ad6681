// Membership against a fake monitor over the fake fabric: join,
// heartbeats with the component's usage, rejoin when the monitor forgets us
// or the connection drops, the monitor's requests reach the component's
// dispatcher, and stop() leaves promptly.
#include "kernel/membership_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"
#include "tests/unit/fake_transport.h"

namespace sk {
namespace {

using namespace std::chrono_literals;
using wire::Opcode;

// Just enough of a monitor: hands out node ids, checks heartbeats name a
// node it knows (ENOENT otherwise, as the real one does), records leaves.
class FakeMonitor {
 public:
  explicit FakeMonitor(uint16_t port = 0) {
    m_dispatcher.on(Opcode::C2MON_JOIN,
                    [this](const rpc::Message& request,
                           const rpc::Responder& responder) -> Result<wire::Bytes> {
                      auto join = TRY(wire::decode<wire::C2monJoinRequest>(request.payload));
                      std::lock_guard lock(m_mutex);
                      wire::C2monJoinReply reply{};
                      reply.node = m_next_node++;
                      reply.heartbeat_interval_ms = 20;
                      m_known.insert(reply.node);
                      m_joins.push_back(join);
                      m_connections.push_back(responder.connection());
                      return wire::encode(reply);
                    });
    m_dispatcher.on(
        Opcode::C2MON_HEARTBEAT,
        [this](const rpc::Message& request, const rpc::Responder&) -> Result<wire::Bytes> {
          auto beat = TRY(wire::decode<wire::C2monHeartbeat>(request.payload));
          std::lock_guard lock(m_mutex);
          if (!m_known.contains(beat.node) || request.source() != beat.node) {
            return make_error(ENOENT, "unknown node " + std::to_string(beat.node));
          }
          m_beats.push_back(beat);
          return wire::Bytes{};
        });
    m_dispatcher.on(
        Opcode::C2MON_LEAVE,
        [this](const rpc::Message& request, const rpc::Responder&) -> Result<wire::Bytes> {
          auto leave = TRY(wire::decode<wire::C2monLeaveRequest>(request.payload));
          std::lock_guard lock(m_mutex);
          m_left.push_back(leave.node);
          m_known.erase(leave.node);
          return wire::Bytes{};
        });
    m_address = m_transport->listen(Address{"fake", port}, m_dispatcher.handler()).value();
  }

  const Address& address() const { return m_address; }
  void forget_everyone() {
    std::lock_guard lock(m_mutex);
    m_known.clear();
  }
  std::shared_ptr<fabric::Connection> last_connection() {
    std::lock_guard lock(m_mutex);
    return m_connections.empty() ? nullptr : m_connections.back();
  }
  size_t joins() {
    std::lock_guard lock(m_mutex);
    return m_joins.size();
  }
  wire::C2monJoinRequest join(size_t i) {
    std::lock_guard lock(m_mutex);
    return m_joins.at(i);
  }
  std::vector<wire::C2monHeartbeat> beats() {
    std::lock_guard lock(m_mutex);
    return m_beats;
  }
  std::vector<NodeId> left() {
    std::lock_guard lock(m_mutex);
    return m_left;
  }
  void stop() { m_transport->stop(); }

 private:
  rpc::Dispatcher m_dispatcher{"fake-monitor"};
  std::unique_ptr<fabric::Transport> m_transport = std::make_unique<testing::FakeTransport>();
  Address m_address;
  std::mutex m_mutex;
  NodeId m_next_node = 2;
  std::set<NodeId> m_known;
  std::vector<wire::C2monJoinRequest> m_joins;
  std::vector<std::shared_ptr<fabric::Connection>> m_connections;
  std::vector<wire::C2monHeartbeat> m_beats;
  std::vector<NodeId> m_left;
};

template <typename Predicate>
bool eventually(Predicate predicate, Duration timeout = 5s) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return predicate();
}

struct Component {
  Component() {
    dispatcher.on(Opcode::MON2M_VNODE_CREATE,
                  [this](const rpc::Message& request, const rpc::Responder&) {
                    created.store(request.vnode());
                    return Result<wire::Bytes>(wire::Bytes{});
                  });
  }
  MembershipClient::Usage usage() { return MembershipClient::Usage{1 << 30, used.load(), 3}; }

  rpc::Dispatcher dispatcher{"component"};
  std::unique_ptr<fabric::Transport> transport = std::make_unique<testing::FakeTransport>();
  std::atomic<uint64_t> used{4096};
  std::atomic<VnodeId> created{0};
};

MembershipClient::Options options(const Address& monitor) {
  MembershipClient::Options options;
  options.kind = NodeKind::kMcomponent;
  options.monitor = monitor;
  options.advertised = Address{"127.0.0.1", 7171};
  return options;
}

TEST(MembershipClient, JoinsAndHeartbeatsWithUsage) {
  FakeMonitor monitor;
  Component component;
  MembershipClient member(*component.transport, options(monitor.address()), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  EXPECT_EQ(member.node_id(), 2u);
  auto join = monitor.join(0);
  EXPECT_EQ(join.kind, static_cast<uint8_t>(NodeKind::kMcomponent));
  EXPECT_EQ(join.fabric, static_cast<uint8_t>(wire::FabricKind::kTcp));
  EXPECT_EQ(join.capacity, uint64_t{1} << 30);
  EXPECT_EQ(join.address.view(), "127.0.0.1:7171");

  component.used.store(8192);
  ASSERT_TRUE(eventually([&] {
    auto beats = monitor.beats();
    return !beats.empty() && beats.back().usage == 8192;
  }));
  auto beat = monitor.beats().back();
  EXPECT_EQ(beat.node, 2u);
  EXPECT_EQ(beat.load, 3u);
  EXPECT_EQ(beat.capacity, uint64_t{1} << 30);

  auto before = Clock::now();
  member.stop();
  EXPECT_LT(Clock::now() - before, 1s);
  EXPECT_EQ(monitor.left(), std::vector<NodeId>{2});
}

TEST(MembershipClient, RejoinsWhenTheMonitorForgetsIt) {
  FakeMonitor monitor;
  Component component;
  MembershipClient member(*component.transport, options(monitor.address()), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  monitor.forget_everyone();
  ASSERT_TRUE(eventually([&] { return member.joins() == 2; }));
  EXPECT_EQ(member.node_id(), 3u);
  ASSERT_TRUE(eventually([&] {
    auto beats = monitor.beats();
    return !beats.empty() && beats.back().node == 3;
  }));
}

TEST(MembershipClient, RejoinsWhenTheConnectionDrops) {
  FakeMonitor monitor;
  Component component;
  MembershipClient member(*component.transport, options(monitor.address()), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  monitor.last_connection()->close();
  ASSERT_TRUE(eventually([&] { return member.joins() == 2; }));
  EXPECT_EQ(monitor.joins(), 2u);
}

TEST(MembershipClient, RejoinsARestartedMonitor) {
  auto monitor = std::make_unique<FakeMonitor>();
  Address address = monitor->address();
  Component component;
  MembershipClient member(*component.transport, options(address), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  monitor->stop();
  monitor.reset();
  std::this_thread::sleep_for(300ms);  // a few failed attempts, with backoff
  monitor = std::make_unique<FakeMonitor>(address.port);
  ASSERT_TRUE(eventually([&] { return monitor->joins() == 1; }));
  ASSERT_TRUE(eventually([&] { return !monitor->beats().empty(); }));
  EXPECT_EQ(member.joins(), 2u);
}

TEST(MembershipClient, ServesTheMonitorsRequestsWithTheComponentsDispatcher) {
  FakeMonitor monitor;
  Component component;
  MembershipClient member(*component.transport, options(monitor.address()), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  auto connection = monitor.last_connection();
  ASSERT_TRUE(connection);
  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = 5;
  setup.name.set("web");
  auto reply = rpc::call(*connection, Opcode::MON2M_VNODE_CREATE, 5, wire::as_bytes(setup));
  ASSERT_TRUE(reply) << reply.error().text();
  EXPECT_EQ(component.created.load(), 5u);
  auto refused = rpc::call(*connection, Opcode::P2M_PAGE_READ, 5, {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), EOPNOTSUPP);
}

TEST(MembershipClient, StartGivesUpAfterItsTimeout) {
  // A port nothing listens on: take a free one and let it go.
  Address address;
  {
    FakeMonitor gone;
    address = gone.address();
    gone.stop();
  }
  Component component;
  MembershipClient member(*component.transport, options(address), component.dispatcher,
                          [&] { return component.usage(); });
  auto before = Clock::now();
  auto started = member.start(400ms);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), ECONNREFUSED) << started.error().text();
  EXPECT_LT(Clock::now() - before, 2s);
}

TEST(MembershipClient, StopInterruptsAStartThatIsRetrying) {
  Address address;
  {
    FakeMonitor gone;
    address = gone.address();
    gone.stop();
  }
  Component component;
  MembershipClient member(*component.transport, options(address), component.dispatcher,
                          [&] { return component.usage(); });
  std::thread stopper([&] {
    std::this_thread::sleep_for(200ms);
    member.stop();
  });
  auto before = Clock::now();
  auto started = member.start(60s);
  stopper.join();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), ECANCELED);
  EXPECT_LT(Clock::now() - before, 3s);
}

TEST(MembershipClient, StopIsPromptEvenWhenTheMonitorIsGone) {
  auto monitor = std::make_unique<FakeMonitor>();
  Component component;
  MembershipClient member(*component.transport, options(monitor->address()), component.dispatcher,
                          [&] { return component.usage(); });
  ASSERT_TRUE(member.start(5s));
  monitor->stop();
  std::this_thread::sleep_for(100ms);  // now it is rejoining, with backoff
  auto before = Clock::now();
  member.stop();
  member.stop();  // idempotent
  EXPECT_LT(Clock::now() - before, 1s);
}

}  // namespace
}  // namespace sk
