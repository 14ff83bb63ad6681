// Each component's request handlers against hostile input: truncated,
// oversized, garbage, wrong-vNode and unknown-opcode requests each get an
// error reply (never a crash, never silence), and a valid request still
// works afterwards. Driven through the Dispatcher over the fake fabric
// (tests/unit/fake_transport.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "kernel/wire/codec.h"
#include "kernel/wire/memory_messages.h"
#include "mcomponent/mcomponent.h"
#include "pcomponent/pcomponent.h"
#include "scomponent/scomponent.h"
#include "tests/unit/fake_transport.h"

namespace sk {
namespace {

namespace fs = std::filesystem;
using testing::dispatch;
using testing::make_request;
using wire::kPageSize;
using wire::Opcode;

constexpr uint64_t kBase = 0x400000;

wire::Bytes setup_body(VnodeId vnode, std::string_view name, uint64_t memory = 0) {
  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = vnode;
  setup.memory = memory;
  setup.name.set(name);
  return wire::encode(setup);
}

wire::Bytes teardown_body(VnodeId vnode) {
  wire::Mon2cVnodeDestroyRequest teardown{};
  teardown.vnode = vnode;
  return wire::encode(teardown);
}

wire::Bytes range_body(uint64_t mm, uint64_t address, uint32_t count, wire::ByteView tail = {}) {
  wire::P2mPageRange range{};
  range.mm = mm;
  range.address = address;
  range.count = count;
  return wire::encode(range, tail);
}

wire::Bytes garbage(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  wire::Bytes bytes(size);
  for (auto& b : bytes) b = std::byte(static_cast<uint8_t>(random()));
  return bytes;
}

// Expects an error reply with `code` (or any error when code is 0).
#define EXPECT_REFUSED(reply, code)                                    \
  do {                                                                 \
    auto _reply = (reply);                                             \
    EXPECT_NE(_reply.status, 0) << "accepted";                         \
    if ((code) != 0) {                                                 \
      EXPECT_EQ(_reply.status, (code)) << _reply.text();               \
    }                                                                  \
    EXPECT_FALSE(_reply.text().empty()) << "an error needs a message"; \
  } while (0)

// The malformed vNode set-up and tear-down requests every component must
// refuse; `create`/`destroy` are its MON2x_ opcodes.
void expect_bad_vnode_requests_refused(const rpc::Dispatcher& dispatcher, Opcode create,
                                       Opcode destroy) {
  auto valid = setup_body(1, "web");
  // Truncated and oversized.
  EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 1, {})), EBADMSG);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(create, 1, wire::Bytes(valid.begin(), valid.end() - 1))),
      EBADMSG);
  auto longer = valid;
  longer.push_back(std::byte{0});
  EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 1, longer)), EBADMSG);
  // Garbage of the right size: an unterminated or invalid name.
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(create, 1, wire::Bytes(valid.size(), std::byte{0xff}))),
      EINVAL);
  for (uint32_t seed = 0; seed < 50; ++seed) {
    EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 1, garbage(valid.size(), seed))), 0);
  }
  // Names that would be paths.
  for (auto name : {"../etc", "a/b", "", "..", "UPPER"}) {
    EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 1, setup_body(1, name))), EINVAL);
  }
  // Wrong vNode: the body and the header disagree, or name vNode 0.
  EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 2, setup_body(1, "web"))), EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(create, 0, setup_body(0, "web"))), EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(destroy, 2, teardown_body(1))), EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(destroy, 1, wire::Bytes(3))), EBADMSG);
  // Destroying a vNode that is not there.
  EXPECT_REFUSED(dispatch(dispatcher, make_request(destroy, 77, teardown_body(77))), ENOENT);
}

// Unknown opcodes, and other components' opcodes, are refused.
void expect_foreign_opcodes_refused(const rpc::Dispatcher& dispatcher,
                                    std::initializer_list<Opcode> served) {
  EXPECT_REFUSED(dispatch(dispatcher, make_request(uint16_t{0x7777}, 1, {})), EOPNOTSUPP);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(uint16_t{0xffff}, 1, garbage(64, 1))),
                 EOPNOTSUPP);
  for (uint16_t raw : {0x0101, 0x0202, 0x0301, 0x0311, 0x0321, 0x0401, 0x0404}) {
    bool serves = false;
    for (auto opcode : served) serves |= static_cast<uint16_t>(opcode) == raw;
    if (!serves) {
      EXPECT_REFUSED(dispatch(dispatcher, make_request(raw, 1, {})), EOPNOTSUPP);
    }
  }
}

