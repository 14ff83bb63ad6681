#include "monitor/splitctl/console.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <ostream>
#include <set>

#include "kernel/config.h"
#include "kernel/wire/messages.h"
#include "monitor/splitctl/format.h"

namespace sk::console {

namespace {

Error usage_error(std::string message) {
  return make_error(EINVAL, std::move(message));
}

std::vector<std::string> path_words(std::string_view path) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find(' ', start);
    if (end == std::string_view::npos) end = path.size();
    words.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

std::string join(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& word : words) text += (text.empty() ? "" : " ") + word;
  return text;
}

bool visible(const CommandSpec& spec, Surface surface) {
  if (spec.console_only) return surface == Surface::kConsole;
  if (spec.command_line_only) return surface == Surface::kCommandLine;
  return true;
}

bool is_option(std::string_view word) {
  return word.size() > 1 && word[0] == '-';
}

// ---- arguments --------------------------------------------------------------

void declare_name(CLI::App& app, Arguments& args) {
  app.add_option("NAME", args.name, "the vNode's name")->required();
}

void declare_create(CLI::App& app, Arguments& args) {
  declare_name(app, args);
  app.add_option("--cache", args.cache_text, "ExCache budget on each pComponent")
      ->type_name("SIZE");
  app.add_option("--memory", args.memory_text, "memory quota")->type_name("SIZE");
  app.add_option("--image", args.image, "image the root starts from")->type_name("IMAGE");
  app.add_flag("--empty", args.empty, "an empty root instead of an image");
}

void declare_topic(CLI::App& app, Arguments& args) {
  app.add_option("COMMAND", args.topic, "the command to explain");
}

void declare_run(CLI::App& app, Arguments& args) {
  declare_name(app, args);
  app.add_option("-e,--env", args.env, "an environment variable of the program")
      ->type_name("NAME=VALUE")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--cwd", args.cwd, "the program's working directory")->type_name("DIR");
}

void declare_ps(CLI::App& app, Arguments& args) {
  app.add_option("VNODE", args.name, "only this vNode's processes");
}

Result<void> check_name(Arguments& args, Surface) {
  return wire::validate_vnode_name(args.name);
}

Result<uint64_t> parse_size_flag(const std::string& text, std::string_view flag) {
  if (text.empty()) return uint64_t{0};
  auto size = parse_size(text);
  if (!size) return usage_error(size.error().message() + " (" + std::string(flag) + ")");
  return size.value();
}

Result<void> check_create(Arguments& args, Surface surface) {
  TRY(check_name(args, surface));
  args.cache = TRY(parse_size_flag(args.cache_text, "--cache"));
  args.memory = TRY(parse_size_flag(args.memory_text, "--memory"));
  if (args.empty && !args.image.empty()) {
    return usage_error("--image and --empty exclude each other: an empty root has no image");
  }
  if (!args.image.empty() && !wire::validate_vnode_name(args.image)) {
    return usage_error("bad image name '" + args.image +
                       "': 1-31 characters of a-z, 0-9, '-' and '_'");
  }
  return {};
}

Result<void> check_run(Arguments& args, Surface surface) {
  TRY(check_name(args, surface));
  if (args.command.empty()) {
    return usage_error("run: no command to run (usage: run VNODE [--env NAME=VALUE]... "
                       "[--cwd DIR] [--] CMD [ARGS...])");
  }
  if (args.command.front().empty()) return usage_error("run: empty command");
  for (const auto& entry : args.env) {
    size_t equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      return usage_error("run: --env '" + entry + "' is not NAME=VALUE");
    }
  }
  if (!args.cwd.empty() && args.cwd.front() != '/') {
    return usage_error("run: --cwd '" + args.cwd + "' is not an absolute path");
  }
  return {};
}

Result<void> check_ps(Arguments& args, Surface surface) {
  if (args.name.empty()) return {};
  return check_name(args, surface);
}

Result<void> check_topic(Arguments& args, Surface surface) {
  TRY(help_text(args.topic, surface));
  return {};
}

