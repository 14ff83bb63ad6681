// The process manager (see process_manager.h).
#include "pcomponent/process_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "pcomponent/proc_stat.h"

namespace sk::pcomponent {

static const Logger log("processes");

using wire::Opcode;

namespace {

// Both ends close-on-exec (the launcher passes the child's end explicitly);
// ours non-blocking, for the pump.
Result<std::pair<int, int>> make_pipe(bool read_end_is_ours) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  int ours = read_end_is_ours ? fds[0] : fds[1];
  ::fcntl(ours, F_SETFL, ::fcntl(ours, F_GETFL) | O_NONBLOCK);
  return std::pair<int, int>(fds[0], fds[1]);
}

void close_all(std::initializer_list<int> fds) {
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Signals a program's process group (it is a session leader), or the
// program alone when the group is gone or not made yet.
Result<void> signal_group(Launcher& launcher, pid_t pid, int signo) {
  if (::kill(-pid, signo) == 0) return {};
  return launcher.signal(pid, signo);
}

}  // namespace

ProcessManager::ProcessManager(Launcher& launcher, Storage& storage, Options options)
    : m_launcher(launcher),
      m_storage(storage),
      m_pump(
          options.pump,
          [this](const RunPump::Run& run, int signo) {
            log.info("run {}: its console is gone; hanging it up (signal {})", run.id,
                     signo);
            (void)signal_group(m_launcher, run.pid, signo);
          },
          [this](uint64_t run) { finished(run); }),
      m_workers(options.workers) {
  if (auto started = m_pump.start(); !started) {
    log.error("cannot run programs: {}", started.error().text());
    m_stopping = true;
    return;
  }
  m_exits->pump = &m_pump;
}

ProcessManager::~ProcessManager() { stop(); }

void ProcessManager::stop() {
  std::vector<pid_t> pids;
  {
    std::lock_guard lock(m_mutex);
    m_stopping = true;
    for (const auto& [id, run] : m_runs) {
      if (run.pid > 0) pids.push_back(run.pid);
    }
  }
  for (pid_t pid : pids) (void)signal_group(m_launcher, pid, SIGKILL);
  m_workers.join();
  {
    std::lock_guard lock(m_exits->mutex);
    m_exits->pump = nullptr;
  }
  m_pump.stop();
}

bool ProcessManager::post(std::function<void()> work) {
  std::lock_guard lock(m_mutex);
  if (m_stopping) return false;
  boost::asio::post(m_workers, std::move(work));
  return true;
}

size_t ProcessManager::running() const {
  std::lock_guard lock(m_mutex);
  return m_runs.size();
}

void ProcessManager::finished(uint64_t run) {
  {
    std::lock_guard lock(m_mutex);
    if (m_runs.erase(run) != 0) ++m_ended;
  }
  std::lock_guard lock(m_exits->mutex);
  m_exits->notes.erase(run);  // a note that came after the exit
}

void ProcessManager::register_handlers(rpc::ControlDispatcher& dispatcher) {
  using RunReply = rpc::ReplyTo<Opcode::MON2P_RUN>;
  dispatcher.on_deferred<Opcode::MON2P_RUN>([this](wire::Ctl2pRunCommand command,
                                                   rpc::Message request, RunReply reply) {
    VnodeId vnode = request.vnode();
    if (vnode == kNoVnode) {
      reply.fail(make_error(EINVAL, "a run must name its vNode"));
      return;
    }
    auto shared = std::make_shared<RunReply>(std::move(reply));
    auto work = [this, command = std::move(command), vnode, shared] {
      start(command, vnode, shared->connection(),
            [shared](Result<wire::Ctl2pRunReply> started) { shared->finish(std::move(started)); });
    };
    if (!post(std::move(work))) {
      shared->fail(make_error(ESHUTDOWN, "the pComponent is shutting down"));
    }
  });

  dispatcher.on_deferred<Opcode::MON2P_STDIN>(
      [this](wire::RunInputBody input, rpc::Message, rpc::ReplyTo<Opcode::MON2P_STDIN> reply) {
        m_pump.input(input.head.run, std::move(input.tail),
                     (input.head.flags & wire::kInputEof) != 0, std::move(reply));
      });

  dispatcher.on<Opcode::MON2P_SIGNAL>(
      [this](const wire::Ctl2pRunSignal& message, const rpc::Message&) -> Result<void> {
        return signal(message.run, message.signo);
      });

  using PsReply = rpc::ReplyTo<Opcode::MON2P_PS>;
  dispatcher.on_deferred<Opcode::MON2P_PS>(
      [this](wire::Mon2pPsRequest query, rpc::Message, PsReply reply) {
        auto shared = std::make_shared<PsReply>(std::move(reply));
        if (!post([this, vnode = query.vnode, shared] {
              shared->reply(wire::ProcessList{{}, processes(vnode)});
            })) {
          shared->fail(make_error(ESHUTDOWN, "the pComponent is shutting down"));
        }
      });

  using StatsReply = rpc::ReplyTo<Opcode::MON2P_STATS>;
  dispatcher.on_deferred<Opcode::MON2P_STATS>([this](wire::Empty, rpc::Message, StatsReply reply) {
    auto shared = std::make_shared<StatsReply>(std::move(reply));
    if (!post([this, shared] { shared->reply(wire::StatList{{}, counters()}); })) {
      shared->fail(make_error(ESHUTDOWN, "the pComponent is shutting down"));
    }
  });
}

void ProcessManager::start(const wire::Ctl2pRunCommand& command, VnodeId vnode,
                           std::shared_ptr<fabric::Connection> monitor,
                           std::function<void(Result<wire::Ctl2pRunReply>)> reply) {
  uint64_t id = command.request.run;
  auto refuse = [&](Error error) {
    {
      std::lock_guard lock(m_mutex);
      ++m_failed;
    }
    log.warn("run {}: '{}' on vNode {} not started: {}", id, command.argv[0], vnode,
             error.text());
    reply(std::move(error));
  };
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) {
      reply(make_error(ESHUTDOWN, "the pComponent is shutting down"));
      return;
    }
    if (!m_runs.try_emplace(id, RunInfo{vnode, -1}).second) {
      reply(make_error(EEXIST, "run " + std::to_string(id) + " exists already"));
      return;
    }
  }
  auto forget = [&] {
    std::lock_guard lock(m_mutex);
    m_runs.erase(id);
  };

  auto root = m_storage.root(vnode);
  if (!root) {
    forget();
    refuse(make_error(root.error().code(), "vNode " + std::to_string(vnode) +
                                               " has no root on this pComponent: " +
                                               root.error().message()));
    return;
  }
  auto in = make_pipe(/*read_end_is_ours=*/false);
  auto out = make_pipe(/*read_end_is_ours=*/true);
  auto err = make_pipe(/*read_end_is_ours=*/true);
  if (!in || !out || !err) {
    if (in) close_all({in->first, in->second});
    if (out) close_all({out->first, out->second});
    if (err) close_all({err->first, err->second});
    forget();
    refuse(make_error(EMFILE, "no pipes for the program's stdio"));
    return;
  }
  auto run = std::make_shared<RunPump::Run>();
  run->id = id;
  run->vnode = vnode;
  run->monitor = std::move(monitor);
  run->out = out->first;
  run->err = err->first;
  run->in = in->second;
  if ((command.request.flags & wire::kRunNoStdin) != 0) {
    ::close(run->in);  // the program reads end of file at once
    run->in = -1;
  }

  LaunchSpec spec;
  spec.vnode = vnode;
  spec.hostname = command.request.vnode_name.str();
  spec.root = root.value();
  spec.argv = command.argv;
  spec.env = command.env;
  spec.cwd = command.cwd;
  spec.stdin_fd = in->first;
  spec.stdout_fd = out->second;
  spec.stderr_fd = err->second;
  auto pid = m_launcher.launch(spec, [exits = m_exits, run](ExitStatus status) {
    // The tracer's thread: only queue it.
    std::lock_guard lock(exits->mutex);
    if (auto note = exits->notes.extract(run->id)) status.note = std::move(note.mapped());
    if (exits->pump != nullptr) exits->pump->exited(run, status);
  });
  // The program has its copies now (or never will).
  close_all({in->first, out->second, err->second});
  if (!pid) {
    forget();
    refuse(make_error(pid.error().code(),
                      "could not start '" + command.argv[0] + "': " + pid.error().message()));
    return;
  }
  run->pid = pid.value();
  auto vnode_pid = m_launcher.vnode_pid(run->pid);  // fails only if it is gone already
  wire::Ctl2pRunReply started{};
  started.run = id;
  started.vnode = vnode;
  started.host_pid = run->pid;
  started.vnode_pid = vnode_pid ? vnode_pid.value() : 0;
  {
    std::lock_guard lock(m_mutex);
    m_runs[id].pid = run->pid;
    ++m_started;
  }
  log.info("run {}: '{}' on vNode {} ({}) is host pid {}, pid {} in the vNode", id,
           command.argv[0], vnode, spec.hostname, started.host_pid, started.vnode_pid);
  m_pump.add(run, [reply = std::move(reply), started] { reply(started); });
}

