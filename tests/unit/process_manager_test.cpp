// The process manager with the real ptrace launcher on a small root tree
// holding the static sandbox_probe program, driven through its dispatcher
// as the monitor would, by a fake monitor over the fake fabric that records
// the P2MON_ messages (and can hold their answers, as a slow console would).
// Needs root (as the pComponent does).
#include "pcomponent/process_manager.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kernel/wire/codec.h"
#include "kernel/wire/process_messages.h"
#include "pcomponent/launcher.h"
#include "tests/unit/fake_transport.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace sk::pcomponent {
namespace {

using testing::FakeTransport;
using wire::Opcode;

constexpr VnodeId kVnode = 7;

class FakeStorage final : public Storage {
 public:
  fs::path path;
  Result<fs::path> root(const VnodeStorage&) override { return path; }
  Result<fs::path> root(VnodeId vnode) override {
    if (vnode != kVnode) return make_error(ENOENT, "never told about vNode " + std::to_string(vnode));
    return path;
  }
  void drop(VnodeId) override {}
  StorageStats stats() override { return {{"getattr", 5}, {"read", 2}}; }
};

// The monitor's end of the membership connection, over the fake fabric: the
// pComponent's dispatcher listens on one FakeTransport, the monitor
// connects from another with a handler that records the pComponent's
// requests (P2MON_OUTPUT, P2MON_EXIT) and answers them, or keeps the
// Responders of P2MON_OUTPUT when told to hold (as a slow console would).
// It sends the monitor's requests and records their replies.
class FakeMonitor {
 public:
  struct Call {
    Opcode opcode;
    wire::Bytes payload;
  };
  struct Reply {
    uint16_t opcode;
    int status;
    wire::Bytes payload;
  };

  std::atomic<bool> hold{false};

  // `dispatcher` serves the pComponent's side; it must outlive this.
  explicit FakeMonitor(const rpc::Dispatcher& dispatcher) {
    auto address = m_pcomponent.listen(Address{"fake", 0}, dispatcher.handler()).value();
    m_connection = m_transport
                       .connect(address,
                                [this](fabric::Message message, fabric::Responder responder) {
                                  serve(std::move(message), std::move(responder));
                                })
                       .value();
  }

  // Sends a monitor's request; its reply (or the transport's error, as
  // minus its errno) joins replies().
  void send(Opcode opcode, VnodeId vnode, wire::Bytes payload) {
    m_connection->call_async(
        opcode, vnode, std::move(payload), 10s, [this, opcode](Result<fabric::Message> reply) {
          {
            std::lock_guard lock(m_mutex);
            if (reply) {
              m_replies.push_back(
                  Reply{static_cast<uint16_t>(opcode), reply->status(), std::move(reply->payload)});
            } else {
              m_replies.push_back(Reply{static_cast<uint16_t>(opcode), -reply.error().code(), {}});
            }
          }
          m_wake.notify_all();
        });
  }
  // The monitor dies: the link closes on both ends.
  void close() { m_connection->close(); }

  // Waits until `ready` holds (under the lock), at most 10 s.
  bool wait(const std::function<bool()>& ready) {
    std::unique_lock lock(m_mutex);
    return m_wake.wait_for(lock, 10s, ready);
  }
  bool wait_for_exit() {
    return wait([&] { return exit_locked().has_value(); });
  }
  bool wait_for_reply(Opcode opcode, size_t count = 1) {
    return wait([&] {
      size_t n = 0;
      for (const auto& reply : m_replies) n += reply.opcode == static_cast<uint16_t>(opcode);
      return n >= count;
    });
  }
  size_t held() {
    std::lock_guard lock(m_mutex);
    return m_held.size();
  }
  void answer_held(int status = 0) {
    std::optional<fabric::Responder> responder;
    {
      std::lock_guard lock(m_mutex);
      if (m_held.empty()) return;
      responder.emplace(std::move(m_held.front()));
      m_held.erase(m_held.begin());
    }
    if (status == 0) {
      responder->reply();
    } else {
      responder->fail(make_error(status, "held answer"));
    }
  }

