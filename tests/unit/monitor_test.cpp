// Unit tests of the monitor: the node table and failure detector with
// injected time, GSM placement, the vNode table, and the request handling
// of MonitorServer driven through its dispatcher over the fake fabric
// (tests/unit/fake_transport.h; no sockets).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "kernel/wire/codec.h"
#include "kernel/wire/process_messages.h"
#include "monitor/membership.h"
#include "monitor/monitor_server.h"
#include "monitor/vnode_table.h"
#include "tests/unit/fake_transport.h"

namespace sk::monitor {
namespace {

using namespace std::chrono_literals;
using testing::FakeTransport;
using wire::Opcode;

wire::C2monJoinRequest join_request(NodeKind kind, std::string_view address, uint64_t capacity) {
  wire::C2monJoinRequest request{};
  request.kind = static_cast<uint8_t>(kind);
  request.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  request.capacity = capacity;
  request.address.set(address);
  return request;
}

wire::C2monHeartbeat heartbeat(NodeId node, uint64_t capacity, uint64_t usage, uint32_t load) {
  return wire::C2monHeartbeat{node, load, capacity, usage};
}

// ---- Membership --------------------------------------------------------------

class MembershipTest : public ::testing::Test {
 protected:
  Clock::time_point m_t0 = Clock::time_point{} + 1000s;
  Membership m_members{"10.0.0.1:7070", wire::FabricKind::kTcp, 2000ms, 1700000000000};
};

TEST_F(MembershipTest, IdsStartAtTwoAndTheMonitorIsNodeOne) {
  NodeId p =
      m_members.join(join_request(NodeKind::kPcomponent, "10.0.0.2:1", 1 << 20), nullptr, m_t0, 1);
  NodeId m =
      m_members.join(join_request(NodeKind::kMcomponent, "10.0.0.3:1", 2 << 20), nullptr, m_t0, 2);
  EXPECT_EQ(p, 2u);
  EXPECT_EQ(m, 3u);

  auto records = m_members.records(m_t0, 5);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].id, kMonitorNodeId);
  EXPECT_EQ(records[0].kind, static_cast<uint8_t>(NodeKind::kMonitor));
  EXPECT_EQ(records[0].state, static_cast<uint8_t>(NodeState::kAlive));
  EXPECT_EQ(records[0].address.view(), "10.0.0.1:7070");
  EXPECT_EQ(records[0].vnodes, 5u);
  EXPECT_EQ(records[0].joined_unix_ms, 1700000000000u);
  EXPECT_EQ(records[1].id, 2u);
  EXPECT_EQ(records[1].kind, static_cast<uint8_t>(NodeKind::kPcomponent));
  EXPECT_EQ(records[1].capacity, 1u << 20);
  EXPECT_EQ(records[1].address.view(), "10.0.0.2:1");
  EXPECT_EQ(records[2].joined_unix_ms, 2u);
  for (const auto& record : records) EXPECT_TRUE(record.validate().ok());
}

TEST_F(MembershipTest, HeartbeatUpdatesUsageAndAge) {
  NodeId id = m_members.join(join_request(NodeKind::kMcomponent, "a:1", 100), nullptr, m_t0, 0);
  EXPECT_EQ(m_members.heartbeat(heartbeat(id, 400, 150, 3), m_t0 + 700ms),
            Membership::HeartbeatOutcome::kUpdated);
  auto records = m_members.records(m_t0 + 1000ms, 0);
  EXPECT_EQ(records[1].capacity, 400u);
  EXPECT_EQ(records[1].usage, 150u);
  EXPECT_EQ(records[1].load, 3u);
  EXPECT_EQ(records[1].heartbeat_age_ms, 300u);
  // A clock read before the heartbeat landed must not wrap around.
  EXPECT_EQ(m_members.records(m_t0, 0)[1].heartbeat_age_ms, 0u);
}

TEST_F(MembershipTest, HeartbeatFromUnknownOrLeftNodeAsksToRejoin) {
  EXPECT_EQ(m_members.heartbeat(heartbeat(42, 0, 0, 0), m_t0),
            Membership::HeartbeatOutcome::kUnknown);
  NodeId id = m_members.join(join_request(NodeKind::kScomponent, "a:1", 100), nullptr, m_t0, 0);
  EXPECT_TRUE(m_members.leave(id));
  EXPECT_EQ(m_members.find(id)->state, NodeState::kLeft);
  EXPECT_EQ(m_members.heartbeat(heartbeat(id, 0, 0, 0), m_t0),
            Membership::HeartbeatOutcome::kUnknown);
  EXPECT_FALSE(m_members.leave(99));
}

TEST_F(MembershipTest, SilentNodeFailsAfterTheTimeoutAndRevivesOnHeartbeat) {
  NodeId id = m_members.join(join_request(NodeKind::kPcomponent, "a:1", 100), nullptr, m_t0, 0);
  EXPECT_TRUE(m_members.detect_failures(m_t0 + 2000ms).empty());  // not *more* than the timeout
  EXPECT_EQ(m_members.detect_failures(m_t0 + 2001ms), std::vector<NodeId>{id});
  EXPECT_EQ(m_members.find(id)->state, NodeState::kFailed);
  EXPECT_TRUE(m_members.detect_failures(m_t0 + 5000ms).empty());  // reported once

  EXPECT_EQ(m_members.heartbeat(heartbeat(id, 100, 0, 0), m_t0 + 6000ms),
            Membership::HeartbeatOutcome::kRevived);
  EXPECT_EQ(m_members.find(id)->state, NodeState::kAlive);
  EXPECT_TRUE(m_members.detect_failures(m_t0 + 7000ms).empty());
  EXPECT_EQ(m_members.detect_failures(m_t0 + 8500ms), std::vector<NodeId>{id});
}

TEST_F(MembershipTest, HeartbeatsKeepANodeAlive) {
  NodeId id = m_members.join(join_request(NodeKind::kPcomponent, "a:1", 100), nullptr, m_t0, 0);
  for (int i = 1; i <= 20; ++i) {
    auto now = m_t0 + i * 500ms;
    m_members.heartbeat(heartbeat(id, 100, 0, 0), now);
    EXPECT_TRUE(m_members.detect_failures(now + 400ms).empty());
  }
}

TEST_F(MembershipTest, LeftNodesAreNotDeclaredFailed) {
  NodeId id = m_members.join(join_request(NodeKind::kPcomponent, "a:1", 100), nullptr, m_t0, 0);
  m_members.leave(id);
  EXPECT_TRUE(m_members.detect_failures(m_t0 + 1h).empty());
  EXPECT_EQ(m_members.find(id)->state, NodeState::kLeft);
}

TEST_F(MembershipTest, PlacementPicksTheAliveScomponentWithTheMostFreeSpace) {
  EXPECT_FALSE(m_members.pick_scomponent().has_value());
  m_members.join(join_request(NodeKind::kMcomponent, "m:1", 1ull << 40), nullptr, m_t0, 0);
  EXPECT_FALSE(m_members.pick_scomponent().has_value());  // only sComponents hold roots

  NodeId small = m_members.join(join_request(NodeKind::kScomponent, "s:1", 100), nullptr, m_t0, 0);
  NodeId big = m_members.join(join_request(NodeKind::kScomponent, "s:2", 500), nullptr, m_t0, 0);
  NodeId tie = m_members.join(join_request(NodeKind::kScomponent, "s:3", 500), nullptr, m_t0, 0);
  EXPECT_EQ(m_members.pick_scomponent(), big);  // ties go to the lowest id

  // Free space, not capacity: the big one fills up.
  m_members.heartbeat(heartbeat(big, 500, 450, 1), m_t0);
  EXPECT_EQ(m_members.pick_scomponent(), tie);
  // Usage above capacity counts as no free space, not as a huge number.
  m_members.heartbeat(heartbeat(tie, 500, 900, 1), m_t0);
  EXPECT_EQ(m_members.pick_scomponent(), small);

  m_members.detect_failures(m_t0 + 3s);
  EXPECT_FALSE(m_members.pick_scomponent().has_value());
}

