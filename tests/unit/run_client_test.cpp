// `splitctl run` end to end over the real tcp transport on loopback: the
// console's client (FabricMonitorClient::run) and the real MonitorServer,
// with a scripted pComponent that speaks MON2P_/P2MON_ like the process
// manager. Checks what the user sees: output as it is written and in
// order, stdin forwarded to its end, the exit status, Ctrl-C, a slow
// terminal throttling the program, and a pComponent that dies mid-run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <thread>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/process_messages.h"
#include "monitor/monitor_server.h"
#include "monitor/splitctl/client.h"

namespace sk {
namespace {

using namespace std::chrono_literals;
using wire::Opcode;

std::string read_all(int fd) {
  std::string text;
  char buffer[65536];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  return text;
}

// A pComponent (and an sComponent, on a second connection) that joins the
// monitor and runs "programs" by script, by argv[0]:
//   echo CODE   stdout "a\n", stderr "b\n", stdout "c\n", exits CODE
//   cat         copies stdin to stdout until its end, exits 0
//   sleep       waits for a signal; exits 128+signal
//   die         closes its membership connection (the pComponent "dies")
//   flood N     N chunks of 64 KiB on stdout, at most `window` unanswered
class FakeComponents {
 public:
  explicit FakeComponents(const Address& monitor) {
    m_transport = std::move(fabric::make_transport("tcp")).value();
    m_dispatcher.on(Opcode::MON2P_VNODE_CREATE, [](const rpc::Message&, const rpc::Responder&) {
      return Result<wire::Bytes>(wire::Bytes{});
    });
    m_dispatcher.on(Opcode::MON2S_VNODE_CREATE, [](const rpc::Message&, const rpc::Responder&) {
      return Result<wire::Bytes>(wire::Bytes{});
    });
    m_dispatcher.on_async(Opcode::MON2P_RUN, [this](rpc::Message request, rpc::Responder responder) {
      auto command = wire::decode_run(request.payload);
      ASSERT_TRUE(command.ok());
      wire::Ctl2pRunReply started{};
      started.run = command->request.run;
      started.vnode_pid = 2;
      started.host_pid = 4242;
      auto connection = responder.connection();
      responder.reply(wire::encode(started));
      std::lock_guard lock(m_mutex);
      m_argv = command->argv;
      m_env = command->env;
      m_run = started.run;
      m_vnode = request.vnode();
      m_scripts.emplace_back([this, connection, argv = command->argv, run = started.run,
                              vnode = request.vnode()] { script(connection, argv, run, vnode); });
    });
    m_dispatcher.on(Opcode::MON2P_STDIN,
                    [this](const rpc::Message& request,
                           const rpc::Responder&) -> Result<wire::Bytes> {
                      auto input = TRY(wire::decode_sized<wire::Ctl2pRunInput>(
                          request.payload, &wire::Ctl2pRunInput::length));
                      {
                        std::lock_guard lock(m_mutex);
                        m_stdin.push_back({wire::to_text(input.second),
                                           (input.first.flags & wire::kInputEof) != 0});
                      }
                      m_wake.notify_all();
                      return wire::Bytes{};
                    });
    m_dispatcher.on(
        Opcode::MON2P_SIGNAL,
        [this](const rpc::Message& request, const rpc::Responder&) -> Result<wire::Bytes> {
          auto signal = TRY(wire::decode<wire::Ctl2pRunSignal>(request.payload));
          {
            std::lock_guard lock(m_mutex);
            m_signals.push_back(signal.signo);
          }
          m_wake.notify_all();
          return wire::Bytes{};
        });
    m_p = join(monitor, NodeKind::kPcomponent, "127.0.0.1:1");
    m_s = join(monitor, NodeKind::kScomponent, "127.0.0.1:2");
  }

  ~FakeComponents() {
    {
      std::lock_guard lock(m_mutex);
      m_stopping = true;
    }
    m_wake.notify_all();
    m_transport->stop();
    for (auto& thread : m_scripts) thread.join();
  }