// Every opcode with garbage of many sizes gets exactly one reply.
void expect_every_request_answered(const rpc::Dispatcher& dispatcher) {
  uint32_t seed = 1000;
  testing::DispatchLink link(dispatcher);
  uint64_t sent = 0;
  for (uint16_t raw = 0x0000; raw <= 0x0410; ++raw) {
    if (!wire::is_known_opcode(raw)) continue;
    for (size_t size : {0, 1, 7, 8, 9, 23, 24, 25, 56, 57, 80, 4096 + 24, 4096 + 23}) {
      ++seed;
      auto reply = link.call(make_request(raw, 1 + seed % 3, garbage(size, seed)));
      ++sent;
      // A negative status is the transport's: no reply came.
      EXPECT_GE(reply.status, 0) << wire::opcode_name(raw) << " with " << size << " bytes";
      EXPECT_EQ(link.client().counters().messages_received, sent)
          << wire::opcode_name(raw) << " with " << size << " bytes";
    }
  }
}

// ---- mComponent -------------------------------------------------------------

TEST(ComponentProtocol, McomponentRefusesBadRequestsAndKeepsServing) {
  mcomponent::Mcomponent component(64 * kPageSize);
  const auto& dispatcher = component.dispatcher();

  expect_bad_vnode_requests_refused(dispatcher, Opcode::MON2M_VNODE_CREATE,
                                    Opcode::MON2M_VNODE_DESTROY);
  expect_foreign_opcodes_refused(
      dispatcher,
      {Opcode::MON2M_VNODE_CREATE, Opcode::MON2M_VNODE_DESTROY, Opcode::P2M_MM_CREATE,
       Opcode::P2M_MM_FREE, Opcode::P2M_PAGE_READ, Opcode::P2M_PAGE_WRITE, Opcode::P2M_PAGE_FREE,
       Opcode::P2M_MM_FORK, Opcode::P2M_PAGE_MOVE});
  expect_every_request_answered(dispatcher);

  auto created = dispatch(
      dispatcher, make_request(Opcode::MON2M_VNODE_CREATE, 1, setup_body(1, "web", 8 * kPageSize)));
  ASSERT_EQ(created.status, 0) << created.text();
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2M_VNODE_CREATE, 2, setup_body(2, "db"))).status,
      0);

  // P2M_MM_CREATE: a body, an unknown vNode.
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_MM_CREATE, 1, wire::Bytes(8))),
                 EBADMSG);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_MM_CREATE, 99)), ENOENT);
  auto mm_reply = dispatch(dispatcher, make_request(Opcode::P2M_MM_CREATE, 1));
  ASSERT_EQ(mm_reply.status, 0) << mm_reply.text();
  uint64_t mm = wire::decode<wire::P2mMmCreateReply>(mm_reply.payload).value().mm;

  // P2M_PAGE_WRITE: the tail must be exactly count pages.
  auto page = garbage(kPageSize, 7);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 1, range_body(mm, kBase, 2, page))),
      EBADMSG);
  auto long_tail = garbage(kPageSize + 1, 7);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 1,
                                                   range_body(mm, kBase, 1, long_tail))),
                 EBADMSG);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 1, wire::Bytes(10))),
                 EBADMSG);
  // Bad ranges.
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 1, range_body(mm, kBase + 1, 1))),
      EINVAL);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 1, range_body(mm, kBase, 0))),
      EINVAL);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 1, range_body(mm, kBase, 5000))),
      EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 1,
                                                   range_body(mm, ~uint64_t{0} & ~4095ull, 2))),
                 EINVAL);
  // P2M_PAGE_MOVE: aligned, 1..kMaxPagesPerMove pages, no wrap, own mm.
  auto move_body = [](uint64_t mm, uint64_t from, uint64_t to, uint32_t count) {
    return wire::encode(wire::P2mPageMoveRequest{mm, from, to, count, 0});
  };
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_MOVE, 1,
                                                   move_body(mm, kBase + 1, kBase + kPageSize, 1))),
                 EINVAL);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_MOVE, 1, move_body(mm, kBase, kBase, 0))),
      EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_MOVE, 1,
                                                   move_body(mm, kBase, ~uint64_t{0} & ~4095ull, 2))),
                 EINVAL);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_MOVE, 2,
                                                   move_body(mm, kBase, kBase + kPageSize, 1))),
                 EPERM);
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_MOVE, 1, wire::Bytes(31))),
                 EBADMSG);

  // Over quota (8 pages).
  auto nine = garbage(9 * kPageSize, 3);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 1, range_body(mm, kBase, 9, nine))),
      ENOMEM);

  // Wrong vNode: vNode 2 names vNode 1's mm.
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 2, range_body(mm, kBase, 1))),
      EPERM);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 2, range_body(mm, kBase, 1, page))),
      EPERM);
  wire::P2mMmFreeRequest free{};
  free.mm = mm;
  EXPECT_REFUSED(dispatch(dispatcher, make_request(Opcode::P2M_MM_FREE, 2, wire::encode(free))),
                 EPERM);
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 1, range_body(mm + 100, kBase, 1))),
      ENOENT);

  // And valid requests still work.
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_WRITE, 1, range_body(mm, kBase, 1, page)))
          .status,
      0);
  auto read =
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 1, range_body(mm, kBase, 2)));
  ASSERT_EQ(read.status, 0) << read.text();
  ASSERT_EQ(read.payload.size(), 2 * kPageSize);
  EXPECT_TRUE(std::equal(page.begin(), page.end(), read.payload.begin()));
  EXPECT_TRUE(std::all_of(read.payload.begin() + kPageSize, read.payload.end(),
                          [](std::byte b) { return b == std::byte{0}; }));
  auto usage = component.usage();
  EXPECT_EQ(usage.usage, kPageSize);
  EXPECT_EQ(usage.load, 2u);
  EXPECT_EQ(usage.capacity, 64 * kPageSize);

  EXPECT_EQ(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 1, range_body(mm, kBase, 1))).status,
      0);
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_MM_FREE, 1, wire::encode(free))).status,
            0);
  EXPECT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2M_VNODE_DESTROY, 1, teardown_body(1))).status,
      0);
  EXPECT_EQ(component.usage().load, 1u);
}

