// Parsing of the values users type: sizes ("64M", "1GiB"), addresses
// ("host:port"), durations; and their formatting back for display.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "kernel/result.h"

namespace sk {

// A network address as given on the command line. The host is kept as text
// (a name or a literal); the transport resolves it.
struct Address {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
  bool operator==(const Address&) const = default;
};

// Parses "HOST:PORT" or "[V6]:PORT". Port 0 is allowed (any free port).
Result<Address> parse_address(std::string_view text);

// Parses a byte size: a plain number of bytes or a number with a binary
// suffix K, M, G, T (optionally followed by "i", "B" or "iB"; case-blind),
// e.g. "4096", "64M", "1.5G", "512MiB". Rejects negatives, overflow and junk.
Result<uint64_t> parse_size(std::string_view text);

// Formats bytes for humans: "512.0 MiB", "4.0 KiB", "17 B".
std::string format_size(uint64_t bytes);

// Reads an environment variable, or returns the fallback when unset/empty.
std::string env_or(const char* name, std::string_view fallback);

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

}  // namespace sk
