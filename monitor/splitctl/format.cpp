#include "monitor/splitctl/format.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "kernel/config.h"
#include "kernel/node.h"

namespace sk::console {

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(m_columns.size());
  m_rows.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> widths;
  for (const Column& column : m_columns) widths.push_back(column.title.size());
  for (const auto& row : m_rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto line = [&](auto cell_at) {
    std::string text;
    for (size_t i = 0; i < m_columns.size(); ++i) {
      const std::string& cell = cell_at(i);
      if (i != 0) text += "  ";
      std::string padding(widths[i] - cell.size(), ' ');
      if (m_columns[i].align == Align::kRight) {
        text += padding + cell;
      } else {
        text += cell + padding;
      }
    }
    text.erase(text.find_last_not_of(' ') + 1);
    return text + "\n";
  };
  std::string out = line([&](size_t i) -> const std::string& { return m_columns[i].title; });
  for (const auto& row : m_rows) {
    out += line([&](size_t i) -> const std::string& { return row[i]; });
  }
  return out;
}

std::string format_heartbeat_age(uint64_t age_ms) {
  char buffer[48];
  if (age_ms < 60'000) {
    std::snprintf(buffer, sizeof buffer, "%.1fs ago", static_cast<double>(age_ms) / 1000.0);
  } else if (age_ms < 3'600'000) {
    uint64_t seconds = age_ms / 1000;
    std::snprintf(buffer, sizeof buffer, "%llum%02llus ago",
                  static_cast<unsigned long long>(seconds / 60),
                  static_cast<unsigned long long>(seconds % 60));
  } else {
    uint64_t minutes = age_ms / 60'000;
    std::snprintf(buffer, sizeof buffer, "%lluh%02llum ago",
                  static_cast<unsigned long long>(minutes / 60),
                  static_cast<unsigned long long>(minutes % 60));
  }
  return buffer;
}

std::string format_unix_ms(uint64_t unix_ms) {
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm local{};
  localtime_r(&seconds, &local);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &local);
  return buffer;
}

static std::string kind_text(uint8_t raw) {
  auto kind = node_kind_from_wire(raw);
  return kind ? std::string(to_string(*kind)) : "unknown";
}

static std::string state_text(uint8_t raw) {
  auto state = node_state_from_wire(raw);
  return state ? std::string(to_string(*state)) : "unknown";
}

static std::string fabric_text(uint8_t raw) {
  return std::string(wire::to_string(static_cast<wire::FabricKind>(raw)));
}

static bool is_monitor(const wire::NodeRecord& node) {
  return node.kind == static_cast<uint8_t>(NodeKind::kMonitor);
}

std::string format_nodes(const std::vector<wire::NodeRecord>& nodes) {
  using Align = Table::Align;
  Table table({{"ID", Align::kRight},
               {"KIND"},
               {"ADDRESS"},
               {"FABRIC"},
               {"STATE"},
               {"CAPACITY", Align::kRight},
               {"USAGE", Align::kRight},
               {"LOAD", Align::kRight},
               {"HEARTBEAT"}});
  for (const auto& node : nodes) {
    // The monitor lends nothing and does not heartbeat: dashes, not zeroes.
    bool monitor = is_monitor(node);
    table.add_row({std::to_string(node.id), kind_text(node.kind), node.address.str(),
                   fabric_text(node.fabric), state_text(node.state),
                   monitor ? "-" : format_size(node.capacity),
                   monitor ? "-" : format_size(node.usage),
                   monitor ? "-" : std::to_string(node.load),
                   monitor ? "-" : format_heartbeat_age(node.heartbeat_age_ms)});
  }
  return table.render();
}

static std::string image_text(const wire::VnodeRecord& vnode) {
  return vnode.image.view().empty() ? "(empty)" : vnode.image.str();
}

std::string format_vnodes(const std::vector<wire::VnodeRecord>& vnodes) {
  if (vnodes.empty()) return "no vNodes (create one with 'vnode create NAME')\n";
  using Align = Table::Align;
  Table table({{"NAME"},
               {"ID", Align::kRight},
               {"SCOMPONENT", Align::kRight},
               {"IMAGE"},
               {"CACHE", Align::kRight},
               {"MEMORY", Align::kRight},
               {"PROCESSES", Align::kRight},
               {"CREATED"}});
  for (const auto& vnode : vnodes) {
    table.add_row({vnode.name.str(), std::to_string(vnode.id), std::to_string(vnode.scomponent),
                   image_text(vnode), vnode.cache != 0 ? format_size(vnode.cache) : "default",
                   format_size(vnode.memory), std::to_string(vnode.processes),
                   format_unix_ms(vnode.created_unix_ms)});
  }
  return table.render();
}

std::string format_vnode_created(const wire::VnodeRecord& vnode) {
  std::string cache = vnode.cache != 0 ? format_size(vnode.cache) : "the pComponent's default";
  std::string root = vnode.image.view().empty() ? "an empty root"
                                                : "a root from image '" + vnode.image.str() + "'";
  return "created vnode '" + vnode.name.str() + "' (id " + std::to_string(vnode.id) + ", " + root +
         " on node " + std::to_string(vnode.scomponent) + ", memory " + format_size(vnode.memory) +
         ", cache " + cache + ")\n";
}

