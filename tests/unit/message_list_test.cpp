// The message list (kernel/wire/message_list.h) and the typed dispatch built
// on it (kernel/rpc/rpc.h): every opcode's request and reply body
// round-trips and turns garbage into an Error; a typed handler never sees a
// malformed or mismatched request; the typed call decodes the reply.
#include "kernel/wire/message_list.h"

#include <gtest/gtest.h>
#include <linux/fs.h>

#include <future>
#include <random>
#include <thread>

#include "kernel/node.h"
#include "kernel/rpc/rpc.h"
#include "tests/unit/fake_transport.h"

namespace sk {
namespace {

using wire::Bytes;
using wire::Opcode;

template <typename T>
struct Tag {};

// A valid value of each body type that the list uses.
template <wire::WireMessage T>
T sample(Tag<T>) {
  T message{};
  return message;
}

wire::JoinRequest sample(Tag<wire::JoinRequest>) {
  wire::JoinRequest join{};
  join.kind = static_cast<uint8_t>(NodeKind::kMcomponent);
  join.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  join.capacity = 1 << 20;
  join.address.set("127.0.0.1:4000");
  return join;
}

wire::NodeRecord sample(Tag<wire::NodeRecord>) {
  wire::NodeRecord record{};
  record.id = 3;
  record.kind = static_cast<uint8_t>(NodeKind::kPcomponent);
  record.state = static_cast<uint8_t>(NodeState::kAlive);
  record.fabric = static_cast<uint8_t>(wire::FabricKind::kTcp);
  record.address.set("10.0.0.1:1");
  return record;
}

wire::VnodeCreateRequest sample(Tag<wire::VnodeCreateRequest>) {
  wire::VnodeCreateRequest request{};
  request.name.set("web");
  return request;
}

wire::VnodeRecord sample(Tag<wire::VnodeRecord>) {
  wire::VnodeRecord record{};
  record.id = 4;
  record.name.set("web");
  record.image.set("default");
  return record;
}

wire::VnodeDestroyRequest sample(Tag<wire::VnodeDestroyRequest>) {
  wire::VnodeDestroyRequest request{};
  request.name.set("web");
  return request;
}

wire::VnodeSetup sample(Tag<wire::VnodeSetup>) {
  wire::VnodeSetup setup{};
  setup.vnode = 1;
  setup.name.set("web");
  return setup;
}

wire::VnodeTeardown sample(Tag<wire::VnodeTeardown>) {
  return wire::VnodeTeardown{1, 0};
}

wire::RunSignal sample(Tag<wire::RunSignal>) {
  return wire::RunSignal{7, 15, 0};
}

wire::PsRequest sample(Tag<wire::PsRequest>) {
  wire::PsRequest request{};
  request.vnode_name.set("web");
  return request;
}

wire::ProcessRecord sample(Tag<wire::ProcessRecord>) {
  wire::ProcessRecord record{};
  record.pid = 1;
  record.state = 'S';
  record.vnode_name.set("web");
  record.command.set("sh");
  return record;
}

wire::StatRecord sample(Tag<wire::StatRecord>) {
  return wire::make_stat("tracer", "stops", 9);
}

wire::PageRange sample(Tag<wire::PageRange>) {
  return wire::PageRange{5, 0x400000, 2, 0};
}

wire::PageMove sample(Tag<wire::PageMove>) {
  return wire::PageMove{5, 0x400000, 0x800000, 3, 0};
}

wire::MemoryPlaceRequest sample(Tag<wire::MemoryPlaceRequest>) {
  return wire::MemoryPlaceRequest{1, 0, 64 << 20};
}

wire::MemoryPlaceReply sample(Tag<wire::MemoryPlaceReply>) {
  wire::MemoryPlaceReply reply{};
  reply.node = 2;
  reply.address.set("127.0.0.1:5000");
  return reply;
}

wire::StoragePathRequest sample(Tag<wire::StoragePathRequest>) {
  return wire::StoragePathRequest{4, 0};  // "/etc"
}
wire::StorageReadRequest sample(Tag<wire::StorageReadRequest>) {
  return wire::StorageReadRequest{0, 100, 4};
}
wire::StorageWriteRequest sample(Tag<wire::StorageWriteRequest>) {
  return wire::StorageWriteRequest{0, 3, 4, 0, 0};
}
wire::StorageMakeRequest sample(Tag<wire::StorageMakeRequest>) {
  return wire::StorageMakeRequest{0, 0644, 0, 0, 0, 4, 0};
}
wire::StorageTwoPathRequest sample(Tag<wire::StorageTwoPathRequest>) {
  return wire::StorageTwoPathRequest{4, 4, RENAME_NOREPLACE, 0};
}
wire::StorageReaddirRequest sample(Tag<wire::StorageReaddirRequest>) {
  return wire::StorageReaddirRequest{0, 4096, 4};
}
wire::StorageSetattrRequest sample(Tag<wire::StorageSetattrRequest>) {
  wire::StorageSetattrRequest request{};
  request.valid = wire::kSetMode;
  request.mode = 0600;
  request.path_length = 4;
  return request;
}

wire::Empty sample(Tag<wire::Empty>) {
  return {};
}

wire::RawBytes sample(Tag<wire::RawBytes>) {
  return {wire::Tail(std::string_view("pages"))};
}

template <wire::WireMessage T>
wire::Tailed<T> sample(Tag<wire::Tailed<T>>) {
  return {sample(Tag<T>{}), wire::Tail(std::string_view("tail bytes"))};
}

wire::RunInputBody sample(Tag<wire::RunInputBody>) {
  return wire::RunInputBody::of(wire::RunInput{7, 0, wire::kInputEof},
                                wire::Tail(std::string_view("in")));
}
wire::RunOutputBody sample(Tag<wire::RunOutputBody>) {
  wire::RunOutput head{};
  head.run = 7;
  head.stream = static_cast<uint8_t>(wire::RunStream::kStderr);
  return wire::RunOutputBody::of(head, wire::Tail(std::string_view("out")));
}
wire::RunExitBody sample(Tag<wire::RunExitBody>) {
  return wire::RunExitBody::of(wire::RunExit{7, 255, 0, wire::kExitLost, 0},
                               wire::Tail(std::string_view("lost")));
}
wire::StorageData sample(Tag<wire::StorageData>) {
  return wire::StorageData::of(wire::StorageDataReply{}, wire::Tail(std::string_view("data")));
}

template <wire::WireMessage Head, wire::WireMessage R>
wire::RecordList<Head, R> sample(Tag<wire::RecordList<Head, R>>) {
  wire::RecordList<Head, R> list{};
  list.records = {sample(Tag<R>{}), sample(Tag<R>{})};
  return list;
}

wire::RunCommand sample(Tag<wire::RunCommand>) {
  wire::RunCommand command;
  command.request.vnode_name.set("web");
  command.cwd = "/";
  command.argv = {"sh", "-c", "true"};
  command.env = {"PATH=/bin"};
  return command;
}

template <wire::WireMessage T>
wire::StorageBody<T> sample(Tag<wire::StorageBody<T>>) {
  T message = sample(Tag<T>{});
  wire::StorageTail layout = wire::storage_tail(message);
  std::string second = layout.second == 0 ? "" : "/tmp";
  std::string data = layout.data == 0 ? "" : "abc";
  return wire::StorageBody<T>::make(message, "/etc", second,
                                    wire::as_bytes(std::string_view(data)));
}

wire::StorageListing sample(Tag<wire::StorageListing>) {
  Bytes entries(sizeof(wire::StorageReaddirReply));
  wire::append_dirent(entries, 10, 1, 4, "etc");
  wire::append_dirent(entries, 11, 2, 8, "passwd");
  return {wire::StorageReaddirReply{2, wire::kReaddirEnd},
          wire::Tail(std::move(entries), sizeof(wire::StorageReaddirReply))};
}

template <wire::Body B>
B sample() {
  return sample(Tag<B>{});
}

Bytes garbage(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  Bytes bytes(size);
  for (auto& b : bytes) b = std::byte(static_cast<uint8_t>(random()));
  return bytes;
}

// Encode, decode, encode again: the same bytes; then every truncation and
// some garbage decode to a value or an Error, never a crash, and a fixed
// struct of the wrong size is EBADMSG.
template <wire::Body B>
void expect_round_trip(std::string_view what) {
  SCOPED_TRACE(std::string(what));
  auto bytes = wire::body_encode(sample<B>());
  ASSERT_TRUE(bytes) << bytes.error().text();
  auto decoded = wire::body_decode<B>(wire::ByteView(*bytes));
  ASSERT_TRUE(decoded) << decoded.error().text();
  auto again = wire::body_encode(std::move(decoded).value());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *bytes);
  for (size_t length = 0; length < bytes->size(); ++length) {
    (void)wire::body_decode<B>(wire::ByteView(*bytes).first(length));
  }
  for (uint32_t seed = 0; seed < 40; ++seed) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{8}, bytes->size(), bytes->size() + 1}) {
      (void)wire::body_decode<B>(garbage(size, seed * 131 + static_cast<uint32_t>(size)));
    }
  }
  if constexpr (wire::WireMessage<B>) {
    Bytes longer = *bytes;
    longer.push_back(std::byte{0});
    auto refused = wire::body_decode<B>(std::move(longer));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), EBADMSG);
  }
}

