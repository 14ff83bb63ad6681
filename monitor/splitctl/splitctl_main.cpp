// splitctl: the splitkernel console.
//
//   splitctl [--monitor HOST:PORT] [--json] [COMMAND...]
//
// With a command it runs it and exits (0 success, 1 the operation failed,
// 2 usage error; errors are one "splitctl: ..." line on stderr); `run`
// exits with the program's status (255 when the run was lost). Without
// one it opens the interactive console (repl.h). The monitor is --monitor,
// else $SPLIT_MONITOR, else 127.0.0.1:7070; it is contacted only when a
// command needs it.
#include <fcntl.h>
#include <signal.h>

#include <iostream>
#include <string>
#include <vector>

#include "kernel/config.h"
#include "kernel/log.h"
#include "monitor/splitctl/client.h"
#include "monitor/splitctl/console.h"
#include "monitor/splitctl/repl.h"

using namespace sk::console;

int main(int argc, char** argv) {
  // The transport logs only trouble; keep it on stderr and off stdout.
  sk::init_logging("splitctl", "warn");

  std::vector<std::string> words(argv + 1, argv + argc);
  auto invocation = parse(words, Surface::kCommandLine);
  if (!invocation) {
    std::cerr << "splitctl: " << invocation.error().message() << "\n";
    return kExitUsage;
  }

  bool from_flag = !invocation->monitor.empty();
  std::string monitor = from_flag ? invocation->monitor : sk::env_or(kMonitorEnv, kDefaultMonitor);
  auto address = sk::parse_address(monitor);
  if (!address) {
    std::cerr << "splitctl: " << (from_flag ? "--monitor" : "$SPLIT_MONITOR") << ": "
              << address.error().message() << "\n";
    return kExitUsage;
  }

  if (invocation->command != nullptr && invocation->command->path == "run") {
    // Before any thread exists (the client's transport starts on first
    // use): the run's signals queue for it to forward, in every thread.
    block_run_signals();
    invocation->stdio.forward_signals = true;
    // A closed stdout is the program's business (it gets SIGPIPE), not a
    // reason for splitctl to die.
    ::signal(SIGPIPE, SIG_IGN);
    if (::fcntl(STDIN_FILENO, F_GETFD) < 0) invocation->stdio.in = -1;
  }

  FabricMonitorClient client(address.value());
  if (invocation->command == nullptr) return run_console(client, invocation->json);
  std::cout.flush();
  auto done = execute(invocation.value(), client, std::cout, std::cerr);
  std::cout.flush();
  if (!done) {
    std::cerr << "splitctl: " << done.error().message() << "\n";
    return kExitFailed;
  }
  return done.value();
}
