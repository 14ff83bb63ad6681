// splitctl's command layer: one table of commands, each with its usage, help
// text, arguments (declared on a CLI11 subcommand), checks and action.
// Parsing turns words into an Invocation; executing runs it against a
// MonitorClient and writes to a stream. Nothing here touches a terminal or
// the network, so the tests drive it with a fake client.
//
// The same grammar serves the command line (`splitctl [--monitor HOST:PORT]
// [--json] COMMAND...`) and the interactive console (one command per line;
// `quit`/`exit` only exist there). --json may stand anywhere on the line.
//
// Errors: parse() fails only with usage errors (unknown command or option,
// missing or extra arguments, a bad size or vNode name: exit status 2);
// execute() fails with operation errors (the monitor refused, or cannot be
// reached: exit status 1). Every Error's message() is one complete line.
// When execute() succeeds it returns the exit status: 0, except for `run`,
// which returns the program's ($?, 128+signal) or 255 when the run was lost
// (its pComponent or the monitor failed; the reason is on `err`).
//
// `run VNODE [options] [--] CMD [ARGS...]` takes the program's words
// verbatim: everything from CMD on (or after "--") belongs to the program,
// even words that look like splitctl's options (`run default ls -la`).
//
// Adding a command: one entry in kCommands (console.cpp) and its fields in
// Arguments.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/result.h"
#include "monitor/splitctl/client.h"

namespace CLI {
class App;
}

namespace sk::console {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
// `run`: the run was lost (its pComponent or the monitor failed).
inline constexpr int kExitLost = 255;

inline constexpr std::string_view kDefaultMonitor = "127.0.0.1:7070";
inline constexpr const char* kMonitorEnv = "SPLIT_MONITOR";

// Where a line of words comes from; the console has quit/exit and no
// --monitor.
enum class Surface { kCommandLine, kConsole };

// The values commands take, filled by CLI11 and then checked. One struct
// for all commands keeps the table simple; each command uses its fields.
struct Arguments {
  std::string name;                // vnode create/destroy NAME
  std::string cache_text;          // --cache as typed
  std::string memory_text;         // --memory as typed
  uint64_t cache = 0;              // parsed --cache; 0: the default
  uint64_t memory = 0;             // parsed --memory; 0: the default
  std::string image;               // --image; empty: the default image
  bool empty = false;              // --empty: an empty root
  std::vector<std::string> topic;  // help [COMMAND...]
  std::vector<std::string> env;      // run --env NAME=VALUE, as typed
  std::string cwd;                   // run --cwd DIR; empty: "/"
  std::vector<std::string> command;  // run: the program's words
};

// The program's environment for `run`: PATH and HOME, TERM and LANG when
// splitctl has them (null: absent), then the --env entries, a later entry
// replacing an earlier one of the same name. In the order first set.
std::vector<std::string> run_environment(const std::vector<std::string>& overrides,
                                         const char* term, const char* lang);

struct Invocation;

// What a command's positional argument names, for tab completion.
enum class Completes { kNothing, kVnodeName, kCommand };

struct CommandSpec {
  std::string_view path;     // the words that select it: "vnode create"
  std::string_view usage;    // "vnode create NAME [--cache SIZE] [--memory SIZE]"
  std::string_view summary;  // one line in `help`
  std::string_view details;  // more for `help COMMAND`; may be empty
  bool console_only = false;
  bool command_line_only = false;  // needs the terminal's stdio (run)
  Completes completes = Completes::kNothing;
  // Declares the command's positionals and options on its CLI11 subcommand.
  void (*declare)(CLI::App& app, Arguments& args) = nullptr;
  // Checks and converts the parsed values; a failure is a usage error.
  Result<void> (*check)(Arguments& args, Surface surface) = nullptr;
  // Does the work. Null for commands the caller handles (quit).
  // Returns the exit status (see the top of this file).
  Result<int> (*run)(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                     std::ostream& err) = nullptr;
};

const std::vector<CommandSpec>& commands();
const CommandSpec* find_command(std::string_view path);

struct Invocation {
  const CommandSpec* command = nullptr;  // null: no command given
  Surface surface = Surface::kCommandLine;
  bool json = false;
  std::string monitor;  // --monitor (command line only); empty when absent
  Arguments args;
  // Where `run` takes stdin from and writes output to, and whether it
  // forwards signals (splitctl's main sets that after blocking them).
  RunStdio stdio;

  bool leaves_console() const {
    return command != nullptr && (command->path == "quit" || command->path == "exit");
  }
};

// Parses one command (argv without the program name, or one console line's
// words). `json_default` is --json from the command line, for console lines.
Result<Invocation> parse(const std::vector<std::string>& words, Surface surface,
                         bool json_default = false);

// Runs a parsed command and returns its exit status; notes for the user
// (warnings, a lost run) go to `err`. A null command does nothing.
Result<int> execute(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                    std::ostream& err);
// The same with `err` = std::cerr.
Result<int> execute(const Invocation& invocation, MonitorClient& client, std::ostream& out);

// The help text: every command, or one command (or group, e.g. "vnode").
// EINVAL (a usage error) for an unknown topic.
Result<std::string> help_text(const std::vector<std::string>& topic, Surface surface);

// Splits a console line into words: blanks separate, single and double
// quotes group, backslash escapes. A usage error for an unclosed quote.
Result<std::vector<std::string>> split_words(std::string_view line);

// Tab completion: the words that may follow `before` (the complete words
// already typed) and start with `prefix`, sorted. `vnode_names` is asked
// only where a vNode name may go.
std::vector<std::string> complete(const std::vector<std::string>& before, std::string_view prefix,
                                  Surface surface,
                                  const std::function<std::vector<std::string>()>& vnode_names);

}  // namespace sk::console
