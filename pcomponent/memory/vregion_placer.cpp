// The monitor placer (see placement.h). Lock order: m_mutex only.
#include "pcomponent/memory/vregion_placer.h"

#include "kernel/rpc/rpc.h"
#include "kernel/wire/memory_messages.h"

namespace sk::pcomponent::memory {

MonitorVregionPlacer::MonitorVregionPlacer(fabric::Transport& transport, Address monitor,
                                           Duration timeout)
    : m_transport(transport), m_monitor(std::move(monitor)), m_timeout(timeout) {}

Result<VregionPlacement> MonitorVregionPlacer::place(VnodeId vnode, uint64_t bytes) {
  std::shared_ptr<fabric::Connection> connection;
  {
    std::lock_guard lock(m_mutex);
    if (!m_connection || !m_connection->is_open()) {
      auto connected = m_transport.connect(m_monitor, {}, m_timeout);
      if (!connected) {
        return make_error(EHOSTUNREACH, "memory placement: cannot reach the monitor at " +
                                            m_monitor.to_string() + ": " +
                                            connected.error().text());
      }
      m_connection = std::move(connected).value();
    }
    connection = m_connection;
  }
  auto reply = rpc::call<wire::Opcode::P2MON_MEMORY_PLACE>(
      *connection, vnode, wire::P2monMemoryPlaceRequest{vnode, 0, bytes}, m_timeout);
  if (!reply) {
    return make_error(reply.error().code(), "memory placement: " + reply.error().message());
  }
  return VregionPlacement{reply->node, reply->address.str()};
}

}  // namespace sk::pcomponent::memory
