// Where a vNode's memory goes: the pComponent side of GMM placement. The
// memory manager asks once per vRegion (kVregionBytes of a vNode's virtual
// address space) the first time it writes pages of that vRegion back.
//
// MonitorVregionPlacer asks the monitor (P2MON_MEMORY_PLACE, kernel/wire/
// memory_messages.h) on a connection of its own, made on first use and
// again after it closed.
//
// Threads: place() blocks on the network; any thread but the transport's.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/node.h"
#include "kernel/result.h"

namespace sk::pcomponent::memory {

struct VregionPlacement {
  NodeId node = kNoNode;
  std::string address;  // the mComponent's fabric address
};

class VregionPlacer {
 public:
  virtual ~VregionPlacer() = default;
  // The mComponent that is to hold `bytes` more of `vnode`'s memory.
  virtual Result<VregionPlacement> place(VnodeId vnode, uint64_t bytes) = 0;
};

class MonitorVregionPlacer final : public VregionPlacer {
 public:
  MonitorVregionPlacer(fabric::Transport& transport, Address monitor,
                       Duration timeout = std::chrono::seconds(5));
  Result<VregionPlacement> place(VnodeId vnode, uint64_t bytes) override;

 private:
  fabric::Transport& m_transport;
  const Address m_monitor;
  const Duration m_timeout;
  std::mutex m_mutex;  // guards m_connection
  std::shared_ptr<fabric::Connection> m_connection;
};

}  // namespace sk::pcomponent::memory
