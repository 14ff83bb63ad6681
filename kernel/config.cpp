#include "kernel/config.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace sk {

std::string Address::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Address> parse_address(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return make_error(EINVAL, "bad address '" + std::string(text) + "' (expected [IPV6]:PORT)");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return make_error(EINVAL, "bad address '" + std::string(text) + "' (expected HOST:PORT)");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) {
    return make_error(EINVAL, "bad address '" + std::string(text) + "': empty host");
  }
  if (port.empty() || port.size() > 5) {
    return make_error(EINVAL, "bad address '" + std::string(text) + "': bad port");
  }
  unsigned long value = 0;
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return make_error(EINVAL, "bad address '" + std::string(text) + "': bad port");
    }
    value = value * 10 + static_cast<unsigned long>(c - '0');
  }
  if (value > 65535) {
    return make_error(EINVAL, "bad address '" + std::string(text) + "': port out of range");
  }
  return Address{std::string(host), static_cast<uint16_t>(value)};
}

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&](const char* why) {
    return make_error(EINVAL, "bad size '" + std::string(text) + "': " + why);
  };
  if (text.empty()) return bad("empty");
  size_t i = 0;
  bool seen_digit = false;
  bool seen_dot = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    if (text[i] == '.') {
      if (seen_dot) return bad("two decimal points");
      seen_dot = true;
    } else {
      seen_digit = true;
    }
    ++i;
  }
  if (!seen_digit) return bad("expected a number such as 64M");
  std::string number(text.substr(0, i));
  std::string suffix;
  for (char c : text.substr(i)) suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  long double multiplier = 1;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'b': multiplier = 1; break;
      case 'k': multiplier = 1024.0L; break;
      case 'm': multiplier = 1024.0L * 1024; break;
      case 'g': multiplier = 1024.0L * 1024 * 1024; break;
      case 't': multiplier = 1024.0L * 1024 * 1024 * 1024; break;
      default: return bad("unknown unit (use K, M, G or T)");
    }
    std::string rest = suffix.substr(1);
    if (suffix[0] == 'b') {
      if (!rest.empty()) return bad("unknown unit");
    } else if (!(rest.empty() || rest == "b" || rest == "i" || rest == "ib")) {
      return bad("unknown unit (use K, M, G or T)");
    }
  }
  long double value = std::strtold(number.c_str(), nullptr) * multiplier;
  if (!std::isfinite(value) || value >= static_cast<long double>(std::numeric_limits<uint64_t>::max())) {
    return bad("too large");
  }
  if (seen_dot && value != std::floor(value)) return bad("not a whole number of bytes");
  return static_cast<uint64_t>(value);
}

std::string format_size(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f %s", value, kUnits[unit]);
  return buffer;
}

std::string env_or(const char* name, std::string_view fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::string(fallback);
  return value;
}

}  // namespace sk