// A reply lost on the fabric: the client's call times out cleanly, the
// request was still served (an mm was made), and the link keeps working.
TEST(ComponentProtocol, McomponentReplyLostOnTheFabricTimesOutAndServingGoesOn) {
  mcomponent::Mcomponent component(64 * kPageSize);
  testing::DispatchLink link(component.dispatcher());
  ASSERT_EQ(link.call(make_request(Opcode::MON2M_VNODE_CREATE, 1, setup_body(1, "web"))).status, 0);
  link.server().inject(testing::Fault{.kind = testing::FaultKind::kDrop,
                                      .on = testing::FaultOn::kReplies,
                                      .opcode = Opcode::P2M_MM_CREATE,
                                      .count = 1});
  auto lost = link.call(make_request(Opcode::P2M_MM_CREATE, 1), std::chrono::milliseconds(200));
  EXPECT_EQ(lost.status, -ETIMEDOUT) << lost.text();
  auto next = link.call(make_request(Opcode::P2M_MM_CREATE, 1));
  ASSERT_EQ(next.status, 0) << next.text();
  EXPECT_TRUE(wire::decode<wire::P2mMmCreateReply>(next.payload));
  // The server ran the request whose reply was lost.
  EXPECT_EQ(component.dispatcher().served()["P2M_MM_CREATE"], 2u);
}

// ---- sComponent -------------------------------------------------------------

class ScomponentProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "sk-scomponent-XXXXXX").string();
    m_data = ::mkdtemp(pattern.data());
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(m_data, error);
  }
  fs::path m_data;
};

TEST_F(ScomponentProtocol, RefusesBadRequestsAndKeepsServing) {
  scomponent::Scomponent::Options options;
  options.data = m_data;
  options.capacity = 1 << 30;
  auto created = scomponent::Scomponent::create(options);
  ASSERT_TRUE(created) << created.error().text();
  auto& component = **created;
  const auto& dispatcher = component.dispatcher();

  expect_bad_vnode_requests_refused(dispatcher, Opcode::MON2S_VNODE_CREATE,
                                    Opcode::MON2S_VNODE_DESTROY);
  expect_foreign_opcodes_refused(dispatcher,
                                 {Opcode::MON2S_VNODE_CREATE, Opcode::MON2S_VNODE_DESTROY});
  expect_every_request_answered(dispatcher);
  // Nothing of the above made a tree.
  EXPECT_TRUE(fs::is_empty(m_data / "vnodes"));

  auto made =
      dispatch(dispatcher, make_request(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "web")));
  ASSERT_EQ(made.status, 0) << made.text();
  EXPECT_TRUE(fs::is_directory(m_data / "vnodes" / "web"));
  EXPECT_EQ(component.usage().load, 1u);
  EXPECT_EQ(component.usage().capacity, 1u << 30);

  auto gone = dispatch(dispatcher, make_request(Opcode::MON2S_VNODE_DESTROY, 1, teardown_body(1)));
  ASSERT_EQ(gone.status, 0) << gone.text();
  EXPECT_FALSE(fs::exists(m_data / "vnodes" / "web"));

  // After stop() requests are refused, not dropped.
  component.stop();
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::MON2S_VNODE_CREATE, 1, setup_body(1, "web"))),
      ESHUTDOWN);
}

TEST_F(ScomponentProtocol, CapacityDefaultsToFreeSpace) {
  scomponent::Scomponent::Options options;
  options.data = m_data / "fresh";
  auto created = scomponent::Scomponent::create(options);
  ASSERT_TRUE(created) << created.error().text();
  EXPECT_GT((*created)->usage().capacity, 0u);
  EXPECT_TRUE(fs::is_directory(m_data / "fresh" / "vnodes"));
}