  std::vector<std::string> argv() {
    std::lock_guard lock(m_mutex);
    return m_argv;
  }
  std::vector<std::string> env() {
    std::lock_guard lock(m_mutex);
    return m_env;
  }
  std::vector<int> signals() {
    std::lock_guard lock(m_mutex);
    return m_signals;
  }
  bool wait_started() {
    std::unique_lock lock(m_mutex);
    return m_wake.wait_for(lock, 5s, [&] { return m_run != 0; });
  }
  // Chunks of a flood answered so far.
  int answered() const { return m_answered.load(); }
  uint32_t max_in_flight() const { return m_max_in_flight.load(); }

 private:
  struct Input {
    std::string data;
    bool eof;
  };

  std::shared_ptr<fabric::Connection> join(const Address& monitor, NodeKind kind,
                                           std::string_view address) {
    auto connection =
        std::move(m_transport->connect(monitor, m_dispatcher.handler())).value();
    wire::C2monJoinRequest join{};
    join.kind = static_cast<uint8_t>(kind);
    join.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
    join.capacity = 1ull << 30;
    join.address.set(address);
    auto reply = rpc::call_for<wire::C2monJoinReply>(*connection, Opcode::C2MON_JOIN, kNoVnode,
                                                     wire::as_bytes(join));
    EXPECT_TRUE(reply.ok());
    return connection;
  }

  static Result<void> output(fabric::Connection& connection, uint64_t run, VnodeId vnode,
                             wire::RunStream stream, std::string_view data) {
    wire::P2ctlRunOutput head{};
    head.run = run;
    head.length = static_cast<uint32_t>(data.size());
    head.stream = static_cast<uint8_t>(stream);
    TRY(rpc::call(connection, Opcode::P2MON_OUTPUT, vnode,
                  wire::encode(head, wire::as_bytes(data))));
    return {};
  }

  static void exit(fabric::Connection& connection, uint64_t run, VnodeId vnode, int code,
                   int signal = 0) {
    wire::P2ctlRunExit exit{};
    exit.run = run;
    exit.code = code;
    exit.signal = signal;
    (void)rpc::call(connection, Opcode::P2MON_EXIT, vnode, wire::encode(exit));
  }

  void script(std::shared_ptr<fabric::Connection> connection, std::vector<std::string> argv,
              uint64_t run, VnodeId vnode) {
    const std::string& name = argv[0];
    if (name == "echo") {
      EXPECT_TRUE(output(*connection, run, vnode, wire::RunStream::kStdout, "a\n").ok());
      EXPECT_TRUE(output(*connection, run, vnode, wire::RunStream::kStderr, "b\n").ok());
      EXPECT_TRUE(output(*connection, run, vnode, wire::RunStream::kStdout, "c\n").ok());
      exit(*connection, run, vnode, std::stoi(argv.at(1)));
    } else if (name == "cat") {
      size_t next = 0;
      for (;;) {
        Input input;
        {
          std::unique_lock lock(m_mutex);
          m_wake.wait(lock, [&] { return m_stopping || m_stdin.size() > next; });
          if (m_stopping) return;
          input = m_stdin[next++];
        }
        if (!input.data.empty()) {
          (void)output(*connection, run, vnode, wire::RunStream::kStdout, input.data);
        }
        if (input.eof) break;
      }
      exit(*connection, run, vnode, 0);
    } else if (name == "sleep") {
      int signo;
      {
        std::unique_lock lock(m_mutex);
        m_wake.wait(lock, [&] { return m_stopping || !m_signals.empty(); });
        if (m_stopping) return;
        signo = m_signals.front();
      }
      exit(*connection, run, vnode, 128 + signo, signo);
    } else if (name == "die") {
      connection->close();
    } else if (name == "flood") {
      int chunks = std::stoi(argv.at(1));
      std::string chunk(wire::kMaxRunChunk, 'x');
      std::mutex mutex;
      std::condition_variable wake;
      uint32_t in_flight = 0;
      for (int i = 0; i < chunks; ++i) {
        {
          std::unique_lock lock(mutex);
          wake.wait(lock, [&] { return in_flight < wire::kRunOutputWindow; });
          ++in_flight;
          m_max_in_flight = std::max(m_max_in_flight.load(), in_flight);
        }
        wire::P2ctlRunOutput head{};
        head.run = run;
        head.length = static_cast<uint32_t>(chunk.size());
        head.stream = static_cast<uint8_t>(wire::RunStream::kStdout);
        connection->call_async(Opcode::P2MON_OUTPUT, vnode,
                               wire::encode(head, wire::as_bytes(std::string_view(chunk))), 60s,
                               [&, this](Result<rpc::Message>) {
                                 ++m_answered;
                                 {
                                   std::lock_guard lock(mutex);
                                   --in_flight;
                                 }
                                 wake.notify_all();
                               });
      }
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return in_flight == 0; });
      lock.unlock();
      exit(*connection, run, vnode, 0);
    }
  }

