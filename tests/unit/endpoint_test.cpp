// rpc::Endpoint on its own, without a transport: a fake carrier records what
// the endpoint sends and the test plays the peer by delivering messages. The
// io_context runs on the test thread, so every step is deterministic except
// the timeouts, which wait on real (short) timers.
#include "kernel/rpc/endpoint.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>  // before asio: Boost 1.74 misses it
#include <vector>

using namespace std::chrono_literals;
using sk::Result;
using sk::fabric::Bytes;
using sk::fabric::Message;
using sk::fabric::Responder;
using sk::wire::Header;
using sk::wire::Opcode;

namespace {

constexpr Opcode kEcho = Opcode::P2M_PAGE_READ;
constexpr Opcode kOther = Opcode::P2M_PAGE_WRITE;
constexpr sk::NodeId kSelf = 4;

Bytes bytes_of(std::string_view text) {
  auto view = sk::wire::as_bytes(text);
  return Bytes(view.begin(), view.end());
}

struct Sent {
  Header header;
  Bytes payload;
};

// A connection whose carrier only records: the endpoint is all there is.
class FakeConnection final : public sk::fabric::Connection, public sk::rpc::Carrier {
 public:
  FakeConnection(boost::asio::io_context& io, sk::fabric::RequestHandler handler)
      : m_io(io), endpoint(io, *this, "fake-peer:1", std::move(handler)) {}

  void call_async(Opcode opcode, sk::VnodeId vnode, Bytes payload, sk::Duration timeout,
                  sk::fabric::ReplyCallback done) override {
    endpoint.call_async(opcode, vnode, std::move(payload), timeout, std::move(done));
  }
  void read_async(sk::fabric::RegionKey, uint64_t, std::span<std::byte>, sk::Duration,
                  sk::fabric::DoneCallback done) override {
    done(sk::make_error(EOPNOTSUPP, "fake"));
  }
  void write_async(sk::fabric::RegionKey, uint64_t, sk::fabric::ByteView, sk::Duration,
                   sk::fabric::DoneCallback done) override {
    done(sk::make_error(EOPNOTSUPP, "fake"));
  }
  void send_reply(const Header& request, int status, Bytes payload) override {
    endpoint.reply_async(request, status, std::move(payload));
  }
  void close() override {
    endpoint.close("connection to fake-peer:1 lost");
    endpoint.notify_closed();
  }
  bool is_open() const override { return !endpoint.closed(); }
  std::string peer() const override { return endpoint.peer(); }
  void set_close_handler(std::function<void()> handler) override {
    endpoint.set_close_handler(std::move(handler));
  }

  // rpc::Carrier.
  void send_message(const Header& header, Bytes payload) override {
    sent.push_back(Sent{header, std::move(payload)});
  }
  bool post(std::function<void()> fn) override {
    if (stopping) return false;
    boost::asio::post(m_io, std::move(fn));
    return true;
  }
  sk::NodeId local_node() const override { return kSelf; }
  std::shared_ptr<Connection> connection() override { return shared_from_this(); }

  boost::asio::io_context& m_io;
  sk::rpc::Endpoint endpoint;
  std::vector<Sent> sent;
  bool stopping = false;
};

class EndpointTest : public ::testing::Test {
 protected:
  void SetUp() override { make({}); }

  void make(sk::fabric::RequestHandler handler) {
    connection = std::make_shared<FakeConnection>(io, std::move(handler));
  }

  // Runs what is posted and due, without waiting.
  void settle() {
    io.restart();
    io.poll();
  }

  // Runs the io_context until `condition` holds or two seconds pass.
  template <typename Condition>
  bool run_until(Condition condition) {
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!condition() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(5ms);
    }
    return condition();
  }

  // The peer's reply to a request the endpoint sent.
  static Message reply_to(const Header& request, Bytes payload, int status = 0) {
    Header header = request;
    header.flags = sk::wire::kFlagReply;
    header.status = status;
    header.payload_length = static_cast<uint32_t>(payload.size());
    return Message{header, std::move(payload)};
  }

  static Message request(Opcode opcode, uint64_t id, Bytes payload) {
    Header header{};
    header.magic = sk::wire::kMagic;
    header.version = sk::wire::kVersion;
    header.opcode = static_cast<uint16_t>(opcode);
    header.vnode = 9;
    header.source = 7;
    header.request_id = id;
    header.payload_length = static_cast<uint32_t>(payload.size());
    return Message{header, std::move(payload)};
  }

