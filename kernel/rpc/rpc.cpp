#include "kernel/rpc/rpc.h"

namespace sk::rpc {

static const Logger log("rpc");

Result<Message> check_reply(Result<Message> reply) {
  if (!reply) return std::move(reply).error();
  Message message = std::move(reply).value();
  if (message.status() != 0) {
    int code = message.status() > 0 ? message.status() : EPROTO;
    return make_error(code, wire::to_text(message.payload));
  }
  return message;
}

Result<Message> call(Connection& connection, wire::Opcode opcode, VnodeId vnode,
                     ByteView payload, Duration timeout) {
  return check_reply(connection.call(opcode, vnode, payload, timeout));
}

void Dispatcher::on(wire::Opcode opcode, SyncHandler handler) {
  m_sync[static_cast<uint16_t>(opcode)] = std::move(handler);
}

void Dispatcher::on_async(wire::Opcode opcode, AsyncHandler handler) {
  m_async[static_cast<uint16_t>(opcode)] = std::move(handler);
}

void Dispatcher::dispatch(Message request, Responder responder) const {
  uint16_t opcode = request.opcode();
  if (auto it = m_async.find(opcode); it != m_async.end()) {
    it->second(std::move(request), std::move(responder));
    return;
  }
  auto it = m_sync.find(opcode);
  if (it == m_sync.end()) {
    log.warn("{}: refused opcode {:#06x} ({}) from node {}", m_name, opcode,
             wire::opcode_name(opcode), request.source());
    responder.fail(make_error(EOPNOTSUPP, std::string(m_name) + " does not serve opcode " +
                                              std::string(wire::opcode_name(opcode))));
    return;
  }
  Result<Bytes> result = it->second(request, responder);
  if (result) {
    responder.reply(std::move(result).value());
  } else {
    const Error& error = result.error();
    log.debug("{}: {} failed: {}", m_name, wire::opcode_name(opcode), error.text());
    responder.fail(error);
  }
}

fabric::RequestHandler Dispatcher::handler() const {
  return [this](Message request, Responder responder) {
    dispatch(std::move(request), std::move(responder));
  };
}

}  // namespace sk::rpc
