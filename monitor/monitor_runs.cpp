// The monitor's side of `splitctl run`, `ps` and `stats` (the protocol is
// in kernel/wire/process_messages.h; the threads and locks in
// monitor_server.h). Every handler here runs on the transport's thread and
// returns at once: it looks things up under m_mutex, lets go of it, and
// sends; replies are sent from the reply callbacks of what it sent.
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/process_messages.h"
#include "monitor/monitor_server.h"

namespace sk::monitor {

static const Logger log("monitor");

using wire::Opcode;
using SharedResponder = std::shared_ptr<rpc::Responder>;

namespace {

rpc::Bytes exit_payload(uint64_t run, int code, uint32_t flags, std::string_view text) {
  wire::RunExit exit{};
  exit.run = run;
  exit.code = code;
  exit.flags = flags;
  text = text.substr(0, wire::kMaxExitText);
  exit.text_length = static_cast<uint32_t>(text.size());
  return wire::encode(exit, wire::as_bytes(text));
}

rpc::Bytes signal_payload(uint64_t run, int signo) {
  wire::RunSignal message{};
  message.run = run;
  message.signo = signo;
  return wire::encode(message);
}

// Passes a reply (or its failure) back to whoever asked.
fabric::ReplyCallback relay_to(SharedResponder responder) {
  return [responder](Result<rpc::Message> reply) {
    auto checked = rpc::check_reply(std::move(reply));
    if (checked) {
      responder->reply(std::move(checked->payload));
    } else {
      responder->fail(checked.error());
    }
  };
}

void ignore_reply(Result<rpc::Message>) {}

// Asks several pComponents the same question at once and hands the records
// of every answer to `done` once all answered or failed (those are counted
// as unanswered). `fix` fills in what only the monitor knows.
template <typename R>
struct Gathering {
  std::mutex mutex;
  size_t outstanding = 0;
  std::vector<R> records;
  uint32_t unanswered = 0;
  std::function<void(std::vector<R>, uint32_t)> done;
};

template <typename R>
void gather(const std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>>& targets,
            Opcode opcode, VnodeId vnode, const rpc::Bytes& payload, Duration timeout,
            std::function<void(R&, NodeId)> fix,
            std::function<void(std::vector<R>, uint32_t)> done) {
  auto state = std::make_shared<Gathering<R>>();
  state->outstanding = targets.size() + 1;  // +1: held until every request is out
  state->done = std::move(done);
  auto finish = [state](std::vector<R> records, bool answered) {
    std::function<void(std::vector<R>, uint32_t)> done;
    std::vector<R> all;
    uint32_t unanswered = 0;
    {
      std::lock_guard lock(state->mutex);
      state->records.insert(state->records.end(), std::make_move_iterator(records.begin()),
                            std::make_move_iterator(records.end()));
      if (!answered) ++state->unanswered;
      if (--state->outstanding != 0) return;
      done = std::move(state->done);
      all = std::move(state->records);
      unanswered = state->unanswered;
    }
    done(std::move(all), unanswered);
  };
  for (const auto& [id, connection] : targets) {
    if (!connection || !connection->is_open()) {
      finish({}, false);
      continue;
    }
    connection->call_async(
        opcode, vnode, payload, timeout, [finish, fix, id, opcode](Result<rpc::Message> reply) {
          auto checked = rpc::check_reply(std::move(reply));
          if (!checked) {
            log.warn("{} to pComponent {}: {}", wire::opcode_name(static_cast<uint16_t>(opcode)),
                     id, checked.error().text());
            finish({}, false);
            return;
          }
          auto list = wire::decode_cluster_list<R>(checked->payload);
          if (!list) {
            log.warn("bad {} reply from pComponent {}: {}",
                     wire::opcode_name(static_cast<uint16_t>(opcode)), id, list.error().text());
            finish({}, false);
            return;
          }
          auto records = std::move(list->second);
          for (R& record : records) fix(record, id);
          finish(std::move(records), true);
        });
  }
  finish({}, true);
}

}  // namespace

void MonitorServer::register_run_handlers() {
  auto bind = [this](void (MonitorServer::*handler)(rpc::Message, rpc::Responder)) {
    return [this, handler](rpc::Message request, rpc::Responder responder) {
      (this->*handler)(std::move(request), std::move(responder));
    };
  };
  m_dispatcher.on_async(Opcode::CTL2MON_RUN, bind(&MonitorServer::handle_run));
  m_dispatcher.on_async(Opcode::CTL2MON_STDIN, bind(&MonitorServer::handle_stdin));
  m_dispatcher.on_async(Opcode::CTL2MON_SIGNAL, bind(&MonitorServer::handle_signal));
  m_dispatcher.on_async(Opcode::CTL2MON_PS, bind(&MonitorServer::handle_ps));
  m_dispatcher.on_async(Opcode::CTL2MON_STATS, bind(&MonitorServer::handle_stats));
  m_dispatcher.on_async(Opcode::P2MON_OUTPUT, bind(&MonitorServer::handle_output));
  m_dispatcher.on_async(Opcode::P2MON_EXIT, bind(&MonitorServer::handle_exit));
}

// ---- run --------------------------------------------------------------------

void MonitorServer::handle_run(rpc::Message request, rpc::Responder responder) {
  auto command = wire::decode_run(request.payload);
  if (!command) {
    responder.fail(command.error());
    return;
  }
  std::shared_ptr<fabric::Connection> console = responder.connection();
  std::string name = command->request.vnode_name.str();

  RunEntry entry;
  bool watch_console = false;
  auto placed = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    // A component's membership connection has its own close handler.
    if (m_membership.find_by_connection(console.get()) != kNoNode) {
      return make_error(EPERM, "programs are started from the console");
    }
    const VnodeEntry* vnode = m_vnodes.find(name);
    if (vnode == nullptr) return make_error(ENOENT, "no vnode named '" + name + "'");
    auto picked = m_membership.pick_pcomponent(
        vnode->id, [this](NodeId id) { return m_runs.count_on(id); });
    if (auto* failure = std::get_if<Membership::PickFailure>(&picked)) {
      ++m_run_counters.refused;
      if (*failure == Membership::PickFailure::kNoPcomponent) {
        return make_error(EHOSTUNREACH, "no alive pComponent to run the program on");
      }
      return make_error(EHOSTUNREACH, "no alive pComponent has vnode '" + name + "' set up");
    }
    NodeId node = std::get<NodeId>(picked);
    entry.id = m_runs.allocate_id();
    entry.vnode = vnode->id;
    entry.vnode_name = name;
    entry.pcomponent = node;
    entry.console = console;
    entry.component = m_membership.find(node)->connection;
    if (!entry.component) return make_error(ENOTCONN, "pComponent " + std::to_string(node) +
                                                          " has no connection");
    m_runs.add(entry);
    watch_console = m_consoles.insert(console.get()).second;
    return {};
  }();
  if (!placed) {
    log.info("run of '{}' on vnode '{}' refused: {}", command->argv[0], name,
             placed.error().message());
    responder.fail(placed.error());
    return;
  }
  if (watch_console) {
    // Set outside m_mutex: it runs at once if the console already left.
    const fabric::Connection* raw = console.get();
    console->set_close_handler([this, raw] { on_console_closed(raw); });
  }
  log.info("run {}: '{}' on vnode '{}' goes to pComponent {}", entry.id, command->argv[0], name,
           entry.pcomponent);

