// The protocol between the pComponent's launcher and a vNode init, spoken on
// a SOCK_SEQPACKET socketpair (one message per packet, fds by SCM_RIGHTS).
//
//   init -> host  InitReply{kReady}            once the vNode's root is set up,
//                                             or {kFailed, errno} + error text
//   host -> init  SpawnRequest + strings,      fds: stdin, stdout, stderr, go
//   init -> host  InitReply{kSpawned, vnode pid}  fd: a pidfd of the program
//                 or InitReply{kFailed, errno} + error text
//
// The program waits, before it execs, until the host writes one byte to the
// "go" pipe: by then the host's tracer has seized it, so no syscall of the
// program runs untraced. Closing the socket ends the init and with it the
// vNode's pid namespace.
#pragma once

#include <cstdint>

namespace sk::pcomponent::init_protocol {

inline constexpr uint32_t kMagic = 0x54494e56;  // "VNIT"
// Bounds a spawn packet; argv and environment beyond this fail with E2BIG.
inline constexpr uint32_t kMaxStrings = 1u << 20;

struct SpawnRequest {
  uint32_t magic;
  uint32_t argc;
  uint32_t envc;
  uint32_t strings_length;  // cwd, argv[], env[] follow, each NUL-terminated
};
static_assert(sizeof(SpawnRequest) == 16);

enum ReplyKind : uint32_t { kReady = 1, kSpawned = 2, kFailed = 3 };

struct InitReply {
  uint32_t magic;
  uint32_t kind;
  int32_t error;      // errno for kFailed
  int32_t vnode_pid;  // for kSpawned
};
static_assert(sizeof(InitReply) == 16);

}  // namespace sk::pcomponent::init_protocol