// ---- actions ----------------------------------------------------------------

Result<int> run_nodes(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                      std::ostream&) {
  auto nodes = TRY(client.nodes());
  out << (invocation.json ? render_json(nodes_json(nodes)) : format_nodes(nodes));
  return kExitOk;
}

Result<int> run_vnode_create(const Invocation& invocation, MonitorClient& client,
                             std::ostream& out, std::ostream&) {
  const Arguments& args = invocation.args;
  VnodeOptions options{args.cache, args.memory, args.image, args.empty};
  auto vnode = TRY(client.vnode_create(args.name, options));
  out << (invocation.json ? render_json(vnode_json(vnode)) : format_vnode_created(vnode));
  return kExitOk;
}

Result<int> run_vnode_list(const Invocation& invocation, MonitorClient& client,
                           std::ostream& out, std::ostream&) {
  auto vnodes = TRY(client.vnode_list());
  out << (invocation.json ? render_json(vnodes_json(vnodes)) : format_vnodes(vnodes));
  return kExitOk;
}

Result<int> run_vnode_destroy(const Invocation& invocation, MonitorClient& client,
                              std::ostream& out, std::ostream&) {
  const std::string& name = invocation.args.name;
  TRY(client.vnode_destroy(name));
  if (invocation.json) {
    out << render_json(Json{{"name", name}, {"destroyed", true}});
  } else {
    out << "destroyed vnode '" << name << "'\n";
  }
  return kExitOk;
}

Result<int> run_run(const Invocation& invocation, MonitorClient& client, std::ostream&,
                    std::ostream& err) {
  const Arguments& args = invocation.args;
  RunSpec spec;
  spec.vnode = args.name;
  spec.argv = args.command;
  spec.env = run_environment(args.env, std::getenv("TERM"), std::getenv("LANG"));
  spec.cwd = args.cwd.empty() ? "/" : args.cwd;
  auto outcome = TRY(client.run(spec, invocation.stdio));
  if (!outcome.note.empty()) err << "splitctl: " << outcome.note << "\n";
  return outcome.status;
}

void warn_unanswered(uint32_t unanswered, std::string_view what, std::ostream& err) {
  if (unanswered == 0) return;
  err << "splitctl: warning: " << unanswered << " pComponent" << (unanswered == 1 ? "" : "s")
      << " did not answer; " << what << " are missing\n";
}

Result<int> run_ps(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                   std::ostream& err) {
  auto listing = TRY(client.ps(invocation.args.name));
  out << (invocation.json ? render_json(processes_json(listing.processes))
                          : format_processes(listing.processes));
  warn_unanswered(listing.unanswered, "their processes", err);
  return kExitOk;
}

Result<int> run_stats(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                      std::ostream& err) {
  auto listing = TRY(client.stats());
  out << (invocation.json ? render_json(stats_json(listing.counters))
                          : format_stats(listing.counters));
  warn_unanswered(listing.unanswered, "their counters", err);
  return kExitOk;
}

Result<int> run_help(const Invocation& invocation, MonitorClient&, std::ostream& out,
                     std::ostream&) {
  out << TRY(help_text(invocation.args.topic, invocation.surface));
  return kExitOk;
}

}  // namespace