  std::unique_ptr<fabric::Transport> m_transport;
  rpc::Dispatcher m_dispatcher{"fake"};
  std::shared_ptr<fabric::Connection> m_p;
  std::shared_ptr<fabric::Connection> m_s;

  std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_stopping = false;
  uint64_t m_run = 0;
  VnodeId m_vnode = kNoVnode;
  std::vector<std::string> m_argv;
  std::vector<std::string> m_env;
  std::vector<Input> m_stdin;
  std::vector<int> m_signals;
  std::vector<std::thread> m_scripts;
  std::atomic<int> m_answered{0};
  std::atomic<uint32_t> m_max_in_flight{0};
};

class RunClientTest : public ::testing::Test {
 protected:
  RunClientTest() {
    // As splitctl's main does, before any thread: the run's signals queue
    // for the client to forward.
    console::block_run_signals();
    monitor::MonitorServer::Options options;
    options.failure_timeout = 60s;
    m_server = std::make_unique<monitor::MonitorServer>(options);
    m_transport = std::move(fabric::make_transport("tcp")).value();
    m_transport->set_node_id(kMonitorNodeId);
    m_address = std::move(m_transport->listen(*parse_address("127.0.0.1:0"),
                                              m_server->dispatcher().handler()))
                    .value();
    m_server->start();
    m_components = std::make_unique<FakeComponents>(m_address);
    m_client = std::make_unique<console::FabricMonitorClient>(m_address);
    auto created = m_client->vnode_create("web", {});
    EXPECT_TRUE(created.ok()) << created.error().text();
  }

  ~RunClientTest() override {
    m_client.reset();
    m_components.reset();
    m_transport->stop();
    m_server->stop();
  }

  struct Pipes {
    int in[2], out[2], err[2];
    Pipes() {
      EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
      EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
      EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    }
    ~Pipes() {
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
        if (fd >= 0) ::close(fd);
      }
    }
    console::RunStdio stdio(bool signals = false) const {
      return console::RunStdio{in[0], out[1], err[1], signals};
    }
    // Closes the console's ends, so that the output pipes reach their end.
    void close_writers() {
      ::close(out[1]);
      ::close(err[1]);
      out[1] = err[1] = -1;
    }
  };

  Result<console::RunOutcome> run(std::vector<std::string> argv, const console::RunStdio& stdio) {
    console::RunSpec spec;
    spec.vnode = "web";
    spec.argv = std::move(argv);
    spec.env = {"PATH=/bin", "X=1"};
    return m_client->run(spec, stdio);
  }

  std::unique_ptr<monitor::MonitorServer> m_server;
  std::unique_ptr<fabric::Transport> m_transport;
  Address m_address;
  std::unique_ptr<FakeComponents> m_components;
  std::unique_ptr<console::FabricMonitorClient> m_client;
};

TEST_F(RunClientTest, OutputStreamsToItsStreamsAndTheStatusComesBack) {
  Pipes pipes;
  ::close(pipes.in[1]);  // no input: end of file
  pipes.in[1] = -1;
  auto outcome = run({"echo", "7"}, pipes.stdio());
  ASSERT_TRUE(outcome.ok()) << outcome.error().text();
  EXPECT_EQ(outcome->status, 7);
  EXPECT_EQ(outcome->note, "");
  EXPECT_EQ(outcome->started.vnode_pid, 2);
  pipes.close_writers();
  EXPECT_EQ(read_all(pipes.out[0]), "a\nc\n");
  EXPECT_EQ(read_all(pipes.err[0]), "b\n");
  EXPECT_EQ(m_components->argv(), (std::vector<std::string>{"echo", "7"}));
  EXPECT_EQ(m_components->env(), (std::vector<std::string>{"PATH=/bin", "X=1"}));
}

