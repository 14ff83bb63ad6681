// The mComponent's page store (see page_store.h). Lock order: m_mutex only.
#include "mcomponent/page_store.h"

#include <cstring>
#include <new>
#include <vector>

#include "kernel/config.h"
#include "kernel/log.h"
#include "kernel/wire/memory_messages.h"
#include "kernel/wire/messages.h"

namespace sk::mcomponent {

static const Logger log("page_store");

using wire::kPageSize;

struct PageStore::Page {
  std::byte bytes[kPageSize];
};

PageStore::PageStore(uint64_t capacity) : m_capacity(capacity) {}

PageStore::~PageStore() = default;

Result<void> PageStore::create_vnode(VnodeId vnode, std::string_view name, uint64_t quota) {
  if (vnode == kNoVnode) return make_error(EINVAL, "vNode id 0 is reserved");
  TRY(wire::validate_vnode_name(name));
  std::lock_guard lock(m_mutex);
  auto [it, inserted] = m_vnodes.try_emplace(vnode);
  if (!inserted && it->second.name != name) {
    log.warn("vNode {} was '{}' and is now '{}': freeing the old one's {} address space(s)", vnode,
             it->second.name, name, it->second.mms);
    drop_mms(vnode);
    it->second = Vnode{};
  }
  it->second.name = std::string(name);
  it->second.quota = quota;
  return {};
}

Result<void> PageStore::destroy_vnode(VnodeId vnode) {
  std::lock_guard lock(m_mutex);
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
  }
  drop_mms(vnode);
  m_vnodes.erase(it);
  return {};
}

void PageStore::drop_mms(VnodeId vnode) {
  for (auto mm = m_mms.begin(); mm != m_mms.end();) {
    if (mm->second.vnode == vnode) {
      release(mm->second);
      mm = m_mms.erase(mm);
    } else {
      ++mm;
    }
  }
  m_vnodes.at(vnode).mms = 0;
}

Result<MmId> PageStore::create_mm(VnodeId vnode) {
  std::lock_guard lock(m_mutex);
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
  }
  MmId mm = m_next_mm++;
  m_mms.emplace(mm, AddressSpace{vnode, {}});
  ++it->second.mms;
  return mm;
}

Result<MmId> PageStore::fork_mm(VnodeId vnode, MmId parent) {
  std::lock_guard lock(m_mutex);
  const AddressSpace* space = TRY(find_mm(vnode, parent));
  MmId child = m_next_mm++;
  try {
    // Copying the map shares every page: no bytes move, no quota is spent.
    m_mms.emplace(child, AddressSpace{vnode, space->pages});
  } catch (const std::bad_alloc&) {
    return make_error(ENOMEM, "out of host memory while forking an address space");
  }
  ++m_vnodes.at(vnode).mms;
  return child;
}

Result<void> PageStore::free_mm(VnodeId vnode, MmId mm) {
  std::lock_guard lock(m_mutex);
  AddressSpace* space = TRY(find_mm(vnode, mm));
  release(*space);
  --m_vnodes.at(vnode).mms;
  m_mms.erase(mm);
  return {};
}

Result<void> PageStore::write_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count,
                                    wire::ByteView data) {
  TRY(check_range(address, count));
  if (data.size() != static_cast<size_t>(count) * kPageSize) {
    return make_error(EBADMSG, std::to_string(count) + " pages need " +
                                   std::to_string(static_cast<size_t>(count) * kPageSize) +
                                   " bytes of data, got " + std::to_string(data.size()));
  }
  std::lock_guard lock(m_mutex);
  AddressSpace* space = TRY(find_mm(vnode, mm));
  Vnode& owner = m_vnodes.at(vnode);

  // Check the whole batch before writing any of it, so a refused write
  // leaves the address space as it was.
  // A page not stored yet, or shared with a fork, takes a new page.
  uint64_t added = 0;
  for (uint32_t i = 0; i < count; ++i) {
    auto it = space->pages.find(address + uint64_t{i} * kPageSize);
    if (it == space->pages.end() || it->second.use_count() > 1) added += kPageSize;
  }
  if (owner.quota != 0 && owner.used + added > owner.quota) {
    return make_error(ENOMEM, "vNode '" + owner.name + "' is over its memory quota of " +
                                  format_size(owner.quota) + " (" + format_size(owner.used) +
                                  " in use, " + format_size(added) + " more asked)");
  }
  if (m_used + added > m_capacity) {
    return make_error(ENOMEM, "this mComponent is full: " + format_size(m_used) + " of " +
                                  format_size(m_capacity) + " in use, " + format_size(added) +
                                  " more asked");
  }

  try {
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t page_address = address + uint64_t{i} * kPageSize;
      const std::byte* source = data.data() + static_cast<size_t>(i) * kPageSize;
      auto it = space->pages.find(page_address);
      if (it != space->pages.end() && it->second.use_count() == 1) {
        std::memcpy(it->second->bytes, source, kPageSize);
        continue;
      }
      // New, or shared with a fork: this space gets its own page.
      auto page = std::make_shared_for_overwrite<Page>();
      std::memcpy(page->bytes, source, kPageSize);
      space->pages[page_address] = std::move(page);
      // Accounted page by page so that the books stay right even if an
      // allocation fails halfway.
      owner.used += kPageSize;
      m_used += kPageSize;
    }
  } catch (const std::bad_alloc&) {
    return make_error(ENOMEM, "out of host memory while storing pages");
  }
  return {};
}

