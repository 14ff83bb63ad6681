#include "monitor/monitor_server.h"

#include <algorithm>
#include <future>

#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "monitor/memory_placement.h"

namespace sk::monitor {

static const Logger log("monitor");

using wire::Opcode;

// The detector looks this often per failure timeout, so a silent node is
// declared failed at most a quarter timeout late.
static constexpr int kDetectorChecksPerTimeout = 4;
static constexpr Duration kMinDetectorPeriod = std::chrono::milliseconds(10);
static constexpr Duration kMaxDetectorPeriod = std::chrono::milliseconds(250);
// The transport promises that every reply callback runs; this margin only
// keeps a transport bug from wedging the worker forever.
static constexpr Duration kCallbackGrace = std::chrono::seconds(2);

static Opcode create_opcode(NodeKind kind) {
  switch (kind) {
    case NodeKind::kMcomponent:
      return Opcode::MON2M_VNODE_CREATE;
    case NodeKind::kScomponent:
      return Opcode::MON2S_VNODE_CREATE;
    default:
      return Opcode::MON2P_VNODE_CREATE;
  }
}

static Opcode destroy_opcode(NodeKind kind) {
  switch (kind) {
    case NodeKind::kMcomponent:
      return Opcode::MON2M_VNODE_DESTROY;
    case NodeKind::kScomponent:
      return Opcode::MON2S_VNODE_DESTROY;
    default:
      return Opcode::MON2P_VNODE_DESTROY;
  }
}

static std::string describe(NodeId id, NodeKind kind, const std::string& address) {
  return fmt::format("node {} ({} at {})", id, to_string(kind), address);
}

MonitorServer::MonitorServer(Options options)
    : m_options(std::move(options)),
      m_membership(m_options.address, m_options.fabric, m_options.failure_timeout, unix_now_ms()) {
  m_dispatcher.on_deferred<Opcode::C2MON_JOIN>(
      [this](const wire::C2monJoinRequest& join, rpc::Message, ReplyTo<Opcode::C2MON_JOIN> reply) {
        handle_join(join, std::move(reply));
      });
  m_dispatcher.on<Opcode::C2MON_HEARTBEAT>(
      [this](const wire::C2monHeartbeat& heartbeat, const rpc::Message&) {
        return handle_heartbeat(heartbeat);
      });
  m_dispatcher.on<Opcode::C2MON_LEAVE>([this](const wire::C2monLeaveRequest& leave,
                                              const rpc::Message&) { return handle_leave(leave); });
  m_dispatcher.on<Opcode::CTL2MON_NODES>(
      [this](const wire::Empty&, const rpc::Message&) { return handle_nodes(); });
  m_dispatcher.on<Opcode::CTL2MON_VNODE_LIST>(
      [this](const wire::Empty&, const rpc::Message&) { return handle_vnode_list(); });
  // Creation and destruction wait for components, so they go to the worker.
  // The reply is move-only and a Job must be copyable: share it.
  m_dispatcher.on_deferred<Opcode::CTL2MON_VNODE_CREATE>(
      [this](wire::Ctl2monVnodeCreateRequest request, rpc::Message,
             ReplyTo<Opcode::CTL2MON_VNODE_CREATE> reply) {
        auto shared = std::make_shared<ReplyTo<Opcode::CTL2MON_VNODE_CREATE>>(std::move(reply));
        enqueue([this, request, shared](bool cancelled) {
          if (cancelled) {
            shared->fail(make_error(ESHUTDOWN, "the monitor is shutting down"));
            return;
          }
          shared->finish(create_vnode(request));
        });
      });
  m_dispatcher.on_deferred<Opcode::CTL2MON_VNODE_DESTROY>(
      [this](wire::Ctl2monVnodeDestroyRequest request, rpc::Message,
             ReplyTo<Opcode::CTL2MON_VNODE_DESTROY> reply) {
        auto shared = std::make_shared<ReplyTo<Opcode::CTL2MON_VNODE_DESTROY>>(std::move(reply));
        enqueue([this, name = request.name.str(), shared](bool cancelled) {
          if (cancelled) {
            shared->fail(make_error(ESHUTDOWN, "the monitor is shutting down"));
            return;
          }
          auto done = destroy_vnode(name);
          if (done) {
            shared->reply(wire::Empty{});
          } else {
            shared->fail(done.error());
          }
        });
      });
  register_run_handlers();
  register_memory_placement(m_dispatcher, m_mutex, m_membership);
}

MonitorServer::~MonitorServer() {
  stop();
}

void MonitorServer::set_address(std::string address) {
  std::lock_guard lock(m_mutex);
  m_options.address = address;
  m_membership.set_monitor_address(std::move(address));
}

void MonitorServer::start() {
  std::lock_guard lock(m_queue_mutex);
  if (m_started || m_stopping) return;
  m_started = true;
  m_worker = std::thread([this] { run_worker(); });
  m_detector = std::thread([this] { run_detector(); });
}

void MonitorServer::stop() {
  {
    std::lock_guard lock(m_queue_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  m_queue_wake.notify_all();
  if (m_worker.joinable()) m_worker.join();
  if (m_detector.joinable()) m_detector.join();
  // Whatever the worker did not get to is answered now, so no console waits
  // for a reply that cannot come.
  std::deque<Job> left;
  {
    std::lock_guard lock(m_queue_mutex);
    left.swap(m_queue);
  }
  for (auto& job : left) job(/*cancelled=*/true);
}

void MonitorServer::enqueue(Job job) {
  bool refused;
  {
    std::lock_guard lock(m_queue_mutex);
    refused = m_stopping;
    if (!refused) m_queue.push_back(job);
  }
  if (refused) {
    job(/*cancelled=*/true);
    return;
  }
  m_queue_wake.notify_all();
}

void MonitorServer::drain() {
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  enqueue([done](bool) { done->set_value(); });
  future.wait();
}

void MonitorServer::run_worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(m_queue_mutex);
      m_queue_wake.wait(lock, [&] { return m_stopping || !m_queue.empty(); });
      if (m_stopping) return;
      job = std::move(m_queue.front());
      m_queue.pop_front();
    }
    job(/*cancelled=*/false);
  }
}

