#include "kernel/rpc/rpc.h"

#include <stdexcept>

namespace sk::rpc {

static const Logger log("rpc");

static std::string_view plane_name(wire::Plane plane) {
  switch (plane) {
    case wire::Plane::kFabric:
      return "fabric";
    case wire::Plane::kControl:
      return "control";
    case wire::Plane::kData:
      return "data";
  }
  return "unknown";
}

Result<Message> check_reply(Result<Message> reply) {
  if (!reply) return std::move(reply).error();
  Message message = std::move(reply).value();
  if (message.status() != 0) {
    int code = message.status() > 0 ? message.status() : EPROTO;
    return make_error(code, wire::to_text(message.payload));
  }
  return message;
}

Result<Message> call(Connection& connection, wire::Opcode opcode, VnodeId vnode, ByteView payload,
                     Duration timeout) {
  return check_reply(connection.call(opcode, vnode, payload, timeout));
}

void Dispatcher::check_plane(wire::Opcode opcode) const {
  auto raw = static_cast<uint16_t>(opcode);
  if (!m_plane || !wire::is_known_opcode(raw) || wire::plane_of(raw) == *m_plane) return;
  // A registration bug, found at start-up.
  throw std::logic_error(m_name + ": " + std::string(wire::opcode_name(raw)) + " is a " +
                         std::string(plane_name(wire::plane_of(raw))) +
                         "-plane opcode, registered on the " + std::string(plane_name(*m_plane)) +
                         " plane's dispatcher");
}

void Dispatcher::route(wire::Opcode opcode, AsyncHandler handler, Counter counted_by_handler) {
  check_plane(opcode);
  Route& route = m_routes[static_cast<uint16_t>(opcode)];
  route.handler = std::move(handler);
  route.counted_by_handler = counted_by_handler != nullptr;
  route.served = counted_by_handler ? std::move(counted_by_handler)
                                    : std::make_shared<std::atomic<uint64_t>>(0);
}

void Dispatcher::on(wire::Opcode opcode, SyncHandler handler) {
  route(opcode, [this, handler = std::move(handler)](Message request, Responder responder) {
    Result<Bytes> result = handler(request, responder);
    if (result) {
      responder.reply(std::move(result).value());
    } else {
      log_failure(request, result.error());
      responder.fail(result.error());
    }
  });
}

void Dispatcher::on_async(wire::Opcode opcode, AsyncHandler handler) {
  route(opcode, std::move(handler));
}

bool Dispatcher::serves(uint16_t opcode) const {
  if (m_routes.contains(opcode)) return true;
  for (const Dispatcher* plane : m_planes) {
    if (plane->serves(opcode)) return true;
  }
  return false;
}

void Dispatcher::dispatch(Message request, Responder responder) const {
  uint16_t opcode = request.opcode();
  if (auto it = m_routes.find(opcode); it != m_routes.end()) {
    const Route& route = it->second;
    if (!route.counted_by_handler) route.served->fetch_add(1, std::memory_order_relaxed);
    route.handler(std::move(request), std::move(responder));
    return;
  }
  for (const Dispatcher* plane : m_planes) {
    if (plane->serves(opcode)) {
      plane->dispatch(std::move(request), std::move(responder));
      return;
    }
  }
  log.warn("{}: refused opcode {:#06x} ({}) from node {}", m_name, opcode,
           wire::opcode_name(opcode), request.source());
  responder.fail(make_error(EOPNOTSUPP, std::string(m_name) + " does not serve opcode " +
                                            std::string(wire::opcode_name(opcode))));
}

std::map<std::string, uint64_t> Dispatcher::served() const {
  std::map<std::string, uint64_t> counts;
  for (const auto& [opcode, route] : m_routes) {
    if (uint64_t n = route.served->load(std::memory_order_relaxed)) {
      counts[std::string(wire::opcode_name(opcode))] += n;
    }
  }
  for (const Dispatcher* plane : m_planes) {
    for (const auto& [name, n] : plane->served()) counts[name] += n;
  }
  return counts;
}

void Dispatcher::refuse_malformed(const Message& request, const Error& error) const {
  log.debug("{}: refused a malformed {} from node {}: {}", m_name,
            wire::opcode_name(request.opcode()), request.source(), error.text());
}

void Dispatcher::log_failure(const Message& request, const Error& error) const {
  log.debug("{}: {} failed: {}", m_name, wire::opcode_name(request.opcode()), error.text());
}

fabric::RequestHandler Dispatcher::handler() const {
  return [this](Message request, Responder responder) {
    dispatch(std::move(request), std::move(responder));
  };
}

}  // namespace sk::rpc
