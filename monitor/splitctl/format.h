// What splitctl prints: aligned tables for people and JSON (stable field
// names) for scripts. Pure functions of the records, so the tests pin the
// exact output.
//
// JSON field names (kept stable; scripts depend on them):
//   node:  id, kind, address, state, fabric, capacity, usage, load, vnodes,
//          heartbeat_age_ms, joined_unix_ms
//   vnode: name, id, scomponent, image, cache, memory, processes,
//          created_unix_ms (image is "" for an empty root)
//   process (ps): vnode, pid, host_pid, pcomponent, run, state, runtime_ms,
//          rss, cache_pages, remote_pages, command
//   stats: [{node, counters: {GROUP: {NAME: value}}}], the monitor first
// Sizes are bytes, times are milliseconds; kind/state/fabric are the words
// the tables show.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernel/wire/messages.h"
#include "kernel/wire/process_messages.h"

namespace sk::console {

// Ordered, so that fields print in the order documented above.
using Json = nlohmann::ordered_json;

// A table with a header row; columns are separated by two spaces and padded
// to their widest cell. Numeric columns are right-aligned.
class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string title;
    Align align = Align::kLeft;
  };

  explicit Table(std::vector<Column> columns) : m_columns(std::move(columns)) {}
  void add_row(std::vector<std::string> cells);
  // Every line ends with '\n'; trailing spaces are trimmed.
  std::string render() const;

 private:
  std::vector<Column> m_columns;
  std::vector<std::vector<std::string>> m_rows;
};

// "0.3s ago", "12.0s ago", "4m05s ago", "2h10m ago".
std::string format_heartbeat_age(uint64_t age_ms);
// Local time "2025-11-26 17:53:02" (the TZ environment applies).
std::string format_unix_ms(uint64_t unix_ms);

std::string format_nodes(const std::vector<wire::NodeRecord>& nodes);
std::string format_vnodes(const std::vector<wire::VnodeRecord>& vnodes);
std::string format_vnode_created(const wire::VnodeRecord& vnode);
// ps's RUNTIME: "0:05", "12:34", "1:02:03", "3d04h".
std::string format_runtime(uint64_t ms);
std::string format_processes(const std::vector<wire::ProcessRecord>& processes);
// A table per node: the monitor's counters, then each pComponent's.
std::string format_stats(const std::vector<wire::StatRecord>& counters);

Json node_json(const wire::NodeRecord& node);
Json vnode_json(const wire::VnodeRecord& vnode);
Json nodes_json(const std::vector<wire::NodeRecord>& nodes);
Json vnodes_json(const std::vector<wire::VnodeRecord>& vnodes);
Json process_json(const wire::ProcessRecord& process);
Json processes_json(const std::vector<wire::ProcessRecord>& processes);
Json stats_json(const std::vector<wire::StatRecord>& counters);
// Two-space indented, newline-terminated.
std::string render_json(const Json& value);

}  // namespace sk::console
