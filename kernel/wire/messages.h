// Fixed-layout messages, one pair per opcode (see opcodes.h for the list,
// message_list.h for which message each opcode carries, and header.h for
// what precedes them). Rules: little-endian integers, explicit
// padding fields, no pointers, no conditional layout, a static_assert on
// every size. Each message that can hold something invalid has validate(),
// which decode() runs before the message is used.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "kernel/result.h"

namespace sk::wire {

inline constexpr uint32_t kPageSize = 4096;
// The most pages one P2M_PAGE_READ/WRITE may carry (4 MiB).
inline constexpr uint32_t kMaxPagesPerMessage = 1024;

// A NUL-terminated string in a fixed array. The decoder rejects one without a
// terminating NUL, so view() never runs off the end.
template <size_t N>
struct FixedString {
  char bytes[N];

  void set(std::string_view text) {
    std::memset(bytes, 0, N);
    // An empty view may have a null data(), which memcpy must not see.
    if (!text.empty()) std::memcpy(bytes, text.data(), std::min(text.size(), N - 1));
  }
  std::string_view view() const { return std::string_view(bytes, strnlen(bytes, N)); }
  std::string str() const { return std::string(view()); }
  bool terminated() const { return std::memchr(bytes, '\0', N) != nullptr; }
};

inline constexpr size_t kAddressLength = 64;
inline constexpr size_t kVnodeNameLength = 32;

enum class FabricKind : uint8_t { kTcp = 1, kVerbs = 2 };
std::string_view to_string(FabricKind kind);

// A vNode name: 1..31 characters of [a-z0-9_-], starting with a letter or
// digit. Kept small and safe because it names directories on sComponents.
Result<void> validate_vnode_name(std::string_view name);

// ---- FABRIC_ -------------------------------------------------------------

// FABRIC_READ: read `length` bytes at `offset` of the peer's registered
// region `rkey`. Reply: the bytes.
// FABRIC_WRITE: the same, followed by `length` bytes to write. Reply: empty.
struct FabricAccess {
  uint32_t rkey;
  uint32_t length;
  uint64_t offset;
};
static_assert(sizeof(FabricAccess) == 16);

// ---- C2MON_ --------------------------------------------------------------

struct C2monJoinRequest {
  uint8_t kind;    // NodeKind
  uint8_t fabric;  // FabricKind
  uint16_t reserved0;
  uint32_t reserved1;
  uint64_t capacity;  // bytes: ExCache budget (p), memory (m), disk (s)
  FixedString<kAddressLength> address;  // where peers reach this component
  Result<void> validate() const;
};
static_assert(sizeof(C2monJoinRequest) == 80);

struct C2monJoinReply {
  uint32_t node;
  uint32_t heartbeat_interval_ms;
};
static_assert(sizeof(C2monJoinReply) == 8);

struct C2monHeartbeat {
  uint32_t node;
  uint32_t load;  // running processes (p) or vNodes served (m, s)
  uint64_t capacity;
  uint64_t usage;
};
static_assert(sizeof(C2monHeartbeat) == 24);

struct C2monLeaveRequest {
  uint32_t node;
  uint32_t reserved;
};
static_assert(sizeof(C2monLeaveRequest) == 8);

// ---- CTL2MON_ ------------------------------------------------------------

// Reply of CTL2MON_NODES and CTL2MON_VNODE_LIST: a count, then that many
// records as the tail.
struct Ctl2monListReply {
  uint32_t count;
  uint32_t reserved;
};
static_assert(sizeof(Ctl2monListReply) == 8);

struct NodeRecord {
  uint32_t id;
  uint8_t kind;
  uint8_t state;
  uint8_t fabric;
  uint8_t reserved0;
  uint32_t load;
  uint32_t vnodes;
  uint64_t capacity;
  uint64_t usage;
  uint64_t heartbeat_age_ms;  // time since the last heartbeat
  uint64_t joined_unix_ms;
  FixedString<kAddressLength> address;
  Result<void> validate() const;
};
static_assert(sizeof(NodeRecord) == 112);

// The image a new vNode's root starts from: empty `image` means the default
// image ("default"); kVnodeEmptyRoot asks for an empty tree instead.
inline constexpr uint32_t kVnodeEmptyRoot = 1u << 0;
inline constexpr std::string_view kDefaultImage = "default";

struct Ctl2monVnodeCreateRequest {
  FixedString<kVnodeNameLength> name;
  uint64_t cache;   // per-vNode ExCache budget in bytes; 0 = the pComponent's
  uint64_t memory;  // memory quota in bytes; 0 = the monitor's default
  FixedString<kVnodeNameLength> image;
  uint32_t flags;   // kVnodeEmptyRoot
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2monVnodeCreateRequest) == 88);

struct VnodeRecord {
  uint32_t id;
  uint32_t scomponent;  // node holding its root
  uint64_t cache;
  uint64_t memory;
  uint64_t created_unix_ms;
  uint32_t processes;
  uint32_t flags;  // kVnodeEmptyRoot
  FixedString<kVnodeNameLength> name;
  FixedString<kVnodeNameLength> image;  // empty for an empty root
  Result<void> validate() const;
};
static_assert(sizeof(VnodeRecord) == 104);

struct Ctl2monVnodeDestroyRequest {
  FixedString<kVnodeNameLength> name;
  Result<void> validate() const;
};
static_assert(sizeof(Ctl2monVnodeDestroyRequest) == 32);

// ---- MON2P_, MON2M_, MON2S_ ----------------------------------------------

// MON2P/MON2M/MON2S_VNODE_CREATE: the vNode id is in the header too; the
// body repeats what the component needs to serve it.
struct Mon2cVnodeCreateRequest {
  uint32_t vnode;
  uint32_t flags;  // kVnodeEmptyRoot
  uint64_t cache;
  uint64_t memory;
  FixedString<kVnodeNameLength> name;
  // The image the sComponent copies into a new root (empty: none).
  FixedString<kVnodeNameLength> image;
  // Where the vNode's root lives (the sComponent's fabric address), for the
  // pComponents that mount it.
  FixedString<kAddressLength> scomponent;
  Result<void> validate() const;
};
static_assert(sizeof(Mon2cVnodeCreateRequest) == 152);

struct Mon2cVnodeDestroyRequest {
  uint32_t vnode;
  uint32_t reserved;
};
static_assert(sizeof(Mon2cVnodeDestroyRequest) == 8);

// ---- P2M_ ----------------------------------------------------------------

// P2M_MM_CREATE: empty request (the vNode is in the header).
struct P2mMmCreateReply {
  uint64_t mm;
};
static_assert(sizeof(P2mMmCreateReply) == 8);

struct P2mMmFreeRequest {
  uint64_t mm;
};
static_assert(sizeof(P2mMmFreeRequest) == 8);

// P2M_MM_FORK: a copy-on-write duplicate of `mm` for a forked child.
// Reply: P2mMmCreateReply with the child's mm.
struct P2mMmForkRequest {
  uint64_t mm;
};
static_assert(sizeof(P2mMmForkRequest) == 8);

// P2M_PAGE_READ: reply tail is count pages (zero pages where never written).
// P2M_PAGE_WRITE: request tail is count pages. P2M_PAGE_FREE: no tail.
struct P2mPageRange {
  uint64_t mm;
  uint64_t address;  // page aligned
  uint32_t count;    // 1..kMaxPagesPerMessage
  uint32_t reserved;
  Result<void> validate() const;
};
static_assert(sizeof(P2mPageRange) == 24);

}  // namespace sk::wire
