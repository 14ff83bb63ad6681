// The monitor's request handling: membership (C2MON_*), the console's
// requests (CTL2MON_*) and the requests the monitor itself sends to
// components (MON2P_/MON2M_/MON2S_VNODE_*).
//
// The protocol, as served here (every request carries vNode 0 unless said):
//   C2MON_JOIN       C2monJoinRequest -> C2monJoinReply{node, heartbeat_interval_ms}.
//                    The connection the join came on is kept: the monitor
//                    sends that component its MON2x_ requests on it, and its
//                    closing marks the node failed at once. After the reply,
//                    the component is sent MON2x_VNODE_CREATE for every vNode
//                    it should know (all of them for p/m, those rooted on it
//                    for s).
//   C2MON_HEARTBEAT  C2monHeartbeat -> empty; ENOENT when the node is unknown or
//                    left (the component joins again). A failed node that
//                    heartbeats is alive again and is brought up to date.
//   C2MON_LEAVE      C2monLeaveRequest -> empty; ENOENT when unknown.
//   CTL2MON_NODES    empty -> Ctl2monListReply + NodeRecord[count], the monitor first.
//   CTL2MON_VNODE_LIST    empty -> Ctl2monListReply + VnodeRecord[count], by id.
//   CTL2MON_VNODE_CREATE  Ctl2monVnodeCreateRequest -> VnodeRecord. EEXIST for a
//                    duplicate name; EHOSTUNREACH when no sComponent is
//                    alive. The root's sComponent gets MON2S_VNODE_CREATE
//                    first (failure: nothing is kept, the error is returned);
//                    then every alive m/pComponent gets MON2M_/MON2P_
//                    (failures there are logged, not fatal).
//   CTL2MON_VNODE_DESTROY Ctl2monVnodeDestroyRequest -> empty; ENOENT when missing.
//                    Every alive component that set the vNode up gets
//                    MON2x_VNODE_DESTROY; their failures are logged.
//   MON2x_VNODE_CREATE   Mon2cVnodeCreateRequest, header vnode = id -> empty (idempotent
//                    on the component: it may be re-sent after a failure).
//   MON2x_VNODE_DESTROY  Mon2cVnodeDestroyRequest, header vnode = id -> empty.
//   Runs, ps and stats (CTL2MON_RUN/STDIN/SIGNAL/PS/STATS, MON2P_*, P2MON_*,
//   MON2CTL_*): see kernel/wire/process_messages.h; served in
//   monitor_runs.cpp. A run goes to the alive pComponent that has the vNode
//   and the fewest runs (Membership::pick_pcomponent). Output is forwarded
//   chunk by chunk, each P2MON_OUTPUT answered only once the console
//   answered its MON2CTL_OUTPUT (end-to-end flow control, without ever
//   waiting on the transport's thread). ps and stats ask every alive
//   pComponent at once and answer when all did or timed out.
//
// Threads: the handlers run on the transport's thread and never block
// (run, ps and stats handlers reply from reply callbacks).
// vNode creation and destruction, and bringing a component up to date, wait
// for components' replies, so they run one at a time, in order, on the
// monitor's worker thread; that order is also what keeps the vNode table
// consistent (only the worker changes it). A failure-detector thread checks
// heartbeat ages.
//
// Lock order: m_mutex (node and vNode tables), then m_queue_mutex (never
// held together in practice). No lock is held while a request to a
// component is outstanding or while a connection's close handler is set.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kernel/config.h"
#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/message_list.h"
#include "kernel/wire/process_messages.h"
#include "monitor/membership.h"
#include "monitor/run_table.h"
#include "monitor/vnode_table.h"

namespace sk::monitor {

// Components are told to heartbeat this often (C2monJoinReply).
inline constexpr uint32_t kHeartbeatIntervalMs = 500;

class MonitorServer {
 public:
  struct Options {
    wire::FabricKind fabric = wire::FabricKind::kTcp;
    std::string address;  // the monitor's own address, shown in `nodes`
    uint64_t default_memory = 1ull << 30;
    Duration failure_timeout = std::chrono::milliseconds(2000);
    // Each MON2x_ request to a component; generous because an sComponent may
    // populate a vNode root from the default image.
    Duration component_timeout = std::chrono::seconds(20);
    // An sComponent's MON2S_ request: filling a new root from an image is a
    // copy of ~90 MiB, seconds on a VM under TCG or a slow disk.
    Duration root_timeout = std::chrono::seconds(120);
    // MON2P_RUN: the pComponent may have to start the vNode's init first,
    // which mounts and reads its root.
    Duration run_timeout = std::chrono::seconds(45);
    // MON2P_PS, MON2P_STATS, MON2P_SIGNAL, MON2CTL_EXIT.
    Duration query_timeout = std::chrono::seconds(5);
    // A chunk of output or input waits for the console or the program to
    // take it; only a peer wedged for this long fails the run's stream
    // (a closed connection fails it at once).
    Duration stream_timeout = std::chrono::hours(1);
    // More records for the monitor's own `stats` (its fabric, see
    // kernel/fabric/fabric_stats.h); transport thread.
    std::function<std::vector<wire::StatRecord>()> extra_stats;
  };

