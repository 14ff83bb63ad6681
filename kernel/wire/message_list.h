// The one table of what every opcode carries: its request body, its reply
// body and its plane. opcodes.h lists the opcodes; this says what they mean,
// and kernel/rpc decodes, checks and dispatches from it, so a server's
// handler only ever sees a request that decoded and validated.
//
// Body types are fixed structs or the kinds of kernel/wire/body.h; the
// headers next to this one describe each message's fields and errors.
//
// Planes:
//   kFabric   spoken by the transports themselves; no dispatcher serves them
//   kControl  membership, vNodes, runs: the monitor, the console, and the
//             monitor's requests to components
//   kData     the page and file traffic between components (P2M_, P2S_)
// A server keeps one dispatcher per plane (rpc::ControlDispatcher,
// rpc::DataDispatcher), and registering an opcode on the other plane's
// dispatcher does not compile.
//
// Adding a request type: add its opcode to opcodes.h, one SK_MESSAGE line
// here (and a matches_header() overload if its body repeats the header's
// vNode), and register its handler with dispatcher.on<Opcode::X>(...).
#pragma once

#include <cstdint>

#include "kernel/result.h"
#include "kernel/wire/body.h"
#include "kernel/wire/header.h"
#include "kernel/wire/memory_messages.h"
#include "kernel/wire/messages.h"
#include "kernel/wire/opcodes.h"
#include "kernel/wire/process_messages.h"
#include "kernel/wire/storage_body.h"
#include "kernel/wire/storage_messages.h"