TEST(MessageList, EveryEntryRoundTripsAndRefusesGarbage) {
#define SK_TEST_ENTRY(name, value)                                    \
  expect_round_trip<wire::RequestOf<Opcode::name>>(#name " request"); \
  expect_round_trip<wire::ReplyOf<Opcode::name>>(#name " reply");
  SK_WIRE_OPCODES(SK_TEST_ENTRY)
#undef SK_TEST_ENTRY
}

TEST(MessageList, PlanesFollowTheDirections) {
  EXPECT_EQ(wire::plane_of(static_cast<uint16_t>(Opcode::FABRIC_PING)), wire::Plane::kFabric);
  EXPECT_EQ(wire::plane_of(static_cast<uint16_t>(Opcode::P2M_PAGE_READ)), wire::Plane::kData);
  EXPECT_EQ(wire::plane_of(static_cast<uint16_t>(Opcode::P2S_STATFS)), wire::Plane::kData);
  EXPECT_EQ(wire::plane_of(static_cast<uint16_t>(Opcode::MON2M_VNODE_CREATE)),
            wire::Plane::kControl);
  EXPECT_EQ(wire::plane_of(static_cast<uint16_t>(Opcode::P2MON_MEMORY_PLACE)),
            wire::Plane::kControl);
  EXPECT_EQ(wire::plane_of(0x7777), wire::Plane::kFabric);
}

TEST(MessageList, BodiesThatRepeatTheHeaderMustMatchIt) {
  wire::Header header{};
  header.vnode = 1;
  EXPECT_TRUE(wire::check_against_header(sample<wire::VnodeSetup>(), header));
  header.vnode = 2;
  EXPECT_EQ(wire::check_against_header(sample<wire::VnodeSetup>(), header).error().code(), EINVAL);
  EXPECT_EQ(wire::check_against_header(wire::VnodeTeardown{0, 0}, header).error().code(), EINVAL);
  EXPECT_EQ(wire::check_against_header(sample<wire::MemoryPlaceRequest>(), header).error().code(),
            EINVAL);
  // Bodies without the vNode are not checked.
  EXPECT_TRUE(wire::check_against_header(sample<wire::PageRange>(), header));
}

TEST(MessageList, SizedTailsMustMatchTheirLength) {
  auto body = sample<wire::RunOutputBody>();
  body.head.length = 99;
  EXPECT_FALSE(wire::body_encode(std::move(body)));
  wire::RunOutput head = sample<wire::RunOutputBody>().head;
  auto bytes = wire::encode(head, wire::as_bytes(std::string_view("four")));
  EXPECT_EQ(wire::body_decode<wire::RunOutputBody>(std::move(bytes)).error().code(), EBADMSG);
}

TEST(MessageList, StorageBodiesSplitTheirTail) {
  auto body = sample<wire::StorageBody<wire::StorageTwoPathRequest>>();
  EXPECT_EQ(body.path(), "/etc");
  EXPECT_EQ(body.second(), "/tmp");
  auto write = sample<wire::StorageBody<wire::StorageWriteRequest>>();
  EXPECT_EQ(wire::to_text(write.data()), "abc");
  auto listing = sample<wire::StorageListing>().list();
  ASSERT_TRUE(listing);
  ASSERT_EQ(listing->size(), 2u);
  EXPECT_EQ((*listing)[1].name, "passwd");
}

// ---- typed dispatch -----------------------------------------------------------

using testing::dispatch;
using testing::make_request;

TEST(TypedDispatch, MalformedRequestsNeverReachTheHandler) {
  rpc::DataDispatcher dispatcher("test");
  int calls = 0;
  dispatcher.on<Opcode::P2M_PAGE_FREE>(
      [&](const wire::PageRange& range, const rpc::Message& request) -> Result<void> {
        ++calls;
        EXPECT_EQ(range.count, 2u);
        EXPECT_EQ(request.vnode(), 3u);
        return {};
      });
  auto good = wire::encode(sample<wire::PageRange>());
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 3, good)).status, 0);
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 3, Bytes(3))).status, EBADMSG);
  auto unaligned = sample<wire::PageRange>();
  unaligned.address += 1;
  EXPECT_EQ(
      dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 3, wire::encode(unaligned))).status,
      EINVAL);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(dispatcher.served()["P2M_PAGE_FREE"], 3u);
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_READ, 3, good)).status, EOPNOTSUPP);
}