TEST_F(MembershipTest, AnEarlierIncarnationIsSupersededOnceItIsNotAlive) {
  NodeId old = m_members.join(join_request(NodeKind::kScomponent, "s:1", 100), nullptr, m_t0, 0);
  NodeId other = m_members.join(join_request(NodeKind::kPcomponent, "s:1", 100), nullptr, m_t0, 0);
  NodeId fresh = m_members.join(join_request(NodeKind::kScomponent, "s:1", 100), nullptr, m_t0, 0);
  // Still alive: two components cannot listen on one address, but the
  // monitor does not guess; only dead entries are superseded.
  EXPECT_TRUE(m_members.superseded_by(fresh).empty());
  m_members.find(old)->state = NodeState::kFailed;
  EXPECT_EQ(m_members.superseded_by(fresh), std::vector<NodeId>{old});
  (void)other;  // same address, other kind: not the same component
}

// ---- VnodeTable ----------------------------------------------------------------

VnodeEntry vnode(VnodeTable& table, std::string name, NodeId scomponent) {
  VnodeEntry entry;
  entry.id = table.allocate_id();
  entry.name = std::move(name);
  entry.scomponent = scomponent;
  entry.scomponent_address = "10.0.0." + std::to_string(scomponent) + ":7000";
  entry.image = "default";
  entry.memory = 1 << 30;
  entry.cache = 64 << 20;
  entry.created_unix_ms = 1234;
  return entry;
}

TEST(VnodeTableTest, AddFindListRemove) {
  VnodeTable table;
  table.add(vnode(table, "web", 4));
  table.add(vnode(table, "db", 5));
  ASSERT_NE(table.find("web"), nullptr);
  EXPECT_EQ(table.find("web")->id, 1u);
  EXPECT_EQ(table.find(2u)->name, "db");
  EXPECT_EQ(table.find("nope"), nullptr);

  auto list = table.list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "web");
  EXPECT_EQ(list[1].name, "db");

  auto removed = table.remove("web");
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->id, 1u);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.find("web"), nullptr);
}

TEST(VnodeTableTest, DuplicateAndMissingNamesHaveClearErrors) {
  VnodeTable table;
  table.add(vnode(table, "web", 4));
  auto duplicate = table.check_new_name("web");
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.error().code(), EEXIST);
  EXPECT_EQ(duplicate.error().message(), "vnode 'web' already exists");
  EXPECT_TRUE(table.check_new_name("web2").ok());

  auto missing = table.remove("gone");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ENOENT);
  EXPECT_EQ(missing.error().message(), "no vnode named 'gone'");
}

TEST(VnodeTableTest, IdsAreNeverReused) {
  VnodeTable table;
  table.add(vnode(table, "a", 4));
  ASSERT_TRUE(table.remove("a").ok());
  auto again = vnode(table, "a", 4);
  EXPECT_EQ(again.id, 2u);
}

TEST(VnodeTableTest, RehomeMovesRootsToTheNewIncarnation) {
  VnodeTable table;
  table.add(vnode(table, "a", 4));
  table.add(vnode(table, "b", 5));
  table.add(vnode(table, "c", 4));
  EXPECT_EQ(table.rehome(4, 9, "10.0.0.9:7000"), (std::vector<VnodeId>{1, 3}));
  EXPECT_EQ(table.rooted_on(9), (std::vector<VnodeId>{1, 3}));
  EXPECT_TRUE(table.rooted_on(4).empty());
  EXPECT_EQ(table.find("a")->scomponent_address, "10.0.0.9:7000");
  EXPECT_EQ(table.find("b")->scomponent, 5u);
  EXPECT_EQ(table.find("b")->scomponent_address, "10.0.0.5:7000");
}

TEST(VnodeTableTest, RecordAndSetupCarryTheEntry) {
  VnodeTable table;
  auto entry = vnode(table, "web", 4);
  auto record = entry.record();
  EXPECT_EQ(record.id, 1u);
  EXPECT_EQ(record.scomponent, 4u);
  EXPECT_EQ(record.memory, 1u << 30);
  EXPECT_EQ(record.cache, 64u << 20);
  EXPECT_EQ(record.created_unix_ms, 1234u);
  EXPECT_EQ(record.name.view(), "web");
  EXPECT_EQ(record.image.view(), "default");
  EXPECT_EQ(record.flags, 0u);
  EXPECT_TRUE(record.validate().ok());
  auto setup = entry.setup();
  EXPECT_EQ(setup.vnode, 1u);
  EXPECT_EQ(setup.memory, 1u << 30);
  EXPECT_EQ(setup.name.view(), "web");
  EXPECT_EQ(setup.image.view(), "default");
  EXPECT_EQ(setup.scomponent.view(), "10.0.0.4:7000");
  EXPECT_TRUE(setup.validate().ok());

  entry.flags = wire::kVnodeEmptyRoot;
  entry.image.clear();
  EXPECT_EQ(entry.record().flags, wire::kVnodeEmptyRoot);
  EXPECT_EQ(entry.setup().flags, wire::kVnodeEmptyRoot);
  EXPECT_EQ(entry.setup().image.view(), "");
}

// ---- MonitorServer -------------------------------------------------------------

// A peer of the monitor (a component or a console) at the far end of a
// fake-fabric link to the monitor's FakeTransport: its handler records the
// requests the monitor sends it (MON2x_) and answers them with `answer`, or
// keeps their Responders when told to hold; it sends requests to the
// monitor and records their replies. The fabric is asynchronous, so every
// look at what the peer saw first waits for the whole fabric to go quiet
// (`settle`, given by the test fixture).
class FakePeer {
 public:
  struct Sent {
    Opcode opcode;
    VnodeId vnode;
    rpc::Bytes payload;
  };
  struct Reply {
    int status;
    rpc::Bytes payload;
  };

  FakePeer(std::string name, const Address& monitor, std::function<void()> settle)
      : m_name(std::move(name)), m_settle(std::move(settle)) {
    m_connection = m_transport
                       .connect(monitor,
                                [this](fabric::Message message, fabric::Responder responder) {
                                  serve(std::move(message), std::move(responder));
                                })
                       .value();
  }

  // Answers a request: a status (0: success) and error text. Runs on the
  // peer's fabric thread.
  std::function<std::pair<int, std::string>(const Sent&)> answer = [](const Sent&) {
    return std::pair<int, std::string>(0, "");
  };

  // When set, requests are kept unanswered until answer_held() (a peer
  // that takes its time, e.g. a console writing to a slow terminal).
  std::atomic<bool> hold{false};

  size_t held() {
    m_settle();
    std::lock_guard lock(m_mutex);
    return m_held.size();
  }
  // Answers the oldest held request.
  void answer_held(int status = 0, std::string text = "") {
    m_settle();
    std::optional<fabric::Responder> responder;
    {
      std::lock_guard lock(m_mutex);
      ASSERT_FALSE(m_held.empty());
      responder.emplace(std::move(m_held.front()));
      m_held.erase(m_held.begin());
    }
    respond(*responder, status, text);
  }