std::string format_runtime(uint64_t ms) {
  uint64_t seconds = ms / 1000;
  char buffer[48];
  if (seconds < 3600) {
    std::snprintf(buffer, sizeof buffer, "%llu:%02llu", static_cast<unsigned long long>(seconds / 60),
                  static_cast<unsigned long long>(seconds % 60));
  } else if (seconds < 86400) {
    std::snprintf(buffer, sizeof buffer, "%llu:%02llu:%02llu",
                  static_cast<unsigned long long>(seconds / 3600),
                  static_cast<unsigned long long>(seconds / 60 % 60),
                  static_cast<unsigned long long>(seconds % 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%llud%02lluh",
                  static_cast<unsigned long long>(seconds / 86400),
                  static_cast<unsigned long long>(seconds / 3600 % 24));
  }
  return buffer;
}

std::string format_processes(const std::vector<wire::ProcessRecord>& processes) {
  if (processes.empty()) return "no processes\n";
  using Align = Table::Align;
  Table table({{"VNODE"},
               {"PID", Align::kRight},
               {"PCOMPONENT", Align::kRight},
               {"STATE"},
               {"RUNTIME", Align::kRight},
               {"RSS", Align::kRight},
               {"CACHE", Align::kRight},
               {"REMOTE", Align::kRight},
               {"COMMAND"}});
  for (const auto& process : processes) {
    table.add_row({process.vnode_name.str(), std::to_string(process.pid),
                   std::to_string(process.pcomponent), std::string(1, static_cast<char>(process.state)),
                   format_runtime(process.runtime_ms), format_size(process.rss),
                   format_size(process.cache_pages * wire::kPageSize),
                   format_size(process.remote_pages * wire::kPageSize), process.command.str()});
  }
  return table.render();
}

std::string format_stats(const std::vector<wire::StatRecord>& counters) {
  std::string out;
  size_t i = 0;
  while (i < counters.size()) {
    uint32_t node = counters[i].node;
    using Align = Table::Align;
    Table table({{"GROUP"}, {"NAME"}, {"VALUE", Align::kRight}});
    for (; i < counters.size() && counters[i].node == node; ++i) {
      table.add_row({counters[i].group.str(), counters[i].name.str(),
                     std::to_string(counters[i].value)});
    }
    if (!out.empty()) out += "\n";
    out += node == kMonitorNodeId ? "monitor (node 1)\n"
                                  : "pComponent " + std::to_string(node) + "\n";
    out += table.render();
  }
  if (out.empty()) out = "no counters\n";
  return out;
}

Json node_json(const wire::NodeRecord& node) {
  return Json{
      {"id", node.id},
      {"kind", kind_text(node.kind)},
      {"address", node.address.str()},
      {"state", state_text(node.state)},
      {"fabric", fabric_text(node.fabric)},
      {"capacity", node.capacity},
      {"usage", node.usage},
      {"load", node.load},
      {"vnodes", node.vnodes},
      {"heartbeat_age_ms", node.heartbeat_age_ms},
      {"joined_unix_ms", node.joined_unix_ms},
  };
}

Json vnode_json(const wire::VnodeRecord& vnode) {
  return Json{
      {"name", vnode.name.str()},       {"id", vnode.id},
      {"scomponent", vnode.scomponent}, {"image", vnode.image.str()},
      {"cache", vnode.cache},           {"memory", vnode.memory},
      {"processes", vnode.processes},   {"created_unix_ms", vnode.created_unix_ms},
  };
}

Json nodes_json(const std::vector<wire::NodeRecord>& nodes) {
  auto array = Json::array();
  for (const auto& node : nodes) array.push_back(node_json(node));
  return array;
}

Json vnodes_json(const std::vector<wire::VnodeRecord>& vnodes) {
  auto array = Json::array();
  for (const auto& vnode : vnodes) array.push_back(vnode_json(vnode));
  return array;
}

Json process_json(const wire::ProcessRecord& process) {
  return Json{
      {"vnode", process.vnode_name.str()},
      {"pid", process.pid},
      {"host_pid", process.host_pid},
      {"pcomponent", process.pcomponent},
      {"run", process.run},
      {"state", std::string(1, static_cast<char>(process.state))},
      {"runtime_ms", process.runtime_ms},
      {"rss", process.rss},
      {"cache_pages", process.cache_pages},
      {"remote_pages", process.remote_pages},
      {"command", process.command.str()},
  };
}

Json processes_json(const std::vector<wire::ProcessRecord>& processes) {
  auto array = Json::array();
  for (const auto& process : processes) array.push_back(process_json(process));
  return array;
}

Json stats_json(const std::vector<wire::StatRecord>& counters) {
  auto array = Json::array();
  for (const auto& counter : counters) {
    if (array.empty() || array.back()["node"] != counter.node) {
      array.push_back(Json{{"node", counter.node}, {"counters", Json::object()}});
    }
    array.back()["counters"][counter.group.str()][counter.name.str()] = counter.value;
  }
  return array;
}

std::string render_json(const Json& value) {
  return value.dump(2) + "\n";
}

}  // namespace sk::console