  boost::asio::io_context io;
  std::shared_ptr<FakeConnection> connection;
};

TEST_F(EndpointTest, EachCallGetsAFreshIdAndItsOwnReply) {
  std::vector<std::optional<Result<Message>>> results(3);
  for (int i = 0; i < 3; ++i) {
    connection->endpoint.call(
        kEcho, 11, bytes_of("q" + std::to_string(i)), 10s,
        [&results, i](Result<Message> reply) { results[i] = std::move(reply); });
  }
  ASSERT_EQ(connection->sent.size(), 3u);
  EXPECT_EQ(connection->endpoint.outstanding(), 3u);
  for (const Sent& sent : connection->sent) {
    EXPECT_EQ(sent.header.magic, sk::wire::kMagic);
    EXPECT_EQ(sent.header.version, sk::wire::kVersion);
    EXPECT_EQ(sent.header.source, kSelf);
    EXPECT_EQ(sent.header.vnode, 11u);
    EXPECT_EQ(sent.header.opcode, static_cast<uint16_t>(kEcho));
    EXPECT_EQ(sent.header.flags & sk::wire::kFlagReply, 0);
    EXPECT_EQ(sent.header.payload_length, sent.payload.size());
  }
  EXPECT_NE(connection->sent[0].header.request_id, connection->sent[1].header.request_id);
  EXPECT_NE(connection->sent[1].header.request_id, connection->sent[2].header.request_id);
  EXPECT_NE(connection->sent[0].header.request_id, connection->sent[2].header.request_id);

  // Replies out of order: each reaches the call it answers.
  for (int i : {2, 0, 1}) {
    connection->endpoint.deliver(
        reply_to(connection->sent[i].header, bytes_of("r" + std::to_string(i))));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(results[i].has_value()) << i;
    ASSERT_TRUE(results[i]->ok()) << i;
    EXPECT_EQ(sk::wire::to_text((*results[i])->payload), "r" + std::to_string(i));
  }
  EXPECT_EQ(connection->endpoint.outstanding(), 0u);
}

TEST_F(EndpointTest, ErrorStatusReachesTheCallerAsAReply) {
  std::optional<Result<Message>> result;
  connection->endpoint.call(kEcho, 1, {}, 10s, [&](Result<Message> reply) { result = reply; });
  connection->endpoint.deliver(reply_to(connection->sent[0].header, bytes_of("no"), ENOENT));
  ASSERT_TRUE(result.has_value() && result->ok());
  EXPECT_EQ((*result)->status(), ENOENT);
}