void MonitorServer::run_detector() {
  Duration period = std::clamp<Duration>(m_options.failure_timeout / kDetectorChecksPerTimeout,
                                         kMinDetectorPeriod, kMaxDetectorPeriod);
  for (;;) {
    {
      std::unique_lock lock(m_queue_mutex);
      if (m_queue_wake.wait_for(lock, period, [&] { return m_stopping; })) return;
    }
    check_failures(Clock::now());
  }
}

void MonitorServer::check_failures(Clock::time_point now) {
  std::vector<NodeId> failed;
  {
    std::lock_guard lock(m_mutex);
    failed = m_membership.detect_failures(now);
    for (NodeId id : failed) {
      const NodeEntry* node = m_membership.find(id);
      auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - node->last_heartbeat);
      log.warn(
          "{} failed: no heartbeat for {} ms (timeout {} ms)",
          describe(id, node->kind, node->address), age.count(),
          std::chrono::duration_cast<std::chrono::milliseconds>(m_options.failure_timeout).count());
    }
  }
  // The consoles of its programs learn it now rather than wait forever.
  for (NodeId id : failed) end_runs_of(id);
}

// ---- membership (transport thread) -----------------------------------------

void MonitorServer::handle_join(const wire::C2monJoinRequest& join,
                                ReplyTo<Opcode::C2MON_JOIN> reply) {
  std::shared_ptr<fabric::Connection> connection = reply.connection();
  NodeId id;
  {
    std::lock_guard lock(m_mutex);
    id = m_membership.join(join, connection, Clock::now(), unix_now_ms());
  }
  auto kind = static_cast<NodeKind>(join.kind);
  log.info("{} joined (capacity {}, fabric {})", describe(id, kind, join.address.str()),
           format_size(join.capacity), wire::to_string(static_cast<wire::FabricKind>(join.fabric)));

  // Outside m_mutex: the handler runs at once when the connection is
  // already closed, and it takes m_mutex. The raw pointer only identifies
  // the connection; holding a shared_ptr in its own handler would leak it.
  const fabric::Connection* raw = connection.get();
  connection->set_close_handler([this, id, raw] { on_connection_closed(id, raw); });

  reply.reply(wire::C2monJoinReply{id, kHeartbeatIntervalMs});
  // Queued after the reply so that the component learns its id before it
  // hears about vNodes.
  enqueue([this, id](bool cancelled) {
    if (!cancelled) sync_node(id);
  });
}

