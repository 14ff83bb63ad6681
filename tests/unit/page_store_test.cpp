// The mComponent's page store: pages round-trip, never-written pages read
// as zeroes, quota and capacity hold (all or nothing), and no vNode can
// touch another's address space.
#include "mcomponent/page_store.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace sk::mcomponent {
namespace {

using wire::kPageSize;

constexpr uint64_t kBase = 0x7f0000000000;

wire::Bytes pattern(uint32_t pages, uint8_t seed) {
  wire::Bytes bytes(static_cast<size_t>(pages) * kPageSize);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = std::byte(static_cast<uint8_t>(seed + i / 7));
  return bytes;
}

wire::Bytes read(PageStore& store, VnodeId vnode, MmId mm, uint64_t address, uint32_t count) {
  wire::Bytes bytes(static_cast<size_t>(count) * kPageSize, std::byte{0xee});
  auto done = store.read_pages(vnode, mm, address, count, bytes);
  EXPECT_TRUE(done) << done.error().text();
  return bytes;
}

bool all_zero(const wire::Bytes& bytes) {
  for (auto b : bytes) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

TEST(PageStore, WrittenPagesReadBackAndOthersReadAsZeroes) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  MmId mm = store.create_mm(1).value();
  auto data = pattern(3, 5);
  ASSERT_TRUE(store.write_pages(1, mm, kBase, 3, data));
  EXPECT_EQ(read(store, 1, mm, kBase, 3), data);
  EXPECT_TRUE(all_zero(read(store, 1, mm, kBase + 3 * kPageSize, 2)));

  // A read straddling written and unwritten pages.
  auto mixed = read(store, 1, mm, kBase - kPageSize, 2);
  EXPECT_TRUE(all_zero(wire::Bytes(mixed.begin(), mixed.begin() + kPageSize)));
  EXPECT_TRUE(std::equal(mixed.begin() + kPageSize, mixed.end(), data.begin()));

  // Overwrite in place costs nothing more.
  auto again = pattern(1, 99);
  ASSERT_TRUE(store.write_pages(1, mm, kBase + kPageSize, 1, again));
  EXPECT_EQ(read(store, 1, mm, kBase + kPageSize, 1), again);
  EXPECT_EQ(store.stats().used, 3 * kPageSize);
}

TEST(PageStore, ForkSharesPagesUntilEitherSideWrites) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 7 * kPageSize));
  MmId parent = store.create_mm(1).value();
  auto data = pattern(4, 1);
  ASSERT_TRUE(store.write_pages(1, parent, kBase, 4, data));
  MmId child = store.fork_mm(1, parent).value();
  EXPECT_NE(child, parent);
  EXPECT_EQ(store.stats().used, 4 * kPageSize) << "a fork copies nothing";
  EXPECT_EQ(read(store, 1, child, kBase, 4), data);

  // The child writes one page: it gets its own copy; the parent is unchanged.
  auto changed = pattern(1, 77);
  ASSERT_TRUE(store.write_pages(1, child, kBase + kPageSize, 1, changed));
  EXPECT_EQ(store.stats().used, 5 * kPageSize);
  EXPECT_EQ(read(store, 1, parent, kBase, 4), data);
  EXPECT_EQ(read(store, 1, child, kBase + kPageSize, 1), changed);
  // Writing the now-private page again costs nothing more.
  ASSERT_TRUE(store.write_pages(1, child, kBase + kPageSize, 1, pattern(1, 78)));
  EXPECT_EQ(store.stats().used, 5 * kPageSize);

  // Breaking sharing counts against the quota, all or nothing: the parent's
  // 3 still-shared pages would need 3 new ones, 8 in all, over the 7 allowed
  // (its 4th page became private when the child copied it).
  EXPECT_EQ(store.write_pages(1, parent, kBase, 4, pattern(4, 9)).error().code(), ENOMEM);
  EXPECT_EQ(read(store, 1, parent, kBase, 4), data);

  // Freeing the parent returns only what the child does not share.
  ASSERT_TRUE(store.free_mm(1, parent));
  EXPECT_EQ(store.stats().used, 4 * kPageSize);
  EXPECT_EQ(read(store, 1, child, kBase, 1), wire::Bytes(data.begin(), data.begin() + kPageSize));
  ASSERT_TRUE(store.free_pages(1, child, kBase, 4));
  EXPECT_EQ(store.stats().used, 0u);

  EXPECT_EQ(store.fork_mm(2, child).error().code(), EPERM);
  EXPECT_EQ(store.fork_mm(1, 999).error().code(), ENOENT);
}

