// fabric_bench: the fabric's raw costs on this machine, the yardstick that
// bench/run.py sets the remote-fault and file numbers against, measured in
// the same run.
//
//   fabric_bench [--transport tcp] [--rounds N] [--bulk-mib M]
//
// Forks a peer process before any thread exists. The peer listens on
// 127.0.0.1 (any free port), registers a 64 MiB region and answers
// P2M_PAGE_READ-shaped requests (a 16-byte page range in, 4 KiB out) and
// P2M_PAGE_WRITE-shaped ones (any payload in, an empty reply out). It tells
// the client its port and region key through a pipe and serves until the
// client closes the other pipe (or dies: PR_SET_PDEATHSIG).
//
// The client measures, one operation in flight at a time, as a fault waits
// for its page:
//   rpc_4k    request -> 4 KiB reply round trip (a remote fault's fabric cost)
//   read_4k   one-sided 4 KiB read at a random page of the region
//   read_1m   one-sided 1 MiB reads, back to back        (MiB/s)
//   write_1m  one-sided 1 MiB writes, back to back       (MiB/s)
//   rpc_1m    1 MiB request payload, empty reply        (MiB/s; a file write's shape)
// after a warm-up of each. Prints one JSON object on stdout: p50, p99 and
// mean in ns of each latency, MiB/s of each bulk operation, and the counts.
// Exit status 0; 1 if the peer or an operation failed; 2 for bad flags.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"