Result<void> ProcessManager::signal(uint64_t run, int signo) {
  pid_t pid = -1;
  {
    std::lock_guard lock(m_mutex);
    auto it = m_runs.find(run);
    if (it == m_runs.end() || it->second.pid <= 0) {
      return make_error(ENOENT, "no run " + std::to_string(run) + " here");
    }
    pid = it->second.pid;
    ++m_signals;
  }
  log.info("run {}: signal {} to host pid {}'s group", run, signo, pid);
  return signal_group(m_launcher, pid, signo);
}

// The parent of `pid`, or -1 when it is gone.
static pid_t parent_of(pid_t pid) {
  auto stat = read_proc_stat(pid);
  return stat && !stat->field(4).empty() ? static_cast<pid_t>(stat->number(4)) : -1;
}

void ProcessManager::memory_failed(pid_t pid, const std::string& why) {
  std::map<pid_t, uint64_t> run_of;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& [id, run] : m_runs) {
      if (run.pid > 0) run_of[run.pid] = id;
    }
  }
  // Up the parents: the launched program is an ancestor of everything its
  // run started, unless an ancestor in between has died (its orphans go
  // to the vNode's init, which is no run's).
  constexpr int kMaxDepth = 64;
  pid_t at = pid;
  for (int depth = 0; at > 1 && depth < kMaxDepth; ++depth, at = parent_of(at)) {
    auto it = run_of.find(at);
    if (it == run_of.end()) continue;
    std::lock_guard lock(m_exits->mutex);
    std::string& note = m_exits->notes[it->second];
    if (note.empty()) {
      note = at == pid ? why : "process " + std::to_string(pid) + " was killed: " + why;
    }
    return;
  }
  log.warn("host pid {} was killed ({}), and no run of this pComponent is its ancestor", pid, why);
}

