// The fake fabric the unit tests run on: that it keeps transport.h's
// promises (threads, ids, timeouts, closing, one-sided bounds, counters) and
// that each injected fault does what it says.
#include "tests/unit/fake_transport.h"

#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

namespace sk::testing {
namespace {

using namespace std::chrono_literals;
using fabric::Message;
using fabric::Responder;
using wire::Bytes;
using wire::Opcode;

constexpr auto kEcho = Opcode::FABRIC_PING;   // echoed by the endpoint itself
constexpr auto kAsk = Opcode::P2M_MM_CREATE;  // served by the test's handler

Bytes bytes(std::string_view text) {
  auto view = wire::as_bytes(text);
  return Bytes(view.begin(), view.end());
}

// A server whose handler answers each request with its payload, or keeps
// the Responder when told to hold.
class FakeTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server.set_node_id(1);
    client.set_node_id(2);
    address = server
                  .listen(Address{"fake", 0},
                          [this](Message message, Responder responder) {
                            std::lock_guard lock(mutex);
                            handler_thread = std::this_thread::get_id();
                            seen.push_back(wire::to_text(message.payload));
                            sources.push_back(message.source());
                            if (hold) {
                              held.push_back(std::move(responder));
                            } else {
                              responder.reply(std::move(message.payload));
                            }
                            wake.notify_all();
                          })
                  .value();
    connection = client.connect(address).value();
  }

  bool wait_seen(size_t count) {
    std::unique_lock lock(mutex);
    return wake.wait_for(lock, 5s, [&] { return seen.size() >= count; });
  }

  // The server's end of the link.
  std::shared_ptr<FakeConnection> server_end() {
    auto ends = server.connections();
    return ends.size() == 1 ? ends[0] : nullptr;
  }

  // What the server's handler saw; declared first so that it outlives the
  // transports (whose threads run the handler).
  std::mutex mutex;
  std::condition_variable wake;
  std::thread::id handler_thread;
  std::vector<std::string> seen;
  std::vector<NodeId> sources;
  bool hold = false;
  std::vector<Responder> held;

  FakeTransport server;
  FakeTransport client;
  Address address;
  std::shared_ptr<fabric::Connection> connection;
};

TEST_F(FakeTransportTest, CallsRunOnTheTransportsThreadsAndCarryTheSource) {
  std::promise<std::thread::id> callback_thread;
  connection->call_async(kAsk, 3, bytes("hello"), 5s, [&](Result<Message> reply) {
    EXPECT_TRUE(reply);
    if (reply) {
      EXPECT_EQ(wire::to_text(reply->payload), "hello");
      EXPECT_EQ(reply->source(), 1u);
      EXPECT_EQ(reply->vnode(), 3u);
    }
    callback_thread.set_value(std::this_thread::get_id());
  });
  auto reply_thread = callback_thread.get_future().get();
  EXPECT_NE(reply_thread, std::this_thread::get_id());
  std::lock_guard lock(mutex);
  EXPECT_NE(handler_thread, std::this_thread::get_id());
  EXPECT_NE(handler_thread, reply_thread);  // two transports, two threads
  EXPECT_EQ(sources.at(0), 2u);
  EXPECT_EQ(address.host, "fake");
  EXPECT_NE(address.port, 0);
}

TEST_F(FakeTransportTest, ManyOutstandingCallsGetTheirOwnReplies) {
  std::vector<std::future<Result<Message>>> replies;
  std::vector<std::shared_ptr<std::promise<Result<Message>>>> promises;
  for (int i = 0; i < 50; ++i) {
    auto promise = std::make_shared<std::promise<Result<Message>>>();
    replies.push_back(promise->get_future());
    connection->call_async(kAsk, 0, bytes(std::to_string(i)), 5s,
                           [promise](Result<Message> reply) { promise->set_value(reply); });
  }
  for (int i = 0; i < 50; ++i) {
    auto reply = replies[i].get();
    ASSERT_TRUE(reply) << reply.error().text();
    EXPECT_EQ(wire::to_text(reply->payload), std::to_string(i));
  }
}

TEST_F(FakeTransportTest, AnUnansweredCallTimesOutAndALateReplyIsDropped) {
  hold = true;
  auto reply = connection->call(kAsk, 0, bytes("slow"), 100ms);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ETIMEDOUT);
  {
    std::lock_guard lock(mutex);
    hold = false;
    ASSERT_EQ(held.size(), 1u);
    held[0].reply(bytes("late"));
  }
  auto next = connection->call(kAsk, 0, bytes("next"));
  ASSERT_TRUE(next) << next.error().text();
  EXPECT_EQ(wire::to_text(next->payload), "next");
}

TEST_F(FakeTransportTest, ADroppedResponderRepliesEio) {
  hold = true;
  std::promise<Result<Message>> promise;
  connection->call_async(kAsk, 0, {}, 5s, [&](Result<Message> reply) { promise.set_value(reply); });
  ASSERT_TRUE(wait_seen(1));
  {
    std::lock_guard lock(mutex);
    held.clear();
  }
  auto reply = promise.get_future().get();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status(), EIO);
}

