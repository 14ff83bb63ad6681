#include "monitor/splitctl/client.h"

#include <cstring>

#include "kernel/wire/codec.h"

namespace sk::console {

// Listings are answered from the monitor's tables at once.
static constexpr Duration kQueryTimeout = std::chrono::seconds(5);
// Creating or destroying a vNode waits for components (up to 20 s each on
// the monitor's side) and for earlier vNode operations queued before it.
static constexpr Duration kChangeTimeout = std::chrono::seconds(60);
static constexpr Duration kConnectTimeout = std::chrono::seconds(3);

// ps and stats wait for every pComponent (up to 5 s on the monitor's side).
static constexpr Duration kClusterQueryTimeout = std::chrono::seconds(10);

FabricMonitorClient::FabricMonitorClient(Address monitor, std::string fabric)
    : m_monitor(std::move(monitor)), m_fabric(std::move(fabric)) {
  register_run_handlers();
}

FabricMonitorClient::~FabricMonitorClient() {
  if (m_transport) m_transport->stop();
}

Result<fabric::Connection*> FabricMonitorClient::connection() {
  if (m_connection && m_connection->is_open()) return m_connection.get();
  m_connection.reset();
  if (!m_transport) {
    m_transport = TRY(fabric::make_transport(m_fabric));
    m_transport->set_node_id(kConsoleNodeId);
  }
  auto connected = m_transport->connect(m_monitor, m_dispatcher.handler(), kConnectTimeout);
  if (!connected) {
    int code = connected.error().code();
    return make_error(
        code, "cannot reach monitor at " + m_monitor.to_string() + ": " + std::strerror(code));
  }
  m_connection = std::move(connected).value();
  return m_connection.get();
}

Result<fabric::Message> FabricMonitorClient::call(wire::Opcode opcode, wire::ByteView payload,
                                                  Duration timeout) {
  fabric::Connection* connection = TRY(this->connection());
  auto reply = connection->call(opcode, kNoVnode, payload, timeout);
  if (!reply) return transport_error(reply.error(), timeout);
  fabric::Message message = std::move(reply).value();
  if (message.status() != 0) {
    int code = message.status() > 0 ? message.status() : EPROTO;
    std::string text = wire::to_text(message.payload);
    return make_error(code, text.empty() ? std::string(std::strerror(code)) : text);
  }
  return message;
}

// The transport's own failures: say what they mean for the user.
Error FabricMonitorClient::transport_error(const Error& error, Duration timeout) const {
  int code = error.code();
  if (code == ETIMEDOUT) {
    return make_error(
        code, "the monitor at " + m_monitor.to_string() + " did not answer in " +
                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                  " s");
  }
  return make_error(code, "lost the connection to the monitor at " + m_monitor.to_string() +
                              ": " + std::strerror(code));
}

// A reply the monitor should never send; worth a clear word rather than a
// bare decoder message.
static Error bad_reply(const Error& error) {
  return make_error(error.code(), "bad reply from the monitor: " + error.message());
}

template <typename R>
static Result<std::vector<R>> decode_list(const fabric::Message& message) {
  auto head = wire::decode_with_tail<wire::Ctl2monListReply>(message.payload);
  if (!head) return bad_reply(head.error());
  auto records = wire::decode_records<R>(head->second, head->first.count);
  if (!records) return bad_reply(records.error());
  return std::move(records).value();
}

Result<std::vector<wire::NodeRecord>> FabricMonitorClient::nodes() {
  auto reply = TRY(call(wire::Opcode::CTL2MON_NODES, {}, kQueryTimeout));
  return decode_list<wire::NodeRecord>(reply);
}

Result<wire::VnodeRecord> FabricMonitorClient::vnode_create(std::string_view name,
                                                            const VnodeOptions& options) {
  wire::Ctl2monVnodeCreateRequest request{};
  request.name.set(name);
  request.cache = options.cache;
  request.memory = options.memory;
  request.image.set(options.image);
  request.flags = options.empty ? wire::kVnodeEmptyRoot : 0;
  // FixedString::set() truncates, so the names are checked before they go.
  TRY(wire::validate_vnode_name(name));
  TRY(request.validate());
  auto reply =
      TRY(call(wire::Opcode::CTL2MON_VNODE_CREATE, wire::as_bytes(request), kChangeTimeout));
  auto record = wire::decode<wire::VnodeRecord>(reply.payload);
  if (!record) return bad_reply(record.error());
  return record.value();
}

Result<std::vector<wire::VnodeRecord>> FabricMonitorClient::vnode_list() {
  auto reply = TRY(call(wire::Opcode::CTL2MON_VNODE_LIST, {}, kQueryTimeout));
  return decode_list<wire::VnodeRecord>(reply);
}

Result<void> FabricMonitorClient::vnode_destroy(std::string_view name) {
  TRY(wire::validate_vnode_name(name));
  wire::Ctl2monVnodeDestroyRequest request{};
  request.name.set(name);
  TRY(call(wire::Opcode::CTL2MON_VNODE_DESTROY, wire::as_bytes(request), kChangeTimeout));
  return {};
}

Result<ProcessListing> FabricMonitorClient::ps(std::string_view vnode) {
  wire::Ctl2monPsRequest request{};
  if (!vnode.empty()) TRY(wire::validate_vnode_name(vnode));
  request.vnode_name.set(vnode);
  auto reply = TRY(call(wire::Opcode::CTL2MON_PS, wire::as_bytes(request), kClusterQueryTimeout));
  auto list = wire::decode_cluster_list<wire::ProcessRecord>(reply.payload);
  if (!list) return bad_reply(list.error());
  return ProcessListing{std::move(list->second), list->first.unanswered};
}

Result<StatsListing> FabricMonitorClient::stats() {
  auto reply = TRY(call(wire::Opcode::CTL2MON_STATS, {}, kClusterQueryTimeout));
  auto list = wire::decode_cluster_list<wire::StatRecord>(reply.payload);
  if (!list) return bad_reply(list.error());
  return StatsListing{std::move(list->second), list->first.unanswered};
}

}  // namespace sk::console