  // The console's request, with the run id filled in.
  wire::RunRequest head = command->request;
  head.run = entry.id;
  rpc::Bytes payload = std::move(request.payload);
  std::memcpy(payload.data(), &head, sizeof head);

  auto shared = std::make_shared<rpc::Responder>(std::move(responder));
  uint64_t id = entry.id;
  NodeId node = entry.pcomponent;
  VnodeId vnode = entry.vnode;
  Duration timeout = m_options.run_timeout;
  entry.component->call_async(
      Opcode::MON2P_RUN, vnode, std::move(payload), timeout,
      [this, id, node, vnode, timeout, shared](Result<rpc::Message> reply) {
        auto checked = rpc::check_reply(std::move(reply));
        auto started = checked ? wire::decode<wire::RunStarted>(checked->payload)
                               : Result<wire::RunStarted>(std::move(checked).error());
        std::shared_ptr<fabric::Connection> console;
        std::shared_ptr<fabric::Connection> component;
        bool known = false;
        {
          std::lock_guard lock(m_mutex);
          if (!started) {
            m_runs.remove(id);
            ++m_run_counters.refused;
          } else if (RunEntry* entry = m_runs.find(id)) {
            known = true;
            entry->started = true;
            entry->vnode_pid = started->vnode_pid;
            console = entry->console;
            component = entry->component;
            ++m_run_counters.started;
          }
        }
        if (!started) {
          int code = started.error().code();
          std::string why;
          if (code == ECONNRESET || code == ENOTCONN) {
            why = fmt::format("pComponent {} failed before the program started", node);
          } else if (code == ETIMEDOUT) {
            why = fmt::format("pComponent {} did not start the program within {} s", node,
                              std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
          } else {
            why = fmt::format("pComponent {} could not start the program: {}", node,
                              started.error().message());
          }
          log.warn("run {}: {}", id, why);
          shared->fail(make_error(code, why));
          return;
        }
        if (!known) {
          // Ended while it started (its pComponent failed): the program,
          // if it runs, has nobody to talk to.
          shared->fail(make_error(
              ECONNRESET, fmt::format("pComponent {} failed while starting the program", node)));
          return;
        }
        if (!console) {
          // The console left while the program started.
          log.info("run {}: its console left before it started; hanging it up", id);
          component->call_async(Opcode::MON2P_SIGNAL, vnode, signal_payload(id, SIGHUP),
                                m_options.query_timeout, ignore_reply);
        }
        wire::RunStarted answer = started.value();
        answer.run = id;
        answer.pcomponent = node;
        answer.vnode = vnode;
        log.debug("run {}: started as vNode pid {} (host pid {})", id, answer.vnode_pid,
                  answer.host_pid);
        shared->reply(wire::encode(answer));
      });
}

void MonitorServer::handle_output(rpc::Message request, rpc::Responder responder) {
  auto decoded = wire::decode_sized<wire::RunOutput>(request.payload, &wire::RunOutput::length);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  uint64_t run = decoded->first.run;
  std::shared_ptr<fabric::Connection> console;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr) return make_error(ENOENT, "no run " + std::to_string(run));
    if (entry->component.get() != responder.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " is not on this pComponent");
    }
    if (!entry->console) {
      return make_error(ENOENT, "run " + std::to_string(run) + " has no console any more");
    }
    console = entry->console;
    vnode = entry->vnode;
    ++m_run_counters.output_chunks;
    m_run_counters.output_bytes += decoded->first.length;
    return {};
  }();
  if (!found) {
    responder.fail(found.error());
    return;
  }
  // The pComponent's chunk is answered when the console's is: that is the
  // whole flow control, and nothing waits here.
  console->call_async(Opcode::MON2CTL_OUTPUT, vnode, std::move(request.payload),
                      m_options.stream_timeout,
                      relay_to(std::make_shared<rpc::Responder>(std::move(responder))));
}

