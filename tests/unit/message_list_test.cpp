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

wire::C2monJoinRequest sample(Tag<wire::C2monJoinRequest>) {
  wire::C2monJoinRequest join{};
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

wire::Ctl2monVnodeCreateRequest sample(Tag<wire::Ctl2monVnodeCreateRequest>) {
  wire::Ctl2monVnodeCreateRequest request{};
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

wire::Ctl2monVnodeDestroyRequest sample(Tag<wire::Ctl2monVnodeDestroyRequest>) {
  wire::Ctl2monVnodeDestroyRequest request{};
  request.name.set("web");
  return request;
}

wire::Mon2cVnodeCreateRequest sample(Tag<wire::Mon2cVnodeCreateRequest>) {
  wire::Mon2cVnodeCreateRequest setup{};
  setup.vnode = 1;
  setup.name.set("web");
  return setup;
}

wire::Mon2cVnodeDestroyRequest sample(Tag<wire::Mon2cVnodeDestroyRequest>) {
  return wire::Mon2cVnodeDestroyRequest{1, 0};
}

wire::Ctl2pRunSignal sample(Tag<wire::Ctl2pRunSignal>) {
  return wire::Ctl2pRunSignal{7, 15, 0};
}

wire::Ctl2monPsRequest sample(Tag<wire::Ctl2monPsRequest>) {
  wire::Ctl2monPsRequest request{};
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

wire::P2mPageRange sample(Tag<wire::P2mPageRange>) {
  return wire::P2mPageRange{5, 0x400000, 2, 0};
}

wire::P2mPageMoveRequest sample(Tag<wire::P2mPageMoveRequest>) {
  return wire::P2mPageMoveRequest{5, 0x400000, 0x800000, 3, 0};
}

wire::P2monMemoryPlaceRequest sample(Tag<wire::P2monMemoryPlaceRequest>) {
  return wire::P2monMemoryPlaceRequest{1, 0, 64 << 20};
}

wire::P2monMemoryPlaceReply sample(Tag<wire::P2monMemoryPlaceReply>) {
  wire::P2monMemoryPlaceReply reply{};
  reply.node = 2;
  reply.address.set("127.0.0.1:5000");
  return reply;
}

wire::P2sPathRequest sample(Tag<wire::P2sPathRequest>) {
  return wire::P2sPathRequest{4, 0};  // "/etc"
}
wire::P2sReadRequest sample(Tag<wire::P2sReadRequest>) {
  return wire::P2sReadRequest{0, 100, 4};
}
wire::P2sWriteRequest sample(Tag<wire::P2sWriteRequest>) {
  return wire::P2sWriteRequest{0, 3, 4, 0, 0};
}
wire::P2sMakeRequest sample(Tag<wire::P2sMakeRequest>) {
  return wire::P2sMakeRequest{0, 0644, 0, 0, 0, 4, 0};
}
wire::P2sTwoPathRequest sample(Tag<wire::P2sTwoPathRequest>) {
  return wire::P2sTwoPathRequest{4, 4, RENAME_NOREPLACE, 0};
}
wire::P2sReaddirRequest sample(Tag<wire::P2sReaddirRequest>) {
  return wire::P2sReaddirRequest{0, 4096, 4};
}
wire::P2sSetattrRequest sample(Tag<wire::P2sSetattrRequest>) {
  wire::P2sSetattrRequest request{};
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
  return wire::RunInputBody::of(wire::Ctl2pRunInput{7, 0, wire::kInputEof},
                                wire::Tail(std::string_view("in")));
}
wire::RunOutputBody sample(Tag<wire::RunOutputBody>) {
  wire::P2ctlRunOutput head{};
  head.run = 7;
  head.stream = static_cast<uint8_t>(wire::RunStream::kStderr);
  return wire::RunOutputBody::of(head, wire::Tail(std::string_view("out")));
}
wire::RunExitBody sample(Tag<wire::RunExitBody>) {
  return wire::RunExitBody::of(wire::P2ctlRunExit{7, 255, 0, wire::kExitLost, 0},
                               wire::Tail(std::string_view("lost")));
}
wire::StorageData sample(Tag<wire::StorageData>) {
  return wire::StorageData::of(wire::P2sDataReply{}, wire::Tail(std::string_view("data")));
}

template <wire::WireMessage Head, wire::WireMessage R>
wire::RecordList<Head, R> sample(Tag<wire::RecordList<Head, R>>) {
  wire::RecordList<Head, R> list{};
  list.records = {sample(Tag<R>{}), sample(Tag<R>{})};
  return list;
}

wire::Ctl2pRunCommand sample(Tag<wire::Ctl2pRunCommand>) {
  wire::Ctl2pRunCommand command;
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
  Bytes entries(sizeof(wire::P2sReaddirReply));
  wire::append_dirent(entries, 10, 1, 4, "etc");
  wire::append_dirent(entries, 11, 2, 8, "passwd");
  return {wire::P2sReaddirReply{2, wire::kReaddirEnd},
          wire::Tail(std::move(entries), sizeof(wire::P2sReaddirReply))};
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
  EXPECT_TRUE(wire::check_against_header(sample<wire::Mon2cVnodeCreateRequest>(), header));
  header.vnode = 2;
  EXPECT_EQ(
      wire::check_against_header(sample<wire::Mon2cVnodeCreateRequest>(), header).error().code(),
      EINVAL);
  EXPECT_EQ(wire::check_against_header(wire::Mon2cVnodeDestroyRequest{0, 0}, header).error().code(),
            EINVAL);
  EXPECT_EQ(
      wire::check_against_header(sample<wire::P2monMemoryPlaceRequest>(), header).error().code(),
      EINVAL);
  // Bodies without the vNode are not checked.
  EXPECT_TRUE(wire::check_against_header(sample<wire::P2mPageRange>(), header));
}

TEST(MessageList, SizedTailsMustMatchTheirLength) {
  auto body = sample<wire::RunOutputBody>();
  body.head.length = 99;
  EXPECT_FALSE(wire::body_encode(std::move(body)));
  wire::P2ctlRunOutput head = sample<wire::RunOutputBody>().head;
  auto bytes = wire::encode(head, wire::as_bytes(std::string_view("four")));
  EXPECT_EQ(wire::body_decode<wire::RunOutputBody>(std::move(bytes)).error().code(), EBADMSG);
}

TEST(MessageList, StorageBodiesSplitTheirTail) {
  auto body = sample<wire::StorageBody<wire::P2sTwoPathRequest>>();
  EXPECT_EQ(body.path(), "/etc");
  EXPECT_EQ(body.second(), "/tmp");
  auto write = sample<wire::StorageBody<wire::P2sWriteRequest>>();
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
      [&](const wire::P2mPageRange& range, const rpc::Message& request) -> Result<void> {
        ++calls;
        EXPECT_EQ(range.count, 2u);
        EXPECT_EQ(request.vnode(), 3u);
        return {};
      });
  auto good = wire::encode(sample<wire::P2mPageRange>());
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 3, good)).status, 0);
  EXPECT_EQ(dispatch(dispatcher, make_request(Opcode::P2M_PAGE_FREE, 3, Bytes(3))).status, EBADMSG);
  auto unaligned = sample<wire::P2mPageRange>();
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
      [&](const wire::Mon2cVnodeDestroyRequest&, const rpc::Message&) -> Result<void> {
        ++calls;
        return {};
      });
  auto body = wire::encode(wire::Mon2cVnodeDestroyRequest{1, 0});
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
      [&](const wire::Ctl2monVnodeCreateRequest& request,
          const rpc::Message&) -> Result<wire::VnodeRecord> {
        EXPECT_TRUE(std::this_thread::get_id() != caller);
        wire::VnodeRecord record{};
        record.name = request.name;
        return record;
      });
  auto body = wire::encode(sample<wire::Ctl2monVnodeCreateRequest>());
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
      [](const wire::Mon2cVnodeCreateRequest&, const rpc::Message&) -> Result<void> { return {}; });
  data.on<Opcode::P2M_MM_CREATE>([](const wire::Empty&, const rpc::Message&) {
    return Result<wire::P2mMmCreateReply>(wire::P2mMmCreateReply{9});
  });
  EXPECT_EQ(dispatch(all, make_request(Opcode::MON2M_VNODE_CREATE, 1,
                                       wire::encode(sample<wire::Mon2cVnodeCreateRequest>())))
                .status,
            0);
  auto reply = dispatch(all, make_request(Opcode::P2M_MM_CREATE, 1));
  ASSERT_EQ(reply.status, 0);
  EXPECT_EQ(wire::decode<wire::P2mMmCreateReply>(reply.payload)->mm, 9u);
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
      [](const wire::P2mPageRange& range, const rpc::Message&) -> Result<wire::RawBytes> {
        return wire::RawBytes{wire::Tail(Bytes(range.count * wire::kPageSize, std::byte{7}), 0)};
      });
  server.on<Opcode::P2M_MM_FREE>(
      [](const wire::P2mMmFreeRequest& free, const rpc::Message&) -> Result<void> {
        if (free.mm != 5) return make_error(ENOENT, "no mm " + std::to_string(free.mm));
        return {};
      });
  testing::DispatchLink link(server);
  fabric::Connection& connection = *link.connection();
  auto pages = rpc::call<Opcode::P2M_PAGE_READ>(connection, 1, sample<wire::P2mPageRange>());
  ASSERT_TRUE(pages) << pages.error().text();
  EXPECT_EQ(pages->bytes.size(), 2 * wire::kPageSize);
  EXPECT_TRUE(rpc::call<Opcode::P2M_MM_FREE>(connection, 1, wire::P2mMmFreeRequest{5}));
  auto missing = rpc::call<Opcode::P2M_MM_FREE>(connection, 1, wire::P2mMmFreeRequest{6});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  EXPECT_EQ(missing.error().message(), "no mm 6");

  std::promise<Result<wire::Empty>> got;  // set on the client's fabric thread
  rpc::call_async<Opcode::P2M_MM_FREE>(
      connection, 1, wire::P2mMmFreeRequest{5}, std::chrono::seconds(1),
      [&](Result<wire::Empty> reply) { got.set_value(std::move(reply)); });
  EXPECT_TRUE(got.get_future().get());
}

}  // namespace
}  // namespace sk