namespace {

using sk::Error;
using sk::Result;
using sk::fabric::Bytes;
using sk::fabric::Connection;
using sk::fabric::Message;
using sk::fabric::RegionKey;
using sk::fabric::Responder;
using sk::fabric::Transport;
using sk::wire::Opcode;
using Clock = std::chrono::steady_clock;

constexpr size_t kPage = 4096;
constexpr size_t kMiB = 1 << 20;
// Large enough that random 4 KiB reads do not all hit the same few cache
// lines, small enough to register in a blink.
constexpr size_t kRegionBytes = 64 * kMiB;
// The shape of a P2M_PAGE_READ request (address + count); the bytes do not
// matter to the transport.
constexpr size_t kPageRequestBytes = 16;
constexpr int kWarmup = 200;

struct PeerInfo {
  uint16_t port = 0;
  RegionKey region;
};

// The peer: serves until `control` reads EOF. Never returns.
[[noreturn]] void run_peer(const std::string& transport_kind, int report, int control) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto transport = sk::fabric::make_transport(transport_kind);
  if (!transport) {
    std::fprintf(stderr, "fabric_bench: peer: %s\n", transport.error().text().c_str());
    _exit(1);
  }
  const Bytes page(kPage, std::byte{0x5a});
  sk::rpc::Dispatcher dispatcher("fabric_bench");
  dispatcher.on(Opcode::P2M_PAGE_READ,
                [&page](const Message&, const Responder&) -> Result<Bytes> { return page; });
  dispatcher.on(Opcode::P2M_PAGE_WRITE,
                [](const Message&, const Responder&) -> Result<Bytes> { return Bytes{}; });
  auto address = (*transport)->listen({"127.0.0.1", 0}, dispatcher.handler());
  std::vector<std::byte> memory(kRegionBytes, std::byte{0x3c});
  auto region = (*transport)->register_region(memory);
  if (!address || !region) {
    std::fprintf(stderr, "fabric_bench: peer: %s\n",
                 (!address ? address.error() : region.error()).text().c_str());
    _exit(1);
  }
  std::string line = std::to_string(address->port) + " " + std::to_string(region->rkey) + " " +
                     std::to_string(region->length) + "\n";
  if (write(report, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(1);
  close(report);
  char byte;
  while (read(control, &byte, 1) > 0) {
  }
  (*transport)->stop();
  _exit(0);
}

Result<PeerInfo> read_peer_info(int report) {
  std::string line;
  char c;
  while (read(report, &c, 1) == 1 && c != '\n') line += c;
  PeerInfo info;
  unsigned port = 0;
  unsigned long long length = 0;
  if (std::sscanf(line.c_str(), "%u %u %llu", &port, &info.region.rkey, &length) != 3) {
    return sk::make_error(EPROTO, "the peer did not start (it said '" + line + "')");
  }
  info.port = static_cast<uint16_t>(port);
  info.region.length = length;
  return info;
}

struct Latency {
  uint64_t p50 = 0, p99 = 0, mean = 0;
  size_t count = 0;
};

Latency summarize(std::vector<uint64_t> samples) {
  Latency result;
  if (samples.empty()) return result;
  std::sort(samples.begin(), samples.end());
  uint64_t sum = 0;
  for (uint64_t s : samples) sum += s;
  result.count = samples.size();
  result.p50 = samples[samples.size() / 2];
  result.p99 = samples[std::min(samples.size() - 1, samples.size() * 99 / 100)];
  result.mean = sum / samples.size();
  return result;
}

// Runs `op` kWarmup times unmeasured, then `rounds` times measured one by one.
Result<Latency> time_each(int rounds, const std::function<Result<void>(int)>& op) {
  for (int i = 0; i < kWarmup; ++i) TRY(op(i));
  std::vector<uint64_t> samples;
  samples.reserve(static_cast<size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    auto start = Clock::now();
    TRY(op(i));
    samples.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
  }
  return summarize(std::move(samples));
}

// MiB/s of `count` back-to-back 1 MiB operations, after a few unmeasured.
Result<double> throughput(int count, const std::function<Result<void>(int)>& op) {
  for (int i = 0; i < 4; ++i) TRY(op(i));
  auto start = Clock::now();
  for (int i = 0; i < count; ++i) TRY(op(i));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(count) / seconds;
}

Result<std::string> measure(const std::string& transport_kind, const PeerInfo& peer, int rounds,
                            int bulk_mib) {
  auto transport = TRY(sk::fabric::make_transport(transport_kind));
  auto connection = TRY(transport->connect({"127.0.0.1", peer.port}));
  const size_t pages = peer.region.length / kPage;
  std::mt19937_64 random(42);
  Bytes request(kPageRequestBytes);
  std::vector<std::byte> buffer(kMiB);

  auto rpc_4k = TRY(time_each(rounds, [&](int) -> Result<void> {
    auto reply = TRY(sk::rpc::call(*connection, Opcode::P2M_PAGE_READ, 1, request));
    if (reply.payload.size() != kPage) return sk::make_error(EPROTO, "short page reply");
    return {};
  }));
  auto read_4k = TRY(time_each(rounds, [&](int) -> Result<void> {
    uint64_t offset = (random() % pages) * kPage;
    return connection->read(peer.region, offset, std::span(buffer.data(), kPage));
  }));
  const uint64_t mib_slots = peer.region.length / kMiB;
  auto read_1m = TRY(throughput(bulk_mib, [&](int i) -> Result<void> {
    return connection->read(peer.region, (static_cast<uint64_t>(i) % mib_slots) * kMiB, buffer);
  }));
  auto write_1m = TRY(throughput(bulk_mib, [&](int i) -> Result<void> {
    return connection->write(peer.region, (static_cast<uint64_t>(i) % mib_slots) * kMiB, buffer);
  }));
  const Bytes big(kMiB, std::byte{0x11});
  auto rpc_1m = TRY(throughput(bulk_mib, [&](int) -> Result<void> {
    TRY(sk::rpc::call(*connection, Opcode::P2M_PAGE_WRITE, 1, big));
    return {};
  }));
  connection->close();
  transport->stop();

  auto latency = [](const char* name, const Latency& l) {
    return "\"" + std::string(name) + "_p50_ns\": " + std::to_string(l.p50) + ", \"" + name +
           "_p99_ns\": " + std::to_string(l.p99) + ", \"" + name +
           "_mean_ns\": " + std::to_string(l.mean) + ", ";
  };
  char bulk[256];
  std::snprintf(bulk, sizeof bulk,
                "\"read_1m_mib_s\": %.1f, \"write_1m_mib_s\": %.1f, \"rpc_1m_mib_s\": %.1f, ",
                read_1m, write_1m, rpc_1m);
  return "{\"transport\": \"" + transport_kind + "\", " + latency("rpc_4k", rpc_4k) +
         latency("read_4k", read_4k) + bulk + "\"rounds\": " + std::to_string(rounds) +
         ", \"bulk_mib\": " + std::to_string(bulk_mib) + "}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string transport_kind = "tcp";
  int rounds = 5000;
  int bulk_mib = 256;
  CLI::App app("fabric_bench: raw fabric round trips and throughput between two processes",
               "fabric_bench");
  app.add_option("--transport", transport_kind, "transport to measure")->capture_default_str();
  app.add_option("--rounds", rounds, "measured 4 KiB operations of each kind")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--bulk-mib", bulk_mib, "1 MiB operations of each bulk kind")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& error) {
    std::cerr << "fabric_bench: " << error.what() << "\n";
    return 2;
  }

  // Fork the peer before this process starts any thread.
  int report[2], control[2];
  if (pipe2(report, O_CLOEXEC) != 0 || pipe2(control, O_CLOEXEC) != 0) {
    std::perror("fabric_bench: pipe");
    return 1;
  }
  pid_t peer = fork();
  if (peer < 0) {
    std::perror("fabric_bench: fork");
    return 1;
  }
  if (peer == 0) {
    close(report[0]);
    close(control[1]);
    run_peer(transport_kind, report[1], control[0]);
  }
  close(report[1]);
  close(control[0]);

  auto info = read_peer_info(report[0]);
  Result<std::string> result =
      info ? measure(transport_kind, *info, rounds, bulk_mib) : Result<std::string>(info.error());
  close(control[1]);  // the peer's cue to stop
  int status = 0;
  waitpid(peer, &status, 0);
  if (!result) {
    std::cerr << "fabric_bench: " << result.error().text() << "\n";
    return 1;
  }
  std::cout << *result << "\n";
  return 0;
}