  std::vector<Reply> replies(Opcode opcode) {
    std::lock_guard lock(m_mutex);
    std::vector<Reply> result;
    for (const auto& reply : m_replies) {
      if (reply.opcode == static_cast<uint16_t>(opcode)) result.push_back(reply);
    }
    return result;
  }
  // Everything the run wrote on a stream, in order.
  std::string output(wire::RunStream stream) {
    std::lock_guard lock(m_mutex);
    std::string text;
    for (const auto& call : m_calls) {
      if (call.opcode != Opcode::P2MON_OUTPUT) continue;
      auto decoded =
          wire::decode_sized<wire::P2ctlRunOutput>(call.payload, &wire::P2ctlRunOutput::length);
      EXPECT_TRUE(decoded.ok());
      if (decoded.ok() && decoded->first.stream == static_cast<uint8_t>(stream)) {
        text += wire::to_text(decoded->second);
      }
    }
    return text;
  }
  std::optional<wire::P2ctlRunExit> exit() {
    std::lock_guard lock(m_mutex);
    return exit_locked();
  }
  std::vector<Opcode> opcodes() {
    std::lock_guard lock(m_mutex);
    std::vector<Opcode> result;
    for (const auto& call : m_calls) result.push_back(call.opcode);
    return result;
  }

 private:
  // The monitor's handler, on its transport's thread.
  void serve(fabric::Message message, fabric::Responder responder) {
    auto opcode = static_cast<Opcode>(message.opcode());
    {
      std::lock_guard lock(m_mutex);
      m_calls.push_back(Call{opcode, std::move(message.payload)});
      if (hold && opcode == Opcode::P2MON_OUTPUT) {
        m_held.push_back(std::move(responder));
      } else {
        responder.reply();
      }
    }
    m_wake.notify_all();
  }
  std::optional<wire::P2ctlRunExit> exit_locked() {
    for (const auto& call : m_calls) {
      if (call.opcode == Opcode::P2MON_EXIT) {
        auto decoded = wire::decode<wire::P2ctlRunExit>(call.payload);
        EXPECT_TRUE(decoded.ok());
        if (decoded.ok()) return decoded.value();
      }
    }
    return std::nullopt;
  }

  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::vector<Call> m_calls;
  std::vector<Reply> m_replies;
  std::vector<fabric::Responder> m_held;

  // After the state above, so that their threads stop before it goes.
  FakeTransport m_pcomponent;
  FakeTransport m_transport;
  std::shared_ptr<fabric::Connection> m_connection;
};

class ProcessManagerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    root = fs::temp_directory_path() / ("sk-processes-" + std::to_string(::getpid()));
    for (const char* dir : {"bin", "proc", "dev", "tmp"}) fs::create_directories(root / dir);
    fs::copy_file(SK_PROBE_PATH, root / "bin/sandbox_probe");
    for (auto& entry : fs::recursive_directory_iterator(root)) {
      fs::permissions(entry.path(), fs::perms(0755));
    }
    fs::permissions(root, fs::perms(0755));
    launcher = std::move(make_ptrace_launcher("/proc/self/exe")).value();
  }

  static void TearDownTestSuite() {
    launcher.reset();
    if (!root.empty()) fs::remove_all(root);
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the launcher needs root";
    m_storage.path = root;
    m_manager = std::make_unique<ProcessManager>(*launcher, m_storage);
    m_manager->register_handlers(m_dispatcher);
  }

  void TearDown() override { m_manager.reset(); }

  // Sends a monitor's request over the fake link.
  void dispatch(Opcode opcode, VnodeId vnode, wire::Bytes payload) {
    m_monitor->send(opcode, vnode, std::move(payload));
  }

  // Starts a run; returns what MON2P_RUN answered.
  FakeMonitor::Reply start(uint64_t run, std::vector<std::string> argv, uint32_t flags = 0,
                           VnodeId vnode = kVnode) {
    wire::Ctl2pRunRequest head{};
    head.run = run;
    head.flags = flags;
    head.vnode_name.set("probe");
    size_t before = m_monitor->replies(Opcode::MON2P_RUN).size();
    dispatch(Opcode::MON2P_RUN, vnode, wire::encode_run(head, "/", argv, {"PATH=/bin"}).value());
    EXPECT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_RUN, before + 1));
    return m_monitor->replies(Opcode::MON2P_RUN).back();
  }

  void input(uint64_t run, std::string_view data, bool eof) {
    wire::Ctl2pRunInput head{};
    head.run = run;
    head.length = static_cast<uint32_t>(data.size());
    head.flags = eof ? wire::kInputEof : 0;
    dispatch(Opcode::MON2P_STDIN, kVnode, wire::encode(head, wire::as_bytes(data)));
  }

  static inline fs::path root;
  static inline std::unique_ptr<Launcher> launcher;

  FakeStorage m_storage;
  rpc::ControlDispatcher m_dispatcher{"test"};
  std::shared_ptr<FakeMonitor> m_monitor = std::make_shared<FakeMonitor>(m_dispatcher);
  std::unique_ptr<ProcessManager> m_manager;
};