TEST_F(RunClientTest, StdinIsForwardedToItsEnd) {
  Pipes pipes;
  std::thread feeder([&] {
    for (const char* line : {"one\n", "two\n", "three\n"}) {
      ASSERT_GT(::write(pipes.in[1], line, std::strlen(line)), 0);
      std::this_thread::sleep_for(20ms);
    }
    ::close(pipes.in[1]);
    pipes.in[1] = -1;
  });
  auto outcome = run({"cat"}, pipes.stdio());
  feeder.join();
  ASSERT_TRUE(outcome.ok()) << outcome.error().text();
  EXPECT_EQ(outcome->status, 0);
  pipes.close_writers();
  EXPECT_EQ(read_all(pipes.out[0]), "one\ntwo\nthree\n");
}

TEST_F(RunClientTest, NoStdinMeansEndOfFileAtOnce) {
  Pipes pipes;
  console::RunStdio stdio = pipes.stdio();
  stdio.in = -1;
  // "echo" never reads stdin; the run must not wait for any.
  auto outcome = run({"echo", "0"}, stdio);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->status, 0);
}

TEST_F(RunClientTest, SigintGoesToTheProgram) {
  Pipes pipes;
  std::thread interrupter([&] {
    ASSERT_TRUE(m_components->wait_started());
    std::this_thread::sleep_for(50ms);
    ::kill(::getpid(), SIGINT);  // blocked everywhere: it queues for the run
  });
  auto outcome = run({"sleep", "100"}, pipes.stdio(/*signals=*/true));
  interrupter.join();
  ASSERT_TRUE(outcome.ok()) << outcome.error().text();
  EXPECT_EQ(outcome->status, 130);
  EXPECT_EQ(m_components->signals(), std::vector<int>{SIGINT});
}

TEST_F(RunClientTest, APcomponentThatDiesEndsTheRunWith255) {
  Pipes pipes;
  auto future = std::async(std::launch::async, [&] { return run({"die"}, pipes.stdio()); });
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready) << "the console hangs";
  auto outcome = future.get();
  ASSERT_TRUE(outcome.ok()) << outcome.error().text();
  EXPECT_EQ(outcome->status, 255);
  EXPECT_EQ(outcome->note, "pComponent 2 failed while running the program");
}

TEST_F(RunClientTest, ASlowTerminalThrottlesTheProgram) {
  Pipes pipes;
  ::close(pipes.in[1]);
  pipes.in[1] = -1;
  constexpr int kChunks = 40;  // 2.5 MiB
  auto future =
      std::async(std::launch::async, [&] { return run({"flood", std::to_string(kChunks)}, pipes.stdio()); });
  // Nobody reads the terminal: the pipe (64 KiB) fills, and so does the
  // window; the program is held back.
  std::this_thread::sleep_for(500ms);
  EXPECT_LE(m_components->answered(), 3);
  // The terminal catches up: everything comes, in order, and the run ends.
  size_t expected = static_cast<size_t>(kChunks) * wire::kMaxRunChunk;
  size_t got = 0;
  std::vector<char> buffer(1 << 16);
  while (got < expected) {
    ssize_t n = ::read(pipes.out[0], buffer.data(), buffer.size());
    ASSERT_GT(n, 0);
    for (ssize_t i = 0; i < n; ++i) ASSERT_EQ(buffer[static_cast<size_t>(i)], 'x');
    got += static_cast<size_t>(n);
  }
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  auto outcome = future.get();
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->status, 0);
  EXPECT_EQ(m_components->answered(), kChunks);
  EXPECT_LE(m_components->max_in_flight(), wire::kRunOutputWindow);
}

TEST_F(RunClientTest, RefusalsAreErrors) {
  Pipes pipes;
  console::RunSpec spec;
  spec.vnode = "nope";
  spec.argv = {"ls"};
  auto outcome = m_client->run(spec, pipes.stdio());
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.error().code(), ENOENT);
  EXPECT_EQ(outcome.error().message(), "no vnode named 'nope'");
}

}  // namespace
}  // namespace sk
