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

using NodeList = RecordList<Ctl2monListReply, NodeRecord>;
using VnodeList = RecordList<Ctl2monListReply, VnodeRecord>;
using ProcessList = RecordList<Ctl2monClusterListReply, ProcessRecord>;
using StatList = RecordList<Ctl2monClusterListReply, StatRecord>;
using RunInputBody = Sized<Ctl2pRunInput, &Ctl2pRunInput::length>;
using RunOutputBody = Sized<P2ctlRunOutput, &P2ctlRunOutput::length>;
using RunExitBody = Sized<P2ctlRunExit, &P2ctlRunExit::text_length>;

//         opcode                 request                                    reply                    plane
SK_MESSAGE(FABRIC_READ,           FabricAccess,                              RawBytes,                kFabric)
SK_MESSAGE(FABRIC_WRITE,          Tailed<FabricAccess>,                      Empty,                   kFabric)
SK_MESSAGE(FABRIC_PING,           RawBytes,                                  RawBytes,                kFabric)
SK_MESSAGE(C2MON_JOIN,            C2monJoinRequest,                          C2monJoinReply,          kControl)
SK_MESSAGE(C2MON_HEARTBEAT,       C2monHeartbeat,                            Empty,                   kControl)
SK_MESSAGE(C2MON_LEAVE,           C2monLeaveRequest,                         Empty,                   kControl)
SK_MESSAGE(CTL2MON_NODES,         Empty,                                     NodeList,                kControl)
SK_MESSAGE(CTL2MON_VNODE_CREATE,  Ctl2monVnodeCreateRequest,                 VnodeRecord,             kControl)
SK_MESSAGE(CTL2MON_VNODE_LIST,    Empty,                                     VnodeList,               kControl)
SK_MESSAGE(CTL2MON_VNODE_DESTROY, Ctl2monVnodeDestroyRequest,                Empty,                   kControl)
SK_MESSAGE(CTL2MON_RUN,           Ctl2pRunCommand,                           Ctl2pRunReply,           kControl)
SK_MESSAGE(CTL2MON_STDIN,         RunInputBody,                              Empty,                   kControl)
SK_MESSAGE(CTL2MON_SIGNAL,        Ctl2pRunSignal,                            Empty,                   kControl)
SK_MESSAGE(CTL2MON_PS,            Ctl2monPsRequest,                          ProcessList,             kControl)
SK_MESSAGE(CTL2MON_STATS,         Empty,                                     StatList,                kControl)
SK_MESSAGE(MON2P_VNODE_CREATE,    Mon2cVnodeCreateRequest,                   Empty,                   kControl)
SK_MESSAGE(MON2P_VNODE_DESTROY,   Mon2cVnodeDestroyRequest,                  Empty,                   kControl)
SK_MESSAGE(MON2P_RUN,             Ctl2pRunCommand,                           Ctl2pRunReply,           kControl)
SK_MESSAGE(MON2P_STDIN,           RunInputBody,                              Empty,                   kControl)
SK_MESSAGE(MON2P_SIGNAL,          Ctl2pRunSignal,                            Empty,                   kControl)
SK_MESSAGE(MON2P_PS,              Mon2pPsRequest,                            ProcessList,             kControl)
SK_MESSAGE(MON2P_STATS,           Empty,                                     StatList,                kControl)
SK_MESSAGE(MON2M_VNODE_CREATE,    Mon2cVnodeCreateRequest,                   Empty,                   kControl)
SK_MESSAGE(MON2M_VNODE_DESTROY,   Mon2cVnodeDestroyRequest,                  Empty,                   kControl)
SK_MESSAGE(MON2S_VNODE_CREATE,    Mon2cVnodeCreateRequest,                   Empty,                   kControl)
SK_MESSAGE(MON2S_VNODE_DESTROY,   Mon2cVnodeDestroyRequest,                  Empty,                   kControl)
SK_MESSAGE(P2M_MM_CREATE,         Empty,                                     P2mMmCreateReply,        kData)
SK_MESSAGE(P2M_MM_FREE,           P2mMmFreeRequest,                          Empty,                   kData)
SK_MESSAGE(P2M_PAGE_READ,         P2mPageRange,                              RawBytes,                kData)
SK_MESSAGE(P2M_PAGE_WRITE,        Tailed<P2mPageRange>,                      Empty,                   kData)
SK_MESSAGE(P2M_PAGE_FREE,         P2mPageRange,                              Empty,                   kData)
SK_MESSAGE(P2M_MM_FORK,           P2mMmForkRequest,                          P2mMmCreateReply,        kData)
SK_MESSAGE(P2M_PAGE_MOVE,         P2mPageMoveRequest,                        Empty,                   kData)
SK_MESSAGE(P2S_GETATTR,           StorageBody<P2sPathRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_OPEN,              StorageBody<P2sPathRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_READ,              StorageBody<P2sReadRequest>,               StorageData,             kData)
SK_MESSAGE(P2S_WRITE,             StorageBody<P2sWriteRequest>,              P2sWriteReply,           kData)
SK_MESSAGE(P2S_CREATE,            StorageBody<P2sMakeRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_MKDIR,             StorageBody<P2sMakeRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_MKNOD,             StorageBody<P2sMakeRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_SYMLINK,           StorageBody<P2sMakeRequest>,               StorageStat,             kData)
SK_MESSAGE(P2S_LINK,              StorageBody<P2sTwoPathRequest>,            StorageStat,             kData)
SK_MESSAGE(P2S_UNLINK,            StorageBody<P2sPathRequest>,               Empty,                   kData)
SK_MESSAGE(P2S_RMDIR,             StorageBody<P2sPathRequest>,               Empty,                   kData)
SK_MESSAGE(P2S_RENAME,            StorageBody<P2sTwoPathRequest>,            Empty,                   kData)
SK_MESSAGE(P2S_READDIR,           StorageBody<P2sReaddirRequest>,            StorageListing,          kData)
SK_MESSAGE(P2S_READLINK,          StorageBody<P2sPathRequest>,               StorageData,             kData)
SK_MESSAGE(P2S_SETATTR,           StorageBody<P2sSetattrRequest>,            StorageStat,             kData)
SK_MESSAGE(P2S_FSYNC,             StorageBody<P2sPathRequest>,               Empty,                   kData)
SK_MESSAGE(P2S_STATFS,            StorageBody<P2sPathRequest>,               StorageStatfs,           kData)
SK_MESSAGE(P2MON_OUTPUT,          RunOutputBody,                             Empty,                   kControl)
SK_MESSAGE(P2MON_EXIT,            RunExitBody,                               Empty,                   kControl)
SK_MESSAGE(P2MON_MEMORY_PLACE,    P2monMemoryPlaceRequest,                   P2monMemoryPlaceReply,   kControl)
SK_MESSAGE(MON2CTL_OUTPUT,        RunOutputBody,                             Empty,                   kControl)
SK_MESSAGE(MON2CTL_EXIT,          RunExitBody,                               Empty,                   kControl)

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
Result<void> matches_header(const Mon2cVnodeCreateRequest& body, const Header& header);
Result<void> matches_header(const Mon2cVnodeDestroyRequest& body, const Header& header);
Result<void> matches_header(const P2monMemoryPlaceRequest& body, const Header& header);

template <typename B>
Result<void> check_against_header(const B& body, const Header& header) {
  if constexpr (requires { matches_header(body, header); }) {
    return matches_header(body, header);
  } else {
    return {};
  }
}

}  // namespace sk::wire