TEST_F(EndpointTest, TimeoutFailsTheCallAndTheLateReplyIsDropped) {
  int calls = 0;
  std::optional<Result<Message>> result;
  auto start = std::chrono::steady_clock::now();
  connection->endpoint.call(kEcho, 1, {}, 50ms, [&](Result<Message> reply) {
    ++calls;
    result = std::move(reply);
  });
  ASSERT_TRUE(run_until([&] { return result.has_value(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  ASSERT_FALSE(result->ok());
  EXPECT_EQ(result->error().code(), ETIMEDOUT);
  EXPECT_EQ(connection->endpoint.outstanding(), 0u);

  // The reply comes after the caller gave up: it must not run the callback
  // again, nor disturb the next call.
  connection->endpoint.deliver(reply_to(connection->sent[0].header, bytes_of("late")));
  settle();
  EXPECT_EQ(calls, 1);
  std::optional<Result<Message>> next;
  connection->endpoint.call(kEcho, 1, {}, 10s, [&](Result<Message> reply) { next = reply; });
  ASSERT_EQ(connection->sent.size(), 2u);
  connection->endpoint.deliver(reply_to(connection->sent[1].header, bytes_of("next")));
  ASSERT_TRUE(next.has_value() && next->ok());
  EXPECT_EQ(sk::wire::to_text((*next)->payload), "next");
}

TEST_F(EndpointTest, AnsweredCallDoesNotTimeOutLater) {
  int calls = 0;
  connection->endpoint.call(kEcho, 1, {}, 30ms, [&](Result<Message> reply) {
    ++calls;
    EXPECT_TRUE(reply.ok());
  });
  connection->endpoint.deliver(reply_to(connection->sent[0].header, {}));
  auto until = std::chrono::steady_clock::now() + 100ms;
  while (std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(10ms);
  }
  EXPECT_EQ(calls, 1);
}

TEST_F(EndpointTest, ReplyNobodyAskedForIsDropped) {
  std::optional<Result<Message>> result;
  connection->endpoint.call(kEcho, 1, {}, 10s, [&](Result<Message> reply) { result = reply; });
  Header stray = connection->sent[0].header;
  stray.request_id += 1000;
  connection->endpoint.deliver(reply_to(stray, bytes_of("stray")));
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(connection->endpoint.outstanding(), 1u);
  connection->endpoint.deliver(reply_to(connection->sent[0].header, bytes_of("mine")));
  ASSERT_TRUE(result.has_value() && result->ok());
  EXPECT_EQ(sk::wire::to_text((*result)->payload), "mine");
}

TEST_F(EndpointTest, CloseFailsEveryOutstandingCallWithEconnreset) {
  std::vector<Result<Message>> results;
  for (int i = 0; i < 3; ++i) {
    connection->endpoint.call(kEcho, 1, {}, 10s,
                              [&](Result<Message> reply) { results.push_back(std::move(reply)); });
  }
  int closed = 0;
  connection->set_close_handler([&] { ++closed; });
  settle();
  connection->close();
  ASSERT_EQ(results.size(), 3u);
  for (const auto& result : results) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code(), ECONNRESET);
  }
  EXPECT_EQ(closed, 1);
  EXPECT_FALSE(connection->is_open());

  // A late reply to a failed call is dropped; new calls fail at once.
  connection->endpoint.deliver(reply_to(connection->sent[0].header, {}));
  EXPECT_EQ(results.size(), 3u);
  std::optional<Result<Message>> after;
  connection->endpoint.call(kEcho, 1, {}, 10s, [&](Result<Message> reply) { after = reply; });
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->error().code(), ECONNRESET);
  EXPECT_EQ(connection->sent.size(), 3u) << "nothing is sent once closed";

  // A close handler set after the close runs at once (once posted); the
  // first one never runs again.
  int late = 0;
  connection->set_close_handler([&] { ++late; });
  settle();
  EXPECT_EQ(late, 1);
  connection->endpoint.notify_closed();
  EXPECT_EQ(closed, 1);
}

TEST_F(EndpointTest, CallAsyncFromAnotherThreadAndAStoppingCarrier) {
  std::optional<Result<Message>> result;
  std::thread caller([&] {
    connection->call_async(kEcho, 3, bytes_of("x"), 10s,
                           [&](Result<Message> reply) { result = std::move(reply); });
  });
  caller.join();
  EXPECT_TRUE(connection->sent.empty()) << "the call runs on the io thread";
  settle();
  ASSERT_EQ(connection->sent.size(), 1u);
  connection->endpoint.deliver(reply_to(connection->sent[0].header, bytes_of("y")));
  ASSERT_TRUE(result.has_value() && result->ok());

  connection->stopping = true;
  std::optional<Result<Message>> refused;
  connection->call_async(kEcho, 3, {}, 10s, [&](Result<Message> reply) { refused = reply; });
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error().code(), ECONNRESET);
  int closed = 0;
  connection->set_close_handler([&] { ++closed; });
  EXPECT_EQ(closed, 1) << "a stopping transport runs the close handler at once";
}

TEST_F(EndpointTest, OversizedPayloads) {
  std::optional<Result<Message>> result;
  connection->endpoint.call(kEcho, 1, Bytes(sk::wire::kMaxPayload + 1), 10s,
                            [&](Result<Message> reply) { result = reply; });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->error().code(), EMSGSIZE);
  EXPECT_TRUE(connection->sent.empty());

  Header request = EndpointTest::request(kEcho, 5, {}).header;
  connection->endpoint.reply(request, 0, Bytes(sk::wire::kMaxPayload + 1));
  ASSERT_EQ(connection->sent.size(), 1u);
  EXPECT_EQ(connection->sent[0].header.status, EMSGSIZE);
  EXPECT_TRUE(connection->sent[0].payload.empty());
}

TEST_F(EndpointTest, MalformedHeadersAreRejectedWithAnErrorReply) {
  Header bad_magic = request(kEcho, 1, {}).header;
  bad_magic.magic = 0x12345678;
  auto checked = connection->endpoint.check_incoming(bad_magic);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.error().code(), EPROTO);
  EXPECT_TRUE(connection->endpoint.rejected());
  ASSERT_EQ(connection->sent.size(), 1u);
  const Sent& reply = connection->sent[0];
  EXPECT_EQ(reply.header.magic, sk::wire::kMagic);
  EXPECT_NE(reply.header.flags & sk::wire::kFlagReply, 0);
  EXPECT_EQ(reply.header.status, EPROTO);
  EXPECT_EQ(reply.header.payload_length, reply.payload.size());
  EXPECT_FALSE(reply.payload.empty()) << "the reply says why";
}

