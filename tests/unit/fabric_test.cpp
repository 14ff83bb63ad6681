// Fabric tests: RPC round trips, many concurrent requests, timeouts, a peer
// that disappears mid-request, one-sided read/write, and malformed streams,
// run against every transport this build has (tcp on the host; the verbs
// transport joins the list inside the QEMU cluster).
#include <gtest/gtest.h>

#include <utility>  // before asio: Boost 1.74 misses it
#include <boost/asio.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "kernel/fabric/transport.h"
#include "kernel/rpc/rpc.h"

using namespace std::chrono_literals;
using sk::Address;
using sk::fabric::Bytes;
using sk::fabric::Connection;
using sk::fabric::Message;
using sk::fabric::Responder;
using sk::fabric::Transport;
using sk::wire::Opcode;

namespace {

Bytes bytes_of(std::string_view text) {
  auto view = sk::wire::as_bytes(text);
  return Bytes(view.begin(), view.end());
}

// Opcodes the tests use as application requests: any opcode the dispatcher
// routes will do, since the transport does not interpret them.
constexpr Opcode kEcho = Opcode::P2M_PAGE_READ;
constexpr Opcode kHold = Opcode::P2M_PAGE_WRITE;
constexpr Opcode kDrop = Opcode::P2M_PAGE_FREE;

class FabricTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    server = std::move(sk::fabric::make_transport(GetParam())).value();
    client = std::move(sk::fabric::make_transport(GetParam())).value();
    server->set_node_id(2);
    client->set_node_id(3);
    dispatcher.on(kEcho, [this](const Message& request, const Responder&) -> sk::Result<Bytes> {
      ++served;
      return request.payload;
    });
    dispatcher.on_async(kHold, [this](Message, Responder responder) {
      std::lock_guard lock(held_mutex);
      held.push_back(std::move(responder));
      held_cv.notify_all();
    });
    dispatcher.on_async(kDrop, [](Message, Responder) { /* responder dies unanswered */ });
    address = std::move(server->listen({"127.0.0.1", 0}, dispatcher.handler())).value();
    connection = std::move(client->connect(address)).value();
  }

  void TearDown() override {
    {
      std::lock_guard lock(held_mutex);
      held.clear();
    }
    client->stop();
    server->stop();
  }

  void wait_held(size_t count) {
    std::unique_lock lock(held_mutex);
    held_cv.wait_for(lock, 5s, [&] { return held.size() >= count; });
  }

  sk::rpc::Dispatcher dispatcher{"test"};
  std::unique_ptr<Transport> server;
  std::unique_ptr<Transport> client;
  Address address;
  std::shared_ptr<Connection> connection;
  std::atomic<int> served{0};
  std::mutex held_mutex;
  std::condition_variable held_cv;
  std::vector<Responder> held;
};

TEST_P(FabricTest, RoundTripCarriesPayloadAndHeader) {
  auto reply = connection->call(kEcho, 42, sk::wire::as_bytes(std::string_view("hello")));
  ASSERT_TRUE(reply.ok()) << reply.error().text();
  EXPECT_EQ(sk::wire::to_text(reply->payload), "hello");
  EXPECT_EQ(reply->header.status, 0);
  EXPECT_EQ(reply->header.vnode, 42u);
  EXPECT_EQ(reply->header.source, 2u);
  EXPECT_EQ(reply->header.opcode, static_cast<uint16_t>(kEcho));
}

TEST_P(FabricTest, EmptyAndLargePayloads) {
  auto empty = connection->call(kEcho, 1, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->payload.empty());

  Bytes large(sk::wire::kMaxPayload);
  for (size_t i = 0; i < large.size(); ++i) large[i] = std::byte(i * 7 + 3);
  auto reply = connection->call(kEcho, 1, large);
  ASSERT_TRUE(reply.ok()) << reply.error().text();
  EXPECT_EQ(reply->payload, large);
}

TEST_P(FabricTest, ManyConcurrentRequestsFromSeveralThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<int> good{0};
  std::atomic<int> done{0};
  std::promise<void> all_done;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string text = std::to_string(t) + ":" + std::to_string(i);
        connection->call_async(kEcho, 7, bytes_of(text), 10s, [&, text](sk::Result<Message> reply) {
          if (reply.ok() && sk::wire::to_text(reply->payload) == text) ++good;
          if (++done == kThreads * kPerThread) all_done.set_value();
        });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(all_done.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(good.load(), kThreads * kPerThread);
  EXPECT_EQ(served.load(), kThreads * kPerThread);
}

TEST_P(FabricTest, TimeoutThenLateReplyIsDroppedAndConnectionStillWorks) {
  auto start = std::chrono::steady_clock::now();
  auto reply = connection->call(kHold, 1, {}, 200ms);
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ETIMEDOUT);
  EXPECT_GE(waited, 190ms);
  EXPECT_LT(waited, 3s);

  // The server answers after the caller gave up: the reply must be dropped
  // without disturbing the next call.
  wait_held(1);
  {
    std::lock_guard lock(held_mutex);
    held.front().reply(bytes_of("late"));
  }
  auto next = connection->call(kEcho, 1, sk::wire::as_bytes(std::string_view("next")));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(sk::wire::to_text(next->payload), "next");
}

