// GMM: which mComponent holds the next vRegion of a vNode's memory
// (monitor/memory_placement.h), and the P2MON_MEMORY_PLACE handler.
#include "monitor/memory_placement.h"

#include <gtest/gtest.h>

#include <map>

#include "kernel/wire/codec.h"
#include "tests/unit/fake_transport.h"

namespace sk::monitor {
namespace {

using namespace std::chrono_literals;

constexpr VnodeId kVnode = 3;
constexpr uint64_t kRegion = 64ull << 20;

wire::C2monJoinRequest join_request(NodeKind kind, std::string_view address, uint64_t capacity) {
  wire::C2monJoinRequest request{};
  request.kind = static_cast<uint8_t>(kind);
  request.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  request.capacity = capacity;
  request.address.set(address);
  return request;
}

class Placement : public ::testing::Test {
 protected:
  NodeId add(NodeKind kind, std::string_view address, uint64_t capacity, bool serves = true) {
    NodeId id = m_members.join(join_request(kind, address, capacity), nullptr, m_t0, 0);
    if (serves) m_members.find(id)->vnodes.insert(kVnode);
    return id;
  }

  Clock::time_point m_t0 = Clock::now();
  Membership m_members{"127.0.0.1:7070", wire::FabricKind::kTcp, 2s, 0};
  PlacementLedger m_ledger;
};

TEST_F(Placement, NoMcomponentServingTheVnodeIsHostUnreachable) {
  EXPECT_EQ(place_memory(m_members, m_ledger, kVnode, kRegion, m_t0).error().code(), EHOSTUNREACH);
  add(NodeKind::kPcomponent, "p:1", 1ull << 30);
  add(NodeKind::kMcomponent, "m:1", 1ull << 30, /*serves=*/false);
  EXPECT_EQ(place_memory(m_members, m_ledger, kVnode, kRegion, m_t0).error().code(), EHOSTUNREACH);
}

TEST_F(Placement, ConsecutiveVregionsSpreadOverEqualMcomponents) {
  NodeId a = add(NodeKind::kMcomponent, "m:1", 1ull << 30);
  NodeId b = add(NodeKind::kMcomponent, "m:2", 1ull << 30);
  std::map<NodeId, int> placed;
  for (int i = 0; i < 8; ++i) {
    auto reply = place_memory(m_members, m_ledger, kVnode, kRegion, m_t0 + i * 1ms);
    ASSERT_TRUE(reply) << reply.error().text();
    ++placed[reply->node];
    EXPECT_EQ(reply->address.view(), reply->node == a ? "m:1" : "m:2");
  }
  EXPECT_EQ(placed[a], 4);
  EXPECT_EQ(placed[b], 4);
}

TEST_F(Placement, MoreFreeSpaceTakesMoreAndFailedNodesNone) {
  NodeId big = add(NodeKind::kMcomponent, "m:1", 3ull << 30);
  NodeId small = add(NodeKind::kMcomponent, "m:2", 1ull << 30);
  NodeId dead = add(NodeKind::kMcomponent, "m:3", 8ull << 30);
  m_members.find(dead)->state = NodeState::kFailed;
  std::map<NodeId, int> placed;
  for (int i = 0; i < 32; ++i) {
    ++placed[place_memory(m_members, m_ledger, kVnode, kRegion, m_t0).value().node];
  }
  EXPECT_EQ(placed[dead], 0);
  EXPECT_EQ(placed[big] + placed[small], 32);
  EXPECT_GT(placed[big], placed[small]);
  // Heartbeats show what is stored: a full mComponent takes nothing more.
  m_members.heartbeat(wire::C2monHeartbeat{big, 0, 3ull << 30, 3ull << 30}, m_t0);
  PlacementLedger fresh;
  EXPECT_EQ(place_memory(m_members, fresh, kVnode, kRegion, m_t0).value().node, small);
}

TEST_F(Placement, RecentPlacementsAreForgottenAfterAWhile) {
  NodeId a = add(NodeKind::kMcomponent, "m:1", 1ull << 30);
  add(NodeKind::kMcomponent, "m:2", 1ull << 30);
  EXPECT_EQ(place_memory(m_members, m_ledger, kVnode, kRegion, m_t0).value().node, a);
  EXPECT_EQ(m_ledger.recent(a, m_t0), kRegion);
  EXPECT_EQ(m_ledger.recent(a, m_t0 + kPlacementMemory), 0u);
  EXPECT_EQ(place_memory(m_members, m_ledger, kVnode, kRegion, m_t0 + kPlacementMemory).value().node,
            a);
}

TEST_F(Placement, TheHandlerAnswersAndChecksItsRequest) {
  add(NodeKind::kMcomponent, "m:1", 1ull << 30);
  std::mutex mutex;
  rpc::ControlDispatcher dispatcher("monitor");
  register_memory_placement(dispatcher, mutex, m_members);
  testing::DispatchLink link(dispatcher, kNoNode);
  auto ask = [&](VnodeId header_vnode, wire::Bytes payload) {
    return link.call(
        testing::make_request(wire::Opcode::P2MON_MEMORY_PLACE, header_vnode, std::move(payload)));
  };
  auto good = ask(kVnode, wire::encode(wire::P2monMemoryPlaceRequest{kVnode, 0, kRegion}));
  ASSERT_EQ(good.status, 0) << good.text();
  auto reply = wire::decode<wire::P2monMemoryPlaceReply>(good.payload);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->address.view(), "m:1");
  EXPECT_EQ(ask(kVnode + 1, wire::encode(wire::P2monMemoryPlaceRequest{kVnode, 0, kRegion})).status,
            EINVAL);
  EXPECT_EQ(ask(kVnode, wire::encode(wire::P2monMemoryPlaceRequest{kVnode, 0, 0})).status, EINVAL);
  EXPECT_EQ(ask(kVnode, wire::Bytes(15)).status, EBADMSG);
  EXPECT_EQ(
      ask(kVnode + 1, wire::encode(wire::P2monMemoryPlaceRequest{kVnode + 1, 0, kRegion})).status,
      EHOSTUNREACH);
}

}  // namespace
}  // namespace sk::monitor