void MonitorServer::handle_exit(rpc::Message request, rpc::Responder responder) {
  auto decoded = wire::decode_sized<wire::RunExit>(request.payload, &wire::RunExit::text_length);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  const wire::RunExit& exit = decoded->first;
  std::optional<RunEntry> entry;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* known = m_runs.find(exit.run);
    if (known == nullptr) return make_error(ENOENT, "no run " + std::to_string(exit.run));
    if (known->component.get() != responder.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(exit.run) + " is not on this pComponent");
    }
    entry = m_runs.remove(exit.run);
    ++m_run_counters.ended;
    return {};
  }();
  if (!found) {
    responder.fail(found.error());
    return;
  }
  responder.reply();
  log.info("run {} on vnode '{}' ended: status {}{}", exit.run, entry->vnode_name, exit.code,
           exit.signal != 0 ? fmt::format(" (signal {})", exit.signal) : std::string());
  if (entry->console) {
    entry->console->call_async(Opcode::MON2CTL_EXIT, entry->vnode, std::move(request.payload),
                               m_options.query_timeout, ignore_reply);
  }
}

void MonitorServer::handle_stdin(rpc::Message request, rpc::Responder responder) {
  auto decoded = wire::decode_sized<wire::RunInput>(request.payload, &wire::RunInput::length);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  uint64_t run = decoded->first.run;
  std::shared_ptr<fabric::Connection> component;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr || !entry->started) {
      return make_error(ENOENT, "run " + std::to_string(run) + " is not running");
    }
    if (entry->console.get() != responder.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " belongs to another console");
    }
    component = entry->component;
    vnode = entry->vnode;
    m_run_counters.input_bytes += decoded->first.length;
    return {};
  }();
  if (!found) {
    responder.fail(found.error());
    return;
  }
  component->call_async(Opcode::MON2P_STDIN, vnode, std::move(request.payload),
                        m_options.stream_timeout,
                        relay_to(std::make_shared<rpc::Responder>(std::move(responder))));
}