// ---- pComponent -------------------------------------------------------------

// Records what the pComponent asks of its storage; mounts nothing.
class FakeStorage final : public pcomponent::Storage {
 public:
  Result<fs::path> root(const pcomponent::VnodeStorage& vnode) override {
    std::lock_guard lock(m_mutex);
    if (vnode.name == "unmountable") return make_error(EIO, "no FUSE here");
    m_roots[vnode.vnode] = vnode;
    return fs::path("/run/test") / vnode.name;
  }
  Result<fs::path> root(VnodeId vnode) override {
    std::lock_guard lock(m_mutex);
    if (!m_roots.contains(vnode)) return make_error(ENOENT, "unknown");
    return fs::path("/run/test") / m_roots[vnode].name;
  }
  void drop(VnodeId vnode) override {
    std::lock_guard lock(m_mutex);
    m_roots.erase(vnode);
  }
  pcomponent::StorageStats stats() override { return {}; }

  std::map<VnodeId, pcomponent::VnodeStorage> roots() {
    std::lock_guard lock(m_mutex);
    return m_roots;
  }

 private:
  std::mutex m_mutex;
  std::map<VnodeId, pcomponent::VnodeStorage> m_roots;
};

TEST(ComponentProtocol, PcomponentRefusesBadRequestsAndKeepsServing) {
  FakeStorage storage;
  pcomponent::Pcomponent component(256 << 20, storage);
  const auto& dispatcher = component.dispatcher();

  expect_bad_vnode_requests_refused(dispatcher, Opcode::MON2P_VNODE_CREATE,
                                    Opcode::MON2P_VNODE_DESTROY);
  expect_foreign_opcodes_refused(dispatcher,
                                 {Opcode::MON2P_VNODE_CREATE, Opcode::MON2P_VNODE_DESTROY});
  expect_every_request_answered(dispatcher);
  EXPECT_TRUE(component.vnodes().empty());

  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = 4;
  setup.cache = 64 << 20;
  setup.name.set("web");
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 4, wire::encode(setup))).status,
      0);
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 5, setup_body(5, "db"))).status,
      0);
  // Re-sent (the monitor may): still one entry.
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 4, wire::encode(setup))).status,
      0);
  auto vnodes = component.vnodes();
  ASSERT_EQ(vnodes.size(), 2u);
  EXPECT_EQ(vnodes[4].name, "web");
  EXPECT_EQ(vnodes[4].cache, uint64_t{64} << 20);
  EXPECT_EQ(vnodes[5].cache, uint64_t{256} << 20);  // 0: the whole ExCache

  auto usage = component.usage();
  EXPECT_EQ(usage.capacity, uint64_t{256} << 20);
  EXPECT_EQ(usage.usage, 0u);
  EXPECT_EQ(usage.load, 0u);

  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_DESTROY, 4, teardown_body(4))).status,
      0);
  EXPECT_EQ(component.vnodes().size(), 1u);
  // No sComponent address: recorded, but nothing mounted.
  EXPECT_TRUE(storage.roots().empty());
}

TEST(ComponentProtocol, PcomponentMountsTheRootItIsTold) {
  FakeStorage storage;
  pcomponent::Pcomponent component(256 << 20, storage);
  const auto& dispatcher = component.dispatcher();

  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = 3;
  setup.name.set("web");
  setup.scomponent.set("127.0.0.1:7001");
  auto made =
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 3, wire::encode(setup)));
  ASSERT_EQ(made.status, 0) << made.text();
  auto roots = storage.roots();
  ASSERT_EQ(roots.size(), 1u);
  EXPECT_EQ(roots[3].name, "web");
  EXPECT_EQ(roots[3].scomponent.to_string(), "127.0.0.1:7001");
  EXPECT_EQ(component.vnodes()[3].scomponent, "127.0.0.1:7001");

  // A bad address, and a mount that fails, fail the create.
  setup.scomponent.set("no port");
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 3, wire::encode(setup))),
      EINVAL);
  setup.vnode = 4;
  setup.name.set("unmountable");
  setup.scomponent.set("127.0.0.1:7001");
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 4, wire::encode(setup))), EIO);
  EXPECT_FALSE(component.vnodes().contains(4));

  // Destroy unmounts.
  ASSERT_EQ(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_DESTROY, 3, teardown_body(3))).status,
      0);
  EXPECT_TRUE(storage.roots().empty());

  // After stop(), refused rather than dropped.
  component.stop();
  EXPECT_REFUSED(
      dispatch(dispatcher, make_request(Opcode::MON2P_VNODE_CREATE, 5, setup_body(5, "x"))),
      ESHUTDOWN);
}

}  // namespace
}  // namespace sk
