// The mComponent's page store: the pages of every address space (mm) it
// holds, grouped by the vNode that owns them, with the vNode's memory quota
// and the component's capacity enforced on every page stored. No
// networking, so that it can be tested on its own; the mComponent's request
// handlers are thin wrappers around it.
//
// Accounting: a page costs its 4 KiB from the moment it is first written
// until it is freed (PAGE_FREE, MM_FREE or the vNode's destruction). A page
// never written costs nothing and reads as zeroes, as LegoOS's first touch
// of anonymous memory does.
//
// Fork: fork_mm() gives a child address space that shares every page with
// its parent (copy-on-write, as the kernel does), so a fork costs no page
// copies and no quota; the first write to a shared page through either
// address space gives that one a private copy, which then costs a page.
// Pages are reference-counted by shared_ptr, always under m_mutex, so
// use_count() is exact.
//
// Ownership: every mm belongs to the vNode that created it; an operation
// that names another vNode's mm fails with EPERM and touches nothing.
//
// Threads: every method may be called from any thread; one mutex guards the
// whole store. The methods only copy memory while holding it, so request
// handlers on the transport's thread can call them directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/wire/codec.h"

namespace sk::mcomponent {

using MmId = uint64_t;

class PageStore {
 public:
  struct Stats {
    uint64_t capacity = 0;  // bytes this store may hold in all
    uint64_t used = 0;      // bytes of pages stored
    uint32_t vnodes = 0;    // vNodes served
    uint64_t mms = 0;       // address spaces held
  };
  struct VnodeStats {
    std::string name;
    uint64_t quota = 0;  // 0: bounded only by the store's capacity
    uint64_t used = 0;
    uint64_t mms = 0;
  };

  // capacity: the memory, in bytes, this store lends to all vNodes together.
  explicit PageStore(uint64_t capacity);
  ~PageStore();

  // Starts serving a vNode with a memory quota in bytes (0: no quota of its
  // own, only the store's capacity bounds it). The quota may exceed the
  // capacity (quotas overcommit, like Linux). Creating a vNode that exists
  // with the same name updates its quota (the monitor may re-send). The
  // monitor owns vNode ids: an id that comes back with another name (a
  // monitor that restarted and renumbered) means the old vNode is gone, so
  // its address spaces are freed first. vnode 0 is EINVAL.
  Result<void> create_vnode(VnodeId vnode, std::string_view name, uint64_t quota);

  // Frees every address space of the vNode and forgets it. ENOENT if unknown.
  Result<void> destroy_vnode(VnodeId vnode);

  // A new, empty address space for the vNode. ENOENT if the vNode is unknown.
  Result<MmId> create_mm(VnodeId vnode);

  // A copy-on-write duplicate of `parent` for a forked child, in the same
  // vNode. ENOENT / EPERM as for free_mm.
  Result<MmId> fork_mm(VnodeId vnode, MmId parent);

  // Frees an address space and all its pages. ENOENT if unknown, EPERM if
  // it belongs to another vNode.
  Result<void> free_mm(VnodeId vnode, MmId mm);

  // Stores `count` pages starting at the page-aligned `address`; `data` must
  // be exactly count * 4096 bytes (EBADMSG otherwise). All or nothing: when
  // the pages not yet stored would exceed the vNode's quota or the store's
  // capacity, nothing is written and the error is ENOMEM.
  Result<void> write_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count,
                           wire::ByteView data);

  // Copies `count` pages starting at `address` into `into` (count * 4096
  // bytes); pages never written read as zeroes.
  Result<void> read_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count,
                          std::span<std::byte> into) const;

  // Drops `count` pages starting at `address` (those not stored are
  // skipped) and returns their space to the quota and the capacity.
  Result<void> free_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count);

  // Moves `count` pages from `from` to `to` as mremap moves a mapping: the
  // destination range becomes exactly what the source range was (pages
  // not stored there are dropped at the destination) and the source range
  // is left empty. The ranges may overlap; count is 1..wire::kMaxPagesPerMove.
  // No page is copied; pages the move drops return their space.
  Result<void> move_pages(VnodeId vnode, MmId mm, uint64_t from, uint64_t to, uint32_t count);

  Stats stats() const;
  Result<VnodeStats> vnode_stats(VnodeId vnode) const;

 private:
  struct Page;
  // Pages by page address, shared between forked address spaces. FIXME: one
  // heap allocation per page and a hash map is simple but wasteful; slabs
  // and a radix tree would do better.
  using PageMap = std::unordered_map<uint64_t, std::shared_ptr<Page>>;
  struct AddressSpace {
    VnodeId vnode;
    PageMap pages;
  };
  struct Vnode {
    std::string name;
    uint64_t quota = 0;
    uint64_t used = 0;
    uint64_t mms = 0;
  };

  Result<AddressSpace*> find_mm(VnodeId vnode, MmId mm);
  Result<const AddressSpace*> find_mm(VnodeId vnode, MmId mm) const;
  Result<void> check_range(uint64_t address, uint32_t count) const;
  // Drops every page of the space, returning to the books those no other
  // space shares.
  void release(AddressSpace& space);
  // Frees every address space of a vNode (which must exist).
  void drop_mms(VnodeId vnode);

  mutable std::mutex m_mutex;  // guards everything below
  const uint64_t m_capacity;
  uint64_t m_used = 0;
  std::map<VnodeId, Vnode> m_vnodes;
  std::unordered_map<MmId, AddressSpace> m_mms;
  MmId m_next_mm = 1;
};

}  // namespace sk::mcomponent