TEST(TypedDispatch, HeaderMismatchIsRefusedBeforeTheHandler) {
  rpc::ControlDispatcher dispatcher("test");
  int calls = 0;
  dispatcher.on<Opcode::MON2M_VNODE_DESTROY>(
      [&](const wire::VnodeTeardown&, const rpc::Message&) -> Result<void> {
        ++calls;
        return {};
      });
  auto body = wire::encode(wire::VnodeTeardown{1, 0});
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::MON2M_VNODE_DESTROY, 2, body)).status,
            EINVAL);
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::MON2M_VNODE_DESTROY, 1, body)).status, 0);
  EXPECT_EQ(calls, 1);
}

TEST(TypedDispatch, HandlersOnAPoolRunOffTheCallingThreadAndStopWithIt) {
  rpc::WorkerPool pool("test server", 2);
  rpc::ControlDispatcher dispatcher("test");
  auto caller = std::this_thread::get_id();
  dispatcher.on<Opcode::CTL2MON_VNODE_CREATE>(
      pool,
      [&](const wire::VnodeCreateRequest& request,
          const rpc::Message&) -> Result<wire::VnodeRecord> {
        EXPECT_TRUE(std::this_thread::get_id() != caller);
        wire::VnodeRecord record{};
        record.name = request.name;
        return record;
      });
  auto body = wire::encode(sample<wire::VnodeCreateRequest>());
  auto reply = dispatch(dispatcher, make_request(Opcode::CTL2MON_VNODE_CREATE, 0, body));
  ASSERT_EQ(reply.status, 0) << reply.text();
  EXPECT_EQ(wire::decode<wire::VnodeRecord>(reply.payload)->name.view(), "web");
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::CTL2MON_VNODE_CREATE, 0, Bytes(1))).status,
            EBADMSG);
  EXPECT_EQ(dispatcher.served()["CTL2MON_VNODE_CREATE"], 2u);
  pool.stop();
  reply = dispatch(dispatcher, make_request(Opcode::CTL2MON_VNODE_CREATE, 0, body));
  EXPECT_EQ(reply.status, ESHUTDOWN);
  EXPECT_EQ(reply.text(), "the test server is shutting down");
  EXPECT_EQ(dispatcher.served()["CTL2MON_VNODE_CREATE"], 2u);
}

