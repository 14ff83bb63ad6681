// Unit tests of splitctl's command layer: argument parsing (good and bad
// input), execution and output formatting against a fake monitor client,
// console line splitting and tab completion. No monitor, no terminal.
#include "monitor/splitctl/console.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <algorithm>
#include <sstream>

#include "monitor/splitctl/client.h"
#include "monitor/splitctl/format.h"

namespace sk::console {
namespace {

using Words = std::vector<std::string>;

wire::NodeRecord node_record(uint32_t id, NodeKind kind, NodeState state, std::string_view address,
                             uint64_t capacity, uint64_t usage, uint32_t load, uint64_t age_ms) {
  wire::NodeRecord record{};
  record.id = id;
  record.kind = static_cast<uint8_t>(kind);
  record.state = static_cast<uint8_t>(state);
  record.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  record.capacity = capacity;
  record.usage = usage;
  record.load = load;
  record.vnodes = 1;
  record.heartbeat_age_ms = age_ms;
  record.joined_unix_ms = 1700000000000;
  record.address.set(address);
  return record;
}

wire::VnodeRecord vnode_record(uint32_t id, std::string_view name, uint32_t scomponent,
                               uint64_t cache, uint64_t memory,
                               std::string_view image = "default") {
  wire::VnodeRecord record{};
  record.id = id;
  record.scomponent = scomponent;
  record.cache = cache;
  record.memory = memory;
  record.created_unix_ms = 1700000000000;  // 2023-11-14 22:13:20 UTC
  record.processes = 0;
  record.name.set(name);
  record.image.set(image);
  record.flags = image.empty() ? wire::kVnodeEmptyRoot : 0;
  return record;
}

// Answers like a small cluster; records the calls it gets.
class FakeClient : public MonitorClient {
 public:
  Result<std::vector<wire::NodeRecord>> nodes() override {
    calls.push_back("nodes");
    if (failure) return *failure;
    return std::vector<wire::NodeRecord>{
        node_record(1, NodeKind::kMonitor, NodeState::kAlive, "127.0.0.1:7070", 0, 0, 0, 0),
        node_record(2, NodeKind::kScomponent, NodeState::kAlive, "127.0.0.1:7101", 10ull << 30,
                    512ull << 20, 1, 300),
        node_record(3, NodeKind::kPcomponent, NodeState::kFailed, "127.0.0.1:7102", 1ull << 30, 0,
                    0, 65'000),
    };
  }
  Result<wire::VnodeRecord> vnode_create(std::string_view name,
                                         const VnodeOptions& options) override {
    calls.push_back("create " + std::string(name) + " " + std::to_string(options.cache) + " " +
                    std::to_string(options.memory) + " image=" + options.image +
                    (options.empty ? " empty" : ""));
    if (failure) return *failure;
    std::string image = options.empty ? "" : options.image.empty() ? "default" : options.image;
    return vnode_record(7, name, 2, options.cache,
                        options.memory != 0 ? options.memory : 1ull << 30, image);
  }
  Result<std::vector<wire::VnodeRecord>> vnode_list() override {
    calls.push_back("list");
    if (failure) return *failure;
    return vnodes;
  }
  Result<void> vnode_destroy(std::string_view name) override {
    calls.push_back("destroy " + std::string(name));
    if (failure) return *failure;
    return {};
  }

  Result<RunOutcome> run(const RunSpec& spec, const RunStdio& stdio) override {
    std::string call = "run " + spec.vnode + " cwd=" + spec.cwd + " in=" + std::to_string(stdio.in) +
                       (stdio.forward_signals ? " signals" : "");
    for (const auto& arg : spec.argv) call += " [" + arg + "]";
    calls.push_back(call);
    last_env = spec.env;
    if (failure) return *failure;
    return outcome;
  }
  Result<ProcessListing> ps(std::string_view vnode) override {
    calls.push_back("ps " + std::string(vnode));
    if (failure) return *failure;
    return processes;
  }
  Result<StatsListing> stats() override {
    calls.push_back("stats");
    if (failure) return *failure;
    return counters;
  }

  std::vector<std::string> calls;
  std::vector<std::string> last_env;
  RunOutcome outcome;
  ProcessListing processes;
  StatsListing counters;
  std::optional<Error> failure;
  std::vector<wire::VnodeRecord> vnodes = {vnode_record(1, "web", 2, 0, 1ull << 30),
                                           vnode_record(2, "db", 2, 64ull << 20, 256ull << 20, "")};
};

class ConsoleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // CREATED is local time; pin it.
    setenv("TZ", "UTC", 1);
    tzset();
  }