  explicit MonitorServer(Options options);
  // Stops the threads; the transport must already be stopped (or never
  // have been given dispatcher()).
  ~MonitorServer();

  MonitorServer(const MonitorServer&) = delete;
  MonitorServer& operator=(const MonitorServer&) = delete;

  // Serves C2MON_*, CTL2MON_* and P2MON_* (the control plane: the monitor
  // serves no other); must outlive the transport's use of it.
  const rpc::ControlDispatcher& dispatcher() const { return m_dispatcher; }

  // The bound listen address, once known.
  void set_address(std::string address);

  // Starts the worker and the failure detector. Call once.
  void start();

  // Stops both threads; requests still queued fail with ESHUTDOWN.
  // Idempotent. Stop the transport first so that a request in flight to a
  // component fails fast instead of waiting for its timeout.
  void stop();

  // One pass of the failure detector at time `now` (its thread calls this;
  // tests call it with their own clock).
  void check_failures(Clock::time_point now);

  // Waits until the worker has finished every job queued before the call
  // (tests).
  void drain();

 private:
  // A component the worker sends requests to, copied out of the node table
  // so that no lock is held while the requests are in flight.
  struct Target {
    NodeId id = kNoNode;
    NodeKind kind = NodeKind::kPcomponent;
    std::string address;
    std::shared_ptr<fabric::Connection> connection;
  };
  // A job gets `cancelled` = true when the monitor stops before running it.
  using Job = std::function<void(bool cancelled)>;

  template <wire::Opcode Op>
  using ReplyTo = rpc::ReplyTo<Op>;

  // Transport thread.
  void handle_join(const wire::C2monJoinRequest& join, ReplyTo<wire::Opcode::C2MON_JOIN> reply);
  Result<void> handle_heartbeat(const wire::C2monHeartbeat& heartbeat);
  Result<void> handle_leave(const wire::C2monLeaveRequest& leave);
  Result<wire::NodeList> handle_nodes();
  Result<wire::VnodeList> handle_vnode_list();
  void on_connection_closed(NodeId node, const fabric::Connection* connection);

  // Runs, ps and stats (monitor_runs.cpp); transport thread, never called
  // with m_mutex held (they call connections, whose callbacks may run
  // inline).
  void handle_run(wire::Ctl2pRunCommand command, ReplyTo<wire::Opcode::CTL2MON_RUN> reply);
  void handle_stdin(wire::RunInputBody input, ReplyTo<wire::Opcode::CTL2MON_STDIN> reply);
  void handle_signal(wire::Ctl2pRunSignal signal, ReplyTo<wire::Opcode::CTL2MON_SIGNAL> reply);
  void handle_output(wire::RunOutputBody output, ReplyTo<wire::Opcode::P2MON_OUTPUT> reply);
  void handle_exit(wire::RunExitBody exit, ReplyTo<wire::Opcode::P2MON_EXIT> reply);
  void handle_ps(const wire::Ctl2monPsRequest& request, ReplyTo<wire::Opcode::CTL2MON_PS> reply);
  void handle_stats(ReplyTo<wire::Opcode::CTL2MON_STATS> reply);
  void register_run_handlers();
  void on_console_closed(const fabric::Connection* connection);
  // Ends every started run of a failed pComponent: its console gets
  // MON2CTL_EXIT{kExitLost}. Any thread, without m_mutex.
  void end_runs_of(NodeId node);
  // The monitor's own counters, for `stats`: its runs (own_run_stats, under
  // m_mutex), then Options::extra_stats.
  std::vector<wire::StatRecord> own_stats();
  std::vector<wire::StatRecord> own_run_stats();

  // Worker thread.
  Result<wire::VnodeRecord> create_vnode(const wire::Ctl2monVnodeCreateRequest& request);
  Result<void> destroy_vnode(const std::string& name);
  void sync_node(NodeId node);
  std::vector<Result<void>> call_all(const std::vector<Target>& targets,
                                     wire::Opcode (*opcode_for)(NodeKind), VnodeId vnode,
                                     const rpc::Bytes& payload);

  Target target(const NodeEntry& entry) const;
  void enqueue(Job job);
  void run_worker();
  void run_detector();

  Options m_options;
  rpc::ControlDispatcher m_dispatcher{"monitor"};

  std::mutex m_mutex;  // guards m_membership, m_vnodes
  Membership m_membership;
  VnodeTable m_vnodes;
  RunTable m_runs;
  // Console connections whose close handler is set (runs' consoles).
  std::set<const fabric::Connection*> m_consoles;
  struct RunCounters {
    uint64_t started = 0;
    uint64_t refused = 0;
    uint64_t ended = 0;
    uint64_t lost = 0;
    uint64_t hung_up = 0;
    uint64_t output_chunks = 0;
    uint64_t output_bytes = 0;
    uint64_t input_bytes = 0;
    uint64_t signals = 0;
  } m_run_counters;  // guarded by m_mutex

  std::mutex m_queue_mutex;  // guards m_queue, m_stopping
  std::condition_variable m_queue_wake;
  std::deque<Job> m_queue;
  bool m_stopping = false;
  bool m_started = false;

  std::thread m_worker;
  std::thread m_detector;
};

}  // namespace sk::monitor
