// The P2M_ client (see mcomponent_client.h). Lock order: m_mutex only.
#include "pcomponent/memory/mcomponent_client.h"

#include <condition_variable>
#include <cstring>
#include <optional>

#include "kernel/log.h"
#include "kernel/wire/memory_messages.h"
#include "kernel/wire/messages.h"

namespace sk::pcomponent::memory {

static const Logger log("mclient");

using wire::Opcode;

// After a failed connect, calls fail at once for this long rather than
// each waiting for a connect timeout.
static constexpr Duration kReconnectBackoff = std::chrono::milliseconds(500);
static constexpr Duration kConnectTimeout = std::chrono::seconds(2);

McomponentClient::McomponentClient(fabric::Transport& transport, NodeId node, Address address,
                                   Duration timeout)
    : m_transport(transport), m_node(node), m_address(std::move(address)), m_timeout(timeout) {}

std::string McomponentClient::name() const {
  return "mComponent " + std::to_string(m_node) + " (" + m_address.to_string() + ")";
}

Result<std::shared_ptr<fabric::Connection>> McomponentClient::connection(Lane lane) {
  std::lock_guard lock(m_mutex);
  auto& slot = m_connections[lane];
  if (slot && slot->is_open()) return slot;
  slot.reset();
  auto now = Clock::now();
  if (m_failed_at != Clock::time_point{} && now - m_failed_at < kReconnectBackoff) {
    return make_error(EIO, name() + " is unreachable");
  }
  auto connected = m_transport.connect(m_address, {}, kConnectTimeout);
  if (!connected) {
    m_failed_at = now;
    log.warn("cannot reach {}: {}", name(), connected.error().text());
    return make_error(EIO, "connect to " + name() + ": " + connected.error().text());
  }
  m_failed_at = {};
  slot = std::move(connected).value();
  return slot;
}

void McomponentClient::forget(const std::shared_ptr<fabric::Connection>& broken) {
  std::lock_guard lock(m_mutex);
  for (auto& connection : m_connections) {
    if (connection == broken) connection.reset();
  }
}

template <Opcode Op>
Result<std::vector<wire::ReplyOf<Op>>> McomponentClient::call_all(
    VnodeId vnode, std::vector<wire::RequestOf<Op>> requests, Lane lane) {
  std::vector<wire::Bytes> payloads;
  payloads.reserve(requests.size());
  for (auto& request : requests) payloads.push_back(TRY(wire::body_encode(std::move(request))));
  auto connection = TRY(this->connection(lane));
  struct State {
    std::mutex mutex;
    std::condition_variable done;
    size_t waiting = 0;
    std::vector<std::optional<Result<fabric::Message>>> replies;
  };
  auto state = std::make_shared<State>();
  state->waiting = payloads.size();
  state->replies.resize(payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    connection->call_async(Op, vnode, std::move(payloads[i]), m_timeout,
                           [state, i](Result<fabric::Message> reply) {
                             std::lock_guard lock(state->mutex);
                             state->replies[i] = std::move(reply);
                             if (--state->waiting == 0) state->done.notify_all();
                           });
  }
  std::unique_lock lock(state->mutex);
  state->done.wait(lock, [&] { return state->waiting == 0; });
  std::vector<wire::ReplyOf<Op>> results;
  results.reserve(state->replies.size());
  std::string what(wire::opcode_name(static_cast<uint16_t>(Op)));
  for (auto& reply : state->replies) {
    if (!reply->ok()) {
      // The transport's error: the mComponent is gone or unreachable.
      forget(connection);
      return make_error(EIO, what + " to " + name() + ": " + reply->error().text());
    }
    fabric::Message& message = reply->value();
    if (message.status() != 0) {
      return make_error(message.status(), name() + ": " + wire::to_text(message.payload));
    }
    auto body = wire::body_decode<wire::ReplyOf<Op>>(std::move(message.payload));
    if (!body) return make_error(EIO, "bad reply from " + name() + ": " + body.error().text());
    results.push_back(std::move(body).value());
  }
  return results;
}

Result<uint64_t> McomponentClient::create_mm(VnodeId vnode) {
  auto replies = TRY(call_all<Opcode::P2M_MM_CREATE>(vnode, {wire::Empty{}}));
  return replies.at(0).mm;
}

Result<uint64_t> McomponentClient::fork_mm(VnodeId vnode, uint64_t mm) {
  auto replies = TRY(call_all<Opcode::P2M_MM_FORK>(vnode, {wire::P2mMmForkRequest{mm}}));
  return replies.at(0).mm;
}

Result<void> McomponentClient::free_mm(VnodeId vnode, uint64_t mm) {
  TRY(call_all<Opcode::P2M_MM_FREE>(vnode, {wire::P2mMmFreeRequest{mm}}));
  return {};
}

Result<wire::Bytes> McomponentClient::read(VnodeId vnode, uint64_t mm, uint64_t address,
                                           uint32_t count) {
  auto replies = TRY(
      call_all<Opcode::P2M_PAGE_READ>(vnode, {wire::P2mPageRange{mm, address, count, 0}}, kFaults));
  wire::Tail& pages = replies.at(0).bytes;
  if (pages.size() != static_cast<size_t>(count) * wire::kPageSize) {
    return make_error(EIO, "bad reply from " + name() + ": " + std::to_string(pages.size()) +
                               " bytes for " + std::to_string(count) + " pages");
  }
  return std::move(pages).take();
}

Result<void> McomponentClient::write(VnodeId vnode, uint64_t mm, std::span<const Run> runs) {
  if (runs.empty()) return {};
  std::vector<wire::Tailed<wire::P2mPageRange>> requests;
  requests.reserve(runs.size());
  for (const Run& run : runs) {
    // Copied once, into room behind the head, so that encoding moves it.
    wire::Tail pages = wire::Tail::with_room(sizeof(wire::P2mPageRange), run.data.size());
    std::memcpy(pages.span().data(), run.data.data(), run.data.size());
    requests.push_back({wire::P2mPageRange{mm, run.address, run.count, 0}, std::move(pages)});
  }
  TRY(call_all<Opcode::P2M_PAGE_WRITE>(vnode, std::move(requests)));
  return {};
}

Result<void> McomponentClient::free(VnodeId vnode, uint64_t mm, uint64_t address, uint64_t pages) {
  std::vector<wire::P2mPageRange> requests;
  while (pages > 0) {
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(pages, wire::kMaxPagesPerMessage));
    requests.push_back(wire::P2mPageRange{mm, address, count, 0});
    address += uint64_t{count} * wire::kPageSize;
    pages -= count;
  }
  if (requests.empty()) return {};
  TRY(call_all<Opcode::P2M_PAGE_FREE>(vnode, std::move(requests)));
  return {};
}

Result<void> McomponentClient::move(VnodeId vnode, uint64_t mm, uint64_t from, uint64_t to,
                                    uint64_t pages) {
  std::vector<wire::P2mPageMoveRequest> requests;
  while (pages > 0) {
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(pages, wire::kMaxPagesPerMove));
    requests.push_back(wire::P2mPageMoveRequest{mm, from, to, count, 0});
    from += uint64_t{count} * wire::kPageSize;
    to += uint64_t{count} * wire::kPageSize;
    pages -= count;
  }
  if (requests.empty()) return {};
  TRY(call_all<Opcode::P2M_PAGE_MOVE>(vnode, std::move(requests)));
  return {};
}

}  // namespace sk::pcomponent::memory