  // Sends a request to the monitor; its reply (or the transport's error,
  // as minus its errno) joins replies().
  void send(Opcode opcode, rpc::Bytes payload) {
    m_connection->call_async(
        opcode, kNoVnode, std::move(payload), 10s, [this](Result<fabric::Message> reply) {
          std::lock_guard lock(m_mutex);
          if (reply) {
            m_replies.push_back(Reply{reply->status(), std::move(reply->payload)});
          } else {
            m_replies.push_back(Reply{-reply.error().code(), {}});
          }
        });
  }

  // The peer goes away: the link closes on both ends.
  void close() {
    m_connection->close();
    m_settle();
  }
  // What the peer calls itself (the address it joins with).
  const std::string& peer() const { return m_name; }
  FakeTransport& transport() { return m_transport; }

  std::vector<Sent> sent() {
    m_settle();
    std::lock_guard lock(m_mutex);
    return m_sent;
  }
  std::vector<Reply> replies() {
    m_settle();
    std::lock_guard lock(m_mutex);
    return m_replies;
  }
  Reply last_reply() {
    m_settle();
    std::lock_guard lock(m_mutex);
    EXPECT_FALSE(m_replies.empty());
    return m_replies.empty() ? Reply{-1, {}} : m_replies.back();
  }

 private:
  // The peer's handler, on its fabric thread.
  void serve(fabric::Message message, fabric::Responder responder) {
    Sent sent{static_cast<Opcode>(message.opcode()), message.vnode(), std::move(message.payload)};
    {
      std::lock_guard lock(m_mutex);
      m_sent.push_back(sent);
      if (hold) {
        m_held.push_back(std::move(responder));
        return;
      }
    }
    auto [status, text] = answer(sent);
    respond(responder, status, text);
  }
  static void respond(fabric::Responder& responder, int status, const std::string& text) {
    if (status == 0) {
      auto bytes = wire::as_bytes(std::string_view(text));
      responder.reply(rpc::Bytes(bytes.begin(), bytes.end()));
    } else {
      responder.fail(make_error(status, text));
    }
  }

  std::string m_name;
  std::function<void()> m_settle;
  std::mutex m_mutex;
  std::vector<Sent> m_sent;
  std::vector<Reply> m_replies;
  std::vector<fabric::Responder> m_held;
  // After the state above, so that its thread stops before that goes.
  FakeTransport m_transport;
  std::shared_ptr<fabric::Connection> m_connection;
};

std::string text_of(const rpc::Bytes& bytes) {
  return wire::to_text(bytes);
}

class MonitorServerTest : public ::testing::Test {
 protected:
  MonitorServerTest() : m_server(options()) { m_server.start(); }

  static MonitorServer::Options options() {
    MonitorServer::Options options;
    options.address = "127.0.0.1:7070";
    options.default_memory = 1ull << 30;
    options.failure_timeout = 2000ms;
    options.component_timeout = 1s;
    // What monitor_main.cpp reports: its fabric (kernel/fabric/fabric_stats.h).
    options.extra_stats = [] {
      return std::vector<wire::StatRecord>{wire::make_stat("fabric", "kind_tcp", 1)};
    };
    return options;
  }

  // Sends a request from `peer` and waits for the fabric and the worker to
  // go quiet, so that asynchronous handlers have replied too.
  FakePeer::Reply request(const std::shared_ptr<FakePeer>& peer, Opcode opcode,
                          rpc::Bytes payload = {}) {
    size_t before = peer->replies().size();
    peer->send(opcode, std::move(payload));
    // A reply may wait on the monitor's threads, beyond what settle() sees.
    for (int i = 0; i < 1000 && peer->replies().size() <= before; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(peer->replies().size(), before + 1);
    return peer->last_reply();
  }

  // A peer linked to the monitor's fabric.
  std::shared_ptr<FakePeer> make_peer(std::string name) {
    auto peer = std::make_shared<FakePeer>(std::move(name), m_address, [this] { settle(); });
    m_peers.push_back(peer);
    return peer;
  }

  // Waits until no message is in flight on the fake fabric and the
  // monitor's worker is idle: two rounds in a row of flushing every
  // transport and draining the worker that move no message.
  void settle() {
    auto moved = [&] {
      uint64_t total = 0;
      auto add = [&](const fabric::FabricCounters& c) {
        total += c.messages_sent + c.messages_received;
      };
      add(m_fabric.counters());
      for (auto& weak : m_peers) {
        if (auto peer = weak.lock()) add(peer->transport().counters());
      }
      return total;
    };
    int quiet = 0;
    for (int round = 0; round < 200; ++round) {
      uint64_t before = moved();
      for (auto& weak : m_peers) {
        if (auto peer = weak.lock()) peer->transport().flush();
      }
      m_fabric.flush();
      m_server.drain();
      m_fabric.flush();
      quiet = moved() == before ? quiet + 1 : 0;
      if (quiet == 2) return;
    }
    ADD_FAILURE() << "the fake fabric never went quiet";
  }

  // Joins a component on a fresh fake connection; returns its id.
  NodeId join(const std::shared_ptr<FakePeer>& connection, NodeKind kind,
              uint64_t capacity = 1ull << 30, std::string address = "") {
    if (address.empty()) address = connection->peer();
    auto reply = request(connection, Opcode::C2MON_JOIN,
                         wire::encode(join_request(kind, address, capacity)));
    EXPECT_EQ(reply.status, 0) << text_of(reply.payload);
    auto joined = wire::decode<wire::C2monJoinReply>(reply.payload);
    EXPECT_TRUE(joined.ok());
    if (!joined.ok()) return kNoNode;
    EXPECT_EQ(joined->heartbeat_interval_ms, kHeartbeatIntervalMs);
    return joined->node;
  }

  std::vector<wire::NodeRecord> nodes() {
    auto console = make_peer("console");
    auto reply = request(console, Opcode::CTL2MON_NODES);
    EXPECT_EQ(reply.status, 0);
    auto head = wire::decode_with_tail<wire::Ctl2monListReply>(reply.payload);
    EXPECT_TRUE(head.ok());
    auto records = wire::decode_records<wire::NodeRecord>(head->second, head->first.count);
    EXPECT_TRUE(records.ok());
    return records.ok() ? records.value() : std::vector<wire::NodeRecord>{};
  }

  std::vector<wire::VnodeRecord> vnodes() {
    auto console = make_peer("console");
    auto reply = request(console, Opcode::CTL2MON_VNODE_LIST);
    EXPECT_EQ(reply.status, 0);
    auto head = wire::decode_with_tail<wire::Ctl2monListReply>(reply.payload);
    EXPECT_TRUE(head.ok());
    auto records = wire::decode_records<wire::VnodeRecord>(head->second, head->first.count);
    EXPECT_TRUE(records.ok());
    return records.ok() ? records.value() : std::vector<wire::VnodeRecord>{};
  }

  FakePeer::Reply create(std::string_view name, uint64_t cache = 0, uint64_t memory = 0,
                         std::string_view image = "", uint32_t flags = 0) {
    wire::Ctl2monVnodeCreateRequest create{};
    create.name.set(name);
    create.cache = cache;
    create.memory = memory;
    create.image.set(image);
    create.flags = flags;
    auto console = make_peer("console");
    return request(console, Opcode::CTL2MON_VNODE_CREATE, wire::encode(create));
  }

  FakePeer::Reply destroy(std::string_view name) {
    wire::Ctl2monVnodeDestroyRequest destroy{};
    destroy.name.set(name);
    auto console = make_peer("console");
    return request(console, Opcode::CTL2MON_VNODE_DESTROY, wire::encode(destroy));
  }

  const wire::NodeRecord* node(const std::vector<wire::NodeRecord>& records, NodeId id) {
    for (const auto& record : records) {
      if (record.id == id) return &record;
    }
    return nullptr;
  }

  MonitorServer m_server;
  // The monitor's fabric, serving its dispatcher; after m_server so that it
  // stops first.
  FakeTransport m_fabric;
  Address m_address = m_fabric.listen(Address{"fake", 0}, m_server.dispatcher().handler()).value();
  std::vector<std::weak_ptr<FakePeer>> m_peers;
};

std::vector<Opcode> opcodes(const std::vector<FakePeer::Sent>& sent) {
  std::vector<Opcode> result;
  for (const auto& one : sent) result.push_back(one.opcode);
  return result;
}

TEST_F(MonitorServerTest, JoinHandsOutIdsAndNodesListsEveryone) {
  auto s = make_peer("127.0.0.1:7101");
  auto m = make_peer("127.0.0.1:7102");
  EXPECT_EQ(join(s, NodeKind::kScomponent, 10ull << 30), 2u);
  EXPECT_EQ(join(m, NodeKind::kMcomponent, 4ull << 30), 3u);

  auto records = nodes();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].id, kMonitorNodeId);
  EXPECT_EQ(records[0].kind, static_cast<uint8_t>(NodeKind::kMonitor));
  EXPECT_EQ(records[0].address.view(), "127.0.0.1:7070");
  EXPECT_EQ(records[1].kind, static_cast<uint8_t>(NodeKind::kScomponent));
  EXPECT_EQ(records[1].capacity, 10ull << 30);
  EXPECT_EQ(records[1].address.view(), "127.0.0.1:7101");
  EXPECT_EQ(records[2].state, static_cast<uint8_t>(NodeState::kAlive));
}