TEST(TypedDispatch, DeferredHandlersReplyLater) {
  rpc::ControlDispatcher dispatcher("test");
  std::optional<rpc::ReplyTo<Opcode::CTL2MON_STDIN>> held;
  std::promise<void> handled;  // the handler runs on the server's fabric thread
  dispatcher.on_deferred<Opcode::CTL2MON_STDIN>(
      [&](wire::RunInputBody input, rpc::Message, rpc::ReplyTo<Opcode::CTL2MON_STDIN> reply) {
        EXPECT_EQ(input.tail.text(), "in");
        held.emplace(std::move(reply));
        handled.set_value();
      });
  testing::DispatchLink link(dispatcher);
  link.send(make_request(Opcode::CTL2MON_STDIN, 0,
                         wire::body_encode(sample<wire::RunInputBody>()).value()));
  ASSERT_EQ(handled.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(link.server().counters().messages_sent, 0u);  // no reply yet
  EXPECT_TRUE(link.replies().empty());
  ASSERT_TRUE(held);
  held->reply(wire::Empty{});
  auto replies = link.wait_for_replies(1);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status, 0);
}

TEST(TypedDispatch, OneDispatcherServesBothPlanes) {
  rpc::ControlDispatcher control("both");
  rpc::DataDispatcher data("both");
  rpc::Dispatcher all("both", {&control, &data});
  control.on<Opcode::MON2M_VNODE_CREATE>(
      [](const wire::VnodeSetup&, const rpc::Message&) -> Result<void> { return {}; });
  data.on<Opcode::P2M_MM_CREATE>([](const wire::Empty&, const rpc::Message&) {
    return Result<wire::MmCreateReply>(wire::MmCreateReply{9});
  });
  EXPECT_EQ(dispatch(all, make_request(Opcode::MON2M_VNODE_CREATE, 1,
                                       wire::encode(sample<wire::VnodeSetup>())))
                .status,
            0);
  auto reply = dispatch(all, make_request(Opcode::P2M_MM_CREATE, 1));
  ASSERT_EQ(reply.status, 0);
  EXPECT_EQ(wire::decode<wire::MmCreateReply>(reply.payload)->mm, 9u);
  EXPECT_EQ(dispatch(all, make_request(Opcode::P2M_MM_CREATE, 1, Bytes(1))).status, EBADMSG);
  EXPECT_EQ(dispatch(all, make_request(Opcode::C2MON_JOIN, 1)).status, EOPNOTSUPP);
  EXPECT_EQ(all.served()["P2M_MM_CREATE"], 2u);
  // The untyped form checks the plane at run time.
  EXPECT_THROW(control.on(Opcode::P2M_PAGE_READ,
                          [](const rpc::Message&, const rpc::Responder&) -> Result<Bytes> {
                            return Bytes{};
                          }),
               std::logic_error);
}