Result<void> MonitorServer::handle_heartbeat(const wire::C2monHeartbeat& heartbeat) {
  Membership::HeartbeatOutcome outcome;
  std::string who;
  {
    std::lock_guard lock(m_mutex);
    outcome = m_membership.heartbeat(heartbeat, Clock::now());
    if (const NodeEntry* node = m_membership.find(heartbeat.node)) {
      who = describe(node->id, node->kind, node->address);
    }
  }
  switch (outcome) {
    case Membership::HeartbeatOutcome::kUnknown:
      log.debug("heartbeat from unknown node {}: asking it to join again", heartbeat.node);
      return make_error(ENOENT, "node " + std::to_string(heartbeat.node) +
                                    " is not a member of this cluster; join again");
    case Membership::HeartbeatOutcome::kRevived:
      log.info("{} is alive again", who);
      // It may have missed vNode creations and destructions while failed.
      enqueue([this, id = heartbeat.node](bool cancelled) {
        if (!cancelled) sync_node(id);
      });
      break;
    case Membership::HeartbeatOutcome::kUpdated:
      break;
  }
  return {};
}

Result<void> MonitorServer::handle_leave(const wire::C2monLeaveRequest& leave) {
  std::string who;
  {
    std::lock_guard lock(m_mutex);
    if (!m_membership.leave(leave.node)) {
      return make_error(ENOENT, "node " + std::to_string(leave.node) + " is not a member");
    }
    const NodeEntry* node = m_membership.find(leave.node);
    who = describe(node->id, node->kind, node->address);
  }
  log.info("{} left", who);
  return {};
}

void MonitorServer::on_connection_closed(NodeId id, const fabric::Connection* connection) {
  {
    std::lock_guard lock(m_mutex);
    if (!m_membership.connection_closed(id, connection)) return;
    const NodeEntry* node = m_membership.find(id);
    log.warn("{} failed: its connection closed", describe(id, node->kind, node->address));
  }
  end_runs_of(id);
}

Result<wire::NodeList> MonitorServer::handle_nodes() {
  std::lock_guard lock(m_mutex);
  return wire::NodeList{{},
                        m_membership.records(Clock::now(), static_cast<uint32_t>(m_vnodes.size()))};
}

Result<wire::VnodeList> MonitorServer::handle_vnode_list() {
  std::vector<wire::VnodeRecord> records;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& entry : m_vnodes.list()) {
      records.push_back(entry.record());
      records.back().processes = static_cast<uint32_t>(m_runs.count_of_vnode(entry.id));
    }
  }
  return wire::VnodeList{{}, std::move(records)};
}

// ---- vNodes (worker thread) --------------------------------------------------

MonitorServer::Target MonitorServer::target(const NodeEntry& entry) const {
  return Target{entry.id, entry.kind, entry.address, entry.connection};
}

std::vector<Result<void>> MonitorServer::call_all(const std::vector<Target>& targets,
                                                  Opcode (*opcode_for)(NodeKind), VnodeId vnode,
                                                  const rpc::Bytes& payload) {
  // All requests go out at once; the replies are collected here.
  struct Collector {
    std::mutex mutex;
    std::condition_variable done;
    size_t outstanding = 0;
    std::vector<std::optional<Result<void>>> results;
  };
  auto collector = std::make_shared<Collector>();
  collector->results.resize(targets.size());
  collector->outstanding = targets.size();

  for (size_t i = 0; i < targets.size(); ++i) {
    const Target& target = targets[i];
    auto finish = [collector, i](Result<void> result) {
      {
        std::lock_guard lock(collector->mutex);
        collector->results[i].emplace(std::move(result));
        --collector->outstanding;
      }
      collector->done.notify_all();
    };
    if (!target.connection || !target.connection->is_open()) {
      finish(make_error(ENOTCONN, "no open connection"));
      continue;
    }
    target.connection->call_async(
        opcode_for(target.kind), vnode, payload,
        target.kind == NodeKind::kScomponent ? m_options.root_timeout : m_options.component_timeout,
        [finish](Result<rpc::Message> reply) {
          auto checked = rpc::check_reply(std::move(reply));
          if (checked) {
            finish({});
          } else {
            finish(std::move(checked).error());
          }
        });
  }

  std::unique_lock lock(collector->mutex);
  collector->done.wait_for(
      lock, std::max(m_options.component_timeout, m_options.root_timeout) + kCallbackGrace,
      [&] { return collector->outstanding == 0; });
  std::vector<Result<void>> results;
  for (auto& result : collector->results) {
    if (result) {
      results.push_back(std::move(*result));
    } else {
      results.push_back(make_error(ETIMEDOUT, "no answer from the transport"));
    }
  }
  return results;
}