// ---- the table --------------------------------------------------------------

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> kCommands = {
      {.path = "nodes",
       .usage = "nodes",
       .summary = "list the monitor and every component",
       .details = "HEARTBEAT is the time since the component last reported in; a component "
                  "silent for longer than the monitor's --failure-timeout is 'failed'.",
       .run = run_nodes},
      {.path = "vnode create",
       .usage = "vnode create NAME [--image IMAGE | --empty] [--cache SIZE] [--memory SIZE]",
       .summary = "create a vNode",
       .details = "Its root goes to the alive sComponent with the most free space; every alive\n"
                  "mComponent and pComponent is told about it.\n"
                  "NAME: 1-31 characters of a-z, 0-9, '-' and '_'.\n"
                  "--image IMAGE  the image its root starts from (default: 'default', the\n"
                  "               Debian userland); the sComponent must have it\n"
                  "--empty        an empty root instead\n"
                  "--cache SIZE   its ExCache budget on each pComponent (default: the "
                  "pComponent's own)\n"
                  "--memory SIZE  its memory quota (default: the monitor's --default-memory)",
       .declare = declare_create,
       .check = check_create,
       .run = run_vnode_create},
      {.path = "vnode list",
       .usage = "vnode list",
       .summary = "list the vNodes",
       .run = run_vnode_list},
      {.path = "vnode destroy",
       .usage = "vnode destroy NAME",
       .summary = "destroy a vNode (its components drop it)",
       .completes = Completes::kVnodeName,
       .declare = declare_name,
       .check = check_name,
       .run = run_vnode_destroy},
      {.path = "run",
       .usage = "run VNODE [--env NAME=VALUE]... [--cwd DIR] [--] CMD [ARGS...]",
       .summary = "run a program on a vNode, with this terminal's stdin, stdout and stderr",
       .details =
           "The program runs on the alive pComponent with the fewest programs that has the\n"
           "vNode. Its output streams back as it is written; stdin is forwarded (its end\n"
           "too); Ctrl-C, SIGTERM and SIGHUP go to the program (Ctrl-C twice within a\n"
           "second kills it). Everything from CMD on belongs to the program, even words\n"
           "that look like options; '--' may mark where CMD starts.\n"
           "--env NAME=VALUE  add to (or replace in) the environment: PATH, HOME=/root,\n"
           "                  and TERM and LANG as splitctl has them (-e for short)\n"
           "--cwd DIR         the working directory in the vNode (default: /)\n"
           "exit status: the program's (128+N when signal N ended it); 1 when it could\n"
           "not start; 255 when its pComponent or the monitor failed while it ran.\n"
           "Not available in the interactive console.",
       .command_line_only = true,
       .completes = Completes::kVnodeName,
       .declare = declare_run,
       .check = check_run,
       .run = run_run},
      {.path = "ps",
       .usage = "ps [VNODE]",
       .summary = "list the processes of every vNode, or of one",
       .details = "Every process of the vNode's programs, on every alive pComponent: its pid\n"
                  "inside the vNode, where it runs, its state (R running, S sleeping, D disk,\n"
                  "T stopped, Z zombie), how long it has run, its resident memory (RSS), its\n"
                  "pages in the ExCache (CACHE) and on mComponents (REMOTE), its command.",
       .completes = Completes::kVnodeName,
       .declare = declare_ps,
       .check = check_ps,
       .run = run_ps},
      {.path = "stats",
       .usage = "stats",
       .summary = "show the counters of the monitor and every alive pComponent",
       .details = "The monitor's runs; per pComponent: its programs, the tracer (stops,\n"
                  "launches, execs, forks, threads), traced and refused system calls by name, and\n"
                  "the storage operations it served by name.",
       .run = run_stats},
      {.path = "help",
       .usage = "help [COMMAND]",
       .summary = "list the commands, or explain one",
       .completes = Completes::kCommand,
       .declare = declare_topic,
       .check = check_topic,
       .run = run_help},
      {.path = "quit", .usage = "quit", .summary = "leave the console", .console_only = true},
      {.path = "exit", .usage = "exit", .summary = "leave the console", .console_only = true},
  };
  return kCommands;
}

const CommandSpec* find_command(std::string_view path) {
  for (const auto& spec : commands()) {
    if (spec.path == path) return &spec;
  }
  return nullptr;
}

// ---- parsing ----------------------------------------------------------------