TEST_F(FakeTransportTest, ConnectionsAreSymmetric) {
  auto back = server_end();
  ASSERT_TRUE(back);
  // The client connected without a handler: the listener's requests are refused.
  auto refused = back->call(kAsk, 0, {});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status(), EOPNOTSUPP);
  auto echoed = back->call(kEcho, 0, bytes("ping"));
  ASSERT_TRUE(echoed);
  EXPECT_EQ(wire::to_text(echoed->payload), "ping");

  auto served = client.connect(address, [](Message message, Responder responder) {
    responder.reply(bytes("from client " + wire::to_text(message.payload)));
  });
  ASSERT_TRUE(served);
  std::multiset<std::string> answers;
  for (const auto& end : server.connections()) {
    auto reply = end->call(kAsk, 0, bytes("x"));
    ASSERT_TRUE(reply);
    answers.insert(reply->status() == 0 ? wire::to_text(reply->payload)
                                        : std::to_string(reply->status()));
  }
  EXPECT_EQ(answers, (std::multiset<std::string>{"from client x", std::to_string(EOPNOTSUPP)}));
}

TEST_F(FakeTransportTest, ConnectAndListenFailuresAreClear) {
  auto nowhere = client.connect(Address{"fake", 65000});
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error().code(), ECONNREFUSED);
  auto taken = client.listen(address, {});
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code(), EADDRINUSE);
  server.stop();
  server.stop();  // idempotent
  auto stopped = client.connect(address);
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code(), ECONNREFUSED);
}

TEST_F(FakeTransportTest, CloseFailsOutstandingCallsAndRunsCloseHandlersOnBothEnds) {
  hold = true;
  auto back = server_end();
  ASSERT_TRUE(back);
  std::promise<void> client_closed;
  std::promise<void> server_closed;
  connection->set_close_handler([&] { client_closed.set_value(); });
  back->set_close_handler([&] { server_closed.set_value(); });
  std::promise<Result<Message>> call;
  connection->call_async(kAsk, 0, {}, 5s, [&](Result<Message> reply) { call.set_value(reply); });
  ASSERT_TRUE(wait_seen(1));
  back->close();
  auto reply = call.get_future().get();
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ECONNRESET);
  EXPECT_EQ(client_closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(server_closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(connection->is_open());
  EXPECT_FALSE(back->is_open());
  auto after = connection->call(kAsk, 0, {});
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), ECONNRESET);
  // A close handler set after the close runs at once.
  std::promise<void> late;
  connection->set_close_handler([&] { late.set_value(); });
  EXPECT_EQ(late.get_future().wait_for(5s), std::future_status::ready);
}

TEST_F(FakeTransportTest, StoppingTheTransportClosesItsConnections) {
  hold = true;
  std::promise<Result<Message>> call;
  connection->call_async(kAsk, 0, {}, 5s, [&](Result<Message> reply) { call.set_value(reply); });
  ASSERT_TRUE(wait_seen(1));
  server.stop();
  auto reply = call.get_future().get();
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ECONNRESET);
}

// ---- faults -----------------------------------------------------------------

TEST_F(FakeTransportTest, ADroppedRequestTimesOutAndTheNextGetsThrough) {
  std::dynamic_pointer_cast<FakeConnection>(connection)
      ->inject(Fault{.kind = FaultKind::kDrop, .on = FaultOn::kRequests, .count = 1});
  auto lost = connection->call(kAsk, 0, bytes("lost"), 100ms);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code(), ETIMEDOUT);
  auto next = connection->call(kAsk, 0, bytes("next"));
  ASSERT_TRUE(next) << next.error().text();
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen, std::vector<std::string>{"next"});  // the server never saw the first
}

TEST_F(FakeTransportTest, ADroppedReplyTimesOutAfterTheServerRan) {
  server.inject(Fault{.kind = FaultKind::kDrop, .on = FaultOn::kReplies, .opcode = kAsk});
  auto lost = connection->call(kAsk, 0, bytes("a"), 100ms);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code(), ETIMEDOUT);
  EXPECT_TRUE(connection->call(kEcho, 0, {}));  // other opcodes pass
  server.clear_faults();
  EXPECT_TRUE(connection->call(kAsk, 0, bytes("b")));
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
}

TEST_F(FakeTransportTest, ADelayedReplyArrivesLateOrTimesOut) {
  server.inject(Fault{.kind = FaultKind::kDelay, .on = FaultOn::kReplies, .delay = 300ms});
  auto start = std::chrono::steady_clock::now();
  auto slow = connection->call(kAsk, 0, bytes("slow"));
  ASSERT_TRUE(slow) << slow.error().text();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  auto impatient = connection->call(kAsk, 0, bytes("impatient"), 50ms);
  ASSERT_FALSE(impatient);
  EXPECT_EQ(impatient.error().code(), ETIMEDOUT);
}