void MonitorServer::handle_signal(rpc::Message request, rpc::Responder responder) {
  auto decoded = wire::decode<wire::RunSignal>(request.payload);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  uint64_t run = decoded->run;
  std::shared_ptr<fabric::Connection> component;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr || !entry->started) {
      return make_error(ENOENT, "run " + std::to_string(run) + " is not running");
    }
    if (entry->console.get() != responder.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " belongs to another console");
    }
    component = entry->component;
    vnode = entry->vnode;
    ++m_run_counters.signals;
    return {};
  }();
  if (!found) {
    responder.fail(found.error());
    return;
  }
  log.info("run {}: signal {} from its console", run, decoded->signo);
  component->call_async(Opcode::MON2P_SIGNAL, vnode, std::move(request.payload),
                        m_options.query_timeout,
                        relay_to(std::make_shared<rpc::Responder>(std::move(responder))));
}

void MonitorServer::on_console_closed(const fabric::Connection* connection) {
  std::vector<std::tuple<uint64_t, VnodeId, std::shared_ptr<fabric::Connection>>> hangups;
  {
    std::lock_guard lock(m_mutex);
    m_consoles.erase(connection);
    for (uint64_t id : m_runs.of_console(connection)) {
      RunEntry* entry = m_runs.find(id);
      entry->console.reset();
      // One that has not started yet is hung up when it does.
      if (entry->started) hangups.emplace_back(id, entry->vnode, entry->component);
      ++m_run_counters.hung_up;
    }
  }
  for (auto& [id, vnode, component] : hangups) {
    log.info("run {}: its console left; hanging it up", id);
    component->call_async(Opcode::MON2P_SIGNAL, vnode, signal_payload(id, SIGHUP),
                          m_options.query_timeout, ignore_reply);
  }
}

void MonitorServer::end_runs_of(NodeId node) {
  std::vector<RunEntry> lost;
  {
    std::lock_guard lock(m_mutex);
    for (uint64_t id : m_runs.on_node(node)) {
      // Those still starting fail through their MON2P_RUN's reply.
      if (!m_runs.find(id)->started) continue;
      lost.push_back(std::move(*m_runs.remove(id)));
      ++m_run_counters.lost;
    }
  }
  std::string why = fmt::format("pComponent {} failed while running the program", node);
  for (RunEntry& entry : lost) {
    log.warn("run {} on vnode '{}' lost: {}", entry.id, entry.vnode_name, why);
    if (entry.console) {
      entry.console->call_async(Opcode::MON2CTL_EXIT, entry.vnode,
                                exit_payload(entry.id, 255, wire::kExitLost, why),
                                m_options.query_timeout, ignore_reply);
    }
    // A pComponent declared failed for its silence may still be there:
    // its console was told the program is gone, so make it so.
    if (entry.component && entry.component->is_open()) {
      entry.component->call_async(Opcode::MON2P_SIGNAL, entry.vnode,
                                  signal_payload(entry.id, SIGKILL), m_options.query_timeout,
                                  ignore_reply);
    }
  }
}

