// A Connection with no network behind it, for driving a Dispatcher in unit
// tests: send_reply() records each reply (status and payload) so the test
// can check it, and calls fail at once with ENOTCONN. Replies may come from
// any thread (servers with worker pools); wait_for_replies() waits for them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"
#include "kernel/wire/codec.h"

namespace sk::testing {

class FakeConnection final : public fabric::Connection {
 public:
  struct Reply {
    wire::Header request{};
    int status = 0;
    wire::Bytes payload;
    std::string text() const { return wire::to_text(payload); }
  };

  void call_async(wire::Opcode, VnodeId, wire::Bytes, Duration,
                  fabric::ReplyCallback done) override {
    done(make_error(ENOTCONN, "fake connection"));
  }
  void read_async(fabric::RegionKey, uint64_t, std::span<std::byte>, Duration,
                  fabric::DoneCallback done) override {
    done(make_error(ENOTCONN, "fake connection"));
  }
  void write_async(fabric::RegionKey, uint64_t, wire::ByteView, Duration,
                   fabric::DoneCallback done) override {
    done(make_error(ENOTCONN, "fake connection"));
  }
  void send_reply(const wire::Header& request, int status, wire::Bytes payload) override {
    {
      std::lock_guard lock(m_mutex);
      m_replies.push_back(Reply{request, status, std::move(payload)});
    }
    m_wake.notify_all();
  }
  void close() override { m_open = false; }
  bool is_open() const override { return m_open; }
  std::string peer() const override { return "fake"; }
  void set_close_handler(std::function<void()>) override {}

  // Waits until `count` replies have come (or 5 s passed) and returns them.
  std::vector<Reply> wait_for_replies(size_t count) {
    std::unique_lock lock(m_mutex);
    m_wake.wait_for(lock, std::chrono::seconds(5), [&] { return m_replies.size() >= count; });
    return m_replies;
  }
  std::vector<Reply> replies() {
    std::lock_guard lock(m_mutex);
    return m_replies;
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::vector<Reply> m_replies;
  bool m_open = true;
};

// A request as a transport would deliver it: a checked header and a payload.
inline fabric::Message make_request(uint16_t opcode, VnodeId vnode, wire::Bytes payload,
                                    NodeId source = 2) {
  static uint64_t next_id = 1;
  fabric::Message message;
  message.header.magic = wire::kMagic;
  message.header.version = wire::kVersion;
  message.header.opcode = opcode;
  message.header.source = source;
  message.header.vnode = vnode;
  message.header.request_id = next_id++;
  message.header.payload_length = static_cast<uint32_t>(payload.size());
  message.payload = std::move(payload);
  return message;
}

inline fabric::Message make_request(wire::Opcode opcode, VnodeId vnode, wire::Bytes payload = {},
                                    NodeId source = 2) {
  return make_request(static_cast<uint16_t>(opcode), vnode, std::move(payload), source);
}

// Dispatches one request on a fresh fake connection and returns its reply
// (waiting for servers that reply from their own threads).
inline FakeConnection::Reply dispatch(const rpc::Dispatcher& dispatcher, fabric::Message request) {
  auto connection = std::make_shared<FakeConnection>();
  fabric::Responder responder(connection, request.header);
  dispatcher.dispatch(std::move(request), std::move(responder));
  auto replies = connection->wait_for_replies(1);
  if (replies.empty()) return FakeConnection::Reply{{}, -1, {}};  // no reply: the test fails
  return replies.front();
}

}  // namespace sk::testing