TEST(TypedCall, EncodesTheRequestAndDecodesTheReply) {
  rpc::DataDispatcher server("server");
  server.on<Opcode::P2M_PAGE_READ>(
      [](const wire::PageRange& range, const rpc::Message&) -> Result<wire::RawBytes> {
        return wire::RawBytes{wire::Tail(Bytes(range.count * wire::kPageSize, std::byte{7}), 0)};
      });
  server.on<Opcode::P2M_MM_FREE>(
      [](const wire::MmFreeRequest& free, const rpc::Message&) -> Result<void> {
        if (free.mm != 5) return make_error(ENOENT, "no mm " + std::to_string(free.mm));
        return {};
      });
  testing::DispatchLink link(server);
  fabric::Connection& connection = *link.connection();
  auto pages = rpc::call<Opcode::P2M_PAGE_READ>(connection, 1, sample<wire::PageRange>());
  ASSERT_TRUE(pages) << pages.error().text();
  EXPECT_EQ(pages->bytes.size(), 2 * wire::kPageSize);
  EXPECT_TRUE(rpc::call<Opcode::P2M_MM_FREE>(connection, 1, wire::MmFreeRequest{5}));
  auto missing = rpc::call<Opcode::P2M_MM_FREE>(connection, 1, wire::MmFreeRequest{6});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  EXPECT_EQ(missing.error().message(), "no mm 6");

  std::promise<Result<wire::Empty>> got;  // set on the client's fabric thread
  rpc::call_async<Opcode::P2M_MM_FREE>(
      connection, 1, wire::MmFreeRequest{5}, std::chrono::seconds(1),
      [&](Result<wire::Empty> reply) { got.set_value(std::move(reply)); });
  EXPECT_TRUE(got.get_future().get());
}

}  // namespace
}  // namespace sk