  Invocation parsed(const Words& words, Surface surface = Surface::kCommandLine) {
    auto invocation = parse(words, surface);
    EXPECT_TRUE(invocation.ok()) << (invocation.ok() ? "" : invocation.error().message());
    return invocation.ok() ? invocation.value() : Invocation{};
  }

  std::string usage_error(const Words& words, Surface surface = Surface::kCommandLine) {
    auto invocation = parse(words, surface);
    EXPECT_FALSE(invocation.ok());
    if (invocation.ok()) return "";
    EXPECT_EQ(invocation.error().code(), EINVAL);
    return invocation.error().message();
  }

  // Parses and runs a command line against the fake; returns its output.
  std::string run(const Words& words) {
    auto invocation = parse(words, Surface::kCommandLine);
    EXPECT_TRUE(invocation.ok()) << (invocation.ok() ? "" : invocation.error().message());
    if (!invocation.ok()) return "";
    std::ostringstream out;
    auto done = execute(invocation.value(), m_client, out);
    EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message());
    return out.str();
  }

  FakeClient m_client;
};

// ---- parsing: good input ---------------------------------------------------------

TEST_F(ConsoleTest, NoCommandMeansTheConsole) {
  auto invocation = parsed({});
  EXPECT_EQ(invocation.command, nullptr);
  EXPECT_FALSE(invocation.json);
  invocation = parsed({"--json", "--monitor", "10.0.0.1:7070"});
  EXPECT_EQ(invocation.command, nullptr);
  EXPECT_TRUE(invocation.json);
  EXPECT_EQ(invocation.monitor, "10.0.0.1:7070");
}

TEST_F(ConsoleTest, JsonMayStandAnywhere) {
  for (const Words& words : {Words{"--json", "nodes"}, Words{"nodes", "--json"},
                             Words{"vnode", "--json", "list"}, Words{"vnode", "list", "--json"}}) {
    auto invocation = parsed(words);
    ASSERT_NE(invocation.command, nullptr);
    EXPECT_TRUE(invocation.json) << words[0] << " " << words[1];
  }
  EXPECT_FALSE(parsed({"nodes"}).json);
}

TEST_F(ConsoleTest, MonitorFlagBeforeOrAfterTheCommand) {
  EXPECT_EQ(parsed({"--monitor", "h:1", "nodes"}).monitor, "h:1");
  EXPECT_EQ(parsed({"nodes", "--monitor", "h:2"}).monitor, "h:2");
  EXPECT_EQ(parsed({"--monitor=h:3", "nodes"}).monitor, "h:3");
}

TEST_F(ConsoleTest, VnodeCreateTakesSizes) {
  auto invocation = parsed({"vnode", "create", "web", "--cache", "64M", "--memory", "1.5G"});
  ASSERT_NE(invocation.command, nullptr);
  EXPECT_EQ(invocation.command->path, "vnode create");
  EXPECT_EQ(invocation.args.name, "web");
  EXPECT_EQ(invocation.args.cache, 64ull << 20);
  EXPECT_EQ(invocation.args.memory, 3ull << 29);

  invocation = parsed({"vnode", "create", "--memory=512MiB", "db"});
  EXPECT_EQ(invocation.args.name, "db");
  EXPECT_EQ(invocation.args.cache, 0u);
  EXPECT_EQ(invocation.args.memory, 512ull << 20);
  EXPECT_EQ(invocation.args.image, "");
  EXPECT_FALSE(invocation.args.empty);
}

TEST_F(ConsoleTest, VnodeCreateTakesAnImageOrAnEmptyRoot) {
  auto invocation = parsed({"vnode", "create", "web", "--image", "bookworm"});
  EXPECT_EQ(invocation.args.image, "bookworm");
  EXPECT_TRUE(parsed({"vnode", "create", "--empty", "web"}).args.empty);
  EXPECT_EQ(usage_error({"vnode", "create", "web", "--image", "x", "--empty"}),
            "--image and --empty exclude each other: an empty root has no image");
  EXPECT_EQ(usage_error({"vnode", "create", "web", "--image", "Bad/Image"}),
            "bad image name 'Bad/Image': 1-31 characters of a-z, 0-9, '-' and '_'");
}

TEST_F(ConsoleTest, VnodeListAndDestroy) {
  EXPECT_EQ(parsed({"vnode", "list"}).command->path, "vnode list");
  auto invocation = parsed({"vnode", "destroy", "web"});
  EXPECT_EQ(invocation.command->path, "vnode destroy");
  EXPECT_EQ(invocation.args.name, "web");
}

