// The memory manager's mirror of an address space's anonymous regions.
#include <gtest/gtest.h>

#include "pcomponent/memory/region_map.h"

using sk::pcomponent::memory::Region;
using sk::pcomponent::memory::RegionMap;

namespace {

constexpr uint64_t P = 4096;

TEST(RegionMap, AddMergesNeighboursAndFinds) {
  RegionMap map;
  map.add(10 * P, 20 * P);
  map.add(20 * P, 30 * P);
  map.add(40 * P, 50 * P);
  EXPECT_EQ(map.regions(), (std::vector<Region>{{10 * P, 30 * P}, {40 * P, 50 * P}}));
  EXPECT_TRUE(map.contains(10 * P));
  EXPECT_TRUE(map.contains(30 * P - 1));
  EXPECT_FALSE(map.contains(30 * P));
  EXPECT_FALSE(map.contains(9 * P));
  EXPECT_EQ(map.total_bytes(), 30 * P);
}

TEST(RegionMap, RemoveSplitsAndReportsWhatWentAway) {
  RegionMap map;
  map.add(10 * P, 30 * P);
  map.add(40 * P, 50 * P);
  auto removed = map.remove(15 * P, 45 * P);
  EXPECT_EQ(removed, (std::vector<Region>{{15 * P, 30 * P}, {40 * P, 45 * P}}));
  EXPECT_EQ(map.regions(), (std::vector<Region>{{10 * P, 15 * P}, {45 * P, 50 * P}}));
  EXPECT_TRUE(map.remove(20 * P, 40 * P).empty());
  EXPECT_TRUE(map.remove(5 * P, 5 * P).empty());
}

TEST(RegionMap, AddOverAnOverlapReplacesIt) {
  RegionMap map;
  map.add(10 * P, 20 * P);
  map.add(15 * P, 25 * P);
  EXPECT_EQ(map.regions(), (std::vector<Region>{{10 * P, 25 * P}}));
  map.add(0, 100 * P);
  EXPECT_EQ(map.regions(), (std::vector<Region>{{0, 100 * P}}));
}

TEST(RegionMap, MoveKeepsOnlyTheRegisteredParts) {
  RegionMap map;
  map.add(10 * P, 12 * P);
  map.add(13 * P, 14 * P);
  map.move(10 * P, 4 * P, 100 * P);
  EXPECT_EQ(map.regions(), (std::vector<Region>{{100 * P, 102 * P}, {103 * P, 104 * P}}));
}

}  // namespace