namespace sk::wire {

enum class Plane : uint8_t { kFabric, kControl, kData };

// Defined for every opcode below; an opcode without an entry does not
// compile wherever it is used (plane_of() uses them all).
template <Opcode>
struct MessageTraits;

#define SK_MESSAGE(op, request, reply, plane_)      \
  template <>                                       \
  struct MessageTraits<Opcode::op> {                \
    using Request = request;                        \
    using Reply = reply;                            \
    static constexpr Plane plane = Plane::plane_;   \
  };

using NodeList = RecordList<ListReply, NodeRecord>;
using VnodeList = RecordList<ListReply, VnodeRecord>;
using ProcessList = RecordList<ClusterListReply, ProcessRecord>;
using StatList = RecordList<ClusterListReply, StatRecord>;
using RunInputBody = Sized<RunInput, &RunInput::length>;
using RunOutputBody = Sized<RunOutput, &RunOutput::length>;
using RunExitBody = Sized<RunExit, &RunExit::text_length>;

//         opcode                 request                                    reply              plane
SK_MESSAGE(FABRIC_READ,           FabricAccess,                              RawBytes,          kFabric)
SK_MESSAGE(FABRIC_WRITE,          Tailed<FabricAccess>,                      Empty,             kFabric)
SK_MESSAGE(FABRIC_PING,           RawBytes,                                  RawBytes,          kFabric)
SK_MESSAGE(C2MON_JOIN,            JoinRequest,                               JoinReply,         kControl)
SK_MESSAGE(C2MON_HEARTBEAT,       Heartbeat,                                 Empty,             kControl)
SK_MESSAGE(C2MON_LEAVE,           LeaveRequest,                              Empty,             kControl)
SK_MESSAGE(CTL2MON_NODES,         Empty,                                     NodeList,          kControl)
SK_MESSAGE(CTL2MON_VNODE_CREATE,  VnodeCreateRequest,                        VnodeRecord,       kControl)
SK_MESSAGE(CTL2MON_VNODE_LIST,    Empty,                                     VnodeList,         kControl)
SK_MESSAGE(CTL2MON_VNODE_DESTROY, VnodeDestroyRequest,                       Empty,             kControl)
SK_MESSAGE(CTL2MON_RUN,           RunCommand,                                RunStarted,        kControl)
SK_MESSAGE(CTL2MON_STDIN,         RunInputBody,                              Empty,             kControl)
SK_MESSAGE(CTL2MON_SIGNAL,        RunSignal,                                 Empty,             kControl)
SK_MESSAGE(CTL2MON_PS,            PsRequest,                                 ProcessList,       kControl)
SK_MESSAGE(CTL2MON_STATS,         Empty,                                     StatList,          kControl)
SK_MESSAGE(MON2P_VNODE_CREATE,    VnodeSetup,                                Empty,             kControl)
SK_MESSAGE(MON2P_VNODE_DESTROY,   VnodeTeardown,                             Empty,             kControl)
SK_MESSAGE(MON2P_RUN,             RunCommand,                                RunStarted,        kControl)
SK_MESSAGE(MON2P_STDIN,           RunInputBody,                              Empty,             kControl)
SK_MESSAGE(MON2P_SIGNAL,          RunSignal,                                 Empty,             kControl)
SK_MESSAGE(MON2P_PS,              PsQuery,                                   ProcessList,       kControl)
SK_MESSAGE(MON2P_STATS,           Empty,                                     StatList,          kControl)
SK_MESSAGE(MON2M_VNODE_CREATE,    VnodeSetup,                                Empty,             kControl)
SK_MESSAGE(MON2M_VNODE_DESTROY,   VnodeTeardown,                             Empty,             kControl)
SK_MESSAGE(MON2S_VNODE_CREATE,    VnodeSetup,                                Empty,             kControl)
SK_MESSAGE(MON2S_VNODE_DESTROY,   VnodeTeardown,                             Empty,             kControl)
SK_MESSAGE(P2M_MM_CREATE,         Empty,                                     MmCreateReply,     kData)
SK_MESSAGE(P2M_MM_FREE,           MmFreeRequest,                             Empty,             kData)
SK_MESSAGE(P2M_PAGE_READ,         PageRange,                                 RawBytes,          kData)
SK_MESSAGE(P2M_PAGE_WRITE,        Tailed<PageRange>,                         Empty,             kData)
SK_MESSAGE(P2M_PAGE_FREE,         PageRange,                                 Empty,             kData)
SK_MESSAGE(P2M_MM_FORK,           MmForkRequest,                             MmCreateReply,     kData)
SK_MESSAGE(P2M_PAGE_MOVE,         PageMove,                                  Empty,             kData)
SK_MESSAGE(P2S_GETATTR,           StorageBody<StoragePathRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_OPEN,              StorageBody<StoragePathRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_READ,              StorageBody<StorageReadRequest>,           StorageData,       kData)
SK_MESSAGE(P2S_WRITE,             StorageBody<StorageWriteRequest>,          StorageWriteReply, kData)
SK_MESSAGE(P2S_CREATE,            StorageBody<StorageMakeRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_MKDIR,             StorageBody<StorageMakeRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_MKNOD,             StorageBody<StorageMakeRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_SYMLINK,           StorageBody<StorageMakeRequest>,           StorageStat,       kData)
SK_MESSAGE(P2S_LINK,              StorageBody<StorageTwoPathRequest>,        StorageStat,       kData)
SK_MESSAGE(P2S_UNLINK,            StorageBody<StoragePathRequest>,           Empty,             kData)
SK_MESSAGE(P2S_RMDIR,             StorageBody<StoragePathRequest>,           Empty,             kData)
SK_MESSAGE(P2S_RENAME,            StorageBody<StorageTwoPathRequest>,        Empty,             kData)
SK_MESSAGE(P2S_READDIR,           StorageBody<StorageReaddirRequest>,        StorageListing,    kData)
SK_MESSAGE(P2S_READLINK,          StorageBody<StoragePathRequest>,           StorageData,       kData)
SK_MESSAGE(P2S_SETATTR,           StorageBody<StorageSetattrRequest>,        StorageStat,       kData)
SK_MESSAGE(P2S_FSYNC,             StorageBody<StoragePathRequest>,           Empty,             kData)
SK_MESSAGE(P2S_STATFS,            StorageBody<StoragePathRequest>,           StorageStatfs,     kData)
SK_MESSAGE(P2MON_OUTPUT,          RunOutputBody,                             Empty,             kControl)
SK_MESSAGE(P2MON_EXIT,            RunExitBody,                               Empty,             kControl)
SK_MESSAGE(P2MON_MEMORY_PLACE,    MemoryPlaceRequest,                        MemoryPlaceReply,  kControl)
SK_MESSAGE(MON2CTL_OUTPUT,        RunOutputBody,                             Empty,             kControl)
SK_MESSAGE(MON2CTL_EXIT,          RunExitBody,                               Empty,             kControl)

#undef SK_MESSAGE

template <Opcode Op>
using RequestOf = typename MessageTraits<Op>::Request;
template <Opcode Op>
using ReplyOf = typename MessageTraits<Op>::Reply;

// Every opcode has an entry whose bodies are body kinds (checked here once,
// for the whole list).
#define SK_WIRE_CHECK_ENTRY(name, value)                                       \
  static_assert(Body<RequestOf<Opcode::name>> && Body<ReplyOf<Opcode::name>>, \
                #name "'s bodies must be body kinds (kernel/wire/body.h)");
SK_WIRE_OPCODES(SK_WIRE_CHECK_ENTRY)
#undef SK_WIRE_CHECK_ENTRY

// The plane of a raw opcode, or kFabric for one that is not in the list
// (which no dispatcher serves either).
constexpr Plane plane_of(uint16_t raw) {
  switch (raw) {
#define SK_WIRE_PLANE_CASE(name, value) \
  case value: return MessageTraits<Opcode::name>::plane;
    SK_WIRE_OPCODES(SK_WIRE_PLANE_CASE)
#undef SK_WIRE_PLANE_CASE
  }
  return Plane::kFabric;
}

// Requests whose body repeats the header's vNode: the two must agree, and
// vNode 0 is reserved (EINVAL otherwise). The dispatcher runs the overload
// for the request's body type, where there is one, before the handler.
Result<void> matches_header(const VnodeSetup& body, const Header& header);
Result<void> matches_header(const VnodeTeardown& body, const Header& header);
Result<void> matches_header(const MemoryPlaceRequest& body, const Header& header);

template <typename B>
Result<void> check_against_header(const B& body, const Header& header) {
  if constexpr (requires { matches_header(body, header); }) {
    return matches_header(body, header);
  } else {
    return {};
  }
}

}  // namespace sk::wire