TEST_F(ConsoleTest, HelpForms) {
  auto invocation = parsed({"help"});
  EXPECT_EQ(invocation.command->path, "help");
  EXPECT_TRUE(invocation.args.topic.empty());
  EXPECT_EQ(parsed({"help", "vnode", "create"}).args.topic, (Words{"vnode", "create"}));
  EXPECT_EQ(parsed({"--help"}).command->path, "help");
  // COMMAND --help is help COMMAND, even when COMMAND lacks its arguments.
  invocation = parsed({"vnode", "create", "--help"});
  EXPECT_EQ(invocation.command->path, "help");
  EXPECT_EQ(invocation.args.topic, (Words{"vnode", "create"}));
  EXPECT_EQ(parsed({"vnode", "-h"}).args.topic, (Words{"vnode"}));
}

TEST_F(ConsoleTest, QuitAndExitOnlyInTheConsole) {
  EXPECT_TRUE(parsed({"quit"}, Surface::kConsole).leaves_console());
  EXPECT_TRUE(parsed({"exit"}, Surface::kConsole).leaves_console());
  EXPECT_FALSE(parsed({"nodes"}, Surface::kConsole).leaves_console());
  EXPECT_EQ(usage_error({"quit"}), "unknown command 'quit' (try 'help')");
}

TEST_F(ConsoleTest, ConsoleLinesInheritJsonFromTheCommandLine) {
  auto invocation = parse({"nodes"}, Surface::kConsole, /*json_default=*/true);
  ASSERT_TRUE(invocation.ok());
  EXPECT_TRUE(invocation->json);
}

// ---- parsing: bad input ------------------------------------------------------------

TEST_F(ConsoleTest, UnknownCommands) {
  EXPECT_EQ(usage_error({"frobnicate"}), "unknown command 'frobnicate' (try 'help')");
  EXPECT_EQ(usage_error({"--json", "frobnicate", "x"}),
            "unknown command 'frobnicate' (try 'help')");
  EXPECT_EQ(usage_error({"vnode", "frob"}), "unknown command 'vnode frob' (try 'help vnode')");
  EXPECT_EQ(usage_error({"vnode"}), "'vnode' needs a subcommand: create, list, destroy");
  EXPECT_EQ(usage_error({"help", "frob"}), "unknown command 'frob' (try 'help')");
}

TEST_F(ConsoleTest, UnknownOptions) {
  EXPECT_EQ(usage_error({"--bogus"}), "unknown option '--bogus'");
  EXPECT_EQ(usage_error({"nodes", "--bogus"}), "nodes: unknown option '--bogus' (usage: nodes)");
  EXPECT_EQ(usage_error({"vnode", "list", "--cache", "1G"}),
            "vnode list: unknown option '--cache' (usage: vnode list)");
  // The console has no --monitor: it is connected already.
  EXPECT_EQ(usage_error({"--monitor", "h:1", "nodes"}, Surface::kConsole),
            "nodes: unknown option '--monitor' (usage: nodes)");
}

TEST_F(ConsoleTest, MissingAndExtraArguments) {
  EXPECT_EQ(usage_error({"vnode", "create"}),
            "vnode create: NAME is required (usage: vnode create NAME [--image IMAGE | --empty] "
            "[--cache SIZE] [--memory SIZE])");
  EXPECT_EQ(usage_error({"vnode", "destroy"}),
            "vnode destroy: NAME is required (usage: vnode destroy NAME)");
  EXPECT_EQ(usage_error({"vnode", "destroy", "a", "b"}),
            "vnode destroy: unexpected argument 'b' (usage: vnode destroy NAME)");
  EXPECT_EQ(usage_error({"nodes", "extra"}), "nodes: unexpected argument 'extra' (usage: nodes)");
  auto missing_value = usage_error({"vnode", "create", "web", "--cache"});
  EXPECT_NE(missing_value.find("--cache"), std::string::npos) << missing_value;
  EXPECT_NE(usage_error({"--monitor"}).find("--monitor"), std::string::npos);
}

TEST_F(ConsoleTest, BadSizes) {
  EXPECT_EQ(usage_error({"vnode", "create", "web", "--cache", "lots"}),
            "bad size 'lots': expected a number such as 64M (--cache)");
  EXPECT_EQ(usage_error({"vnode", "create", "web", "--memory", "12Q"}),
            "bad size '12Q': unknown unit (use K, M, G or T) (--memory)");
  EXPECT_EQ(usage_error({"vnode", "create", "web", "--memory", "-1G"}),
            "bad size '-1G': expected a number such as 64M (--memory)");
}