// Splits `run`'s program words (CMD and what follows it, or what follows
// "--") off the line, into `command`; returns the rest. A line that is not
// a `run` comes back whole.
static std::vector<std::string> split_run_command(const std::vector<std::string>& words,
                                                  Surface surface,
                                                  std::vector<std::string>& command) {
  size_t i = 0;
  // splitctl's own options before the command.
  while (i < words.size() && is_option(words[i])) {
    if (words[i] == "--monitor" && surface == Surface::kCommandLine) ++i;
    ++i;
  }
  if (i >= words.size() || words[i] != "run") return words;
  ++i;
  bool have_vnode = false;
  for (; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (word == "--") {
      command.assign(words.begin() + static_cast<std::ptrdiff_t>(i) + 1, words.end());
      return std::vector<std::string>(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (word == "--env" || word == "-e" || word == "--cwd" ||
        (word == "--monitor" && surface == Surface::kCommandLine)) {
      ++i;  // and its value
      continue;
    }
    if (is_option(word)) continue;
    if (!have_vnode) {
      have_vnode = true;
      continue;
    }
    command.assign(words.begin() + static_cast<std::ptrdiff_t>(i), words.end());
    return std::vector<std::string>(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return words;
}

Result<Invocation> parse(const std::vector<std::string>& words, Surface surface,
                         bool json_default) {
  Invocation invocation;
  invocation.surface = surface;
  invocation.json = json_default;
  bool json = false;
  bool help = false;

  // The command tree as CLI11 subcommands. Every level lets unknown words
  // through (allow_extras) and hands options it does not know to its parent
  // (fallthrough), so --json works anywhere and the errors below can name
  // exactly what was wrong.
  CLI::App app("splitkernel console", "splitctl");
  app.set_help_flag();
  app.allow_extras();
  app.fallthrough();
  app.require_subcommand(0, 1);
  app.add_flag("--json", json);
  app.add_flag("-h,--help", help);
  if (surface == Surface::kCommandLine) {
    app.add_option("--monitor", invocation.monitor)->type_name("HOST:PORT");
  }
  std::map<std::string, CLI::App*> groups;
  std::map<const CLI::App*, const CommandSpec*> leaves;
  for (const auto& spec : commands()) {
    if (!visible(spec, surface)) continue;
    auto words_of_path = path_words(spec.path);
    CLI::App* parent = &app;
    std::string prefix;
    for (size_t i = 0; i + 1 < words_of_path.size(); ++i) {
      prefix += (prefix.empty() ? "" : " ") + words_of_path[i];
      auto& group = groups[prefix];
      if (group == nullptr) {
        group = parent->add_subcommand(words_of_path[i]);
        group->require_subcommand(0, 1);
      }
      parent = group;
    }
    CLI::App* leaf = parent->add_subcommand(words_of_path.back(), std::string(spec.summary));
    if (spec.declare) spec.declare(*leaf, invocation.args);
    leaves[leaf] = &spec;
  }

  // The deepest subcommand selected so far and its path ("" for none).
  auto selected = [&] {
    const CLI::App* current = &app;
    std::vector<std::string> path;
    while (!current->get_subcommands().empty()) {
      current = current->get_subcommands().front();
      path.push_back(current->get_name());
    }
    return std::pair(current, path);
  };

  // `run`'s program words never reach CLI11.
  std::vector<std::string> command;
  std::vector<std::string> line = split_run_command(words, surface, command);
  std::vector<std::string> reversed(line.rbegin(), line.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& error) {
    auto [current, path] = selected();
    // `vnode create --help` lacks NAME, but asks for help, not for a scolding.
    if (help) {
      invocation.command = find_command("help");
      invocation.args = Arguments{};
      invocation.args.topic = path;
      return invocation;
    }
    auto leaf = leaves.find(current);
    if (leaf == leaves.end()) return usage_error(error.what());
    return usage_error(join(path) + ": " + error.what() +
                       " (usage: " + std::string(leaf->second->usage) + ")");
  }
  if (json) invocation.json = true;

  auto [current, path] = selected();
  auto remaining = app.remaining(/*recurse=*/true);
  auto leaf = leaves.find(current);
  if (leaf == leaves.end()) {
    if (!remaining.empty()) {
      const std::string& first = remaining.front();
      if (is_option(first)) return usage_error("unknown option '" + first + "'");
      auto typed = path;
      typed.push_back(first);
      std::string hint = path.empty() ? "help" : "help " + join(path);
      return usage_error("unknown command '" + join(typed) + "' (try '" + hint + "')");
    }
    if (!path.empty() && !help) {
      std::string choices;
      for (const auto* sub : current->get_subcommands({})) {
        choices += (choices.empty() ? "" : ", ") + sub->get_name();
      }
      return usage_error("'" + join(path) + "' needs a subcommand: " + choices);
    }
  } else if (!remaining.empty()) {
    const std::string& first = remaining.front();
    std::string what = is_option(first) ? "unknown option '" : "unexpected argument '";
    return usage_error(join(path) + ": " + what + first +
                       "' (usage: " + std::string(leaf->second->usage) + ")");
  }

  if (help) {
    // `COMMAND --help` is `help COMMAND`.
    invocation.command = find_command("help");
    invocation.args = Arguments{};
    invocation.args.topic = path;
    return invocation;
  }
  if (leaf == leaves.end()) return invocation;  // no command: the console
  invocation.command = leaf->second;
  invocation.args.command = std::move(command);
  if (invocation.command->check) TRY(invocation.command->check(invocation.args, surface));
  return invocation;
}

Result<int> execute(const Invocation& invocation, MonitorClient& client, std::ostream& out,
                    std::ostream& err) {
  if (invocation.command == nullptr || invocation.command->run == nullptr) return kExitOk;
  return invocation.command->run(invocation, client, out, err);
}

Result<int> execute(const Invocation& invocation, MonitorClient& client, std::ostream& out) {
  return execute(invocation, client, out, std::cerr);
}

std::vector<std::string> run_environment(const std::vector<std::string>& overrides,
                                         const char* term, const char* lang) {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/root",
  };
  if (term != nullptr && *term != '\0') env.push_back(std::string("TERM=") + term);
  if (lang != nullptr && *lang != '\0') env.push_back(std::string("LANG=") + lang);
  for (const auto& entry : overrides) {
    std::string_view name = std::string_view(entry).substr(0, entry.find('='));
    auto same = std::find_if(env.begin(), env.end(), [&](const std::string& existing) {
      return existing.size() > name.size() && existing.compare(0, name.size(), name) == 0 &&
             existing[name.size()] == '=';
    });
    if (same != env.end()) {
      *same = entry;
    } else {
      env.push_back(entry);
    }
  }
  return env;
}

// ---- help -------------------------------------------------------------------

static std::string listing(const std::vector<const CommandSpec*>& specs) {
  size_t width = 0;
  for (const auto* spec : specs) width = std::max(width, spec->usage.size());
  std::string text;
  for (const auto* spec : specs) {
    text += "  " + std::string(spec->usage) + std::string(width - spec->usage.size() + 2, ' ') +
            std::string(spec->summary) + "\n";
  }
  return text;
}

Result<std::string> help_text(const std::vector<std::string>& topic, Surface surface) {
  std::vector<const CommandSpec*> specs;
  for (const auto& spec : commands()) {
    if (visible(spec, surface)) specs.push_back(&spec);
  }

  if (topic.empty()) {
    std::string text;
    if (surface == Surface::kCommandLine) {
      text +=
          "usage: splitctl [--monitor HOST:PORT] [--json] [COMMAND...]\n"
          "Without a command, splitctl opens an interactive console.\n\n";
    }
    text += "commands:\n" + listing(specs);
    if (surface == Surface::kCommandLine) {
      text +=
          "\noptions:\n"
          "  --monitor HOST:PORT  the monitor (default: $SPLIT_MONITOR, else " +
          std::string(kDefaultMonitor) +
          ")\n"
          "  --json               print listings and results as JSON\n"
          "  -h, --help           this help; 'help COMMAND' or 'COMMAND --help' for one\n"
          "\nsizes: bytes, or a number with K, M, G or T (powers of 1024): 4096, 64M, 1.5G\n"
          "exit status: 0 success, 1 the operation failed, 2 usage error\n";
    } else {
      text += "\nadd --json to a command for JSON output; 'help COMMAND' explains one\n";
    }
    return text;
  }

  std::string wanted = join(topic);
  for (const auto* spec : specs) {
    if (spec->path != wanted) continue;
    std::string text =
        "usage: " + std::string(spec->usage) + "\n" + std::string(spec->summary) + "\n";
    if (!spec->details.empty()) text += std::string(spec->details) + "\n";
    return text;
  }
  std::vector<const CommandSpec*> group;
  for (const auto* spec : specs) {
    if (spec->path.starts_with(wanted + " ")) group.push_back(spec);
  }
  if (!group.empty()) return "commands:\n" + listing(group);
  return usage_error("unknown command '" + wanted + "' (try 'help')");
}

// ---- console lines ----------------------------------------------------------

Result<std::vector<std::string>> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < line.size()) {
        word += line[++i];
      } else {
        word += c;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      word += line[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote != 0) return usage_error(std::string("unclosed ") + quote + " quote");
  if (in_word) words.push_back(std::move(word));
  return words;
}

// ---- completion -------------------------------------------------------------

namespace {

struct OptionInfo {
  std::string name;
  bool takes_value = false;
};

// The long options of a command as CLI11 knows them, plus the global ones.
std::vector<OptionInfo> options_of(const CommandSpec* spec, Surface surface) {
  std::vector<OptionInfo> options = {{"--json", false}, {"--help", false}};
  if (surface == Surface::kCommandLine) options.push_back({"--monitor", true});
  if (spec == nullptr || spec->declare == nullptr) return options;
  CLI::App app;
  Arguments args;
  spec->declare(app, args);
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional()) continue;
    for (const auto& name : option->get_lnames()) {
      options.push_back({"--" + name, option->get_expected_min() > 0});
    }
  }
  return options;
}

// The next words of the visible command paths that start with `typed`.
std::set<std::string> next_path_words(const std::vector<std::string>& typed, Surface surface) {
  std::set<std::string> next;
  for (const auto& spec : commands()) {
    if (!visible(spec, surface)) continue;
    auto words = path_words(spec.path);
    if (words.size() <= typed.size()) continue;
    if (std::equal(typed.begin(), typed.end(), words.begin())) next.insert(words[typed.size()]);
  }
  return next;
}

}  // namespace

