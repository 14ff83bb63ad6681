// The monitor daemon: owns the cluster's membership and vNode table and
// serves the console. See monitor_server.h for the protocol.
//
//   monitor [--listen HOST:PORT] [--fabric tcp] [--console-listen HOST:PORT]
//           [--default-memory SIZE] [--failure-timeout MS] [--log-level LEVEL]
//
// --console-listen serves splitctl on a second, tcp listener with the same
// dispatcher, for when the fabric is one a console cannot speak (verbs) or
// lives on a network the console cannot reach (the QEMU cluster's fabric).
//
// Exit status: 0 after SIGINT/SIGTERM, 1 when start-up fails, 2 for a bad
// flag (one line on stderr).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "kernel/config.h"
#include "kernel/fabric/fabric_stats.h"
#include "kernel/fabric/transport.h"
#include "kernel/log.h"
#include "monitor/monitor_server.h"

namespace {

const sk::Logger logger("monitor");

constexpr int kExitStartupFailed = 1;
constexpr int kExitBadFlag = 2;

int bad_flag(const std::string& text) {
  std::cerr << "monitor: " << text << " (see --help)\n";
  return kExitBadFlag;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:7070";
  std::string fabric = "tcp";
  std::string console_listen;
  std::string default_memory = "1G";
  int64_t failure_timeout_ms = 2000;
  std::string log_level = "info";

  CLI::App app("splitkernel monitor: cluster membership, vNode table and console server",
               "monitor");
  app.add_option("--listen", listen, "address to serve components and splitctl on")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--fabric", fabric, "transport: tcp, or verbs (needs an RDMA device, e.g. rxe)")
      ->type_name("KIND")
      ->capture_default_str();
  app.add_option("--console-listen", console_listen,
                 "also serve splitctl on this address, over tcp whatever --fabric is")
      ->type_name("HOST:PORT");
  app.add_option("--default-memory", default_memory,
                 "memory quota of a vNode created without --memory")
      ->type_name("SIZE")
      ->capture_default_str();
  app.add_option("--failure-timeout", failure_timeout_ms,
                 "a component silent for this long is marked failed")
      ->type_name("MS")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& error) {
    return bad_flag(error.what());
  }

  auto address = sk::parse_address(listen);
  if (!address) return bad_flag("--listen: " + address.error().message());
  std::optional<sk::Address> console_address;
  if (!console_listen.empty()) {
    auto parsed = sk::parse_address(console_listen);
    if (!parsed) return bad_flag("--console-listen: " + parsed.error().message());
    console_address = *parsed;
  }
  auto memory = sk::parse_size(default_memory);
  if (!memory) return bad_flag("--default-memory: " + memory.error().message());
  if (*memory == 0) return bad_flag("--default-memory: must be more than 0");
  if (failure_timeout_ms <= 0) return bad_flag("--failure-timeout: must be more than 0 ms");
  if (!sk::init_logging("monitor", log_level)) {
    return bad_flag("--log-level: unknown level '" + log_level + "'");
  }

  // Block the signals before any thread exists, so that every thread
  // inherits the mask and only sigwait() below takes them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  sk::monitor::MonitorServer::Options options;
  options.default_memory = *memory;
  options.failure_timeout = std::chrono::milliseconds(failure_timeout_ms);
  // Declared before the transport so that it is destroyed after it: the
  // transport's callbacks use the server.
  std::optional<sk::monitor::MonitorServer> server;

  auto transport = sk::fabric::make_transport(fabric);
  if (!transport) return bad_flag("--fabric: " + transport.error().message());
  options.fabric = (*transport)->kind();
  // The fabric's counters, not the console listener's: `splitctl stats`
  // shows what went over the fabric.
  options.extra_stats = [fabric_transport = transport->get()] {
    return sk::fabric::fabric_stats(*fabric_transport);
  };
  server.emplace(options);
  (*transport)->set_node_id(sk::kMonitorNodeId);

  auto bound = (*transport)->listen(*address, server->dispatcher().handler());
  if (!bound) {
    logger.error("{}", bound.error().text());
    return kExitStartupFailed;
  }
  server->set_address(bound->to_string());
  std::unique_ptr<sk::fabric::Transport> console_transport;
  if (console_address) {
    auto made = sk::fabric::make_transport("tcp");
    if (!made) {
      logger.error("console transport: {}", made.error().text());
      return kExitStartupFailed;
    }
    console_transport = std::move(*made);
    console_transport->set_node_id(sk::kMonitorNodeId);
    auto console_bound =
        console_transport->listen(*console_address, server->dispatcher().handler());
    if (!console_bound) {
      logger.error("--console-listen: {}", console_bound.error().text());
      return kExitStartupFailed;
    }
    logger.info("console listener on {} (tcp)", console_bound->to_string());
  }
  server->start();
  if (failure_timeout_ms < 2 * static_cast<int64_t>(sk::monitor::kHeartbeatIntervalMs)) {
    logger.warn(
        "--failure-timeout {} ms is less than two heartbeat intervals ({} ms): healthy "
        "components may be marked failed",
        failure_timeout_ms, sk::monitor::kHeartbeatIntervalMs);
  }
  logger.info("listening on {} (fabric {}, failure timeout {} ms, default vNode memory {})",
              bound->to_string(), sk::wire::to_string(options.fabric), failure_timeout_ms,
              sk::format_size(options.default_memory));

  int signal = 0;
  sigwait(&signals, &signal);
  logger.info("{}: shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
  // The transport first: requests in flight to components fail at once, so
  // the worker finishes quickly and every waiting console gets its answer.
  if (console_transport) console_transport->stop();
  (*transport)->stop();
  server->stop();
  return 0;
}
