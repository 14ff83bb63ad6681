// Registered memory served one-sidedly by the owner's CPU instead of a NIC:
// the tcp transport's fabric thread, and the tests' fake fabric, answer
// FABRIC_READ and FABRIC_WRITE from this table without running the request
// handler (on verbs the RNIC does it and this is not used).
//
// Threads: every method may be called from any thread; one mutex guards the
// table and is held across the copy, so a deregistration waits for an
// access in progress.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <span>

#include "kernel/fabric/transport.h"

namespace sk::fabric {

class RegionTable {
 public:
  // A new key for `memory`, which must outlive its registration.
  RegionKey add(std::span<std::byte> memory);
  // New accesses with the key fail with EINVAL from now on.
  void remove(uint32_t rkey);

  // EINVAL for an unknown key, EFAULT for a range outside the region.
  Result<void> read(uint32_t rkey, uint64_t offset, std::span<std::byte> into) const;
  Result<void> write(uint32_t rkey, uint64_t offset, ByteView from);

  // Answers a FABRIC_READ (the bytes) or FABRIC_WRITE (empty) request, or
  // fails it: EBADMSG for a malformed one, else read()'s or write()'s error.
  void serve(const Message& request, Responder responder);

 private:
  // The region's bytes at [offset, offset+length), or EINVAL/EFAULT (m_mutex held).
  Result<std::byte*> locate(uint32_t rkey, uint64_t offset, uint64_t length) const;

  mutable std::mutex m_mutex;  // guards everything below
  std::map<uint32_t, std::span<std::byte>> m_regions;
  uint32_t m_next_rkey = 1;
};

}  // namespace sk::fabric