Result<wire::VnodeRecord> MonitorServer::create_vnode(
    const wire::Ctl2monVnodeCreateRequest& request) {
  VnodeEntry entry;
  Target root;
  std::vector<Target> others;
  {
    std::lock_guard lock(m_mutex);
    std::string name = request.name.str();
    TRY(m_vnodes.check_new_name(name));
    auto scomponent = m_membership.pick_scomponent();
    if (!scomponent) {
      return make_error(EHOSTUNREACH, "no alive sComponent to hold the vNode's root");
    }
    entry.id = m_vnodes.allocate_id();
    entry.name = std::move(name);
    entry.scomponent = *scomponent;
    entry.scomponent_address = m_membership.find(*scomponent)->address;
    entry.flags = request.flags;
    // The record says what the root really started from, so the default
    // image is named here rather than left implicit.
    if ((request.flags & wire::kVnodeEmptyRoot) == 0) {
      entry.image =
          request.image.view().empty() ? std::string(wire::kDefaultImage) : request.image.str();
    }
    entry.cache = request.cache;
    entry.memory = request.memory != 0 ? request.memory : m_options.default_memory;
    entry.created_unix_ms = unix_now_ms();
    root = target(*m_membership.find(*scomponent));
    for (NodeKind kind : {NodeKind::kMcomponent, NodeKind::kPcomponent}) {
      for (NodeId id : m_membership.alive(kind)) others.push_back(target(*m_membership.find(id)));
    }
  }

  rpc::Bytes setup = wire::encode(entry.setup());
  auto rooted = std::move(call_all({root}, create_opcode, entry.id, setup).front());
  if (!rooted) {
    // The sComponent may have set the root up and then failed to answer in
    // time; tell it to drop whatever it has. Its answer does not matter.
    if (root.connection) {
      rpc::call_async<Opcode::MON2S_VNODE_DESTROY>(
          *root.connection, entry.id, wire::Mon2cVnodeDestroyRequest{entry.id, 0},
          m_options.component_timeout, [](Result<wire::Empty>) {});
    }
    log.warn("vnode '{}' not created: {} could not set up its root: {}", entry.name,
             describe(root.id, root.kind, root.address), rooted.error().text());
    return make_error(rooted.error().code(),
                      fmt::format("sComponent {} at {} could not set up vnode '{}': {}", root.id,
                                  root.address, entry.name, rooted.error().text()));
  }

  auto results = call_all(others, create_opcode, entry.id, setup);
  {
    std::lock_guard lock(m_mutex);
    m_vnodes.add(entry);
    if (NodeEntry* node = m_membership.find(root.id)) node->vnodes.insert(entry.id);
    for (size_t i = 0; i < others.size(); ++i) {
      if (!results[i]) continue;
      if (NodeEntry* node = m_membership.find(others[i].id)) node->vnodes.insert(entry.id);
    }
  }
  for (size_t i = 0; i < others.size(); ++i) {
    if (results[i]) continue;
    // The vNode works without this component; it is retried when the
    // component comes back from a failure or joins again.
    log.warn("vnode '{}': {} could not set it up: {}", entry.name,
             describe(others[i].id, others[i].kind, others[i].address), results[i].error().text());
  }
  log.info("vnode '{}' created: id {}, root on node {} ({}), memory {}, cache {}", entry.name,
           entry.id, entry.scomponent,
           entry.image.empty() ? std::string("empty") : "image '" + entry.image + "'",
           format_size(entry.memory),
           entry.cache != 0 ? format_size(entry.cache) : std::string("the pComponent's"));
  return entry.record();
}

