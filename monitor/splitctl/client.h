// How splitctl talks to the monitor: a small interface (so the console's
// commands can be tested against a fake) and its implementation over the
// fabric, which speaks CTL2MON_* (see monitor/monitor_server.h).
//
// Errors come back ready for the user: Error::message() is a complete
// sentence such as "cannot reach monitor at 127.0.0.1:7070: Connection
// refused" or the monitor's own text ("vnode 'x' already exists"); the
// console prints message(), never text().
//
// Threads: one caller at a time (the console's thread).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/result.h"
#include "kernel/wire/messages.h"

namespace sk::console {

// What `vnode create` asks for beyond the name.
struct VnodeOptions {
  uint64_t cache = 0;   // bytes; 0: the pComponent's ExCache budget
  uint64_t memory = 0;  // bytes; 0: the monitor's --default-memory
  std::string image;    // empty: the default image
  bool empty = false;   // an empty root instead of an image
};

class MonitorClient {
 public:
  virtual ~MonitorClient() = default;

  virtual Result<std::vector<wire::NodeRecord>> nodes() = 0;
  virtual Result<wire::VnodeRecord> vnode_create(std::string_view name,
                                                 const VnodeOptions& options) = 0;
  virtual Result<std::vector<wire::VnodeRecord>> vnode_list() = 0;
  virtual Result<void> vnode_destroy(std::string_view name) = 0;
};

// The real client. Connects on first use and again after the connection
// drops, so an interactive console survives a monitor restart.
class FabricMonitorClient final : public MonitorClient {
 public:
  FabricMonitorClient(Address monitor, std::string fabric = "tcp");
  ~FabricMonitorClient() override;

  Result<std::vector<wire::NodeRecord>> nodes() override;
  Result<wire::VnodeRecord> vnode_create(std::string_view name,
                                         const VnodeOptions& options) override;
  Result<std::vector<wire::VnodeRecord>> vnode_list() override;
  Result<void> vnode_destroy(std::string_view name) override;

 private:
  Result<fabric::Connection*> connection();
  Result<fabric::Message> call(wire::Opcode opcode, wire::ByteView payload, Duration timeout);

  Address m_monitor;
  std::string m_fabric;
  std::unique_ptr<fabric::Transport> m_transport;
  std::shared_ptr<fabric::Connection> m_connection;
};

}  // namespace sk::console