TEST(PageStore, FreedPagesReadAsZeroesAndReturnTheirSpace) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  MmId mm = store.create_mm(1).value();
  ASSERT_TRUE(store.write_pages(1, mm, kBase, 4, pattern(4, 1)));
  // Freeing a range that is partly unwritten is fine.
  ASSERT_TRUE(store.free_pages(1, mm, kBase + 2 * kPageSize, 5));
  EXPECT_EQ(store.stats().used, 2 * kPageSize);
  EXPECT_EQ(store.vnode_stats(1)->used, 2 * kPageSize);
  EXPECT_TRUE(all_zero(read(store, 1, mm, kBase + 2 * kPageSize, 2)));
}

TEST(PageStore, QuotaIsEnforcedAllOrNothing) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "small", 2 * kPageSize));
  MmId mm = store.create_mm(1).value();

  auto refused = store.write_pages(1, mm, kBase, 3, pattern(3, 1));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ENOMEM);
  EXPECT_NE(refused.error().message().find("quota"), std::string::npos);
  EXPECT_EQ(store.stats().used, 0u);
  EXPECT_TRUE(all_zero(read(store, 1, mm, kBase, 3)));

  ASSERT_TRUE(store.write_pages(1, mm, kBase, 2, pattern(2, 1)));
  // Rewriting stored pages needs no quota; a new page does.
  EXPECT_TRUE(store.write_pages(1, mm, kBase, 2, pattern(2, 2)));
  EXPECT_EQ(store.write_pages(1, mm, kBase + 2 * kPageSize, 1, pattern(1, 3)).error().code(),
            ENOMEM);
  // The quota spans the vNode's address spaces.
  MmId other = store.create_mm(1).value();
  EXPECT_EQ(store.write_pages(1, other, kBase, 1, pattern(1, 3)).error().code(), ENOMEM);

  ASSERT_TRUE(store.free_pages(1, mm, kBase, 1));
  EXPECT_TRUE(store.write_pages(1, other, kBase, 1, pattern(1, 3)));
}

TEST(PageStore, CapacityIsEnforcedAcrossVnodes) {
  PageStore store(3 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "a", 0));
  ASSERT_TRUE(store.create_vnode(2, "b", 100 * kPageSize));  // quotas overcommit
  MmId a = store.create_mm(1).value();
  MmId b = store.create_mm(2).value();
  ASSERT_TRUE(store.write_pages(1, a, kBase, 2, pattern(2, 1)));
  auto full = store.write_pages(2, b, kBase, 2, pattern(2, 1));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ENOMEM);
  EXPECT_NE(full.error().message().find("full"), std::string::npos);
  EXPECT_TRUE(store.write_pages(2, b, kBase, 1, pattern(1, 1)));
  EXPECT_EQ(store.stats().used, 3 * kPageSize);
}

TEST(PageStore, AnotherVnodesAddressSpaceIsUntouchable) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "alice", 0));
  ASSERT_TRUE(store.create_vnode(2, "mallory", 0));
  MmId mm = store.create_mm(1).value();
  auto secret = pattern(1, 42);
  ASSERT_TRUE(store.write_pages(1, mm, kBase, 1, secret));

  wire::Bytes out(kPageSize);
  EXPECT_EQ(store.read_pages(2, mm, kBase, 1, out).error().code(), EPERM);
  EXPECT_TRUE(all_zero(out));
  EXPECT_EQ(store.write_pages(2, mm, kBase, 1, pattern(1, 0)).error().code(), EPERM);
  EXPECT_EQ(store.free_pages(2, mm, kBase, 1).error().code(), EPERM);
  EXPECT_EQ(store.free_mm(2, mm).error().code(), EPERM);
  EXPECT_EQ(store.destroy_vnode(2).ok(), true);

  EXPECT_EQ(read(store, 1, mm, kBase, 1), secret);
  EXPECT_EQ(store.vnode_stats(1)->used, kPageSize);
}