TEST_F(MonitorServerTest, MalformedJoinIsRefused) {
  auto connection = make_peer("x");
  auto reply = request(connection, Opcode::C2MON_JOIN, rpc::Bytes(3));
  EXPECT_EQ(reply.status, EBADMSG);
  auto bad_kind = join_request(NodeKind::kMonitor, "x:1", 0);
  reply = request(connection, Opcode::C2MON_JOIN, wire::encode(bad_kind));
  EXPECT_EQ(reply.status, EINVAL);
  EXPECT_EQ(nodes().size(), 1u);
}

TEST_F(MonitorServerTest, HeartbeatFromAnUnknownNodeGetsEnoent) {
  auto connection = make_peer("x");
  auto reply = request(connection, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(7, 0, 0, 0)));
  EXPECT_EQ(reply.status, ENOENT);

  NodeId id = join(connection, NodeKind::kPcomponent);
  reply = request(connection, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(id, 5000, 1000, 2)));
  EXPECT_EQ(reply.status, 0);
  auto record = nodes().at(1);
  EXPECT_EQ(record.usage, 1000u);
  EXPECT_EQ(record.load, 2u);
}

TEST_F(MonitorServerTest, LeaveMarksTheNodeLeft) {
  auto connection = make_peer("x");
  NodeId id = join(connection, NodeKind::kPcomponent);
  auto reply =
      request(connection, Opcode::C2MON_LEAVE, wire::encode(wire::C2monLeaveRequest{id, 0}));
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(nodes().at(1).state, static_cast<uint8_t>(NodeState::kLeft));
  // Closing after the goodbye does not turn "left" into "failed".
  connection->close();
  EXPECT_EQ(nodes().at(1).state, static_cast<uint8_t>(NodeState::kLeft));
  // A closed link carries nothing more: the unknown id comes on a new one.
  reply =
      request(make_peer("y"), Opcode::C2MON_LEAVE, wire::encode(wire::C2monLeaveRequest{77, 0}));
  EXPECT_EQ(reply.status, ENOENT);
}

TEST_F(MonitorServerTest, ClosedConnectionMarksTheNodeFailedAtOnce) {
  auto connection = make_peer("x");
  NodeId id = join(connection, NodeKind::kMcomponent);
  connection->close();
  EXPECT_EQ(node(nodes(), id)->state, static_cast<uint8_t>(NodeState::kFailed));
}

TEST_F(MonitorServerTest, SilentNodeIsFailedByTheDetectorAndRevivedByAHeartbeat) {
  auto connection = make_peer("x");
  NodeId id = join(connection, NodeKind::kPcomponent);
  m_server.check_failures(Clock::now() + 1s);
  EXPECT_EQ(node(nodes(), id)->state, static_cast<uint8_t>(NodeState::kAlive));
  m_server.check_failures(Clock::now() + 3s);
  EXPECT_EQ(node(nodes(), id)->state, static_cast<uint8_t>(NodeState::kFailed));
  auto reply = request(connection, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(id, 1, 0, 0)));
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(node(nodes(), id)->state, static_cast<uint8_t>(NodeState::kAlive));
}

TEST_F(MonitorServerTest, CreateWithoutAnScomponentIsRefused) {
  auto m = make_peer("m");
  join(m, NodeKind::kMcomponent);
  auto reply = create("web");
  EXPECT_EQ(reply.status, EHOSTUNREACH);
  EXPECT_EQ(text_of(reply.payload), "no alive sComponent to hold the vNode's root");
  EXPECT_TRUE(m->sent().empty());
  EXPECT_TRUE(vnodes().empty());
}

TEST_F(MonitorServerTest, CreateSetsTheVnodeUpEverywhere) {
  auto s = make_peer("127.0.0.1:7101");
  auto m = make_peer("m");
  auto p = make_peer("p");
  NodeId s_id = join(s, NodeKind::kScomponent);
  NodeId m_id = join(m, NodeKind::kMcomponent);
  NodeId p_id = join(p, NodeKind::kPcomponent);

  auto reply = create("web", 64 << 20, 0);
  ASSERT_EQ(reply.status, 0) << text_of(reply.payload);
  auto record = wire::decode<wire::VnodeRecord>(reply.payload);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->id, 1u);
  EXPECT_EQ(record->name.view(), "web");
  EXPECT_EQ(record->scomponent, s_id);
  EXPECT_EQ(record->cache, 64u << 20);
  EXPECT_EQ(record->memory, 1u << 30);  // the monitor's default
  EXPECT_EQ(record->image.view(), "default");
  EXPECT_EQ(record->flags, 0u);
  EXPECT_GT(record->created_unix_ms, 0u);

  for (auto& [connection, opcode] :
       {std::pair(s, Opcode::MON2S_VNODE_CREATE), std::pair(m, Opcode::MON2M_VNODE_CREATE),
        std::pair(p, Opcode::MON2P_VNODE_CREATE)}) {
    auto sent = connection->sent();
    ASSERT_EQ(sent.size(), 1u) << connection->peer();
    EXPECT_EQ(sent[0].opcode, opcode);
    EXPECT_EQ(sent[0].vnode, 1u);  // the header names the vNode
    auto setup = wire::decode<wire::Mon2cVnodeCreateRequest>(sent[0].payload);
    ASSERT_TRUE(setup.ok());
    EXPECT_EQ(setup->vnode, 1u);
    EXPECT_EQ(setup->name.view(), "web");
    EXPECT_EQ(setup->cache, 64u << 20);
    EXPECT_EQ(setup->memory, 1u << 30);
    EXPECT_EQ(setup->image.view(), "default");
    // Where pComponents find the root.
    EXPECT_EQ(setup->scomponent.view(), "127.0.0.1:7101");
  }

  auto list = vnodes();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name.view(), "web");
  auto records = nodes();
  EXPECT_EQ(node(records, kMonitorNodeId)->vnodes, 1u);
  EXPECT_EQ(node(records, s_id)->vnodes, 1u);
  EXPECT_EQ(node(records, m_id)->vnodes, 1u);
  EXPECT_EQ(node(records, p_id)->vnodes, 1u);

  // An explicit memory quota is kept.
  reply = create("db", 0, 256 << 20);
  ASSERT_EQ(reply.status, 0);
  EXPECT_EQ(wire::decode<wire::VnodeRecord>(reply.payload)->memory, 256u << 20);
}

