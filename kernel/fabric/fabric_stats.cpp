#include "kernel/fabric/fabric_stats.h"

namespace sk::fabric {

std::vector<wire::StatRecord> fabric_stats(const Transport& transport) {
  constexpr std::string_view kGroup = "fabric";
  bool verbs = transport.kind() == wire::FabricKind::kVerbs;
  FabricCounters c = transport.counters();
  return {
      wire::make_stat(kGroup, verbs ? "kind_verbs" : "kind_tcp", 1),
      wire::make_stat(kGroup, "messages_sent", c.messages_sent),
      wire::make_stat(kGroup, "messages_received", c.messages_received),
      wire::make_stat(kGroup, "bytes_sent", c.bytes_sent),
      wire::make_stat(kGroup, "bytes_received", c.bytes_received),
      wire::make_stat(kGroup, "one_sided_reads", c.one_sided_reads),
      wire::make_stat(kGroup, "one_sided_writes", c.one_sided_writes),
      wire::make_stat(kGroup, "one_sided_bytes", c.one_sided_bytes),
      wire::make_stat(kGroup, "connections_accepted", c.connections_accepted),
      wire::make_stat(kGroup, "connections_made", c.connections_made),
  };
}

}  // namespace sk::fabric