TEST_F(ProcessManagerTest, OutputStreamsAndTheExitComesLast) {
  auto reply = start(1, {"sandbox_probe", "echo", "hello", "world"});
  ASSERT_EQ(reply.status, 0) << wire::to_text(reply.payload);
  auto started = wire::decode<wire::Ctl2pRunReply>(reply.payload);
  ASSERT_TRUE(started.ok());
  EXPECT_EQ(started->run, 1u);
  EXPECT_EQ(started->vnode, kVnode);
  EXPECT_GT(started->host_pid, 0);
  EXPECT_GT(started->vnode_pid, 1);  // pid 1 is the vNode's init

  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStdout), "hello\nworld\n");
  EXPECT_EQ(m_monitor->exit()->run, 1u);
  EXPECT_EQ(m_monitor->exit()->code, 0);
  EXPECT_EQ(m_monitor->opcodes().back(), Opcode::P2MON_EXIT);
  EXPECT_EQ(m_manager->running(), 0u);
}

TEST_F(ProcessManagerTest, StderrAndStatuses) {
  start(1, {"sandbox_probe", "bogus"});
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStderr), "sandbox_probe: unknown command bogus\n");
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStdout), "");
  EXPECT_EQ(m_monitor->exit()->code, 2);
}

TEST_F(ProcessManagerTest, CommandNotFoundIs127) {
  auto reply = start(1, {"nosuch", "-x"});
  EXPECT_EQ(reply.status, 0);  // it started: the shell-style failure is the program's
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->code, 127);
  EXPECT_NE(m_monitor->output(wire::RunStream::kStderr).find("nosuch: command not found"),
            std::string::npos);
}

TEST_F(ProcessManagerTest, StdinIsWrittenAndItsEndClosesIt) {
  ASSERT_EQ(start(1, {"sandbox_probe", "wait"}).status, 0);
  EXPECT_EQ(m_manager->running(), 1u);
  input(1, "abc", false);
  input(1, "de", true);
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_STDIN, 2));
  for (const auto& reply : m_monitor->replies(Opcode::MON2P_STDIN)) EXPECT_EQ(reply.status, 0);
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStdout), "5\n");
  // After the end, more input is refused.
  input(1, "x", false);
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_STDIN, 3));
  EXPECT_NE(m_monitor->replies(Opcode::MON2P_STDIN).back().status, 0);
}

TEST_F(ProcessManagerTest, WithoutStdinTheProgramReadsEndOfFile) {
  ASSERT_EQ(start(1, {"sandbox_probe", "wait"}, wire::kRunNoStdin).status, 0);
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStdout), "0\n");
}

TEST_F(ProcessManagerTest, SignalsGoToTheProgram) {
  ASSERT_EQ(start(3, {"sandbox_probe", "wait"}).status, 0);
  wire::Ctl2pRunSignal signal{};
  signal.run = 3;
  signal.signo = SIGTERM;
  dispatch(Opcode::MON2P_SIGNAL, kVnode, wire::encode(signal));
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->code, 143);
  EXPECT_EQ(m_monitor->exit()->signal, SIGTERM);
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_SIGNAL));  // replies cross the link
  EXPECT_EQ(m_monitor->replies(Opcode::MON2P_SIGNAL).at(0).status, 0);
  signal.run = 99;
  dispatch(Opcode::MON2P_SIGNAL, kVnode, wire::encode(signal));
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_SIGNAL, 2));
  EXPECT_EQ(m_monitor->replies(Opcode::MON2P_SIGNAL).at(1).status, ENOENT);
}

