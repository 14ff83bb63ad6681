// The control channel of a verbs connection: the TCP socket on which the two
// ends set up their RC queue pairs, which then stays open for the
// connection's life.
//
// Protocol (every record is one fixed 80-byte ControlRecord):
//   connector -> listener  kHello: its QP number, PSN, LID, GID, path MTU,
//                          RDMA READ depth and receive buffers (count, size)
//   listener -> connector  kHello: the same for the listener's QP, sent once
//                          that QP is ready to receive (RTR) with all its
//                          receive buffers posted; the connector then moves
//                          its own QP to RTS and may send at once.
//   either way             kKeyCheck{token, rkey, address, length}: "may I
//                          use this region of yours?"; answered by
//                          kKeyAnswer{token, status} (0 or EINVAL).
//   either way             kRevoke{token, rkey}: "forget this key: it is
//                          being deregistered"; answered by kRevokeAck{token}.
// Closing the socket (or its failing) is how a connection ends: the other end
// sees EOF and fails everything outstanding with ECONNRESET. The socket thus
// also carries what RDMA cannot: a prompt signal that the peer is gone, and
// the key checks that keep a stale or forged RegionKey from putting both
// QPs into the error state (an RDMA access with an unknown rkey is fatal to
// an RC queue pair).
#pragma once

#include <chrono>
#include <cstdint>
#include <type_traits>

#include "kernel/config.h"
#include "kernel/result.h"

namespace sk::fabric::verbs {

inline constexpr uint32_t kControlMagic = 0x42564b53;  // "SKVB" in memory order
inline constexpr uint16_t kControlVersion = 1;

enum class ControlKind : uint16_t {
  kHello = 1,
  kKeyCheck = 2,
  kKeyAnswer = 3,
  kRevoke = 4,
  kRevokeAck = 5,
};

struct ControlRecord {
  uint32_t magic;
  uint16_t version;
  uint16_t kind;  // ControlKind
  // kHello
  uint32_t qp_number;
  uint32_t psn;
  uint16_t lid;
  uint8_t mtu;          // enum ibv_mtu
  uint8_t max_reads;    // RDMA READs this end serves at once (max_dest_rd_atomic)
  uint32_t recv_depth;  // receive buffers posted = send credits the peer starts with
  uint32_t recv_size;   // bytes per receive buffer = the largest SEND it accepts
  // key records
  uint32_t rkey;
  uint64_t token;
  uint64_t address;
  uint64_t length;
  int32_t status;  // kKeyAnswer: 0 or a positive errno
  uint32_t reserved;
  uint8_t gid[16];  // kHello
};
static_assert(sizeof(ControlRecord) == 80);
static_assert(std::is_trivially_copyable_v<ControlRecord>);

inline ControlRecord make_record(ControlKind kind) {
  ControlRecord record{};
  record.magic = kControlMagic;
  record.version = kControlVersion;
  record.kind = static_cast<uint16_t>(kind);
  return record;
}

// Checks magic and version of a received record.
Result<void> check_record(const ControlRecord& record);

// Blocking socket helpers for the set-up of outgoing connections, which runs
// on the caller's thread; each gives up at `deadline`.
using Deadline = std::chrono::steady_clock::time_point;

// A connected, non-blocking TCP socket to address (ECONNREFUSED, ETIMEDOUT,
// EHOSTUNREACH for a name that does not resolve).
Result<int> connect_socket(const Address& address, Deadline deadline);
Result<void> send_record(int fd, const ControlRecord& record, Deadline deadline);
Result<ControlRecord> receive_record(int fd, Deadline deadline);

// A listening, non-blocking TCP socket and the address it is bound to.
Result<std::pair<int, Address>> listen_socket(const Address& address);

// "host:port" of the socket's peer.
std::string peer_name(int fd);

}  // namespace sk::fabric::verbs