// ---- ps and stats -------------------------------------------------------------

void MonitorServer::handle_ps(rpc::Message request, rpc::Responder responder) {
  auto decoded = wire::decode<wire::PsRequest>(request.payload);
  if (!decoded) {
    responder.fail(decoded.error());
    return;
  }
  std::string name = decoded->vnode_name.str();
  VnodeId filter = kNoVnode;
  std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>> targets;
  auto names = std::make_shared<std::map<VnodeId, std::string>>();
  {
    std::lock_guard lock(m_mutex);
    if (!name.empty()) {
      const VnodeEntry* vnode = m_vnodes.find(name);
      if (vnode == nullptr) {
        responder.fail(make_error(ENOENT, "no vnode named '" + name + "'"));
        return;
      }
      filter = vnode->id;
    }
    for (const auto& entry : m_vnodes.list()) (*names)[entry.id] = entry.name;
    for (NodeId id : m_membership.alive(NodeKind::kPcomponent)) {
      targets.emplace_back(id, m_membership.find(id)->connection);
    }
  }
  wire::PsQuery query{filter, 0};
  auto shared = std::make_shared<rpc::Responder>(std::move(responder));
  gather<wire::ProcessRecord>(
      targets, Opcode::MON2P_PS, filter, wire::encode(query), m_options.query_timeout,
      [names](wire::ProcessRecord& record, NodeId node) {
        record.pcomponent = node;
        auto it = names->find(record.vnode);
        record.vnode_name.set(it != names->end() ? it->second : "?");
      },
      [shared](std::vector<wire::ProcessRecord> records, uint32_t unanswered) {
        std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
          return std::tuple(a.vnode_name.view(), a.pcomponent, a.pid) <
                 std::tuple(b.vnode_name.view(), b.pcomponent, b.pid);
        });
        shared->reply(wire::encode_cluster_list(records, unanswered));
      });
}

void MonitorServer::handle_stats(rpc::Message, rpc::Responder responder) {
  std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>> targets;
  {
    std::lock_guard lock(m_mutex);
    for (NodeId id : m_membership.alive(NodeKind::kPcomponent)) {
      targets.emplace_back(id, m_membership.find(id)->connection);
    }
  }
  auto shared = std::make_shared<rpc::Responder>(std::move(responder));
  gather<wire::StatRecord>(
      targets, Opcode::MON2P_STATS, kNoVnode, {}, m_options.query_timeout,
      [](wire::StatRecord& record, NodeId node) { record.node = node; },
      [this, shared](std::vector<wire::StatRecord> records, uint32_t unanswered) {
        std::stable_sort(records.begin(), records.end(),
                         [](const auto& a, const auto& b) { return a.node < b.node; });
        auto all = own_stats();
        all.insert(all.end(), records.begin(), records.end());
        shared->reply(wire::encode_cluster_list(all, unanswered));
      });
}

std::vector<wire::StatRecord> MonitorServer::own_stats() {
  std::vector<wire::StatRecord> records = own_run_stats();
  if (m_options.extra_stats) {
    auto extra = m_options.extra_stats();
    records.insert(records.end(), extra.begin(), extra.end());
  }
  for (auto& record : records) record.node = kMonitorNodeId;
  return records;
}

std::vector<wire::StatRecord> MonitorServer::own_run_stats() {
  std::lock_guard lock(m_mutex);
  const RunCounters& c = m_run_counters;
  std::vector<wire::StatRecord> records = {
      wire::make_stat("runs", "running", m_runs.size()),
      wire::make_stat("runs", "started", c.started),
      wire::make_stat("runs", "refused", c.refused),
      wire::make_stat("runs", "ended", c.ended),
      wire::make_stat("runs", "lost", c.lost),
      wire::make_stat("runs", "hung_up", c.hung_up),
      wire::make_stat("runs", "signals", c.signals),
      wire::make_stat("runs", "output_chunks", c.output_chunks),
      wire::make_stat("runs", "output_bytes", c.output_bytes),
      wire::make_stat("runs", "input_bytes", c.input_bytes),
  };
  return records;
}

}  // namespace sk::monitor