TEST(PageStore, UnknownVnodesAndAddressSpacesAreEnoent) {
  PageStore store(64 * kPageSize);
  EXPECT_EQ(store.create_mm(7).error().code(), ENOENT);
  EXPECT_EQ(store.destroy_vnode(7).error().code(), ENOENT);
  ASSERT_TRUE(store.create_vnode(7, "x", 0));
  wire::Bytes out(kPageSize);
  EXPECT_EQ(store.read_pages(7, 12345, kBase, 1, out).error().code(), ENOENT);
  EXPECT_EQ(store.free_mm(7, 12345).error().code(), ENOENT);
}

TEST(PageStore, VnodeCreationChecksAndIsIdempotent) {
  PageStore store(64 * kPageSize);
  EXPECT_EQ(store.create_vnode(0, "zero", 0).error().code(), EINVAL);
  EXPECT_EQ(store.create_vnode(1, "Bad Name", 0).error().code(), EINVAL);
  ASSERT_TRUE(store.create_vnode(1, "web", kPageSize));
  // The monitor may retry: same name updates the quota.
  ASSERT_TRUE(store.create_vnode(1, "web", 2 * kPageSize));
  EXPECT_EQ(store.vnode_stats(1)->quota, 2 * kPageSize);
}

TEST(PageStore, AnIdComingBackWithAnotherNameReplacesTheOldVnode) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  MmId mm = store.create_mm(1).value();
  ASSERT_TRUE(store.write_pages(1, mm, kBase, 2, pattern(2, 1)));
  // A restarted monitor gives id 1 to "db": web's memory must not leak to it.
  ASSERT_TRUE(store.create_vnode(1, "db", kPageSize));
  wire::Bytes out(kPageSize);
  EXPECT_EQ(store.read_pages(1, mm, kBase, 1, out).error().code(), ENOENT);
  auto stats = store.vnode_stats(1).value();
  EXPECT_EQ(stats.name, "db");
  EXPECT_EQ(stats.used, 0u);
  EXPECT_EQ(stats.mms, 0u);
  EXPECT_EQ(store.stats().used, 0u);
}

TEST(PageStore, BadRangesAndSizesAreRefused) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  MmId mm = store.create_mm(1).value();
  wire::Bytes page(kPageSize);
  EXPECT_EQ(store.write_pages(1, mm, kBase + 1, 1, page).error().code(), EINVAL);
  EXPECT_EQ(store.write_pages(1, mm, kBase, 0, {}).error().code(), EINVAL);
  EXPECT_EQ(store.write_pages(1, mm, ~uint64_t{0} - kPageSize + 1, 2, pattern(2, 0)).error().code(),
            EINVAL);
  EXPECT_EQ(store.write_pages(1, mm, kBase, 2, page).error().code(), EBADMSG);
  wire::Bytes too_big(kPageSize + 1);
  EXPECT_EQ(store.write_pages(1, mm, kBase, 1, too_big).error().code(), EBADMSG);
  EXPECT_EQ(store.read_pages(1, mm, kBase, wire::kMaxPagesPerMessage + 1, page).error().code(),
            EINVAL);
  EXPECT_EQ(store.stats().used, 0u);
}

