// A transport's kind and traffic counters as `splitctl stats` records, in
// the group "fabric": kind_tcp or kind_verbs = 1, then the FabricCounters.
// The monitor and the pComponent both report their fabric this way.
#pragma once

#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/wire/process_messages.h"

namespace sk::fabric {

// Any thread (Transport::counters() is).
std::vector<wire::StatRecord> fabric_stats(const Transport& transport);

}  // namespace sk::fabric
