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

wire::RunExitBody lost_exit(uint64_t run, std::string_view text) {
  wire::P2ctlRunExit exit{};
  exit.run = run;
  exit.code = 255;
  exit.flags = wire::kExitLost;
  return wire::RunExitBody::of(exit, wire::Tail(text.substr(0, wire::kMaxExitText)));
}

// Sends `signo` to a run's program and forgets the answer.
void signal_run(fabric::Connection& component, VnodeId vnode, uint64_t run, int signo,
                Duration timeout) {
  rpc::call_async<Opcode::MON2P_SIGNAL>(component, vnode, wire::Ctl2pRunSignal{run, signo, 0},
                                        timeout, [](Result<wire::Empty>) {});
}

// Passes a peer's empty reply (or its failure) back to whoever asked.
template <Opcode Op>
std::function<void(Result<wire::Empty>)> relay_to(rpc::ReplyTo<Op> reply) {
  auto shared = std::make_shared<rpc::ReplyTo<Op>>(std::move(reply));
  return [shared](Result<wire::Empty> answer) { shared->finish(std::move(answer)); };
}

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

// The records of a list reply (wire::RecordList).
template <Opcode Op>
using RecordOf = typename decltype(wire::ReplyOf<Op>::records)::value_type;

template <Opcode Op>
void gather(const std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>>& targets,
            VnodeId vnode, const wire::RequestOf<Op>& request, Duration timeout,
            std::function<void(RecordOf<Op>&, NodeId)> fix,
            std::function<void(std::vector<RecordOf<Op>>, uint32_t)> done) {
  using R = RecordOf<Op>;
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
    rpc::call_async<Op>(
        *connection, vnode, request, timeout, [finish, fix, id](Result<wire::ReplyOf<Op>> list) {
          if (!list) {
            log.warn("{} to pComponent {}: {}", wire::opcode_name(static_cast<uint16_t>(Op)), id,
                     list.error().text());
            finish({}, false);
            return;
          }
          auto records = std::move(list->records);
          for (R& record : records) fix(record, id);
          finish(std::move(records), true);
        });
  }
  finish({}, true);
}

}  // namespace