TEST_F(ConsoleTest, BadVnodeNames) {
  EXPECT_EQ(usage_error({"vnode", "create", "Web"}),
            "vNode name 'Web' may only hold a-z, 0-9, '-' and '_'");
  // A name cannot start with '-', so this one reads as an option.
  EXPECT_EQ(usage_error({"vnode", "destroy", "-x-"}),
            "vnode destroy: NAME is required (usage: vnode destroy NAME)");
  std::string long_name(40, 'a');
  EXPECT_EQ(usage_error({"vnode", "create", long_name}),
            "vNode name '" + long_name + "' is longer than 31 characters");
}

// ---- execution and output ---------------------------------------------------------

TEST_F(ConsoleTest, NodesTable) {
  EXPECT_EQ(run({"nodes"}),
            "ID  KIND        ADDRESS         FABRIC  STATE   CAPACITY      USAGE  LOAD  HEARTBEAT\n"
            " 1  monitor     127.0.0.1:7070  tcp     alive          -          -     -  -\n"
            " 2  scomponent  127.0.0.1:7101  tcp     alive   10.0 GiB  512.0 MiB     1  0.3s ago\n"
            " 3  pcomponent  127.0.0.1:7102  tcp     failed   1.0 GiB        0 B     0  1m05s ago\n");
  EXPECT_EQ(m_client.calls, Words{"nodes"});
}

TEST_F(ConsoleTest, NodesJson) {
  auto json = Json::parse(run({"nodes", "--json"}));
  ASSERT_TRUE(json.is_array());
  ASSERT_EQ(json.size(), 3u);
  const auto& s = json[1];
  EXPECT_EQ(s["id"], 2);
  EXPECT_EQ(s["kind"], "scomponent");
  EXPECT_EQ(s["address"], "127.0.0.1:7101");
  EXPECT_EQ(s["state"], "alive");
  EXPECT_EQ(s["fabric"], "tcp");
  EXPECT_EQ(s["capacity"], 10ull << 30);
  EXPECT_EQ(s["usage"], 512ull << 20);
  EXPECT_EQ(s["load"], 1);
  EXPECT_EQ(s["vnodes"], 1);
  EXPECT_EQ(s["heartbeat_age_ms"], 300);
  EXPECT_EQ(json[2]["state"], "failed");
  EXPECT_EQ(json[0]["kind"], "monitor");
}

TEST_F(ConsoleTest, VnodeListTable) {
  EXPECT_EQ(run({"vnode", "list"}),
            "NAME  ID  SCOMPONENT  IMAGE       CACHE     MEMORY  PROCESSES  CREATED\n"
            "web    1           2  default   default    1.0 GiB          0  2023-11-14 22:13:20\n"
            "db     2           2  (empty)  64.0 MiB  256.0 MiB          0  2023-11-14 22:13:20\n");
  m_client.vnodes.clear();
  EXPECT_EQ(run({"vnode", "list"}), "no vNodes (create one with 'vnode create NAME')\n");
  EXPECT_EQ(run({"vnode", "list", "--json"}), "[]\n");
}

TEST_F(ConsoleTest, VnodeListJson) {
  auto json = Json::parse(run({"--json", "vnode", "list"}));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[1]["name"], "db");
  EXPECT_EQ(json[1]["id"], 2);
  EXPECT_EQ(json[1]["scomponent"], 2);
  EXPECT_EQ(json[1]["image"], "");
  EXPECT_EQ(json[0]["image"], "default");
  EXPECT_EQ(json[1]["cache"], 64ull << 20);
  EXPECT_EQ(json[1]["memory"], 256ull << 20);
  EXPECT_EQ(json[1]["processes"], 0);
  EXPECT_EQ(json[1]["created_unix_ms"], 1700000000000ull);
}

