// Encoding and checked decoding of wire messages. Every decoder checks the
// length and runs the message's validate() before the message is used, so a
// truncated, oversized or garbage message becomes an Error, never a crash.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernel/result.h"
#include "kernel/wire/header.h"
#include "kernel/wire/messages.h"

namespace sk::wire {

using Bytes = std::vector<std::byte>;
using ByteView = std::span<const std::byte>;

// Checks magic, version, payload bound and flags of a received header.
Result<void> check_header(const Header& header);

template <typename T>
concept WireMessage = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;

template <WireMessage T>
Result<void> validate_message(const T& message) {
  if constexpr (requires { message.validate(); }) {
    return message.validate();
  } else {
    return {};
  }
}

// Decodes a payload that must be exactly one T.
template <WireMessage T>
Result<T> decode(ByteView payload) {
  if (payload.size() != sizeof(T)) {
    return make_error(EBADMSG, "message of " + std::to_string(payload.size()) +
                                   " bytes, expected " + std::to_string(sizeof(T)));
  }
  T message;
  std::memcpy(&message, payload.data(), sizeof(T));
  TRY(validate_message(message));
  return message;
}

// Decodes a payload that starts with a T and carries a variable tail.
template <WireMessage T>
Result<std::pair<T, ByteView>> decode_with_tail(ByteView payload) {
  if (payload.size() < sizeof(T)) {
    return make_error(EBADMSG, "message of " + std::to_string(payload.size()) +
                                   " bytes, expected at least " + std::to_string(sizeof(T)));
  }
  T message;
  std::memcpy(&message, payload.data(), sizeof(T));
  TRY(validate_message(message));
  return std::pair<T, ByteView>(message, payload.subspan(sizeof(T)));
}

// Decodes a tail that is exactly `count` records of R (lists in replies).
template <WireMessage R>
Result<std::vector<R>> decode_records(ByteView tail, uint32_t count) {
  if (tail.size() != static_cast<size_t>(count) * sizeof(R)) {
    return make_error(EBADMSG, "list of " + std::to_string(count) + " records in " +
                                   std::to_string(tail.size()) + " bytes");
  }
  std::vector<R> records(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::memcpy(&records[i], tail.data() + i * sizeof(R), sizeof(R));
    TRY(validate_message(records[i]));
  }
  return records;
}

template <WireMessage T>
Bytes encode(const T& message, ByteView tail = {}) {
  Bytes bytes(sizeof(T) + tail.size());
  std::memcpy(bytes.data(), &message, sizeof(T));
  if (!tail.empty()) std::memcpy(bytes.data() + sizeof(T), tail.data(), tail.size());
  return bytes;
}

template <WireMessage T>
ByteView as_bytes(const T& message) {
  return ByteView(reinterpret_cast<const std::byte*>(&message), sizeof(T));
}

inline ByteView as_bytes(std::string_view text) {
  return ByteView(reinterpret_cast<const std::byte*>(text.data()), text.size());
}

inline std::string to_text(ByteView bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace sk::wire