std::vector<std::string> complete(const std::vector<std::string>& before, std::string_view prefix,
                                  Surface surface,
                                  const std::function<std::vector<std::string>()>& vnode_names) {
  std::vector<std::string> typed_path;
  std::vector<std::string> positionals;
  const CommandSpec* spec = nullptr;
  bool expect_value = false;
  for (const auto& word : before) {
    if (expect_value) {
      expect_value = false;
      continue;
    }
    if (is_option(word)) {
      if (word.find('=') != std::string::npos) continue;
      for (const auto& option : options_of(spec, surface)) {
        if (option.name == word) expect_value = option.takes_value;
      }
      continue;
    }
    if (spec != nullptr) {
      positionals.push_back(word);
      continue;
    }
    typed_path.push_back(word);
    if (const CommandSpec* found = find_command(join(typed_path));
        found != nullptr && visible(*found, surface)) {
      spec = found;
    } else if (next_path_words(typed_path, surface).empty()) {
      return {};  // not a command: nothing sensible follows
    }
  }
  if (expect_value) return {};  // a size or an address goes here

  std::set<std::string> candidates;
  if (is_option(prefix) || prefix == "-") {
    for (const auto& option : options_of(spec, surface)) candidates.insert(option.name);
  } else if (spec == nullptr) {
    candidates = next_path_words(typed_path, surface);
  } else if (spec->completes == Completes::kVnodeName && positionals.empty() && vnode_names) {
    for (auto& name : vnode_names()) candidates.insert(std::move(name));
  } else if (spec->completes == Completes::kCommand) {
    candidates = next_path_words(positionals, surface);
  }

  std::vector<std::string> matches;
  for (const auto& candidate : candidates) {
    if (candidate.starts_with(prefix)) matches.push_back(candidate);
  }
  return matches;
}

}  // namespace sk::console
