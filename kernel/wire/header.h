// The common header that starts every message on every transport.
//
// Layout (little-endian, 40 bytes, no implicit padding):
//   magic, version, opcode, flags, source node, vNode, request id,
//   payload length, status (0 or a positive errno in replies), reserved.
// The payload that follows is the opcode's fixed-layout message, optionally
// followed by a variable tail whose length the message states (page data,
// names, file data). A reply with a non-zero status carries, instead of the
// reply message, a UTF-8 error text for the user.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernel/wire/opcodes.h"

namespace sk::wire {

inline constexpr uint32_t kMagic = 0x31464b53;  // "SKF1" in memory order
inline constexpr uint16_t kVersion = 1;

// Bounds every payload so a garbage length cannot make a receiver allocate
// gigabytes: 8 MiB holds the largest page batch (1024 pages) or file chunk
// with room for the fixed part.
inline constexpr uint32_t kMaxPayload = 8u << 20;

enum HeaderFlags : uint16_t {
  kFlagReply = 1u << 0,
};

struct Header {
  uint32_t magic;
  uint16_t version;
  uint16_t opcode;
  uint16_t flags;
  uint16_t reserved0;
  uint32_t source;
  uint32_t vnode;
  uint32_t payload_length;
  uint64_t request_id;
  int32_t status;
  uint32_t reserved1;
};
static_assert(sizeof(Header) == 40);
static_assert(std::is_trivially_copyable_v<Header>);

}  // namespace sk::wire