TEST_F(MonitorServerTest, ImageAndEmptyRootAreCarriedThrough) {
  auto s = make_peer("s");
  join(s, NodeKind::kScomponent);
  auto reply = create("custom", 0, 0, "bookworm");
  ASSERT_EQ(reply.status, 0);
  EXPECT_EQ(wire::decode<wire::VnodeRecord>(reply.payload)->image.view(), "bookworm");
  EXPECT_EQ(wire::decode<wire::Mon2cVnodeCreateRequest>(s->sent().back().payload)->image.view(),
            "bookworm");

  reply = create("bare", 0, 0, "", wire::kVnodeEmptyRoot);
  ASSERT_EQ(reply.status, 0);
  auto record = wire::decode<wire::VnodeRecord>(reply.payload);
  EXPECT_EQ(record->image.view(), "");
  EXPECT_EQ(record->flags, wire::kVnodeEmptyRoot);
  auto setup = wire::decode<wire::Mon2cVnodeCreateRequest>(s->sent().back().payload);
  EXPECT_EQ(setup->image.view(), "");
  EXPECT_EQ(setup->flags, wire::kVnodeEmptyRoot);

  // An empty root with an image is contradictory: the decoder refuses it.
  EXPECT_EQ(create("both", 0, 0, "bookworm", wire::kVnodeEmptyRoot).status, EINVAL);
}

TEST_F(MonitorServerTest, DuplicateNameIsRefused) {
  auto s = make_peer("s");
  join(s, NodeKind::kScomponent);
  ASSERT_EQ(create("web").status, 0);
  auto reply = create("web");
  EXPECT_EQ(reply.status, EEXIST);
  EXPECT_EQ(text_of(reply.payload), "vnode 'web' already exists");
  EXPECT_EQ(s->sent().size(), 1u);
}

TEST_F(MonitorServerTest, BadNameIsRefusedByTheDecoder) {
  auto console = make_peer("console");
  wire::Ctl2monVnodeCreateRequest bad{};
  bad.name.set("Bad Name");
  auto reply = request(console, Opcode::CTL2MON_VNODE_CREATE, wire::encode(bad));
  EXPECT_EQ(reply.status, EINVAL);
}

TEST_F(MonitorServerTest, FailedRootSetupRollsBack) {
  auto s = make_peer("127.0.0.1:7101");
  auto m = make_peer("m");
  NodeId s_id = join(s, NodeKind::kScomponent);
  join(m, NodeKind::kMcomponent);
  s->answer = [](const FakePeer::Sent& sent) {
    if (sent.opcode == Opcode::MON2S_VNODE_CREATE) {
      return std::pair<int, std::string>(ENOSPC, "disk full");
    }
    return std::pair<int, std::string>(0, "");
  };
  auto reply = create("web");
  EXPECT_EQ(reply.status, ENOSPC);
  EXPECT_EQ(
      text_of(reply.payload),
      "sComponent " + std::to_string(s_id) +
          " at 127.0.0.1:7101 could not set up vnode 'web': disk full: " + std::strerror(ENOSPC));
  EXPECT_EQ(opcodes(s->sent()),
            (std::vector<Opcode>{Opcode::MON2S_VNODE_CREATE, Opcode::MON2S_VNODE_DESTROY}));
  EXPECT_TRUE(m->sent().empty());  // nothing reached the mComponent
  EXPECT_TRUE(vnodes().empty());
  EXPECT_EQ(create("web").status, ENOSPC);  // and the name is still free
}

TEST_F(MonitorServerTest, FailedMcomponentSetupIsNotFatal) {
  auto s = make_peer("s");
  auto m = make_peer("m");
  join(s, NodeKind::kScomponent);
  NodeId m_id = join(m, NodeKind::kMcomponent);
  m->answer = [](const FakePeer::Sent&) { return std::pair<int, std::string>(EIO, "no"); };
  auto reply = create("web");
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(vnodes().size(), 1u);
  EXPECT_EQ(node(nodes(), m_id)->vnodes, 0u);
}

TEST_F(MonitorServerTest, DestroyTearsDownAndForgets) {
  auto s = make_peer("s");
  auto m = make_peer("m");
  auto p = make_peer("p");
  join(s, NodeKind::kScomponent);
  NodeId m_id = join(m, NodeKind::kMcomponent);
  join(p, NodeKind::kPcomponent);
  ASSERT_EQ(create("web").status, 0);

  auto reply = destroy("web");
  EXPECT_EQ(reply.status, 0) << text_of(reply.payload);
  EXPECT_TRUE(vnodes().empty());
  for (auto& [connection, opcode] :
       {std::pair(s, Opcode::MON2S_VNODE_DESTROY), std::pair(m, Opcode::MON2M_VNODE_DESTROY),
        std::pair(p, Opcode::MON2P_VNODE_DESTROY)}) {
    auto sent = connection->sent();
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_EQ(sent[1].opcode, opcode);
    EXPECT_EQ(sent[1].vnode, 1u);
    auto teardown = wire::decode<wire::Mon2cVnodeDestroyRequest>(sent[1].payload);
    ASSERT_TRUE(teardown.ok());
    EXPECT_EQ(teardown->vnode, 1u);
  }
  EXPECT_EQ(node(nodes(), m_id)->vnodes, 0u);

  reply = destroy("web");
  EXPECT_EQ(reply.status, ENOENT);
  EXPECT_EQ(text_of(reply.payload), "no vnode named 'web'");
}

TEST_F(MonitorServerTest, ALateJoinerLearnsTheExistingVnodes) {
  auto s = make_peer("s");
  join(s, NodeKind::kScomponent);
  ASSERT_EQ(create("web").status, 0);
  ASSERT_EQ(create("db").status, 0);

  auto m = make_peer("m");
  NodeId m_id = join(m, NodeKind::kMcomponent);  // join() waits for the worker
  auto sent = m->sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].opcode, Opcode::MON2M_VNODE_CREATE);
  EXPECT_EQ(wire::decode<wire::Mon2cVnodeCreateRequest>(sent[0].payload)->name.view(), "web");
  EXPECT_EQ(wire::decode<wire::Mon2cVnodeCreateRequest>(sent[1].payload)->name.view(), "db");
  EXPECT_EQ(node(nodes(), m_id)->vnodes, 2u);

  // A second sComponent holds no roots, so it is told about none.
  auto s2 = make_peer("s2");
  join(s2, NodeKind::kScomponent);
  EXPECT_TRUE(s2->sent().empty());
}