TEST_F(ConsoleTest, VnodeCreateSendsTheParsedSizes) {
  EXPECT_EQ(run({"vnode", "create", "web", "--cache", "64M"}),
            "created vnode 'web' (id 7, a root from image 'default' on node 2, memory 1.0 GiB, "
            "cache 64.0 MiB)\n");
  EXPECT_EQ(m_client.calls, Words{"create web 67108864 0 image="});
  EXPECT_EQ(run({"vnode", "create", "bare", "--empty"}),
            "created vnode 'bare' (id 7, an empty root on node 2, memory 1.0 GiB, cache the "
            "pComponent's default)\n");
  EXPECT_EQ(m_client.calls.back(), "create bare 0 0 image= empty");
  auto json = Json::parse(run({"vnode", "create", "db", "--memory", "2G", "--json"}));
  EXPECT_EQ(json["name"], "db");
  EXPECT_EQ(json["id"], 7);
  EXPECT_EQ(json["memory"], 2ull << 30);
  EXPECT_EQ(json["cache"], 0);
  EXPECT_EQ(json["image"], "default");
}

TEST_F(ConsoleTest, VnodeDestroy) {
  EXPECT_EQ(run({"vnode", "destroy", "web"}), "destroyed vnode 'web'\n");
  EXPECT_EQ(m_client.calls, Words{"destroy web"});
  auto json = Json::parse(run({"vnode", "destroy", "web", "--json"}));
  EXPECT_EQ(json["name"], "web");
  EXPECT_EQ(json["destroyed"], true);
}

TEST_F(ConsoleTest, MonitorErrorsComeBackAsTheyAre) {
  m_client.failure = make_error(EEXIST, "vnode 'web' already exists");
  auto invocation = parse({"vnode", "create", "web"}, Surface::kCommandLine);
  ASSERT_TRUE(invocation.ok());
  std::ostringstream out;
  auto done = execute(invocation.value(), m_client, out);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().message(), "vnode 'web' already exists");
  EXPECT_EQ(out.str(), "");
}