TEST_P(FabricTest, PeerDisappearsMidRequest) {
  std::promise<sk::Result<Message>> result;
  connection->call_async(kHold, 1, {}, 30s,
                         [&](sk::Result<Message> reply) { result.set_value(std::move(reply)); });
  wait_held(1);
  auto start = std::chrono::steady_clock::now();
  // The server goes away while holding the request unanswered.
  server->stop();
  auto future = result.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto reply = future.get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ECONNRESET);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  auto after = connection->call(kEcho, 1, {}, 2s);
  ASSERT_FALSE(after.ok());
  EXPECT_TRUE(after.error().code() == ECONNRESET || after.error().code() == ENOTCONN);
}

TEST_P(FabricTest, CloseHandlerRunsWhenPeerGoes) {
  std::promise<void> closed;
  connection->set_close_handler([&] { closed.set_value(); });
  server->stop();
  EXPECT_EQ(closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(connection->is_open());
}

TEST_P(FabricTest, DroppedResponderRepliesEio) {
  auto reply = sk::rpc::call(*connection, kDrop, 1, {}, 2s);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), EIO);
}

TEST_P(FabricTest, UnknownOpcodeIsRefusedAndServerKeepsServing) {
  auto reply = sk::rpc::call(*connection, Opcode::C2MON_JOIN, 1, {});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), EOPNOTSUPP);
  EXPECT_TRUE(connection->call(kEcho, 1, {}).ok());
}

TEST_P(FabricTest, OneSidedReadWrite) {
  std::vector<std::byte> memory(64 * 1024, std::byte{0});
  auto key = server->register_region(memory);
  ASSERT_TRUE(key.ok());

  Bytes data = bytes_of("one-sided payload");
  ASSERT_TRUE(connection->write(*key, 4096, data).ok());
  EXPECT_EQ(std::memcmp(memory.data() + 4096, data.data(), data.size()), 0);

  std::memset(memory.data() + 100, 0x5a, 4096);
  Bytes back(4096);
  ASSERT_TRUE(connection->read(*key, 100, back).ok());
  for (auto b : back) ASSERT_EQ(b, std::byte{0x5a});

  // The whole region, exactly.
  Bytes whole(memory.size());
  ASSERT_TRUE(connection->read(*key, 0, whole).ok());
  EXPECT_EQ(std::memcmp(whole.data(), memory.data(), memory.size()), 0);
  EXPECT_EQ(served.load(), 0) << "one-sided ops must not reach the request handler";
}

TEST_P(FabricTest, OneSidedBoundsAndKeysAreChecked) {
  std::vector<std::byte> memory(8192);
  auto key = std::move(server->register_region(memory)).value();
  Bytes buffer(16);
  auto past_end = connection->read(key, 8190, buffer);
  ASSERT_FALSE(past_end.ok());
  EXPECT_EQ(past_end.error().code(), EFAULT);
  auto huge_offset = connection->write(key, ~0ull - 4, buffer);
  ASSERT_FALSE(huge_offset.ok());
  EXPECT_EQ(huge_offset.error().code(), EFAULT);
  sk::fabric::RegionKey bogus{key.rkey + 100, 8192};
  auto unknown = connection->read(bogus, 0, buffer);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), EINVAL);

  server->deregister_region(key.rkey);
  auto gone = connection->read(key, 0, buffer);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), EINVAL);
}

TEST_P(FabricTest, ListenerCanCallBackOnAcceptedConnection) {
  // The monitor talks to components over the connection they opened.
  sk::rpc::Dispatcher client_side("client");
  client_side.on(kEcho, [](const Message& request, const Responder&) -> sk::Result<Bytes> {
    Bytes reply = request.payload;
    reply.push_back(std::byte{'!'});
    return reply;
  });
  std::promise<std::shared_ptr<Connection>> accepted;
  sk::rpc::Dispatcher server_side("server");
  server_side.on(kEcho, [&](const Message&, const Responder& responder) -> sk::Result<Bytes> {
    accepted.set_value(responder.connection());
    return Bytes{};
  });
  auto other = std::move(sk::fabric::make_transport(GetParam())).value();
  auto other_address = std::move(other->listen({"127.0.0.1", 0}, server_side.handler())).value();
  auto outgoing = std::move(client->connect(other_address, client_side.handler())).value();
  ASSERT_TRUE(outgoing->call(kEcho, 1, {}).ok());
  auto back = accepted.get_future().get();
  auto reply = sk::rpc::call(*back, kEcho, 1, sk::wire::as_bytes(std::string_view("ping")));
  ASSERT_TRUE(reply.ok()) << reply.error().text();
  EXPECT_EQ(sk::wire::to_text(reply->payload), "ping!");
  other->stop();
}