TEST_F(MonitorServerTest, ARevivedNodeCatchesUpWithWhatItMissed) {
  auto s = make_peer("s");
  auto p = make_peer("p");
  NodeId s_id = join(s, NodeKind::kScomponent);
  NodeId p_id = join(p, NodeKind::kPcomponent);
  ASSERT_EQ(create("old").status, 0);

  // p goes silent; meanwhile "old" is destroyed and "new" created.
  request(s, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(s_id, 1ull << 30, 0, 0)));
  m_server.check_failures(Clock::now() + 2500ms);
  request(s, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(s_id, 1ull << 30, 0, 0)));
  ASSERT_EQ(node(nodes(), p_id)->state, static_cast<uint8_t>(NodeState::kFailed));
  ASSERT_EQ(destroy("old").status, 0);
  ASSERT_EQ(create("new").status, 0);
  EXPECT_EQ(p->sent().size(), 1u);  // only the first create reached it

  request(p, Opcode::C2MON_HEARTBEAT, wire::encode(heartbeat(p_id, 1, 0, 0)));
  auto sent = p->sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[1].opcode, Opcode::MON2P_VNODE_CREATE);
  EXPECT_EQ(sent[1].vnode, 2u);
  EXPECT_EQ(sent[2].opcode, Opcode::MON2P_VNODE_DESTROY);
  EXPECT_EQ(sent[2].vnode, 1u);
  EXPECT_EQ(node(nodes(), p_id)->vnodes, 1u);
}

TEST_F(MonitorServerTest, ARestartedScomponentTakesOverItsRoots) {
  auto s_old = make_peer("old");
  NodeId old_id = join(s_old, NodeKind::kScomponent, 1ull << 30, "127.0.0.1:7101");
  ASSERT_EQ(create("web").status, 0);
  s_old->close();  // the sComponent dies...

  auto s_new = make_peer("new");  // ...and comes back
  NodeId new_id = join(s_new, NodeKind::kScomponent, 1ull << 30, "127.0.0.1:7101");
  EXPECT_NE(new_id, old_id);
  auto sent = s_new->sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].opcode, Opcode::MON2S_VNODE_CREATE);
  EXPECT_EQ(wire::decode<wire::Mon2cVnodeCreateRequest>(sent[0].payload)->scomponent.view(),
            "127.0.0.1:7101");
  EXPECT_EQ(vnodes().at(0).scomponent, new_id);
  auto records = nodes();
  EXPECT_EQ(node(records, old_id), nullptr);  // the old incarnation is gone
  EXPECT_EQ(node(records, new_id)->vnodes, 1u);
}

TEST_F(MonitorServerTest, UnknownOpcodeIsRefused) {
  auto connection = make_peer("x");
  auto reply = request(connection, Opcode::P2M_PAGE_READ);
  EXPECT_EQ(reply.status, EOPNOTSUPP);
}

// ---- runs, ps and stats --------------------------------------------------------

template <typename T>
std::string bytes_of(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

class MonitorRunTest : public MonitorServerTest {
 protected:
  void SetUp() override {
    m_s = make_peer("s");
    join(m_s, NodeKind::kScomponent);
  }

  // A pComponent that starts every program as vNode pid 7, host pid 7007.
  std::shared_ptr<FakePeer> pcomponent(const std::string& name, NodeId& id) {
    auto p = make_peer(name);
    p->answer = [](const FakePeer::Sent& sent) -> std::pair<int, std::string> {
      if (sent.opcode == Opcode::MON2P_RUN) {
        auto command = wire::decode_run(sent.payload);
        if (!command) return {EBADMSG, "bad run"};
        wire::Ctl2pRunReply started{};
        started.run = command->request.run;
        started.vnode_pid = 7;
        started.host_pid = 7007;
        return {0, bytes_of(started)};
      }
      return {0, ""};
    };
    id = join(p, NodeKind::kPcomponent);
    return p;
  }

  // Sends a request without expecting an answer at once.
  void send(const std::shared_ptr<FakePeer>& from, Opcode opcode, rpc::Bytes payload) {
    from->send(opcode, std::move(payload));
  }

  FakePeer::Reply run(const std::shared_ptr<FakePeer>& console, std::string_view vnode,
                      std::vector<std::string> argv) {
    wire::Ctl2pRunRequest head{};
    head.vnode_name.set(vnode);
    auto payload = wire::encode_run(head, "/", argv, {"PATH=/bin"});
    EXPECT_TRUE(payload.ok());
    return request(console, Opcode::CTL2MON_RUN, payload.value());
  }

  // Starts a run from `console`; returns its id.
  uint64_t started_run(const std::shared_ptr<FakePeer>& console) {
    auto reply = run(console, "web", {"ls", "-la"});
    EXPECT_EQ(reply.status, 0) << text_of(reply.payload);
    auto started = wire::decode<wire::Ctl2pRunReply>(reply.payload);
    EXPECT_TRUE(started.ok());
    return started.ok() ? started->run : 0;
  }

  static rpc::Bytes output(uint64_t run, wire::RunStream stream, std::string_view data) {
    wire::P2ctlRunOutput head{};
    head.run = run;
    head.length = static_cast<uint32_t>(data.size());
    head.stream = static_cast<uint8_t>(stream);
    return wire::encode(head, wire::as_bytes(data));
  }

  static rpc::Bytes exit_of(uint64_t run, int code) {
    wire::P2ctlRunExit exit{};
    exit.run = run;
    exit.code = code;
    return wire::encode(exit);
  }

  std::vector<FakePeer::Sent> sent_of(const std::shared_ptr<FakePeer>& connection, Opcode opcode) {
    std::vector<FakePeer::Sent> result;
    for (auto& sent : connection->sent()) {
      if (sent.opcode == opcode) result.push_back(sent);
    }
    return result;
  }

  std::shared_ptr<FakePeer> m_s;
};

TEST_F(MonitorRunTest, RunsGoToTheLeastLoadedPcomponentThatHasTheVnode) {
  NodeId p1_id, p2_id, p3_id;
  auto p1 = pcomponent("p1", p1_id);
  auto p2 = pcomponent("p2", p2_id);
  ASSERT_EQ(create("web").status, 0);
  // p3 cannot set the vNode up: it never gets its programs.
  auto p3 = make_peer("p3");
  p3->answer = [](const FakePeer::Sent&) { return std::pair<int, std::string>(EIO, "no"); };
  p3_id = join(p3, NodeKind::kPcomponent);

  auto console = make_peer("console");
  std::vector<NodeId> placed;
  for (int i = 0; i < 4; ++i) {
    auto reply = run(console, "web", {"ls", "-la"});
    ASSERT_EQ(reply.status, 0) << text_of(reply.payload);
    auto started = wire::decode<wire::Ctl2pRunReply>(reply.payload);
    ASSERT_TRUE(started.ok());
    EXPECT_EQ(started->run, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(started->vnode, 1u);
    EXPECT_EQ(started->vnode_pid, 7);
    placed.push_back(started->pcomponent);
  }
  EXPECT_EQ(placed, (std::vector<NodeId>{p1_id, p2_id, p1_id, p2_id}));
  EXPECT_TRUE(sent_of(p3, Opcode::MON2P_RUN).empty());

  // The pComponent gets the command as the console sent it, with the run id.
  auto sent = sent_of(p1, Opcode::MON2P_RUN);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].vnode, 1u);
  auto command = wire::decode_run(sent[0].payload);
  ASSERT_TRUE(command.ok());
  EXPECT_EQ(command->request.run, 1u);
  EXPECT_EQ(command->argv, (std::vector<std::string>{"ls", "-la"}));
  EXPECT_EQ(command->env, (std::vector<std::string>{"PATH=/bin"}));
  EXPECT_EQ(command->cwd, "/");
  EXPECT_EQ(command->request.vnode_name.view(), "web");

  // vnode list counts the runs.
  EXPECT_EQ(vnodes().at(0).processes, 4u);
  // A run that ends frees its place: p1 ends one, the next goes there.
  send(p1, Opcode::P2MON_EXIT, exit_of(1, 0));
  auto reply = run(console, "web", {"true"});
  EXPECT_EQ(wire::decode<wire::Ctl2pRunReply>(reply.payload)->pcomponent, p1_id);
  (void)p3_id;
}

