#include "monitor/splitctl/repl.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

// readline's headers need <cstdio> first.
#include <readline/history.h>
#include <readline/readline.h>

#include "monitor/splitctl/console.h"

namespace sk::console {

namespace {

constexpr const char* kPrompt = "splitctl> ";
constexpr const char* kHistoryFile = ".splitctl_history";
// Lines kept in the history file across sessions.
constexpr int kHistoryLines = 1000;

// readline's completion hooks are plain C functions: they reach the client
// and the current matches through these.
MonitorClient* g_client = nullptr;
std::vector<std::string> g_matches;

char* next_match(const char*, int state) {
  static size_t index = 0;
  if (state == 0) index = 0;
  if (index >= g_matches.size()) return nullptr;
  return strdup(g_matches[index++].c_str());
}

char** attempt_completion(const char* text, int start, int) {
  rl_attempted_completion_over = 1;  // never fall back to file names
  g_matches.clear();
  auto before = split_words(std::string_view(rl_line_buffer, static_cast<size_t>(start)));
  if (!before) return nullptr;
  g_matches = complete(before.value(), text, Surface::kConsole, [] {
    std::vector<std::string> names;
    if (g_client == nullptr) return names;
    // A monitor that cannot be reached just offers nothing to complete.
    if (auto vnodes = g_client->vnode_list()) {
      for (const auto& vnode : vnodes.value()) names.push_back(vnode.name.str());
    }
    return names;
  });
  return rl_completion_matches(text, next_match);
}

std::string history_path() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') return {};
  return std::string(home) + "/" + kHistoryFile;
}

// Reads one line: readline on a terminal, getline otherwise. False at end
// of input.
bool read_line(bool terminal, std::string& line) {
  if (!terminal) return static_cast<bool>(std::getline(std::cin, line));
  char* raw = readline(kPrompt);
  if (raw == nullptr) {
    std::cout << "\n";  // leave the shell's prompt on a fresh line after Ctrl-D
    return false;
  }
  line = raw;
  std::free(raw);
  return true;
}

}  // namespace

int run_console(MonitorClient& client, bool json_default) {
  bool terminal = isatty(STDIN_FILENO) != 0;
  std::string history = terminal ? history_path() : std::string();
  if (terminal) {
    g_client = &client;
    rl_readline_name = "splitctl";
    rl_attempted_completion_function = attempt_completion;
    using_history();
    if (!history.empty()) read_history(history.c_str());
  }

  int status = kExitOk;
  std::string line;
  while (read_line(terminal, line)) {
    auto words = split_words(line);
    if (words && words->empty()) continue;
    if (terminal) {
      add_history(line.c_str());
      // Appended line by line so that a killed console keeps its history.
      if (!history.empty() && append_history(1, history.c_str()) != 0) {
        write_history(history.c_str());
      }
    }
    auto invocation = words ? parse(words.value(), Surface::kConsole, json_default)
                            : Result<Invocation>(std::move(words).error());
    if (!invocation) {
      std::cerr << "splitctl: " << invocation.error().message() << "\n";
      status = kExitUsage;
      continue;
    }
    if (invocation->leaves_console()) break;
    auto done = execute(invocation.value(), client, std::cout);
    std::cout.flush();
    if (!done) {
      std::cerr << "splitctl: " << done.error().message() << "\n";
      status = kExitFailed;
    }
  }
  if (terminal) {
    if (!history.empty()) history_truncate_file(history.c_str(), kHistoryLines);
    g_client = nullptr;
    return kExitOk;
  }
  return status;
}

}  // namespace sk::console