TEST_F(ConsoleTest, HelpNeedsNoMonitor) {
  auto text = run({"help"});
  EXPECT_NE(text.find("usage: splitctl [--monitor HOST:PORT] [--json] [COMMAND...]"),
            std::string::npos);
  for (const char* line : {"  nodes ",
                           "  vnode create NAME [--image IMAGE | --empty] [--cache SIZE] "
                           "[--memory SIZE]  ",
                           "  vnode list ", "  vnode destroy NAME ", "  help [COMMAND] ",
                           "exit status: 0 success, 1 the operation failed, 2 usage error"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  EXPECT_EQ(text.find("quit"), std::string::npos);  // console only
  EXPECT_TRUE(m_client.calls.empty());

  auto one = run({"help", "vnode", "destroy"});
  EXPECT_EQ(one.substr(0, one.find('\n')), "usage: vnode destroy NAME");
  auto group = run({"help", "vnode"});
  EXPECT_NE(group.find("vnode list"), std::string::npos);
  EXPECT_EQ(group.find("nodes"), std::string::npos);

  auto console = help_text({}, Surface::kConsole);
  ASSERT_TRUE(console.ok());
  EXPECT_NE(console->find("  quit "), std::string::npos);
  EXPECT_EQ(console->find("--monitor"), std::string::npos);
}

TEST_F(ConsoleTest, EveryCommandHasHelp) {
  for (const auto& spec : commands()) {
    EXPECT_FALSE(spec.usage.empty()) << spec.path;
    EXPECT_FALSE(spec.summary.empty()) << spec.path;
    EXPECT_TRUE(spec.usage.starts_with(spec.path)) << spec.path;
    EXPECT_EQ(find_command(spec.path), &spec);
  }
}


// ---- run, ps, stats --------------------------------------------------------------

TEST_F(ConsoleTest, RunTakesTheProgramsWordsVerbatim) {
  auto invocation = parsed({"run", "default", "ls", "-la"});
  ASSERT_NE(invocation.command, nullptr);
  EXPECT_EQ(invocation.command->path, "run");
  EXPECT_EQ(invocation.args.name, "default");
  EXPECT_EQ(invocation.args.command, (Words{"ls", "-la"}));

  // Words that look like splitctl's own options belong to the program.
  invocation = parsed({"run", "default", "grep", "--json", "--help", "--monitor", "x", "-e", "y"});
  EXPECT_EQ(invocation.args.command,
            (Words{"grep", "--json", "--help", "--monitor", "x", "-e", "y"}));
  EXPECT_FALSE(invocation.json);
  EXPECT_EQ(invocation.monitor, "");
  EXPECT_TRUE(invocation.args.env.empty());

  // "--" marks where the program starts; it is not passed on.
  invocation = parsed({"run", "default", "--", "--weird-name", "--"});
  EXPECT_EQ(invocation.args.command, (Words{"--weird-name", "--"}));

  // run's options come before the command, splitctl's before run.
  invocation = parsed({"--monitor", "h:1", "run", "--env", "A=1", "default", "-e", "B=x=y",
                       "--env=C=", "--cwd", "/tmp", "--", "bash", "-c", "echo $A"});
  EXPECT_EQ(invocation.monitor, "h:1");
  EXPECT_EQ(invocation.args.name, "default");
  EXPECT_EQ(invocation.args.env, (Words{"A=1", "B=x=y", "C="}));
  EXPECT_EQ(invocation.args.cwd, "/tmp");
  EXPECT_EQ(invocation.args.command, (Words{"bash", "-c", "echo $A"}));

  EXPECT_EQ(parsed({"run", "--help"}).command->path, "help");
}

TEST_F(ConsoleTest, RunUsageErrors) {
  EXPECT_NE(usage_error({"run"}).find("NAME is required"), std::string::npos);
  EXPECT_EQ(usage_error({"run", "default"}),
            "run: no command to run (usage: run VNODE [--env NAME=VALUE]... [--cwd DIR] [--] CMD "
            "[ARGS...])");
  EXPECT_EQ(usage_error({"run", "default", "--"}).substr(0, 22), "run: no command to run");
  EXPECT_EQ(usage_error({"run", "default", "--env", "NOEQUALS", "ls"}),
            "run: --env 'NOEQUALS' is not NAME=VALUE");
  EXPECT_EQ(usage_error({"run", "default", "--cwd", "tmp", "ls"}),
            "run: --cwd 'tmp' is not an absolute path");
  EXPECT_NE(usage_error({"run", "Bad", "ls"}).find("may only hold"), std::string::npos);
  EXPECT_NE(usage_error({"run", "default", "--bogus", "ls"}).find("--bogus"), std::string::npos);
  // The interactive console has no run: the terminal is its own.
  EXPECT_EQ(usage_error({"run", "default", "ls"}, Surface::kConsole),
            "unknown command 'run' (try 'help')");
}

TEST_F(ConsoleTest, RunReturnsTheProgramsStatus) {
  auto invocation = parsed({"run", "--env", "TERM=dumb", "--env", "X=1", "default", "ls", "-la"});
  invocation.stdio.forward_signals = true;
  m_client.outcome.status = 7;
  std::ostringstream out, err;
  auto status = execute(invocation, m_client, out, err);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value(), 7);
  EXPECT_EQ(m_client.calls, (Words{"run default cwd=/ in=0 signals [ls] [-la]"}));
  EXPECT_EQ(m_client.last_env.at(0),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  EXPECT_EQ(m_client.last_env.at(1), "HOME=/root");
  EXPECT_NE(std::find(m_client.last_env.begin(), m_client.last_env.end(), "TERM=dumb"),
            m_client.last_env.end());
  EXPECT_EQ(m_client.last_env.back(), "X=1");
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(), "");

  // A lost run: 255 and the reason.
  m_client.outcome = RunOutcome{255, "pComponent 3 failed while running the program", {}};
  status = execute(invocation, m_client, out, err);
  EXPECT_EQ(status.value(), kExitLost);
  EXPECT_EQ(err.str(), "splitctl: pComponent 3 failed while running the program\n");

  // One that could not start is an operation error (exit 1).
  m_client.failure = make_error(ENOENT, "no vnode named 'default'");
  status = execute(invocation, m_client, out, err);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().message(), "no vnode named 'default'");
}