Result<void> MonitorServer::destroy_vnode(const std::string& name) {
  VnodeEntry entry;
  std::vector<Target> holders;
  {
    std::lock_guard lock(m_mutex);
    entry = TRY(m_vnodes.remove(name));
    for (NodeKind kind : {NodeKind::kPcomponent, NodeKind::kMcomponent, NodeKind::kScomponent}) {
      for (NodeId id : m_membership.alive(kind)) {
        const NodeEntry* node = m_membership.find(id);
        if (node->vnodes.count(entry.id) != 0) holders.push_back(target(*node));
      }
    }
  }

  wire::Mon2cVnodeDestroyRequest teardown{};
  teardown.vnode = entry.id;
  auto results = call_all(holders, destroy_opcode, entry.id, wire::encode(teardown));
  {
    // Components that were not alive keep the vNode in their set: they are
    // told to tear it down if they come back (sync_node).
    std::lock_guard lock(m_mutex);
    for (const Target& holder : holders) {
      if (NodeEntry* node = m_membership.find(holder.id)) node->vnodes.erase(entry.id);
    }
  }
  for (size_t i = 0; i < holders.size(); ++i) {
    if (results[i] || results[i].error().code() == ENOENT) continue;
    log.warn("vnode '{}': {} could not tear it down: {}", entry.name,
             describe(holders[i].id, holders[i].kind, holders[i].address),
             results[i].error().text());
  }
  log.info("vnode '{}' (id {}) destroyed", entry.name, entry.id);
  return {};
}

void MonitorServer::sync_node(NodeId id) {
  Target node_target;
  std::vector<wire::Mon2cVnodeCreateRequest> creates;
  std::vector<VnodeId> destroys;
  {
    std::lock_guard lock(m_mutex);
    NodeEntry* node = m_membership.find(id);
    if (node == nullptr || !node->alive()) return;
    // An earlier incarnation of this component (it restarted and joined
    // again) hands over its vNode roots and leaves the table.
    for (NodeId old : m_membership.superseded_by(id)) {
      auto moved = m_vnodes.rehome(old, id, node->address);
      if (!moved.empty()) {
        log.info("node {} takes over {} vNode root(s) from node {}, its earlier incarnation", id,
                 moved.size(), old);
      }
      log.info("node {} superseded by node {}: dropped", old, id);
      m_membership.erase(old);  // other entries (and `node`) stay where they are
    }
    std::vector<VnodeId> wanted;
    if (node->kind == NodeKind::kScomponent) {
      wanted = m_vnodes.rooted_on(id);
    } else {
      for (const auto& entry : m_vnodes.list()) wanted.push_back(entry.id);
    }
    for (VnodeId vnode : wanted) {
      if (node->vnodes.count(vnode) == 0) creates.push_back(m_vnodes.find(vnode)->setup());
    }
    for (VnodeId vnode : node->vnodes) {
      if (std::find(wanted.begin(), wanted.end(), vnode) == wanted.end()) {
        destroys.push_back(vnode);
      }
    }
    node_target = target(*node);
  }
  if (creates.empty() && destroys.empty()) return;
  log.info("bringing {} up to date: {} vNode(s) to set up, {} to tear down",
           describe(node_target.id, node_target.kind, node_target.address), creates.size(),
           destroys.size());

  for (const wire::Mon2cVnodeCreateRequest& setup : creates) {
    auto result =
        std::move(call_all({node_target}, create_opcode, setup.vnode, wire::encode(setup)).front());
    if (!result) {
      log.warn("vnode '{}': {} could not set it up: {}", setup.name.view(),
               describe(node_target.id, node_target.kind, node_target.address),
               result.error().text());
      continue;
    }
    std::lock_guard lock(m_mutex);
    if (NodeEntry* node = m_membership.find(id)) node->vnodes.insert(setup.vnode);
  }
  for (VnodeId vnode : destroys) {
    wire::Mon2cVnodeDestroyRequest teardown{};
    teardown.vnode = vnode;
    auto result =
        std::move(call_all({node_target}, destroy_opcode, vnode, wire::encode(teardown)).front());
    if (!result && result.error().code() != ENOENT) {
      log.warn("vnode {}: {} could not tear it down: {}", vnode,
               describe(node_target.id, node_target.kind, node_target.address),
               result.error().text());
    }
    std::lock_guard lock(m_mutex);
    if (NodeEntry* node = m_membership.find(id)) node->vnodes.erase(vnode);
  }
}

}  // namespace sk::monitor
