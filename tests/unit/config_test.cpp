// Parsing of what users type: sizes and addresses.
#include <gtest/gtest.h>

#include "kernel/config.h"

namespace {

TEST(Config, Sizes) {
  EXPECT_EQ(sk::parse_size("4096").value(), 4096u);
  EXPECT_EQ(sk::parse_size("64M").value(), 64ull << 20);
  EXPECT_EQ(sk::parse_size("64m").value(), 64ull << 20);
  EXPECT_EQ(sk::parse_size("64MiB").value(), 64ull << 20);
  EXPECT_EQ(sk::parse_size("64MB").value(), 64ull << 20);
  EXPECT_EQ(sk::parse_size("1G").value(), 1ull << 30);
  EXPECT_EQ(sk::parse_size("1.5G").value(), 3ull << 29);
  EXPECT_EQ(sk::parse_size("2T").value(), 2ull << 40);
  EXPECT_EQ(sk::parse_size("0").value(), 0u);
  EXPECT_EQ(sk::parse_size("12b").value(), 12u);
  for (const char* bad : {"", "M", "-1", "1X", "1.2.3", "12 M", "1e9", "0.5", "99999999999T",
                          "1GiBs", "0x10"}) {
    EXPECT_FALSE(sk::parse_size(bad).ok()) << bad;
  }
}

TEST(Config, FormatSize) {
  EXPECT_EQ(sk::format_size(17), "17 B");
  EXPECT_EQ(sk::format_size(4096), "4.0 KiB");
  EXPECT_EQ(sk::format_size(512ull << 20), "512.0 MiB");
  EXPECT_EQ(sk::format_size(3ull << 29), "1.5 GiB");
}

TEST(Config, Addresses) {
  auto plain = sk::parse_address("127.0.0.1:7070");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, 7070);
  EXPECT_EQ(plain->to_string(), "127.0.0.1:7070");
  auto v6 = sk::parse_address("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->to_string(), "[::1]:0");
  EXPECT_EQ(sk::parse_address("monitor:7070")->host, "monitor");
  for (const char* bad : {"", "7070", ":7070", "host:", "host:70000", "host:7a", "[::1]7070",
                          "[::1"}) {
    EXPECT_FALSE(sk::parse_address(bad).ok()) << bad;
  }
}

}  // namespace