TEST_F(FakeTransportTest, AReorderedMessageArrivesAfterTheNext) {
  std::dynamic_pointer_cast<FakeConnection>(connection)
      ->inject(Fault{.kind = FaultKind::kReorder, .on = FaultOn::kRequests, .count = 1});
  std::promise<void> first_done;
  std::promise<void> second_done;
  connection->call_async(kAsk, 0, bytes("first"), 5s, [&](auto) { first_done.set_value(); });
  connection->call_async(kAsk, 0, bytes("second"), 5s, [&](auto) { second_done.set_value(); });
  EXPECT_EQ(first_done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(second_done.get_future().wait_for(5s), std::future_status::ready);
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen, (std::vector<std::string>{"second", "first"}));
}

TEST_F(FakeTransportTest, AClosingFaultKillsTheLinkMidCall) {
  std::promise<void> client_closed;
  connection->set_close_handler([&] { client_closed.set_value(); });
  server.inject(Fault{.kind = FaultKind::kClose, .on = FaultOn::kReplies});
  auto reply = connection->call(kAsk, 0, bytes("doomed"));
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ECONNRESET);
  EXPECT_EQ(client_closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(server.connections().empty());
  EXPECT_TRUE(wait_seen(1));  // the server ran the request; its reply died with the link
}

TEST_F(FakeTransportTest, AConnectionsFaultsLeaveOtherConnectionsAlone) {
  auto other = client.connect(address).value();
  std::dynamic_pointer_cast<FakeConnection>(connection)->inject(Fault{.kind = FaultKind::kDrop});
  EXPECT_FALSE(connection->call(kAsk, 0, {}, 50ms));
  EXPECT_TRUE(other->call(kAsk, 0, {}));
  std::dynamic_pointer_cast<FakeConnection>(connection)->clear_faults();
  EXPECT_TRUE(connection->call(kAsk, 0, {}));
}

// ---- one-sided access and counters ------------------------------------------

TEST_F(FakeTransportTest, OneSidedAccessIsBoundedByTheRegion) {
  std::vector<std::byte> memory(64, std::byte{1});
  auto key = server.register_region(memory).value();
  EXPECT_EQ(key.length, 64u);

  Bytes data(16, std::byte{7});
  ASSERT_TRUE(connection->write(key, 48, data));
  EXPECT_EQ(memory[48], std::byte{7});
  EXPECT_EQ(memory[47], std::byte{1});
  Bytes into(64);
  ASSERT_TRUE(connection->read(key, 0, into));
  EXPECT_EQ(into, Bytes(memory.begin(), memory.end()));

  Bytes small(1);
  EXPECT_EQ(connection->read(key, 64, small).error().code(), EFAULT);
  EXPECT_EQ(connection->write(key, 49, data).error().code(), EFAULT);
  EXPECT_EQ(connection->read(key, ~0ull, small).error().code(), EFAULT);
  EXPECT_TRUE(connection->read(key, 64, std::span<std::byte>()));  // an empty range at the end
  auto unknown = key;
  unknown.rkey += 100;
  EXPECT_EQ(connection->read(unknown, 0, small).error().code(), EINVAL);
  server.deregister_region(key.rkey);
  EXPECT_EQ(connection->write(key, 0, small).error().code(), EINVAL);
  {
    std::lock_guard lock(mutex);
    EXPECT_TRUE(seen.empty());  // the server's handler never ran
  }
  auto counters = client.counters();
  EXPECT_EQ(counters.one_sided_reads, 2u);
  EXPECT_EQ(counters.one_sided_writes, 1u);
  EXPECT_EQ(counters.one_sided_bytes, 64u + 16u);
}

TEST_F(FakeTransportTest, ADroppedOneSidedAccessTimesOut) {
  std::vector<std::byte> memory(8);
  auto key = server.register_region(memory).value();
  client.inject(Fault{.kind = FaultKind::kDrop, .opcode = Opcode::FABRIC_READ, .count = 1});
  Bytes into(8);
  EXPECT_EQ(connection->read(key, 0, into, 50ms).error().code(), ETIMEDOUT);
  EXPECT_TRUE(connection->read(key, 0, into));
}

TEST_F(FakeTransportTest, CountersMoveOnBothEnds) {
  ASSERT_TRUE(connection->call(kAsk, 0, bytes("12345")));
  auto sent = client.counters();
  auto got = server.counters();
  EXPECT_EQ(sent.connections_made, 1u);
  EXPECT_EQ(got.connections_accepted, 1u);
  EXPECT_EQ(sent.messages_sent, 1u);
  EXPECT_EQ(sent.bytes_sent, sizeof(wire::Header) + 5);
  EXPECT_EQ(got.messages_received, 1u);
  EXPECT_EQ(got.bytes_received, sizeof(wire::Header) + 5);
  EXPECT_EQ(got.messages_sent, 1u);
  EXPECT_EQ(sent.messages_received, 1u);
}

}  // namespace
}  // namespace sk::testing