void MonitorServer::register_run_handlers() {
  m_dispatcher.on_deferred<Opcode::CTL2MON_RUN>(
      [this](wire::Ctl2pRunCommand command, rpc::Message, ReplyTo<Opcode::CTL2MON_RUN> reply) {
        handle_run(std::move(command), std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::CTL2MON_STDIN>(
      [this](wire::RunInputBody input, rpc::Message, ReplyTo<Opcode::CTL2MON_STDIN> reply) {
        handle_stdin(std::move(input), std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::CTL2MON_SIGNAL>(
      [this](wire::Ctl2pRunSignal signal, rpc::Message, ReplyTo<Opcode::CTL2MON_SIGNAL> reply) {
        handle_signal(signal, std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::CTL2MON_PS>(
      [this](wire::Ctl2monPsRequest request, rpc::Message, ReplyTo<Opcode::CTL2MON_PS> reply) {
        handle_ps(request, std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::CTL2MON_STATS>(
      [this](wire::Empty, rpc::Message, ReplyTo<Opcode::CTL2MON_STATS> reply) {
        handle_stats(std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::P2MON_OUTPUT>(
      [this](wire::RunOutputBody output, rpc::Message, ReplyTo<Opcode::P2MON_OUTPUT> reply) {
        handle_output(std::move(output), std::move(reply));
      });
  m_dispatcher.on_deferred<Opcode::P2MON_EXIT>(
      [this](wire::RunExitBody exit, rpc::Message, ReplyTo<Opcode::P2MON_EXIT> reply) {
        handle_exit(std::move(exit), std::move(reply));
      });
}

// ---- run --------------------------------------------------------------------

void MonitorServer::handle_run(wire::Ctl2pRunCommand command, ReplyTo<Opcode::CTL2MON_RUN> reply) {
  std::shared_ptr<fabric::Connection> console = reply.connection();
  std::string name = command.request.vnode_name.str();

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
    auto picked =
        m_membership.pick_pcomponent(vnode->id, [this](NodeId id) { return m_runs.count_on(id); });
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
    if (!entry.component)
      return make_error(ENOTCONN, "pComponent " + std::to_string(node) + " has no connection");
    m_runs.add(entry);
    watch_console = m_consoles.insert(console.get()).second;
    return {};
  }();
  if (!placed) {
    log.info("run of '{}' on vnode '{}' refused: {}", command.argv[0], name,
             placed.error().message());
    reply.fail(placed.error());
    return;
  }
  if (watch_console) {
    // Set outside m_mutex: it runs at once if the console already left.
    const fabric::Connection* raw = console.get();
    console->set_close_handler([this, raw] { on_console_closed(raw); });
  }
  log.info("run {}: '{}' on vnode '{}' goes to pComponent {}", entry.id, command.argv[0], name,
           entry.pcomponent);

  // The console's request, with the run id filled in.
  command.request.run = entry.id;

  auto shared = std::make_shared<ReplyTo<Opcode::CTL2MON_RUN>>(std::move(reply));
  uint64_t id = entry.id;
  NodeId node = entry.pcomponent;
  VnodeId vnode = entry.vnode;
  Duration timeout = m_options.run_timeout;
  rpc::call_async<Opcode::MON2P_RUN>(
      *entry.component, vnode, std::move(command), timeout,
      [this, id, node, vnode, timeout, shared](Result<wire::Ctl2pRunReply> started) {
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
          signal_run(*component, vnode, id, SIGHUP, m_options.query_timeout);
        }
        wire::Ctl2pRunReply answer = started.value();
        answer.run = id;
        answer.pcomponent = node;
        answer.vnode = vnode;
        log.debug("run {}: started as vNode pid {} (host pid {})", id, answer.vnode_pid,
                  answer.host_pid);
        shared->reply(answer);
      });
}

void MonitorServer::handle_output(wire::RunOutputBody output, ReplyTo<Opcode::P2MON_OUTPUT> reply) {
  uint64_t run = output.head.run;
  std::shared_ptr<fabric::Connection> console;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr) return make_error(ENOENT, "no run " + std::to_string(run));
    if (entry->component.get() != reply.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " is not on this pComponent");
    }
    if (!entry->console) {
      return make_error(ENOENT, "run " + std::to_string(run) + " has no console any more");
    }
    console = entry->console;
    vnode = entry->vnode;
    ++m_run_counters.output_chunks;
    m_run_counters.output_bytes += output.head.length;
    return {};
  }();
  if (!found) {
    reply.fail(found.error());
    return;
  }
  // The pComponent's chunk is answered when the console's is: that is the
  // whole flow control, and nothing waits here.
  rpc::call_async<Opcode::MON2CTL_OUTPUT>(*console, vnode, std::move(output),
                                          m_options.stream_timeout, relay_to(std::move(reply)));
}

void MonitorServer::handle_exit(wire::RunExitBody body, ReplyTo<Opcode::P2MON_EXIT> reply) {
  const wire::P2ctlRunExit exit = body.head;
  std::optional<RunEntry> entry;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* known = m_runs.find(exit.run);
    if (known == nullptr) return make_error(ENOENT, "no run " + std::to_string(exit.run));
    if (known->component.get() != reply.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(exit.run) + " is not on this pComponent");
    }
    entry = m_runs.remove(exit.run);
    ++m_run_counters.ended;
    return {};
  }();
  if (!found) {
    reply.fail(found.error());
    return;
  }
  reply.reply(wire::Empty{});
  log.info("run {} on vnode '{}' ended: status {}{}", exit.run, entry->vnode_name, exit.code,
           exit.signal != 0 ? fmt::format(" (signal {})", exit.signal) : std::string());
  if (entry->console) {
    rpc::call_async<Opcode::MON2CTL_EXIT>(*entry->console, entry->vnode, std::move(body),
                                          m_options.query_timeout, [](Result<wire::Empty>) {});
  }
}

void MonitorServer::handle_stdin(wire::RunInputBody input, ReplyTo<Opcode::CTL2MON_STDIN> reply) {
  uint64_t run = input.head.run;
  std::shared_ptr<fabric::Connection> component;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr || !entry->started) {
      return make_error(ENOENT, "run " + std::to_string(run) + " is not running");
    }
    if (entry->console.get() != reply.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " belongs to another console");
    }
    component = entry->component;
    vnode = entry->vnode;
    m_run_counters.input_bytes += input.head.length;
    return {};
  }();
  if (!found) {
    reply.fail(found.error());
    return;
  }
  rpc::call_async<Opcode::MON2P_STDIN>(*component, vnode, std::move(input),
                                       m_options.stream_timeout, relay_to(std::move(reply)));
}

void MonitorServer::handle_signal(wire::Ctl2pRunSignal signal,
                                  ReplyTo<Opcode::CTL2MON_SIGNAL> reply) {
  uint64_t run = signal.run;
  std::shared_ptr<fabric::Connection> component;
  VnodeId vnode = kNoVnode;
  auto found = [&]() -> Result<void> {
    std::lock_guard lock(m_mutex);
    RunEntry* entry = m_runs.find(run);
    if (entry == nullptr || !entry->started) {
      return make_error(ENOENT, "run " + std::to_string(run) + " is not running");
    }
    if (entry->console.get() != reply.connection().get()) {
      return make_error(EPERM, "run " + std::to_string(run) + " belongs to another console");
    }
    component = entry->component;
    vnode = entry->vnode;
    ++m_run_counters.signals;
    return {};
  }();
  if (!found) {
    reply.fail(found.error());
    return;
  }
  log.info("run {}: signal {} from its console", run, signal.signo);
  rpc::call_async<Opcode::MON2P_SIGNAL>(*component, vnode, signal, m_options.query_timeout,
                                        relay_to(std::move(reply)));
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
    signal_run(*component, vnode, id, SIGHUP, m_options.query_timeout);
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
      rpc::call_async<Opcode::MON2CTL_EXIT>(*entry.console, entry.vnode, lost_exit(entry.id, why),
                                            m_options.query_timeout, [](Result<wire::Empty>) {});
    }
    // A pComponent declared failed for its silence may still be there:
    // its console was told the program is gone, so make it so.
    if (entry.component && entry.component->is_open()) {
      signal_run(*entry.component, entry.vnode, entry.id, SIGKILL, m_options.query_timeout);
    }
  }
}

// ---- ps and stats -------------------------------------------------------------

void MonitorServer::handle_ps(const wire::Ctl2monPsRequest& request,
                              ReplyTo<Opcode::CTL2MON_PS> reply) {
  std::string name = request.vnode_name.str();
  VnodeId filter = kNoVnode;
  std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>> targets;
  auto names = std::make_shared<std::map<VnodeId, std::string>>();
  {
    std::lock_guard lock(m_mutex);
    if (!name.empty()) {
      const VnodeEntry* vnode = m_vnodes.find(name);
      if (vnode == nullptr) {
        reply.fail(make_error(ENOENT, "no vnode named '" + name + "'"));
        return;
      }
      filter = vnode->id;
    }
    for (const auto& entry : m_vnodes.list()) (*names)[entry.id] = entry.name;
    for (NodeId id : m_membership.alive(NodeKind::kPcomponent)) {
      targets.emplace_back(id, m_membership.find(id)->connection);
    }
  }
  auto shared = std::make_shared<ReplyTo<Opcode::CTL2MON_PS>>(std::move(reply));
  gather<Opcode::MON2P_PS>(
      targets, filter, wire::Mon2pPsRequest{filter, 0}, m_options.query_timeout,
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
        shared->reply(wire::ProcessList{{0, unanswered}, std::move(records)});
      });
}

void MonitorServer::handle_stats(ReplyTo<Opcode::CTL2MON_STATS> reply) {
  std::vector<std::pair<NodeId, std::shared_ptr<fabric::Connection>>> targets;
  {
    std::lock_guard lock(m_mutex);
    for (NodeId id : m_membership.alive(NodeKind::kPcomponent)) {
      targets.emplace_back(id, m_membership.find(id)->connection);
    }
  }
  auto shared = std::make_shared<ReplyTo<Opcode::CTL2MON_STATS>>(std::move(reply));
  gather<Opcode::MON2P_STATS>(
      targets, kNoVnode, wire::Empty{}, m_options.query_timeout,
      [](wire::StatRecord& record, NodeId node) { record.node = node; },
      [this, shared](std::vector<wire::StatRecord> records, uint32_t unanswered) {
        std::stable_sort(records.begin(), records.end(),
                         [](const auto& a, const auto& b) { return a.node < b.node; });
        auto all = own_stats();
        all.insert(all.end(), records.begin(), records.end());
        shared->reply(wire::StatList{{0, unanswered}, std::move(all)});
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