TEST_F(ProcessManagerTest, RefusedRuns) {
  auto reply = start(1, {"sandbox_probe", "id"}, 0, /*vnode=*/8);
  EXPECT_EQ(reply.status, ENOENT);
  EXPECT_NE(wire::to_text(reply.payload).find("has no root on this pComponent"),
            std::string::npos);
  ASSERT_EQ(start(2, {"sandbox_probe", "wait"}).status, 0);
  EXPECT_EQ(start(2, {"sandbox_probe", "wait"}).status, EEXIST);
  input(2, "", true);
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_manager->running(), 0u);
}

TEST_F(ProcessManagerTest, PsListsTheVnodesProcesses) {
  ASSERT_EQ(start(5, {"sandbox_probe", "wait"}).status, 0);
  std::vector<wire::ProcessRecord> processes;
  for (int i = 0; i < 50 && processes.empty(); ++i) {
    processes = m_manager->processes(kVnode);
    // Until it has exec'd, its command line is the init's.
    if (!processes.empty() && processes[0].command.view() != "sandbox_probe wait") {
      processes.clear();
      std::this_thread::sleep_for(20ms);
    }
  }
  ASSERT_EQ(processes.size(), 1u);
  const auto& process = processes[0];
  EXPECT_EQ(process.vnode, kVnode);
  EXPECT_EQ(process.run, 5u);
  EXPECT_GT(process.pid, 1);
  EXPECT_GT(process.host_pid, 0);
  // 't': caught in a ptrace stop (its exec event, say) for a moment.
  EXPECT_TRUE(process.state == 'S' || process.state == 'R' || process.state == 't')
      << process.state;
  EXPECT_LT(process.runtime_ms, 60'000u);
  EXPECT_TRUE(process.validate().ok());
  EXPECT_TRUE(m_manager->processes(kVnode + 1).empty());

  // The same through the dispatcher.
  dispatch(Opcode::MON2P_PS, kNoVnode, wire::encode(wire::Mon2pPsRequest{0, 0}));
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_PS));
  auto list = wire::decode_cluster_list<wire::ProcessRecord>(
      m_monitor->replies(Opcode::MON2P_PS).at(0).payload);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->second.size(), 1u);
  input(5, "", true);
  ASSERT_TRUE(m_monitor->wait_for_exit());
}

TEST_F(ProcessManagerTest, StatsHoldEveryGroup) {
  start(1, {"sandbox_probe", "mount"});  // a refused syscall
  ASSERT_TRUE(m_monitor->wait_for_exit());
  dispatch(Opcode::MON2P_STATS, kNoVnode, {});
  ASSERT_TRUE(m_monitor->wait_for_reply(Opcode::MON2P_STATS));
  auto list = wire::decode_cluster_list<wire::StatRecord>(
      m_monitor->replies(Opcode::MON2P_STATS).at(0).payload);
  ASSERT_TRUE(list.ok());
  std::map<std::string, uint64_t> values;
  for (const auto& record : list->second) {
    values[record.group.str() + "." + record.name.str()] = record.value;
  }
  EXPECT_GE(values["tracer.launched"], 1u);
  EXPECT_GE(values["tracer.execs"], 1u);
  EXPECT_GE(values["refused.mount"], 1u);
  EXPECT_EQ(values["storage.getattr"], 5u);
  EXPECT_EQ(values["process.started"], 1u);
  EXPECT_EQ(values["process.ended"], 1u);
  EXPECT_GT(values["process.output_bytes"], 0u);
}

// The pComponent appends its fabric's records (kernel/fabric/fabric_stats.h).
TEST_F(ProcessManagerTest, AttachedStatsComeAfterItsOwn) {
  m_manager->attach_stats([] {
    return std::vector<wire::StatRecord>{wire::make_stat("fabric", "kind_tcp", 1),
                                         wire::make_stat("fabric", "messages_sent", 7)};
  });
  auto records = m_manager->counters();
  ASSERT_GE(records.size(), 3u);
  EXPECT_EQ(records.front().group.str(), "process");
  EXPECT_EQ(records[records.size() - 2].name.str(), "kind_tcp");
  EXPECT_EQ(records.back().group.str(), "fabric");
  EXPECT_EQ(records.back().name.str(), "messages_sent");
  EXPECT_EQ(records.back().value, 7u);
}

