// What the p/m/sComponent daemons share around their component: the common
// flags (--monitor, --listen, --fabric, --log-level), logging set-up, signal
// handling, and the start-up / shut-down sequence
//
//   transport -> listen -> join the monitor -> wait for SIGINT/SIGTERM ->
//   leave -> stop the component -> stop the transport -> exit 0
//
// A daemon's main() looks like:
//
//   sk::Daemon daemon("mcomponent", sk::NodeKind::kMcomponent, "lends memory to vNodes");
//   std::string capacity = "1G";
//   daemon.app().add_option("--capacity", capacity, "...");
//   if (auto exit_code = daemon.parse(argc, argv)) return *exit_code;
//   auto bytes = sk::parse_size(capacity);
//   if (!bytes) return daemon.bad_flag("--capacity", bytes.error());
//   Mcomponent component(*bytes);
//   return daemon.run({component.dispatcher(), [&] { return component.usage(); }});
//
// Threads: everything here runs on main, except a signal thread that run()
// starts; parse() blocks SIGINT/SIGTERM in the calling thread so that every
// thread created after it (the transport's, the component's workers)
// inherits the mask and only the signal thread takes them.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/membership_client.h"
#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/rpc/rpc.h"

namespace sk {

// The flags every component daemon takes.
struct DaemonFlags {
  std::string monitor;  // default: $SPLIT_MONITOR, else 127.0.0.1:7070
  std::string listen = "127.0.0.1:0";
  std::string fabric = "tcp";
  std::string log_level = "info";
};

class Daemon {
 public:
  // What run() needs from the component. The dispatcher serves both the
  // listener (peers) and the monitor connection, so it holds both planes'
  // handlers (rpc::Dispatcher's constructor that takes the planes); it must
  // outlive run(). The MON2x_VNODE_* bodies are decoded and checked against
  // the header by the dispatcher (wire::matches_header).
  struct Service {
    const rpc::Dispatcher& dispatcher;
    MembershipClient::UsageFn usage;
    // Runs after the member left and before the transport stops, so work in
    // flight can still send its replies. May be empty.
    std::function<void()> stop = {};
  };

  Daemon(std::string name, NodeKind kind, std::string description);

  // Add component-specific flags here before parse().
  CLI::App& app() { return m_app; }
  const DaemonFlags& flags() const { return m_flags; }
  const std::string& name() const { return m_name; }
  // The monitor's address (--monitor). Valid after parse().
  const Address& monitor() const { return m_monitor; }
  // The transport parse() made, for components that call peers themselves
  // (a pComponent's storage and memory clients). Valid after parse().
  fabric::Transport& transport() { return *m_transport; }
  // This component's node id while run() has it joined (kNoNode before and
  // after). Any thread.
  NodeId node_id() const;

  // Parses the command line, checks the common flags, starts logging,
  // blocks SIGINT/SIGTERM and makes the transport. Returns the exit code
  // when the process should exit now: 0 after --help, 2 after a bad flag
  // (one clear line on stderr).
  std::optional<int> parse(int argc, char** argv);

  // Reports a bad value of a component-specific flag: one line, exit code 2.
  int bad_flag(std::string_view flag, const Error& error) const;

  // Starts the transport, listens, joins the monitor, serves until SIGINT or
  // SIGTERM, then leaves and stops. Returns the process exit code: 0 after a
  // signal, 1 when start-up failed (the reason is logged).
  int run(Service service);

 private:
  std::string m_name;
  NodeKind m_kind;
  CLI::App m_app;
  DaemonFlags m_flags;
  Address m_monitor;
  Address m_listen;
  std::unique_ptr<fabric::Transport> m_transport;  // made by parse()
  mutable std::mutex m_member_mutex;               // guards m_member
  const MembershipClient* m_member = nullptr;      // set while run() has one
};

}  // namespace sk