TEST_F(EndpointTest, OversizedLengthAndWrongVersionAreRejected) {
  Header oversized = request(kEcho, 1, {}).header;
  oversized.payload_length = sk::wire::kMaxPayload + 1;
  EXPECT_EQ(connection->endpoint.check_incoming(oversized).error().code(), EMSGSIZE);
  make({});
  Header version = request(kEcho, 1, {}).header;
  version.version = 99;
  EXPECT_EQ(connection->endpoint.check_incoming(version).error().code(), EPROTO);
  ASSERT_EQ(connection->sent.size(), 1u);
  EXPECT_EQ(connection->sent[0].header.status, EPROTO);

  make({});
  EXPECT_TRUE(connection->endpoint.check_incoming(request(kEcho, 1, {}).header).ok());
  EXPECT_FALSE(connection->endpoint.rejected());
  EXPECT_TRUE(connection->sent.empty());
}

TEST_F(EndpointTest, RequestsGoToTheHandlerAndRepliesCarryTheirId) {
  std::vector<Message> served;
  make([&](Message message, Responder responder) {
    served.push_back(message);
    responder.reply(bytes_of("re:" + sk::wire::to_text(message.payload)));
  });
  connection->endpoint.deliver(request(kEcho, 77, bytes_of("abc")));
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].source(), 7u);
  settle();  // the Responder's reply is posted
  ASSERT_EQ(connection->sent.size(), 1u);
  const Sent& reply = connection->sent[0];
  EXPECT_EQ(reply.header.request_id, 77u);
  EXPECT_EQ(reply.header.opcode, static_cast<uint16_t>(kEcho));
  EXPECT_EQ(reply.header.vnode, 9u);
  EXPECT_EQ(reply.header.source, kSelf);
  EXPECT_EQ(reply.header.status, 0);
  EXPECT_NE(reply.header.flags & sk::wire::kFlagReply, 0);
  EXPECT_EQ(sk::wire::to_text(reply.payload), "re:abc");
}

TEST_F(EndpointTest, PingIsEchoedAndWithoutAHandlerRequestsAreRefused) {
  connection->endpoint.deliver(request(Opcode::FABRIC_PING, 1, bytes_of("ping")));
  connection->endpoint.deliver(request(kEcho, 2, {}));
  settle();
  ASSERT_EQ(connection->sent.size(), 2u);
  EXPECT_EQ(connection->sent[0].header.request_id, 1u);
  EXPECT_EQ(connection->sent[0].header.status, 0);
  EXPECT_EQ(sk::wire::to_text(connection->sent[0].payload), "ping");
  EXPECT_EQ(connection->sent[1].header.request_id, 2u);
  EXPECT_EQ(connection->sent[1].header.status, EOPNOTSUPP);
}

TEST_F(EndpointTest, InternalOpcodesBypassTheHandler) {
  int handled = 0;
  make([&](Message, Responder responder) {
    ++handled;
    responder.reply();
  });
  int internal = 0;
  connection->endpoint.serve_internally(kOther, [&](Message, Responder responder) {
    ++internal;
    responder.fail(sk::make_error(EFAULT, "internal"));
  });
  connection->endpoint.deliver(request(kOther, 3, {}));
  connection->endpoint.deliver(request(kEcho, 4, {}));
  settle();
  EXPECT_EQ(internal, 1);
  EXPECT_EQ(handled, 1);
  ASSERT_EQ(connection->sent.size(), 2u);
  EXPECT_EQ(connection->sent[0].header.status, EFAULT);
  EXPECT_EQ(connection->sent[1].header.status, 0);
}

TEST_F(EndpointTest, DroppedResponderRepliesEioAndRepliesStopOnceClosed) {
  make([](Message, Responder) { /* dies unanswered */ });
  connection->endpoint.deliver(request(kEcho, 5, {}));
  settle();
  ASSERT_EQ(connection->sent.size(), 1u);
  EXPECT_EQ(connection->sent[0].header.status, EIO);

  connection->close();
  connection->send_reply(request(kEcho, 6, {}).header, 0, {});
  settle();
  EXPECT_EQ(connection->sent.size(), 1u);
}

}  // namespace