void ProcessManager::drop_vnode(VnodeId vnode) {
  std::vector<pid_t> pids;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& [id, run] : m_runs) {
      if (run.vnode == vnode && run.pid > 0) pids.push_back(run.pid);
    }
  }
  for (pid_t pid : pids) (void)signal_group(m_launcher, pid, SIGKILL);
  // The init takes whatever else still lives in the vNode with it.
  m_launcher.drop_vnode(vnode);
}

std::vector<wire::ProcessRecord> ProcessManager::processes(VnodeId vnode) {
  std::vector<TracedProcess> traced = m_launcher.processes();
  std::map<pid_t, uint64_t> run_of;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& [id, run] : m_runs) run_of[run.pid] = id;
  }
  double uptime = 0;
  std::istringstream(read_file("/proc/uptime")) >> uptime;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);

  std::vector<wire::ProcessRecord> records;
  for (const TracedProcess& process : traced) {
    if (vnode != kNoVnode && process.vnode != vnode) continue;
    std::string proc = "/proc/" + std::to_string(process.pid);
    auto stat = read_proc_stat(process.pid);
    if (!stat || stat->field(24).empty()) continue;

    wire::ProcessRecord record{};
    record.vnode = process.vnode;
    record.host_pid = process.pid;
    auto inside = m_launcher.vnode_pid(process.pid);
    record.pid = inside ? inside.value() : 0;
    char state = stat->field(3).empty() ? '?' : stat->field(3)[0];
    record.state = static_cast<uint8_t>(std::isgraph(static_cast<unsigned char>(state)) ? state : '?');
    double started_s =
        ticks > 0 ? static_cast<double>(stat->number(22)) / static_cast<double>(ticks) : 0;
    record.runtime_ms =
        uptime > started_s ? static_cast<uint64_t>((uptime - started_s) * 1000.0) : 0;
    record.rss = stat->number(24) * static_cast<uint64_t>(page);
    if (auto it = run_of.find(process.launched); it != run_of.end()) record.run = it->second;
    if (m_memory != nullptr) {
      memory::ProcessMemory pages = m_memory->process(process.pid);
      record.cache_pages = pages.resident_pages;
      record.remote_pages = pages.remote_pages;
    }
    std::string cmdline = read_file(proc + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
    record.command.set(cmdline.empty() ? "[" + stat->comm + "]" : cmdline);
    record.vnode_name.set("");
    records.push_back(record);
  }
  return records;
}

std::vector<wire::StatRecord> ProcessManager::counters() {
  std::vector<wire::StatRecord> records;
  auto add = [&](std::string_view group, std::string_view name, uint64_t value) {
    records.push_back(wire::make_stat(group, name, value));
  };
  {
    std::lock_guard lock(m_mutex);
    add("process", "running", m_runs.size());
    add("process", "started", m_started);
    add("process", "failed", m_failed);
    add("process", "ended", m_ended);
    add("process", "signals", m_signals);
  }
  const RunPump::Counters& pump = m_pump.counters();
  add("process", "output_chunks", pump.output_chunks);
  add("process", "output_bytes", pump.output_bytes);
  add("process", "dropped_bytes", pump.dropped_bytes);
  add("process", "input_bytes", pump.input_bytes);
  add("process", "hung_up", pump.detached);

  TracerStats tracer = m_launcher.stats();
  add("tracer", "stops", tracer.stops);
  add("tracer", "launched", tracer.launched);
  add("tracer", "execs", tracer.execs);
  add("tracer", "forks", tracer.forks);
  add("tracer", "threads", tracer.threads);
  for (const auto& [name, count] : tracer.syscalls) add("syscalls", name, count);
  for (const auto& [name, count] : tracer.refused) add("refused", name, count);
  for (const auto& [name, count] : m_storage.stats()) add("storage", name, count);
  if (m_memory != nullptr) {
    for (const auto& [name, value] : memory::memory_counters(m_memory->stats())) {
      add("memory", name, value);
    }
    add("memory", "userfaults", tracer.userfaults);
    add("memory", "drops", tracer.drops);
  }
  if (m_extra_stats) {
    auto extra = m_extra_stats();
    records.insert(records.end(), extra.begin(), extra.end());
  }
  return records;
}

}  // namespace sk::pcomponent
