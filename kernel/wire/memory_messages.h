// The disaggregated-memory messages that are not plain page traffic
// (P2M_MM_* and P2M_PAGE_READ/WRITE/FREE are in messages.h):
//
//   pComponent -> monitor
//     P2MON_MEMORY_PLACE  P2monMemoryPlaceRequest{vnode, bytes}, header vnode =
//                         the vNode -> P2monMemoryPlaceReply{node, address}.
//                         GMM: which mComponent holds the next vRegion
//                         (`bytes` of address space) of the vNode's
//                         processes on this pComponent. The monitor picks
//                         the alive mComponent that serves the vNode with
//                         the most free capacity, counting what it placed
//                         lately (monitor/memory_placement.h), so that
//                         consecutive vRegions spread. EHOSTUNREACH when no
//                         alive mComponent serves the vNode.
//
//   pComponent -> mComponent
//     P2M_PAGE_MOVE       P2mPageMoveRequest{mm, from, to, count} -> empty. The pages
//                         of [from, from + count pages) move to
//                         [to, to + count pages), as mremap moves them: the
//                         destination becomes exactly what the source was
//                         (pages not stored there are not stored at the
//                         destination either) and the source is left empty.
//                         Ranges may overlap. Costs no page copies.
//
// Header-only: every check is inline, so the kernel library needs no new
// source file.
#pragma once

#include <cstdint>
#include <string>

#include "kernel/result.h"
#include "kernel/wire/messages.h"

namespace sk::wire {

// The most pages one P2M_PAGE_MOVE may name (1 GiB): moving is a re-keying
// on the mComponent, but the store's lock is held while it runs.
inline constexpr uint32_t kMaxPagesPerMove = 1u << 18;

struct P2monMemoryPlaceRequest {
  uint32_t vnode;
  uint32_t reserved;
  uint64_t bytes;  // the vRegion's size
  Result<void> validate() const {
    if (vnode == 0) return make_error(EINVAL, "memory placement for vNode 0");
    if (bytes == 0 || bytes > (uint64_t{1} << 40)) {
      return make_error(EINVAL, "memory placement of " + std::to_string(bytes) + " bytes");
    }
    return {};
  }
};
static_assert(sizeof(P2monMemoryPlaceRequest) == 16);

struct P2monMemoryPlaceReply {
  uint32_t node;  // the mComponent's node id
  uint32_t reserved;
  FixedString<kAddressLength> address;  // where it serves P2M_
  Result<void> validate() const {
    if (node == 0) return make_error(EINVAL, "memory placed on node 0");
    if (!address.terminated() || address.view().empty()) {
      return make_error(EINVAL, "memory placement without an address");
    }
    return {};
  }
};
static_assert(sizeof(P2monMemoryPlaceReply) == 72);

struct P2mPageMoveRequest {
  uint64_t mm;
  uint64_t from;  // page aligned
  uint64_t to;    // page aligned
  uint32_t count;  // 1..kMaxPagesPerMove
  uint32_t reserved;
  Result<void> validate() const {
    if (from % kPageSize != 0 || to % kPageSize != 0) {
      return make_error(EINVAL, "page move address not aligned");
    }
    if (count == 0 || count > kMaxPagesPerMove) {
      return make_error(EINVAL, "page move count " + std::to_string(count) + " out of range");
    }
    uint64_t length = uint64_t{count} * kPageSize;
    if (from + length < from || to + length < to) return make_error(EINVAL, "page move wraps");
    return {};
  }
};
static_assert(sizeof(P2mPageMoveRequest) == 32);

}  // namespace sk::wire
