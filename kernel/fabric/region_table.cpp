// RegionTable (region_table.h).
#include "kernel/fabric/region_table.h"

#include <cstring>

#include "kernel/wire/codec.h"

namespace sk::fabric {

RegionKey RegionTable::add(std::span<std::byte> memory) {
  std::lock_guard lock(m_mutex);
  uint32_t rkey = m_next_rkey++;
  m_regions[rkey] = memory;
  return RegionKey{rkey, memory.size(), reinterpret_cast<uint64_t>(memory.data())};
}

void RegionTable::remove(uint32_t rkey) {
  std::lock_guard lock(m_mutex);
  m_regions.erase(rkey);
}

Result<std::byte*> RegionTable::locate(uint32_t rkey, uint64_t offset, uint64_t length) const {
  auto it = m_regions.find(rkey);
  if (it == m_regions.end()) return make_error(EINVAL, "unknown region key");
  const auto& region = it->second;
  if (offset > region.size() || length > region.size() - offset) {
    return make_error(EFAULT, "access outside the registered region");
  }
  return region.data() + offset;
}

Result<void> RegionTable::read(uint32_t rkey, uint64_t offset, std::span<std::byte> into) const {
  std::lock_guard lock(m_mutex);
  std::byte* at = TRY(locate(rkey, offset, into.size()));
  // memcpy wants real pointers even for nothing, and an empty span may hold none.
  if (!into.empty()) std::memcpy(into.data(), at, into.size());
  return {};
}

Result<void> RegionTable::write(uint32_t rkey, uint64_t offset, ByteView from) {
  std::lock_guard lock(m_mutex);
  std::byte* at = TRY(locate(rkey, offset, from.size()));
  if (!from.empty()) std::memcpy(at, from.data(), from.size());
  return {};
}

void RegionTable::serve(const Message& request, Responder responder) {
  auto decoded = wire::decode_with_tail<wire::FabricAccess>(request.payload);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  auto [access, tail] = decoded.value();
  if (request.opcode() == static_cast<uint16_t>(wire::Opcode::FABRIC_READ)) {
    if (!tail.empty() || access.length > wire::kMaxPayload) {
      responder.fail(make_error(EBADMSG, "malformed one-sided read"));
      return;
    }
    Bytes data(access.length);
    if (auto ok = read(access.rkey, access.offset, data); !ok) {
      responder.fail(ok.error());
      return;
    }
    responder.reply(std::move(data));
    return;
  }
  if (tail.size() != access.length) {
    responder.fail(make_error(EBADMSG, "one-sided write length does not match its data"));
    return;
  }
  if (auto ok = write(access.rkey, access.offset, tail); !ok) {
    responder.fail(ok.error());
    return;
  }
  responder.reply();
}

}  // namespace sk::fabric