TEST_F(MonitorRunTest, RefusalsAreClear) {
  auto console = make_peer("console");
  auto reply = run(console, "nope", {"ls"});
  EXPECT_EQ(reply.status, ENOENT);
  EXPECT_EQ(text_of(reply.payload), "no vnode named 'nope'");

  ASSERT_EQ(create("web").status, 0);
  reply = run(console, "web", {"ls"});
  EXPECT_EQ(reply.status, EHOSTUNREACH);
  EXPECT_EQ(text_of(reply.payload), "no alive pComponent to run the program on");

  NodeId p_id;
  auto p = pcomponent("p", p_id);
  p->answer = [](const FakePeer::Sent& sent) {
    if (sent.opcode == Opcode::MON2P_RUN) return std::pair<int, std::string>(EMFILE, "no pipes");
    return std::pair<int, std::string>(0, "");
  };
  // It joined after the vNode was made, and learnt it.
  reply = run(console, "web", {"ls"});
  EXPECT_EQ(reply.status, EMFILE);
  EXPECT_EQ(text_of(reply.payload), "pComponent " + std::to_string(p_id) +
                                        " could not start the program: no pipes");
  EXPECT_EQ(vnodes().at(0).processes, 0u);  // not kept

  // Garbage is refused by the decoder.
  reply = request(console, Opcode::CTL2MON_RUN, rpc::Bytes(10));
  EXPECT_EQ(reply.status, EBADMSG);
}

TEST_F(MonitorRunTest, OutputIsForwardedInOrderAndAnsweredOnlyOnceTheConsoleTookIt) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  uint64_t id = started_run(console);
  console->hold = true;  // a slow terminal

  size_t before = p->replies().size();
  send(p, Opcode::P2MON_OUTPUT, output(id, wire::RunStream::kStdout, "one\n"));
  send(p, Opcode::P2MON_OUTPUT, output(id, wire::RunStream::kStderr, "two\n"));
  send(p, Opcode::P2MON_OUTPUT, output(id, wire::RunStream::kStdout, "three\n"));
  auto forwarded = sent_of(console, Opcode::MON2CTL_OUTPUT);
  ASSERT_EQ(forwarded.size(), 3u);
  EXPECT_EQ(forwarded[0].payload, output(id, wire::RunStream::kStdout, "one\n"));
  EXPECT_EQ(forwarded[1].payload, output(id, wire::RunStream::kStderr, "two\n"));
  EXPECT_EQ(forwarded[2].payload, output(id, wire::RunStream::kStdout, "three\n"));
  // Nothing is acknowledged to the pComponent before the console did.
  EXPECT_EQ(p->replies().size(), before);

  console->answer_held();
  ASSERT_EQ(p->replies().size(), before + 1);
  EXPECT_EQ(p->replies().back().status, 0);
  console->answer_held(EPIPE, "the console's output: closed");
  ASSERT_EQ(p->replies().size(), before + 2);
  EXPECT_EQ(p->replies().back().status, EPIPE);  // the pComponent then sends SIGPIPE
  console->answer_held();
  EXPECT_EQ(p->replies().size(), before + 3);

  // Another pComponent cannot speak for this run; nor for an unknown one.
  NodeId other_id;
  auto other = pcomponent("other", other_id);
  EXPECT_EQ(request(other, Opcode::P2MON_OUTPUT, output(id, wire::RunStream::kStdout, "x"))
                .status,
            EPERM);
  EXPECT_EQ(request(p, Opcode::P2MON_OUTPUT, output(99, wire::RunStream::kStdout, "x")).status,
            ENOENT);
  // A chunk whose length lies is refused.
  auto bad = output(id, wire::RunStream::kStdout, "abc");
  bad.pop_back();
  EXPECT_EQ(request(p, Opcode::P2MON_OUTPUT, bad).status, EBADMSG);
}

TEST_F(MonitorRunTest, TheExitReachesTheConsoleAndEndsTheRun) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  uint64_t id = started_run(console);

  EXPECT_EQ(request(p, Opcode::P2MON_EXIT, exit_of(id, 7)).status, 0);
  auto exits = sent_of(console, Opcode::MON2CTL_EXIT);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].payload, exit_of(id, 7));
  EXPECT_EQ(vnodes().at(0).processes, 0u);

  // The run is gone: no more stdin, signals or output for it.
  wire::Ctl2pRunInput input{};
  input.run = id;
  input.flags = wire::kInputEof;
  EXPECT_EQ(request(console, Opcode::CTL2MON_STDIN, wire::encode(input)).status, ENOENT);
  EXPECT_EQ(request(p, Opcode::P2MON_EXIT, exit_of(id, 7)).status, ENOENT);
}

TEST_F(MonitorRunTest, StdinAndSignalsComeOnlyFromTheRunsConsole) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  auto stranger = make_peer("stranger");
  uint64_t id = started_run(console);

  wire::Ctl2pRunInput input{};
  input.run = id;
  input.length = 3;
  auto payload = wire::encode(input, wire::as_bytes(std::string_view("abc")));
  EXPECT_EQ(request(stranger, Opcode::CTL2MON_STDIN, payload).status, EPERM);
  EXPECT_EQ(request(console, Opcode::CTL2MON_STDIN, payload).status, 0);
  auto stdin_sent = sent_of(p, Opcode::MON2P_STDIN);
  ASSERT_EQ(stdin_sent.size(), 1u);
  EXPECT_EQ(stdin_sent[0].payload, payload);
  EXPECT_EQ(stdin_sent[0].vnode, 1u);

  wire::Ctl2pRunSignal signal{};
  signal.run = id;
  signal.signo = SIGINT;
  EXPECT_EQ(request(stranger, Opcode::CTL2MON_SIGNAL, wire::encode(signal)).status, EPERM);
  EXPECT_EQ(request(console, Opcode::CTL2MON_SIGNAL, wire::encode(signal)).status, 0);
  auto signals = sent_of(p, Opcode::MON2P_SIGNAL);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(wire::decode<wire::Ctl2pRunSignal>(signals[0].payload)->signo, SIGINT);
  signal.signo = 0;
  EXPECT_EQ(request(console, Opcode::CTL2MON_SIGNAL, wire::encode(signal)).status, EINVAL);
}

TEST_F(MonitorRunTest, APcomponentFailureEndsItsRunsWithALostExit) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  uint64_t id = started_run(console);

  p->close();  // the pComponent dies mid-run
  auto exits = sent_of(console, Opcode::MON2CTL_EXIT);
  ASSERT_EQ(exits.size(), 1u);
  auto exit =
      wire::decode_sized<wire::P2ctlRunExit>(exits[0].payload, &wire::P2ctlRunExit::text_length);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->first.run, id);
  EXPECT_EQ(exit->first.code, 255);
  EXPECT_EQ(exit->first.flags, wire::kExitLost);
  EXPECT_EQ(wire::to_text(exit->second),
            "pComponent " + std::to_string(p_id) + " failed while running the program");
  EXPECT_EQ(vnodes().at(0).processes, 0u);
}

TEST_F(MonitorRunTest, ASilentPcomponentsRunsAreLostAndKilled) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  uint64_t id = started_run(console);

  m_server.check_failures(Clock::now() + 3s);
  auto exits = sent_of(console, Opcode::MON2CTL_EXIT);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(
      wire::decode_sized<wire::P2ctlRunExit>(exits[0].payload, &wire::P2ctlRunExit::text_length)
          ->first.flags,
      wire::kExitLost);
  // It may still be there: its program is killed, since its console gave up.
  auto signals = sent_of(p, Opcode::MON2P_SIGNAL);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(wire::decode<wire::Ctl2pRunSignal>(signals[0].payload)->run, id);
  EXPECT_EQ(wire::decode<wire::Ctl2pRunSignal>(signals[0].payload)->signo, SIGKILL);
}

