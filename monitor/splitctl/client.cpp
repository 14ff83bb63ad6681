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

template <wire::Opcode Op>
Result<wire::ReplyOf<Op>> FabricMonitorClient::call(wire::RequestOf<Op> request, Duration timeout) {
  fabric::Connection* connection = TRY(this->connection());
  auto payload = TRY(wire::body_encode(std::move(request)));
  auto reply = connection->call(Op, kNoVnode, payload, timeout);
  if (!reply) return transport_error(reply.error(), timeout);
  fabric::Message message = std::move(reply).value();
  if (message.status() != 0) {
    int code = message.status() > 0 ? message.status() : EPROTO;
    std::string text = wire::to_text(message.payload);
    return make_error(code, text.empty() ? std::string(std::strerror(code)) : text);
  }
  auto body = wire::body_decode<wire::ReplyOf<Op>>(std::move(message.payload));
  if (!body) return bad_reply(body.error());
  return body;
}

Result<std::vector<wire::NodeRecord>> FabricMonitorClient::nodes() {
  auto list = TRY(call<wire::Opcode::CTL2MON_NODES>(wire::Empty{}, kQueryTimeout));
  return std::move(list.records);
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
  return call<wire::Opcode::CTL2MON_VNODE_CREATE>(request, kChangeTimeout);
}

Result<std::vector<wire::VnodeRecord>> FabricMonitorClient::vnode_list() {
  auto list = TRY(call<wire::Opcode::CTL2MON_VNODE_LIST>(wire::Empty{}, kQueryTimeout));
  return std::move(list.records);
}

Result<void> FabricMonitorClient::vnode_destroy(std::string_view name) {
  TRY(wire::validate_vnode_name(name));
  wire::Ctl2monVnodeDestroyRequest request{};
  request.name.set(name);
  TRY(call<wire::Opcode::CTL2MON_VNODE_DESTROY>(request, kChangeTimeout));
  return {};
}

Result<ProcessListing> FabricMonitorClient::ps(std::string_view vnode) {
  wire::Ctl2monPsRequest request{};
  if (!vnode.empty()) TRY(wire::validate_vnode_name(vnode));
  request.vnode_name.set(vnode);
  auto list = TRY(call<wire::Opcode::CTL2MON_PS>(request, kClusterQueryTimeout));
  return ProcessListing{std::move(list.records), list.head.unanswered};
}

Result<StatsListing> FabricMonitorClient::stats() {
  auto list = TRY(call<wire::Opcode::CTL2MON_STATS>(wire::Empty{}, kClusterQueryTimeout));
  return StatsListing{std::move(list.records), list.head.unanswered};
}

}  // namespace sk::console
