// ExCache bookkeeping, eviction policies and the latency histogram.
#include <gtest/gtest.h>

#include <set>

#include "kernel/histogram.h"
#include "pcomponent/memory/excache.h"

namespace memory = sk::pcomponent::memory;
using memory::PageKey;

namespace {

PageKey page(uint64_t n, uint64_t mm = 1) { return PageKey{mm, n * 4096}; }

TEST(Fifo, EvictsInInsertionOrderAndForgetsRemovedPages) {
  auto fifo = memory::make_policy(memory::PolicyKind::kFifo);
  for (uint64_t i = 0; i < 5; ++i) fifo->on_insert(page(i));
  fifo->on_remove(page(1));
  auto victims = fifo->victims(3);
  ASSERT_EQ(victims.size(), 3u);
  EXPECT_EQ(victims[0], page(0));
  EXPECT_EQ(victims[1], page(2));
  EXPECT_EQ(victims[2], page(3));
  EXPECT_EQ(fifo->size(), 4u);  // victims stay tracked until removed
  EXPECT_EQ(fifo->victims(10).size(), 4u);
}

TEST(Clock, RefaultedPagesGetASecondChance) {
  auto clock = memory::make_policy(memory::PolicyKind::kClock);
  for (uint64_t i = 0; i < 4; ++i) clock->on_insert(page(i));
  // Page 0 is evicted and comes straight back: it was needed.
  clock->on_remove(page(0));
  clock->on_insert(page(0));
  auto victims = clock->victims(2);
  ASSERT_EQ(victims.size(), 2u);
  EXPECT_EQ(std::count(victims.begin(), victims.end(), page(0)), 0);
}

TEST(Clock, NeverReturnsAPageTwiceInOneCall) {
  auto clock = memory::make_policy(memory::PolicyKind::kClock);
  clock->on_insert(page(7));
  EXPECT_EQ(clock->victims(5).size(), 1u);
  EXPECT_TRUE(memory::make_policy(memory::PolicyKind::kClock)->victims(3).empty());
}

TEST(ExCache, StaysWithinTheBudgetPlusABatch) {
  memory::ExCache cache(100, memory::PolicyKind::kFifo);
  std::set<uint64_t> resident;
  for (uint64_t i = 0; i < 1000; ++i) {
    resident.insert(i);
    for (const auto& victim : cache.insert(1, page(i))) {
      cache.remove(1, victim, true);
      resident.erase(victim.address / 4096);
    }
    ASSERT_LE(cache.resident(), 100u) << "after page " << i;
  }
  EXPECT_EQ(cache.resident(), resident.size());
  EXPECT_EQ(cache.stats().inserted, 1000u);
  EXPECT_EQ(cache.stats().evicted, 1000u - resident.size());
}

TEST(ExCache, AVnodeBudgetEvictsOnlyThatVnode) {
  memory::ExCache cache(1000, memory::PolicyKind::kFifo);
  cache.set_vnode_budget(2, 10);
  for (uint64_t i = 0; i < 50; ++i) {
    for (const auto& victim : cache.insert(1, page(i, 1))) cache.remove(1, victim, true);
  }
  for (uint64_t i = 0; i < 50; ++i) {
    for (const auto& victim : cache.insert(2, page(i, 2))) {
      EXPECT_EQ(victim.mm, 2u);
      cache.remove(2, victim, true);
    }
  }
  EXPECT_EQ(cache.resident(1), 50u);
  EXPECT_LE(cache.resident(2), 10u);
  cache.drop_vnode(2);
  EXPECT_EQ(cache.resident(), 50u);
}

TEST(ExCache, OverTheGlobalBudgetTheLargestVnodeGivesWay) {
  memory::ExCache cache(60, memory::PolicyKind::kFifo);
  for (uint64_t i = 0; i < 50; ++i) (void)cache.insert(1, page(i, 1));
  std::vector<PageKey> victims;
  for (uint64_t i = 0; i < 11 && victims.empty(); ++i) victims = cache.insert(2, page(i, 2));
  ASSERT_FALSE(victims.empty());
  for (const auto& victim : victims) EXPECT_EQ(victim.mm, 1u);
}

TEST(Histogram, PercentilesFallInTheRightBucket) {
  sk::Histogram histogram;
  EXPECT_EQ(histogram.percentile(0.5), 0u);
  for (int i = 0; i < 99; ++i) histogram.record(5000);  // 5 us
  histogram.record(1'000'000);                           // one 1 ms outlier
  EXPECT_EQ(histogram.count(), 100u);
  uint64_t median = histogram.percentile(0.5);
  EXPECT_GE(median, 4096u);
  EXPECT_LT(median, 8192u);
  uint64_t p999 = histogram.percentile(0.999);
  EXPECT_GE(p999, 524288u);
  sk::Histogram other;
  other.record(0);
  histogram.merge(other);
  EXPECT_EQ(histogram.count(), 101u);
  EXPECT_EQ(histogram.bucket(0), 1u);
}

}  // namespace