Result<void> PageStore::read_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count,
                                   std::span<std::byte> into) const {
  TRY(check_range(address, count));
  if (into.size() != static_cast<size_t>(count) * kPageSize) {
    return make_error(EINVAL, "read buffer does not hold " + std::to_string(count) + " pages");
  }
  std::lock_guard lock(m_mutex);
  const AddressSpace* space = TRY(find_mm(vnode, mm));
  for (uint32_t i = 0; i < count; ++i) {
    std::byte* target = into.data() + static_cast<size_t>(i) * kPageSize;
    auto it = space->pages.find(address + uint64_t{i} * kPageSize);
    if (it == space->pages.end()) {
      std::memset(target, 0, kPageSize);
    } else {
      std::memcpy(target, it->second->bytes, kPageSize);
    }
  }
  return {};
}

Result<void> PageStore::free_pages(VnodeId vnode, MmId mm, uint64_t address, uint32_t count) {
  TRY(check_range(address, count));
  std::lock_guard lock(m_mutex);
  AddressSpace* space = TRY(find_mm(vnode, mm));
  Vnode& owner = m_vnodes.at(vnode);
  for (uint32_t i = 0; i < count; ++i) {
    auto it = space->pages.find(address + uint64_t{i} * kPageSize);
    if (it == space->pages.end()) continue;
    if (it->second.use_count() == 1) {
      owner.used -= kPageSize;
      m_used -= kPageSize;
    }
    space->pages.erase(it);
  }
  return {};
}

Result<void> PageStore::move_pages(VnodeId vnode, MmId mm, uint64_t from, uint64_t to,
                                   uint32_t count) {
  if (from % kPageSize != 0 || to % kPageSize != 0) {
    return make_error(EINVAL, "page address not aligned");
  }
  if (count == 0 || count > wire::kMaxPagesPerMove) {
    return make_error(EINVAL, "page count " + std::to_string(count) + " out of range");
  }
  uint64_t length = uint64_t{count} * kPageSize;
  if (from + length < from || to + length < to) return make_error(EINVAL, "page range wraps");
  std::lock_guard lock(m_mutex);
  AddressSpace* space = TRY(find_mm(vnode, mm));
  Vnode& owner = m_vnodes.at(vnode);
  // Take the source pages out first, so that overlapping ranges work.
  std::vector<std::pair<uint64_t, std::shared_ptr<Page>>> moving;
  try {
    for (uint32_t i = 0; i < count; ++i) {
      auto it = space->pages.find(from + uint64_t{i} * kPageSize);
      if (it == space->pages.end()) continue;
      moving.emplace_back(uint64_t{i} * kPageSize, std::move(it->second));
      space->pages.erase(it);
    }
  } catch (const std::bad_alloc&) {
    for (auto& [offset, page] : moving) space->pages[from + offset] = std::move(page);
    return make_error(ENOMEM, "out of host memory while moving pages");
  }
  // Whatever the destination held is replaced (or dropped where the source
  // had nothing).
  for (uint32_t i = 0; i < count; ++i) {
    auto it = space->pages.find(to + uint64_t{i} * kPageSize);
    if (it == space->pages.end()) continue;
    if (it->second.use_count() == 1) {
      owner.used -= kPageSize;
      m_used -= kPageSize;
    }
    space->pages.erase(it);
  }
  size_t placed = 0;
  try {
    for (; placed < moving.size(); ++placed) {
      space->pages[to + moving[placed].first] = std::move(moving[placed].second);
    }
  } catch (const std::bad_alloc&) {
    // The pages that found no place are lost: return their space.
    for (size_t i = placed; i < moving.size(); ++i) {
      if (moving[i].second.use_count() == 1) {
        owner.used -= kPageSize;
        m_used -= kPageSize;
      }
    }
    return make_error(ENOMEM, "out of host memory while moving pages");
  }
  return {};
}

PageStore::Stats PageStore::stats() const {
  std::lock_guard lock(m_mutex);
  return Stats{m_capacity, m_used, static_cast<uint32_t>(m_vnodes.size()), m_mms.size()};
}

Result<PageStore::VnodeStats> PageStore::vnode_stats(VnodeId vnode) const {
  std::lock_guard lock(m_mutex);
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
  }
  return VnodeStats{it->second.name, it->second.quota, it->second.used, it->second.mms};
}

Result<PageStore::AddressSpace*> PageStore::find_mm(VnodeId vnode, MmId mm) {
  const PageStore* self = this;
  const AddressSpace* space = TRY(self->find_mm(vnode, mm));
  return const_cast<AddressSpace*>(space);
}

Result<const PageStore::AddressSpace*> PageStore::find_mm(VnodeId vnode, MmId mm) const {
  auto it = m_mms.find(mm);
  if (it == m_mms.end()) return make_error(ENOENT, "no address space " + std::to_string(mm));
  if (it->second.vnode != vnode) {
    return make_error(EPERM, "address space " + std::to_string(mm) + " does not belong to vNode " +
                                 std::to_string(vnode));
  }
  return &it->second;
}

Result<void> PageStore::check_range(uint64_t address, uint32_t count) const {
  if (address % kPageSize != 0) return make_error(EINVAL, "page address not aligned");
  if (count == 0 || count > wire::kMaxPagesPerMessage) {
    return make_error(EINVAL, "page count " + std::to_string(count) + " out of range");
  }
  if (address + uint64_t{count} * kPageSize < address) {
    return make_error(EINVAL, "page range wraps");
  }
  return {};
}

void PageStore::release(AddressSpace& space) {
  uint64_t bytes = 0;
  for (const auto& [address, page] : space.pages) {
    if (page.use_count() == 1) bytes += kPageSize;
  }
  m_vnodes.at(space.vnode).used -= bytes;
  m_used -= bytes;
  space.pages.clear();
}

}  // namespace sk::mcomponent