TEST(PageStore, FreeingAnAddressSpaceOrVnodeReturnsEverything) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  ASSERT_TRUE(store.create_vnode(2, "db", 0));
  MmId a = store.create_mm(1).value();
  MmId b = store.create_mm(1).value();
  MmId c = store.create_mm(2).value();
  EXPECT_NE(a, b);
  ASSERT_TRUE(store.write_pages(1, a, kBase, 2, pattern(2, 1)));
  ASSERT_TRUE(store.write_pages(1, b, kBase, 3, pattern(3, 1)));
  ASSERT_TRUE(store.write_pages(2, c, kBase, 1, pattern(1, 1)));
  EXPECT_EQ(store.stats().mms, 3u);

  ASSERT_TRUE(store.free_mm(1, a));
  EXPECT_EQ(store.stats().used, 4 * kPageSize);
  EXPECT_EQ(store.free_mm(1, a).error().code(), ENOENT);

  ASSERT_TRUE(store.destroy_vnode(1));
  auto stats = store.stats();
  EXPECT_EQ(stats.used, kPageSize);
  EXPECT_EQ(stats.vnodes, 1u);
  EXPECT_EQ(stats.mms, 1u);
  wire::Bytes out(kPageSize);
  EXPECT_EQ(store.read_pages(1, b, kBase, 1, out).error().code(), ENOENT);
  EXPECT_EQ(read(store, 2, c, kBase, 1), pattern(1, 1));
}

TEST(PageStore, ConcurrentUseKeepsTheBooksRight) {
  PageStore store(1024 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, t] {
      MmId mm = store.create_mm(1).value();
      auto data = pattern(4, static_cast<uint8_t>(t));
      for (int round = 0; round < 200; ++round) {
        uint64_t address = kBase + (round % 16) * 4 * kPageSize;
        ASSERT_TRUE(store.write_pages(1, mm, address, 4, data));
        wire::Bytes out(4 * kPageSize);
        ASSERT_TRUE(store.read_pages(1, mm, address, 4, out));
        ASSERT_EQ(out, data);
        if (round % 3 == 0) {
          ASSERT_TRUE(store.free_pages(1, mm, address, 4));
        }
      }
      ASSERT_TRUE(store.free_mm(1, mm));
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(store.stats().used, 0u);
  EXPECT_EQ(store.vnode_stats(1)->used, 0u);
}

TEST(PageStore, MoveRekeysPagesAsMremapDoes) {
  PageStore store(64 * kPageSize);
  ASSERT_TRUE(store.create_vnode(1, "web", 0));
  MmId mm = store.create_mm(1).value();
  auto data = pattern(4, 9);
  // Pages 0..3 stored, page 5 stored; the destination holds a stale page.
  ASSERT_TRUE(store.write_pages(1, mm, kBase, 4, data));
  ASSERT_TRUE(store.write_pages(1, mm, kBase + 5 * kPageSize, 1, pattern(1, 1)));
  uint64_t target = kBase + 100 * kPageSize;
  ASSERT_TRUE(store.write_pages(1, mm, target + 4 * kPageSize, 1, pattern(1, 2)));
  EXPECT_EQ(store.stats().used, 6 * kPageSize);
  ASSERT_TRUE(store.move_pages(1, mm, kBase, target, 6));
  EXPECT_EQ(read(store, 1, mm, target, 4), data);
  // Page 4 of the source was not stored: the stale page there is gone.
  EXPECT_TRUE(all_zero(read(store, 1, mm, target + 4 * kPageSize, 1)));
  EXPECT_EQ(read(store, 1, mm, target + 5 * kPageSize, 1), pattern(1, 1));
  EXPECT_TRUE(all_zero(read(store, 1, mm, kBase, 6)));
  EXPECT_EQ(store.stats().used, 5 * kPageSize);

  // Overlapping ranges, and pages shared with a fork keep their sharing.
  MmId child = store.fork_mm(1, mm).value();
  ASSERT_TRUE(store.move_pages(1, mm, target, target + 2 * kPageSize, 4));
  EXPECT_EQ(read(store, 1, mm, target + 2 * kPageSize, 4), data);
  EXPECT_EQ(read(store, 1, child, target, 4), data);
  EXPECT_EQ(store.stats().used, 5 * kPageSize) << "a move copies nothing";

  EXPECT_FALSE(store.move_pages(1, mm, kBase + 1, target, 1));
  EXPECT_FALSE(store.move_pages(1, mm, kBase, target, 0));
  EXPECT_EQ(store.move_pages(2, mm, kBase, target, 1).error().code(), EPERM);
}

}  // namespace
}  // namespace sk::mcomponent
