// The one list of wire opcodes. Each is named by its direction, as in LegoOS:
//   FABRIC_  spoken by the transports themselves (one-sided ops, ping)
//   C2MON_   any component to the monitor (membership)
//   CTL2MON_ the console (splitctl) to the monitor
//   MON2P_, MON2M_, MON2S_  the monitor to a p/m/sComponent
//   P2M_, P2S_  a pComponent to an m/sComponent
//   P2MON_   a pComponent to the monitor (a run's output and exit; memory placement)
//   MON2CTL_ the monitor to the console (a run's output and exit)
// A reply carries the request's opcode with kFlagReply set in the header.
// The high byte of an opcode is its direction group. What each opcode's
// request and reply carry, and its plane: message_list.h.
//
// Message structs are named by direction too, CamelCase: C2monJoinRequest,
// P2mPageRange, P2sReadRequest. Three prefixes name a struct more than one
// opcode carries: Mon2c (the monitor to any component: the MON2P_, MON2M_
// and MON2S_ vNode set-up and teardown), Ctl2p (a run's command, input and
// signals, which the console sends to the monitor and the monitor relays to
// the pComponent: CTL2MON_ and MON2P_) and P2ctl (a run's output and exit,
// the other way: P2MON_ and MON2CTL_). Records inside replies (NodeRecord,
// ProcessRecord...) and body kinds (body.h) carry no prefix.
#pragma once

#include <cstdint>
#include <string_view>

namespace sk::wire {

#define SK_WIRE_OPCODES(X)        \
  X(FABRIC_READ, 0x0001)          \
  X(FABRIC_WRITE, 0x0002)         \
  X(FABRIC_PING, 0x0003)          \
  X(C2MON_JOIN, 0x0101)           \
  X(C2MON_HEARTBEAT, 0x0102)      \
  X(C2MON_LEAVE, 0x0103)          \
  X(CTL2MON_NODES, 0x0201)        \
  X(CTL2MON_VNODE_CREATE, 0x0202) \
  X(CTL2MON_VNODE_LIST, 0x0203)   \
  X(CTL2MON_VNODE_DESTROY, 0x0204) \
  X(CTL2MON_RUN, 0x0205)          \
  X(CTL2MON_STDIN, 0x0206)        \
  X(CTL2MON_SIGNAL, 0x0207)       \
  X(CTL2MON_PS, 0x0208)           \
  X(CTL2MON_STATS, 0x0209)        \
  X(MON2P_VNODE_CREATE, 0x0301)   \
  X(MON2P_VNODE_DESTROY, 0x0302)  \
  X(MON2P_RUN, 0x0303)            \
  X(MON2P_STDIN, 0x0304)          \
  X(MON2P_SIGNAL, 0x0305)         \
  X(MON2P_PS, 0x0306)             \
  X(MON2P_STATS, 0x0307)          \
  X(MON2M_VNODE_CREATE, 0x0311)   \
  X(MON2M_VNODE_DESTROY, 0x0312)  \
  X(MON2S_VNODE_CREATE, 0x0321)   \
  X(MON2S_VNODE_DESTROY, 0x0322)  \
  X(P2M_MM_CREATE, 0x0401)        \
  X(P2M_MM_FREE, 0x0402)          \
  X(P2M_PAGE_READ, 0x0403)        \
  X(P2M_PAGE_WRITE, 0x0404)       \
  X(P2M_PAGE_FREE, 0x0405)        \
  X(P2M_MM_FORK, 0x0406)          \
  X(P2M_PAGE_MOVE, 0x0407)        \
  X(P2S_GETATTR, 0x0501)          \
  X(P2S_OPEN, 0x0502)             \
  X(P2S_READ, 0x0503)             \
  X(P2S_WRITE, 0x0504)            \
  X(P2S_CREATE, 0x0505)           \
  X(P2S_MKDIR, 0x0506)            \
  X(P2S_MKNOD, 0x0507)            \
  X(P2S_SYMLINK, 0x0508)          \
  X(P2S_LINK, 0x0509)             \
  X(P2S_UNLINK, 0x050a)           \
  X(P2S_RMDIR, 0x050b)            \
  X(P2S_RENAME, 0x050c)           \
  X(P2S_READDIR, 0x050d)          \
  X(P2S_READLINK, 0x050e)         \
  X(P2S_SETATTR, 0x050f)          \
  X(P2S_FSYNC, 0x0510)            \
  X(P2S_STATFS, 0x0511)           \
  X(P2MON_OUTPUT, 0x0601)         \
  X(P2MON_EXIT, 0x0602)           \
  X(P2MON_MEMORY_PLACE, 0x0603)   \
  X(MON2CTL_OUTPUT, 0x0701)       \
  X(MON2CTL_EXIT, 0x0702)

enum class Opcode : uint16_t {
#define SK_WIRE_OPCODE_ENUM(name, value) name = value,
  SK_WIRE_OPCODES(SK_WIRE_OPCODE_ENUM)
#undef SK_WIRE_OPCODE_ENUM
};

// "P2M_PAGE_READ", or "unknown" for a value that is not in the list.
std::string_view opcode_name(uint16_t raw);
bool is_known_opcode(uint16_t raw);

}  // namespace sk::wire