TEST_F(ProcessManagerTest, ASlowConsoleThrottlesTheProgram) {
  m_monitor->hold = true;
  auto size = fs::file_size(root / "bin/sandbox_probe");
  ASSERT_GT(size, 8 * wire::kMaxRunChunk);
  ASSERT_EQ(start(1, {"sandbox_probe", "cat", "/bin/sandbox_probe"}).status, 0);
  ASSERT_TRUE(m_monitor->wait([&] { return true; }));
  // The window fills and stays full: the program waits on its pipe.
  for (int i = 0; i < 100 && m_monitor->held() < wire::kRunOutputWindow; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(m_monitor->held(), wire::kRunOutputWindow);
  EXPECT_FALSE(m_monitor->exit().has_value());
  // The console catches up, chunk by chunk; the exit comes after the last.
  for (int i = 0; i < 1000 && !m_monitor->exit().has_value(); ++i) {
    if (m_monitor->held() == 0) {
      std::this_thread::sleep_for(5ms);
      continue;
    }
    EXPECT_LE(m_monitor->held(), wire::kRunOutputWindow);
    m_monitor->answer_held();
  }
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->code, 0);
  EXPECT_EQ(m_monitor->output(wire::RunStream::kStdout).size(), size);
  std::ifstream file(root / "bin/sandbox_probe", std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(m_monitor->output(wire::RunStream::kStdout) == content);
}

TEST_F(ProcessManagerTest, ALostMonitorHangsTheProgramUp) {
  m_monitor->hold = true;
  ASSERT_EQ(start(1, {"sandbox_probe", "cat", "/bin/sandbox_probe"}).status, 0);
  for (int i = 0; i < 100 && m_monitor->held() < wire::kRunOutputWindow; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  m_monitor->answer_held(ECONNRESET);  // the membership connection broke
  while (m_monitor->held() > 0) m_monitor->answer_held();
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->signal, SIGHUP);
  EXPECT_EQ(m_monitor->exit()->code, 128 + SIGHUP);
}

TEST_F(ProcessManagerTest, AQuietProgramIsHungUpWhenTheMonitorConnectionCloses) {
  ASSERT_EQ(start(1, {"sandbox_probe", "wait"}).status, 0);
  std::this_thread::sleep_for(100ms);
  m_monitor->close();  // the monitor died: the program writes nothing, yet learns it
  // It is hung up and ends; its P2MON_EXIT cannot reach the dead monitor.
  for (int i = 0; i < 1000 && m_manager->running() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(m_manager->running(), 0u);
  EXPECT_FALSE(m_monitor->exit().has_value());
}

TEST_F(ProcessManagerTest, AClosedConsoleStreamClosesTheProgramsToo) {
  m_monitor->hold = true;
  ASSERT_EQ(start(1, {"sandbox_probe", "cat", "/bin/sandbox_probe"}).status, 0);
  for (int i = 0; i < 100 && m_monitor->held() < wire::kRunOutputWindow; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  // `splitctl run ... | head -c 10`: the console's stdout is closed.
  m_monitor->answer_held(EPIPE);
  while (m_monitor->held() > 0) m_monitor->answer_held();
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->signal, SIGPIPE);  // as `cat big | head -c 10` natively
  EXPECT_EQ(m_monitor->exit()->code, 128 + SIGPIPE);
}

TEST_F(ProcessManagerTest, DroppingTheVnodeKillsItsPrograms) {
  ASSERT_EQ(start(1, {"sandbox_probe", "wait"}).status, 0);
  m_manager->drop_vnode(kVnode);
  ASSERT_TRUE(m_monitor->wait_for_exit());
  EXPECT_EQ(m_monitor->exit()->signal, SIGKILL);
}

}  // namespace
}  // namespace sk::pcomponent

int main(int argc, char** argv) {
  if (sk::pcomponent::is_vnode_init(argc, argv)) sk::pcomponent::vnode_init_main(argc, argv);
  sk::pcomponent::block_sigchld();
  // The programs inherit it: the SIGPIPE test wants Linux's default.
  ::signal(SIGPIPE, SIG_DFL);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