TEST_F(MonitorRunTest, AConsoleThatLeavesHangsItsProgramUp) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  uint64_t id = started_run(console);

  console->close();
  auto signals = sent_of(p, Opcode::MON2P_SIGNAL);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].vnode, 1u);
  auto signal = wire::decode<wire::Ctl2pRunSignal>(signals[0].payload);
  EXPECT_EQ(signal->run, id);
  EXPECT_EQ(signal->signo, SIGHUP);
  // Its output has nowhere to go now; the run lasts until its exit.
  auto reply = request(p, Opcode::P2MON_OUTPUT, output(id, wire::RunStream::kStdout, "late"));
  EXPECT_EQ(reply.status, ENOENT);
  EXPECT_EQ(vnodes().at(0).processes, 1u);
  EXPECT_EQ(request(p, Opcode::P2MON_EXIT, exit_of(id, 129)).status, 0);
  EXPECT_EQ(vnodes().at(0).processes, 0u);
}

TEST_F(MonitorRunTest, AConsoleThatLeavesBeforeTheStartHangsUpOnceStarted) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  ASSERT_EQ(create("web").status, 0);
  auto console = make_peer("console");
  p->hold = true;  // the program takes a while to start
  wire::Ctl2pRunRequest head{};
  head.vnode_name.set("web");
  send(console, Opcode::CTL2MON_RUN, wire::encode_run(head, "/", {"sleep", "9"}, {}).value());
  console->close();
  EXPECT_TRUE(sent_of(p, Opcode::MON2P_SIGNAL).empty());
  wire::Ctl2pRunReply started{};
  started.run = 1;
  p->answer_held(0, bytes_of(started));
  auto signals = sent_of(p, Opcode::MON2P_SIGNAL);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(wire::decode<wire::Ctl2pRunSignal>(signals[0].payload)->signo, SIGHUP);
}

TEST_F(MonitorRunTest, PsMergesTheAnswersOfEveryPcomponent) {
  NodeId p1_id, p2_id, p3_id;
  auto p1 = pcomponent("p1", p1_id);
  auto p2 = pcomponent("p2", p2_id);
  auto p3 = pcomponent("p3", p3_id);
  ASSERT_EQ(create("web").status, 0);
  ASSERT_EQ(create("db").status, 0);
  auto process = [](VnodeId vnode, int32_t pid, std::string_view command) {
    wire::ProcessRecord record{};
    record.vnode = vnode;
    record.pid = pid;
    record.state = 'S';
    record.command.set(command);
    return record;
  };
  auto answer_with = [](std::vector<wire::ProcessRecord> records) {
    return [records](const FakePeer::Sent& sent) -> std::pair<int, std::string> {
      if (sent.opcode != Opcode::MON2P_PS) return {0, ""};
      auto bytes = wire::encode_cluster_list(records);
      return {0, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())};
    };
  };
  p1->answer = answer_with({process(1, 2, "bash"), process(2, 5, "postgres")});
  p2->answer = answer_with({process(1, 1, "init")});
  p3->answer = [](const FakePeer::Sent&) { return std::pair<int, std::string>(EIO, "wedged"); };

  wire::Ctl2monPsRequest all{};
  auto console = make_peer("console");
  auto reply = request(console, Opcode::CTL2MON_PS, wire::encode(all));
  ASSERT_EQ(reply.status, 0) << text_of(reply.payload);
  auto list = wire::decode_cluster_list<wire::ProcessRecord>(reply.payload);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->first.unanswered, 1u);
  auto& records = list->second;
  ASSERT_EQ(records.size(), 3u);
  // By vNode name, then pComponent, then pid; names and places filled in.
  EXPECT_EQ(records[0].vnode_name.view(), "db");
  EXPECT_EQ(records[0].pcomponent, p1_id);
  EXPECT_EQ(records[1].vnode_name.view(), "web");
  EXPECT_EQ(records[1].pcomponent, p1_id);
  EXPECT_EQ(records[1].command.view(), "bash");
  EXPECT_EQ(records[2].pcomponent, p2_id);

  // One vNode: its id goes to the pComponents; an unknown name is refused.
  wire::Ctl2monPsRequest one{};
  one.vnode_name.set("db");
  request(console, Opcode::CTL2MON_PS, wire::encode(one));
  auto asked = sent_of(p1, Opcode::MON2P_PS);
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(wire::decode<wire::Mon2pPsRequest>(asked[1].payload)->vnode, 2u);
  one.vnode_name.set("nope");
  reply = request(console, Opcode::CTL2MON_PS, wire::encode(one));
  EXPECT_EQ(reply.status, ENOENT);
  EXPECT_EQ(text_of(reply.payload), "no vnode named 'nope'");
}

TEST_F(MonitorRunTest, StatsHoldTheMonitorsCountersThenEachPcomponents) {
  NodeId p_id;
  auto p = pcomponent("p", p_id);
  p->answer = [](const FakePeer::Sent& sent) -> std::pair<int, std::string> {
    if (sent.opcode != Opcode::MON2P_STATS) return {0, ""};
    auto bytes = wire::encode_cluster_list(std::vector<wire::StatRecord>{
        wire::make_stat("tracer", "stops", 12), wire::make_stat("syscalls", "mmap", 3)});
    return {0, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())};
  };
  auto console = make_peer("console");
  auto reply = request(console, Opcode::CTL2MON_STATS);
  ASSERT_EQ(reply.status, 0);
  auto list = wire::decode_cluster_list<wire::StatRecord>(reply.payload);
  ASSERT_TRUE(list.ok());
  auto& records = list->second;
  ASSERT_GE(records.size(), 3u);
  EXPECT_EQ(records.front().node, kMonitorNodeId);
  EXPECT_EQ(records.front().group.view(), "runs");
  // The monitor's fabric group follows its runs, still as node 1.
  auto fabric = std::find_if(records.begin(), records.end(),
                             [](const auto& r) { return r.group.view() == "fabric"; });
  ASSERT_NE(fabric, records.end());
  EXPECT_EQ(fabric->node, kMonitorNodeId);
  EXPECT_EQ(fabric->name.view(), "kind_tcp");
  EXPECT_EQ(records[records.size() - 3].node, kMonitorNodeId);
  EXPECT_EQ(records[records.size() - 2].node, p_id);
  EXPECT_EQ(records[records.size() - 2].name.view(), "stops");
  EXPECT_EQ(records.back().value, 3u);
}

TEST(MonitorServerStopTest, QueuedRequestsFailWithShutdownAfterStop) {
  MonitorServer server(MonitorServer::Options{});
  server.start();
  server.stop();
  FakeTransport fabric;  // stops before the server goes
  auto address = fabric.listen(Address{"fake", 0}, server.dispatcher().handler()).value();
  FakeTransport console;
  auto connection = console.connect(address).value();
  wire::Ctl2monVnodeCreateRequest create{};
  create.name.set("web");
  auto reply = connection->call(Opcode::CTL2MON_VNODE_CREATE, kNoVnode, wire::encode(create));
  ASSERT_TRUE(reply) << reply.error().text();
  EXPECT_EQ(reply->status(), ESHUTDOWN);
}

}  // namespace
}  // namespace sk::monitor