TEST(RunEnvironmentTest, DefaultsTerminalAndOverrides) {
  EXPECT_EQ(run_environment({}, nullptr, nullptr),
            (Words{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME=/root"}));
  EXPECT_EQ(run_environment({"HOME=/tmp", "A=1", "A=2", "PATHX=y"}, "xterm", "C.UTF-8"),
            (Words{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME=/tmp", "TERM=xterm", "LANG=C.UTF-8", "A=2", "PATHX=y"}));
  EXPECT_EQ(run_environment({}, "", nullptr).size(), 2u);  // an empty TERM is no TERM
}

wire::ProcessRecord process_record(std::string_view vnode, int32_t pid, uint32_t pcomponent,
                                   char state, uint64_t runtime_ms, uint64_t rss,
                                   std::string_view command) {
  wire::ProcessRecord record{};
  record.vnode_name.set(vnode);
  record.pid = pid;
  record.host_pid = pid + 1000;
  record.pcomponent = pcomponent;
  record.state = static_cast<uint8_t>(state);
  record.runtime_ms = runtime_ms;
  record.rss = rss;
  record.run = 4;
  record.command.set(command);
  return record;
}

TEST_F(ConsoleTest, PsTableAndJson) {
  EXPECT_EQ(parsed({"ps"}).args.name, "");
  EXPECT_EQ(parsed({"ps", "web"}).args.name, "web");
  EXPECT_NE(usage_error({"ps", "Web!"}).find("may only hold"), std::string::npos);
  EXPECT_EQ(parsed({"ps"}, Surface::kConsole).command->path, "ps");

  EXPECT_EQ(run({"ps"}), "no processes\n");
  m_client.processes.processes = {
      process_record("web", 2, 3, 'S', 5'000, 3ull << 20, "bash -c sleep 100"),
      process_record("web", 14, 3, 'R', 3'723'000, 512ull << 10, "sleep 100")};
  m_client.processes.processes[0].cache_pages = 256;
  m_client.processes.processes[0].remote_pages = 1024;
  EXPECT_EQ(run({"ps", "web"}),
            "VNODE  PID  PCOMPONENT  STATE  RUNTIME        RSS    CACHE   REMOTE  COMMAND\n"
            "web      2           3  S         0:05    3.0 MiB  1.0 MiB  4.0 MiB  bash -c sleep 100\n"
            "web     14           3  R      1:02:03  512.0 KiB      0 B      0 B  sleep 100\n");
  EXPECT_EQ(m_client.calls.back(), "ps web");
  auto json = Json::parse(run({"ps", "--json"}));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[1]["vnode"], "web");
  EXPECT_EQ(json[1]["pid"], 14);
  EXPECT_EQ(json[1]["host_pid"], 1014);
  EXPECT_EQ(json[1]["pcomponent"], 3);
  EXPECT_EQ(json[1]["run"], 4);
  EXPECT_EQ(json[1]["state"], "R");
  EXPECT_EQ(json[1]["runtime_ms"], 3'723'000);
  EXPECT_EQ(json[1]["rss"], 512 << 10);
  EXPECT_EQ(json[1]["cache_pages"], 0);
  EXPECT_EQ(json[1]["remote_pages"], 0);
  EXPECT_EQ(json[1]["command"], "sleep 100");

  m_client.processes.unanswered = 2;
  std::ostringstream out, err;
  ASSERT_TRUE(execute(parsed({"ps"}), m_client, out, err).ok());
  EXPECT_EQ(err.str(),
            "splitctl: warning: 2 pComponents did not answer; their processes are missing\n");
}

TEST_F(ConsoleTest, StatsTablePerNodeAndJson) {
  auto stat = [](uint32_t node, std::string_view group, std::string_view name, uint64_t value) {
    auto record = wire::make_stat(group, name, value);
    record.node = node;
    return record;
  };
  m_client.counters.counters = {stat(1, "runs", "running", 1), stat(3, "tracer", "stops", 120),
                                stat(3, "syscalls", "mmap", 14)};
  EXPECT_EQ(run({"stats"}),
            "monitor (node 1)\n"
            "GROUP  NAME     VALUE\n"
            "runs   running      1\n"
            "\n"
            "pComponent 3\n"
            "GROUP     NAME   VALUE\n"
            "tracer    stops    120\n"
            "syscalls  mmap      14\n");
  auto json = Json::parse(run({"stats", "--json"}));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["node"], 1);
  EXPECT_EQ(json[1]["node"], 3);
  EXPECT_EQ(json[1]["counters"]["tracer"]["stops"], 120);
  EXPECT_EQ(json[1]["counters"]["syscalls"]["mmap"], 14);
}

TEST(FormatTest, Runtime) {
  EXPECT_EQ(format_runtime(0), "0:00");
  EXPECT_EQ(format_runtime(65'999), "1:05");
  EXPECT_EQ(format_runtime(3'599'000), "59:59");
  EXPECT_EQ(format_runtime(3'600'000), "1:00:00");
  EXPECT_EQ(format_runtime(2 * 86'400'000ull + 5 * 3'600'000ull), "2d05h");
}

// ---- formatting -----------------------------------------------------------------

TEST(FormatTest, HeartbeatAge) {
  EXPECT_EQ(format_heartbeat_age(0), "0.0s ago");
  EXPECT_EQ(format_heartbeat_age(300), "0.3s ago");
  EXPECT_EQ(format_heartbeat_age(12'049), "12.0s ago");
  EXPECT_EQ(format_heartbeat_age(59'940), "59.9s ago");
  EXPECT_EQ(format_heartbeat_age(60'000), "1m00s ago");
  EXPECT_EQ(format_heartbeat_age(245'000), "4m05s ago");
  EXPECT_EQ(format_heartbeat_age(7'800'000), "2h10m ago");
}

TEST(FormatTest, TableAlignsColumns) {
  Table table({{"A"}, {"NUMBER", Table::Align::kRight}, {"LAST"}});
  table.add_row({"long cell", "7", ""});
  table.add_row({"x", "12345678", "end"});
  EXPECT_EQ(table.render(),
            "A            NUMBER  LAST\n"
            "long cell         7\n"
            "x          12345678  end\n");
}

// ---- console lines ------------------------------------------------------------------

TEST(SplitWordsTest, BlanksQuotesAndEscapes) {
  EXPECT_EQ(split_words("  vnode   create\tweb  ").value(), (Words{"vnode", "create", "web"}));
  EXPECT_EQ(split_words("a 'b c' \"d \\\" e\" f\\ g").value(),
            (Words{"a", "b c", "d \" e", "f g"}));
  EXPECT_EQ(split_words("''").value(), Words{""});
  EXPECT_TRUE(split_words("").value().empty());
  auto unclosed = split_words("vnode create 'web");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_EQ(unclosed.error().message(), "unclosed ' quote");
}

// ---- completion -------------------------------------------------------------------

std::vector<std::string> names() {
  return {"web", "db", "dev"};
}

TEST(CompletionTest, CommandWords) {
  EXPECT_EQ(complete({}, "", Surface::kConsole, names),
            (Words{"exit", "help", "nodes", "ps", "quit", "stats", "vnode"}));
  EXPECT_EQ(complete({}, "n", Surface::kConsole, names), Words{"nodes"});
  EXPECT_EQ(complete({}, "", Surface::kCommandLine, names),
            (Words{"help", "nodes", "ps", "run", "stats", "vnode"}));
  EXPECT_EQ(complete({"ps"}, "w", Surface::kConsole, names), Words{"web"});
  EXPECT_EQ(complete({"vnode"}, "", Surface::kConsole, names),
            (Words{"create", "destroy", "list"}));
  EXPECT_EQ(complete({"--json", "vnode"}, "d", Surface::kConsole, names), Words{"destroy"});
  EXPECT_TRUE(complete({"frob"}, "", Surface::kConsole, names).empty());
}

TEST(CompletionTest, VnodeNamesForDestroy) {
  EXPECT_EQ(complete({"vnode", "destroy"}, "", Surface::kConsole, names),
            (Words{"db", "dev", "web"}));
  EXPECT_EQ(complete({"vnode", "destroy"}, "d", Surface::kConsole, names), (Words{"db", "dev"}));
  EXPECT_TRUE(complete({"vnode", "destroy", "db"}, "", Surface::kConsole, names).empty());
  // Creating needs a new name: nothing to offer, and the monitor is not asked.
  bool asked = false;
  auto spy = [&] {
    asked = true;
    return names();
  };
  EXPECT_TRUE(complete({"vnode", "create"}, "", Surface::kConsole, spy).empty());
  EXPECT_FALSE(asked);
}

TEST(CompletionTest, Options) {
  EXPECT_EQ(complete({"vnode", "create", "web"}, "--", Surface::kConsole, names),
            (Words{"--cache", "--empty", "--help", "--image", "--json", "--memory"}));
  EXPECT_EQ(complete({"vnode", "create", "web"}, "--m", Surface::kConsole, names),
            Words{"--memory"});
  EXPECT_EQ(complete({}, "--", Surface::kCommandLine, names),
            (Words{"--help", "--json", "--monitor"}));
  // After an option that takes a value, a size goes there: nothing to offer.
  EXPECT_TRUE(
      complete({"vnode", "create", "web", "--cache"}, "", Surface::kConsole, names).empty());
  // A flag takes none.
  EXPECT_EQ(complete({"vnode", "create", "web", "--empty"}, "--j", Surface::kConsole, names),
            Words{"--json"});
  // ...and after the value, options again.
  EXPECT_EQ(
      complete({"vnode", "create", "web", "--cache", "1G"}, "--mem", Surface::kConsole, names),
      Words{"--memory"});
}

TEST(CompletionTest, HelpTopics) {
  EXPECT_EQ(complete({"help"}, "v", Surface::kConsole, names), Words{"vnode"});
  EXPECT_EQ(complete({"help", "vnode"}, "", Surface::kConsole, names),
            (Words{"create", "destroy", "list"}));
}

}  // namespace
}  // namespace sk::console
