// /proc/PID/stat, split into its fields: the process manager (ps, the
// parents of a failed process) and the memory manager (argv pages) read it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace sk::pcomponent {

struct ProcStat {
  std::string comm;                 // field 2, without its parentheses
  std::vector<std::string> fields;  // fields 3 on

  // Field `n` as proc(5) numbers them (3: state, 4: ppid, 22: starttime,
  // 24: rss, 48-51: arg_start..env_end), or "" when the kernel has fewer.
  const std::string& field(size_t n) const {
    static const std::string kNone;
    return n >= 3 && n - 3 < fields.size() ? fields[n - 3] : kNone;
  }
  uint64_t number(size_t n) const { return std::strtoull(field(n).c_str(), nullptr, 10); }
};

// Nothing when the process is gone. "pid (comm) state ppid ...": comm may
// hold anything, spaces and parentheses too, so the fields are counted from
// its last closing parenthesis.
inline std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  ProcStat parsed;
  parsed.comm = stat.substr(open + 1, close - open - 1);
  std::istringstream words(stat.substr(close + 1));
  for (std::string word; words >> word;) parsed.fields.push_back(word);
  return parsed;
}

}  // namespace sk::pcomponent