TEST_P(FabricTest, ConnectFailuresAreClear) {
  auto refused = client->connect({"127.0.0.1", 1}, {}, 2s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ECONNREFUSED);
  auto bad_host = client->connect({"no-such-host.invalid", 7070}, {}, 2s);
  ASSERT_FALSE(bad_host.ok());
  client->stop();
  auto stopped = client->connect(address, {}, 1s);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(connection->call(kEcho, 1, {}).error().code(), ECONNRESET);
}

INSTANTIATE_TEST_SUITE_P(Transports, FabricTest, ::testing::Values("tcp"));

// ---- malformed byte streams against a live tcp listener --------------------

class RawStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server = std::move(sk::fabric::make_transport("tcp")).value();
    dispatcher.on(kEcho, [](const Message& request, const Responder&) -> sk::Result<Bytes> {
      return request.payload;
    });
    address = std::move(server->listen({"127.0.0.1", 0}, dispatcher.handler())).value();
  }
  void TearDown() override { server->stop(); }

  boost::asio::ip::tcp::socket raw_connect() {
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), address.port});
    return socket;
  }

  // Reads one reply header (and its payload); nullopt on EOF.
  std::optional<sk::wire::Header> read_reply(boost::asio::ip::tcp::socket& socket) {
    sk::wire::Header header{};
    boost::system::error_code error;
    boost::asio::read(socket, boost::asio::buffer(&header, sizeof header), error);
    if (error) return std::nullopt;
    std::vector<char> payload(header.payload_length);
    boost::asio::read(socket, boost::asio::buffer(payload), error);
    return header;
  }

  bool still_serves() {
    auto client = std::move(sk::fabric::make_transport("tcp")).value();
    auto connection = client->connect(address, {}, 2s);
    if (!connection.ok()) return false;
    auto reply = connection.value()->call(kEcho, 1, sk::wire::as_bytes(std::string_view("ok")), 2s);
    return reply.ok() && sk::wire::to_text(reply->payload) == "ok";
  }

  boost::asio::io_context io;
  sk::rpc::Dispatcher dispatcher{"raw"};
  std::unique_ptr<Transport> server;
  Address address;
};

TEST_F(RawStreamTest, GarbageGetsErrorReplyAndClose) {
  auto socket = raw_connect();
  std::string garbage(200, 'x');
  boost::asio::write(socket, boost::asio::buffer(garbage));
  auto reply = read_reply(socket);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->magic, sk::wire::kMagic);
  EXPECT_EQ(reply->status, EPROTO);
  EXPECT_NE(reply->flags & sk::wire::kFlagReply, 0);
  EXPECT_FALSE(read_reply(socket).has_value()) << "connection should be closed";
  EXPECT_TRUE(still_serves());
}

TEST_F(RawStreamTest, OversizedLengthIsRejected) {
  auto socket = raw_connect();
  sk::wire::Header header{};
  header.magic = sk::wire::kMagic;
  header.version = sk::wire::kVersion;
  header.opcode = static_cast<uint16_t>(kEcho);
  header.payload_length = 0xfffffff0u;
  boost::asio::write(socket, boost::asio::buffer(&header, sizeof header));
  auto reply = read_reply(socket);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, EMSGSIZE);
  EXPECT_TRUE(still_serves());
}

TEST_F(RawStreamTest, WrongVersionIsRejected) {
  auto socket = raw_connect();
  sk::wire::Header header{};
  header.magic = sk::wire::kMagic;
  header.version = 99;
  boost::asio::write(socket, boost::asio::buffer(&header, sizeof header));
  auto reply = read_reply(socket);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, EPROTO);
  EXPECT_TRUE(still_serves());
}

TEST_F(RawStreamTest, TruncatedMessageThenHangUp) {
  {
    auto socket = raw_connect();
    sk::wire::Header header{};
    header.magic = sk::wire::kMagic;
    header.version = sk::wire::kVersion;
    header.opcode = static_cast<uint16_t>(kEcho);
    header.payload_length = 1000;
    boost::asio::write(socket, boost::asio::buffer(&header, sizeof header));
    boost::asio::write(socket, boost::asio::buffer(std::string(10, 'y')));
  }  // hang up mid-payload
  {
    auto socket = raw_connect();
    boost::asio::write(socket, boost::asio::buffer(std::string(7, 'z')));
  }  // hang up mid-header
  EXPECT_TRUE(still_serves());
}

TEST_F(RawStreamTest, ValidRequestOnRawSocketWorks) {
  auto socket = raw_connect();
  sk::wire::Header header{};
  header.magic = sk::wire::kMagic;
  header.version = sk::wire::kVersion;
  header.opcode = static_cast<uint16_t>(kEcho);
  header.request_id = 77;
  header.payload_length = 3;
  boost::asio::write(socket, boost::asio::buffer(&header, sizeof header));
  boost::asio::write(socket, boost::asio::buffer(std::string("abc")));
  auto reply = read_reply(socket);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 0);
  EXPECT_EQ(reply->request_id, 77u);
  EXPECT_EQ(reply->payload_length, 3u);
}

}  // namespace
