// The transports' side of FabricCounters: relaxed atomics bumped on their
// threads, read by counters() on any thread. Internal to kernel/fabric.
#pragma once

#include <atomic>
#include <cstdint>

#include "kernel/fabric/transport.h"

namespace sk::fabric {

class FabricCounterSet {
 public:
  void message_sent(uint64_t bytes) {
    bump(m_messages_sent, 1);
    bump(m_bytes_sent, bytes);
  }
  void message_received(uint64_t bytes) {
    bump(m_messages_received, 1);
    bump(m_bytes_received, bytes);
  }
  void one_sided_read(uint64_t bytes) {
    bump(m_one_sided_reads, 1);
    bump(m_one_sided_bytes, bytes);
  }
  void one_sided_write(uint64_t bytes) {
    bump(m_one_sided_writes, 1);
    bump(m_one_sided_bytes, bytes);
  }
  void connection_accepted() { bump(m_connections_accepted, 1); }
  void connection_made() { bump(m_connections_made, 1); }

  FabricCounters snapshot() const {
    FabricCounters c;
    c.messages_sent = load(m_messages_sent);
    c.messages_received = load(m_messages_received);
    c.bytes_sent = load(m_bytes_sent);
    c.bytes_received = load(m_bytes_received);
    c.one_sided_reads = load(m_one_sided_reads);
    c.one_sided_writes = load(m_one_sided_writes);
    c.one_sided_bytes = load(m_one_sided_bytes);
    c.connections_accepted = load(m_connections_accepted);
    c.connections_made = load(m_connections_made);
    return c;
  }

 private:
  using Counter = std::atomic<uint64_t>;
  static void bump(Counter& counter, uint64_t by) {
    counter.fetch_add(by, std::memory_order_relaxed);
  }
  static uint64_t load(const Counter& counter) { return counter.load(std::memory_order_relaxed); }

  Counter m_messages_sent{0};
  Counter m_messages_received{0};
  Counter m_bytes_sent{0};
  Counter m_bytes_received{0};
  Counter m_one_sided_reads{0};
  Counter m_one_sided_writes{0};
  Counter m_one_sided_bytes{0};
  Counter m_connections_accepted{0};
  Counter m_connections_made{0};
};

}  // namespace sk::fabric
