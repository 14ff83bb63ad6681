// Wire protocol decoding: every decoder must turn truncated, oversized and
// garbage input into an Error, and accept exactly the well-formed messages.
#include <gtest/gtest.h>

#include <random>

#include "kernel/node.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/opcodes.h"

namespace wire = sk::wire;
using wire::Bytes;

namespace {

wire::C2monJoinRequest good_join() {
  wire::C2monJoinRequest join{};
  join.kind = static_cast<uint8_t>(sk::NodeKind::kMcomponent);
  join.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  join.capacity = 1 << 30;
  join.address.set("127.0.0.1:4000");
  return join;
}

TEST(Wire, RoundTripOfAFixedMessage) {
  auto bytes = wire::encode(good_join());
  auto decoded = wire::decode<wire::C2monJoinRequest>(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().text();
  EXPECT_EQ(decoded->capacity, 1u << 30);
  EXPECT_EQ(decoded->address.view(), "127.0.0.1:4000");
}

TEST(Wire, TruncatedAndOversizedAreRejected) {
  auto bytes = wire::encode(good_join());
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto decoded = wire::decode<wire::C2monJoinRequest>(wire::ByteView(bytes).first(length));
    ASSERT_FALSE(decoded.ok()) << "length " << length;
    EXPECT_EQ(decoded.error().code(), EBADMSG);
  }
  bytes.push_back(std::byte{0});
  EXPECT_FALSE(wire::decode<wire::C2monJoinRequest>(bytes).ok());
}

TEST(Wire, InvalidFieldsAreRejected) {
  auto bad_kind = good_join();
  bad_kind.kind = 99;
  EXPECT_FALSE(wire::decode<wire::C2monJoinRequest>(wire::encode(bad_kind)).ok());
  auto monitor_kind = good_join();
  monitor_kind.kind = static_cast<uint8_t>(sk::NodeKind::kMonitor);
  EXPECT_FALSE(wire::decode<wire::C2monJoinRequest>(wire::encode(monitor_kind)).ok());
  auto bad_fabric = good_join();
  bad_fabric.fabric = 0;
  EXPECT_FALSE(wire::decode<wire::C2monJoinRequest>(wire::encode(bad_fabric)).ok());
  auto unterminated = good_join();
  std::memset(unterminated.address.bytes, 'a', sizeof unterminated.address.bytes);
  EXPECT_FALSE(wire::decode<wire::C2monJoinRequest>(wire::encode(unterminated)).ok());
}

TEST(Wire, VnodeNamesAreConfined) {
  EXPECT_TRUE(wire::validate_vnode_name("default").ok());
  EXPECT_TRUE(wire::validate_vnode_name("web-1_a").ok());
  for (const char* bad : {"", "..", "a/b", "-x", "Upper", "a b", "../etc",
                          "abcdefghijklmnopqrstuvwxyz0123456"}) {
    EXPECT_FALSE(wire::validate_vnode_name(bad).ok()) << bad;
  }
  wire::Ctl2monVnodeCreateRequest request{};
  request.name.set("../../etc");
  EXPECT_FALSE(wire::decode<wire::Ctl2monVnodeCreateRequest>(wire::encode(request)).ok());
}

TEST(Wire, PageRangeChecks) {
  wire::P2mPageRange range{1, 0x1000, 1, 0};
  EXPECT_TRUE(wire::decode<wire::P2mPageRange>(wire::encode(range)).ok());
  range.address = 0x1001;
  EXPECT_FALSE(wire::decode<wire::P2mPageRange>(wire::encode(range)).ok());
  range.address = 0x1000;
  range.count = 0;
  EXPECT_FALSE(wire::decode<wire::P2mPageRange>(wire::encode(range)).ok());
  range.count = wire::kMaxPagesPerMessage + 1;
  EXPECT_FALSE(wire::decode<wire::P2mPageRange>(wire::encode(range)).ok());
  range.count = 2;
  range.address = ~0ull & ~0xfffull;
  EXPECT_FALSE(wire::decode<wire::P2mPageRange>(wire::encode(range)).ok());
}

TEST(Wire, TailDecoding) {
  wire::P2mPageRange range{1, 0x2000, 1, 0};
  Bytes page(wire::kPageSize, std::byte{7});
  auto bytes = wire::encode(range, page);
  auto decoded = wire::decode_with_tail<wire::P2mPageRange>(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->second.size(), wire::kPageSize);
  EXPECT_FALSE(wire::decode_with_tail<wire::P2mPageRange>(wire::ByteView(bytes).first(10)).ok());
}

TEST(Wire, RecordListsMustMatchTheirCount) {
  wire::VnodeRecord record{};
  record.name.set("default");
  Bytes two = wire::encode(record, wire::as_bytes(record));
  EXPECT_TRUE(wire::decode_records<wire::VnodeRecord>(two, 2).ok());
  EXPECT_FALSE(wire::decode_records<wire::VnodeRecord>(two, 3).ok());
  EXPECT_FALSE(wire::decode_records<wire::VnodeRecord>(wire::ByteView(two).first(100), 1).ok());
  EXPECT_FALSE(wire::decode_records<wire::VnodeRecord>(two, 0xffffffffu).ok());
}

TEST(Wire, HeaderChecks) {
  wire::Header header{};
  header.magic = wire::kMagic;
  header.version = wire::kVersion;
  EXPECT_TRUE(wire::check_header(header).ok());
  header.payload_length = wire::kMaxPayload + 1;
  EXPECT_EQ(wire::check_header(header).error().code(), EMSGSIZE);
  header.payload_length = 0;
  header.flags = 0x80;
  EXPECT_FALSE(wire::check_header(header).ok());
  header.flags = 0;
  header.magic = 0xdeadbeef;
  EXPECT_EQ(wire::check_header(header).error().code(), EPROTO);
}

TEST(Wire, OpcodeNames) {
  EXPECT_EQ(wire::opcode_name(0x0403), "P2M_PAGE_READ");
  EXPECT_EQ(wire::opcode_name(0xbeef), "unknown");
  EXPECT_TRUE(wire::is_known_opcode(static_cast<uint16_t>(wire::Opcode::C2MON_JOIN)));
  EXPECT_FALSE(wire::is_known_opcode(0));
}

// Random bytes through every decoder: errors are fine, crashes are not (run
// under SAN=1 this also catches out-of-bounds reads).
TEST(Wire, RandomBytesNeverCrashDecoders) {
  std::mt19937 random(1234);
  for (int round = 0; round < 2000; ++round) {
    Bytes bytes(random() % 160);
    for (auto& b : bytes) b = std::byte(random());
    (void)wire::decode<wire::C2monJoinRequest>(bytes);
    (void)wire::decode<wire::C2monHeartbeat>(bytes);
    (void)wire::decode<wire::Ctl2monVnodeCreateRequest>(bytes);
    (void)wire::decode<wire::Mon2cVnodeCreateRequest>(bytes);
    (void)wire::decode_with_tail<wire::P2mPageRange>(bytes);
    (void)wire::decode_records<wire::NodeRecord>(bytes, random() % 4);
    wire::Header header{};
    if (bytes.size() >= sizeof header) std::memcpy(&header, bytes.data(), sizeof header);
    (void)wire::check_header(header);
  }
}

}  // namespace
