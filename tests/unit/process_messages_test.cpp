// The process protocol's messages (kernel/wire/process_messages.h): round
// trips, and decoders that refuse truncated, oversized and garbage input
// with an error, never a crash.
#include "kernel/wire/process_messages.h"

#include <gtest/gtest.h>

#include <random>

namespace sk::wire {
namespace {

using Strings = std::vector<std::string>;

Bytes run_payload(const Strings& argv, const Strings& env = {"PATH=/bin"},
                  std::string_view cwd = "/", std::string_view vnode = "web") {
  Ctl2pRunRequest head{};
  head.run = 42;
  head.vnode_name.set(vnode);
  auto payload = encode_run(head, cwd, argv, env);
  EXPECT_TRUE(payload.ok()) << (payload.ok() ? "" : payload.error().text());
  return payload.ok() ? payload.value() : Bytes{};
}

// Replaces the fixed head of an encoded run.
Bytes with_head(Bytes payload, const Ctl2pRunRequest& head) {
  std::memcpy(payload.data(), &head, sizeof head);
  return payload;
}

Ctl2pRunRequest head_of(const Bytes& payload) {
  Ctl2pRunRequest head;
  std::memcpy(&head, payload.data(), sizeof head);
  return head;
}

TEST(RunMessages, RunRoundTrip) {
  auto payload = run_payload({"ls", "-la", "", "a b"}, {"PATH=/bin", "EMPTY="}, "/root");
  auto command = decode_run(payload);
  ASSERT_TRUE(command.ok()) << command.error().text();
  EXPECT_EQ(command->request.run, 42u);
  EXPECT_EQ(command->request.vnode_name.view(), "web");
  EXPECT_EQ(command->cwd, "/root");
  EXPECT_EQ(command->argv, (Strings{"ls", "-la", "", "a b"}));
  EXPECT_EQ(command->env, (Strings{"PATH=/bin", "EMPTY="}));
}

TEST(RunMessages, EncodeRefusesWhatCannotTravel) {
  Ctl2pRunRequest head{};
  head.vnode_name.set("web");
  EXPECT_EQ(encode_run(head, "/", {}, {}).error().code(), EINVAL);  // no command
  EXPECT_EQ(encode_run(head, "/", {std::string("a\0b", 3)}, {}).error().code(), EINVAL);
  EXPECT_EQ(encode_run(head, "/", {std::string(kMaxRunStrings, 'x')}, {}).error().code(), E2BIG);
  head.vnode_name.set("Bad Name");
  EXPECT_EQ(encode_run(head, "/", {"ls"}, {}).error().code(), EINVAL);
}

TEST(RunMessages, DecodeRefusesBadRuns) {
  auto good = run_payload({"ls", "-l"});
  ASSERT_TRUE(decode_run(good).ok());

  // Truncated anywhere: the head, or the strings.
  for (size_t size : {size_t{0}, size_t{10}, sizeof(Ctl2pRunRequest) - 1, good.size() - 1}) {
    EXPECT_FALSE(decode_run(ByteView(good.data(), size)).ok()) << size;
  }
  // Trailing bytes.
  auto longer = good;
  longer.push_back(std::byte{0});
  EXPECT_EQ(decode_run(longer).error().code(), EBADMSG);

  // Counts that disagree with the strings.
  Ctl2pRunRequest head = head_of(good);
  head.argc = 3;
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), EBADMSG);
  head = head_of(good);
  head.argc = 1;
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), EBADMSG);
  head = head_of(good);
  head.argc = 0;
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), EINVAL);
  head = head_of(good);
  head.strings_length = 0xffffffff;
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), E2BIG);
  head = head_of(good);
  head.flags = 0x80;
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), EINVAL);
  head = head_of(good);
  std::memset(head.vnode_name.bytes, 'a', sizeof head.vnode_name.bytes);  // no NUL
  EXPECT_EQ(decode_run(with_head(good, head)).error().code(), EBADMSG);

  // Strings without their final NUL.
  auto unterminated = good;
  unterminated.back() = std::byte{'x'};
  EXPECT_EQ(decode_run(unterminated).error().code(), EBADMSG);

  // Content checks: relative directory, empty command, environment entries.
  EXPECT_EQ(decode_run(run_payload({"ls"}, {}, "root")).error().code(), EINVAL);
  EXPECT_EQ(decode_run(run_payload({""}, {})).error().code(), EINVAL);
  EXPECT_EQ(decode_run(run_payload({"ls"}, {"NOEQUALS"})).error().code(), EINVAL);
  EXPECT_EQ(decode_run(run_payload({"ls"}, {"=value"})).error().code(), EINVAL);
}

TEST(RunMessages, SizedMessagesCheckTheirTails) {
  P2ctlRunOutput output{};
  output.run = 1;
  output.length = 3;
  output.stream = static_cast<uint8_t>(RunStream::kStderr);
  auto payload = encode(output, as_bytes(std::string_view("abc")));
  auto decoded = decode_sized<P2ctlRunOutput>(payload, &P2ctlRunOutput::length);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(to_text(decoded->second), "abc");
  EXPECT_EQ(decode_sized<P2ctlRunOutput>(ByteView(payload.data(), payload.size() - 1),
                                         &P2ctlRunOutput::length)
                .error()
                .code(),
            EBADMSG);
  output.stream = 3;
  EXPECT_EQ(decode_sized<P2ctlRunOutput>(encode(output, as_bytes(std::string_view("abc"))),
                                         &P2ctlRunOutput::length)
                .error()
                .code(),
            EINVAL);
  output.stream = 1;
  output.length = kMaxRunChunk + 1;
  EXPECT_EQ(decode_sized<P2ctlRunOutput>(encode(output), &P2ctlRunOutput::length).error().code(),
            EMSGSIZE);
  output.length = 0;
  EXPECT_EQ(decode_sized<P2ctlRunOutput>(encode(output), &P2ctlRunOutput::length).error().code(),
            EINVAL);

  Ctl2pRunInput input{};
  input.flags = kInputEof;  // an empty end of file is fine
  EXPECT_TRUE(decode_sized<Ctl2pRunInput>(encode(input), &Ctl2pRunInput::length).ok());
  input.flags = 2;
  EXPECT_FALSE(decode_sized<Ctl2pRunInput>(encode(input), &Ctl2pRunInput::length).ok());

  P2ctlRunExit exit{};
  exit.code = 130;
  exit.signal = 2;
  exit.text_length = 4;
  EXPECT_TRUE(decode_sized<P2ctlRunExit>(encode(exit, as_bytes(std::string_view("gone"))),
                                         &P2ctlRunExit::text_length)
                  .ok());
  EXPECT_FALSE(decode_sized<P2ctlRunExit>(encode(exit), &P2ctlRunExit::text_length).ok());
  exit.text_length = 0;
  exit.code = 256;
  EXPECT_FALSE(decode_sized<P2ctlRunExit>(encode(exit), &P2ctlRunExit::text_length).ok());
  exit.code = 0;
  exit.flags = 8;
  EXPECT_FALSE(decode_sized<P2ctlRunExit>(encode(exit), &P2ctlRunExit::text_length).ok());
}

TEST(RunMessages, Signals) {
  Ctl2pRunSignal signal{};
  signal.signo = 2;
  EXPECT_TRUE(decode<Ctl2pRunSignal>(encode(signal)).ok());
  for (int bad : {0, -1, 65}) {
    signal.signo = bad;
    EXPECT_EQ(decode<Ctl2pRunSignal>(encode(signal)).error().code(), EINVAL) << bad;
  }
  EXPECT_EQ(decode<Ctl2pRunSignal>(Bytes(8)).error().code(), EBADMSG);
}

TEST(RunMessages, ClusterLists) {
  std::vector<ProcessRecord> records(2);
  for (auto& record : records) {
    record = ProcessRecord{};
    record.state = 'R';
    record.command.set("sleep 100");
  }
  auto payload = encode_cluster_list(records, 1);
  auto list = decode_cluster_list<ProcessRecord>(payload);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->first.unanswered, 1u);
  EXPECT_EQ(list->second.size(), 2u);
  EXPECT_EQ(list->second[1].command.view(), "sleep 100");

  // A count that lies, a record that is garbage.
  Ctl2monClusterListReply head{1000000, 0};
  std::memcpy(payload.data(), &head, sizeof head);
  EXPECT_EQ(decode_cluster_list<ProcessRecord>(payload).error().code(), EBADMSG);
  records[0].state = 0;
  EXPECT_EQ(decode_cluster_list<ProcessRecord>(encode_cluster_list(records)).error().code(),
            EBADMSG);
  records[0].state = 'S';
  std::memset(records[0].command.bytes, 'x', sizeof records[0].command.bytes);
  EXPECT_EQ(decode_cluster_list<ProcessRecord>(encode_cluster_list(records)).error().code(),
            EBADMSG);

  auto stat = make_stat("a_very_long_group_name", std::string(100, 'n'), 7);
  EXPECT_EQ(stat.group.view(), "a_very_long_gro");  // truncated, terminated
  EXPECT_EQ(stat.name.view().size(), 47u);
  EXPECT_TRUE(stat.validate().ok());
  EXPECT_FALSE(make_stat("", "x", 1).validate().ok());

  Ctl2monPsRequest ps{};
  EXPECT_TRUE(ps.validate().ok());  // all vNodes
  ps.vnode_name.set("Bad!");
  EXPECT_FALSE(ps.validate().ok());
}

// Random bytes never crash a decoder.
TEST(RunMessages, GarbageIsRefusedNotFatal) {
  std::mt19937 random(12345);
  for (int round = 0; round < 2000; ++round) {
    Bytes bytes(random() % 300);
    for (auto& byte : bytes) byte = static_cast<std::byte>(random());
    if (!bytes.empty() && round % 2 == 0) {
      // Sometimes a plausible head: valid name and counts.
      Ctl2pRunRequest head{};
      head.vnode_name.set("web");
      head.argc = 1 + random() % 3;
      head.envc = random() % 3;
      head.strings_length = bytes.size() > sizeof head ? bytes.size() - sizeof head : 0;
      if (bytes.size() >= sizeof head) std::memcpy(bytes.data(), &head, sizeof head);
    }
    (void)decode_run(bytes);
    (void)decode_sized<P2ctlRunOutput>(bytes, &P2ctlRunOutput::length);
    (void)decode_sized<Ctl2pRunInput>(bytes, &Ctl2pRunInput::length);
    (void)decode_sized<P2ctlRunExit>(bytes, &P2ctlRunExit::text_length);
    (void)decode<Ctl2pRunSignal>(bytes);
    (void)decode_cluster_list<ProcessRecord>(bytes);
    (void)decode_cluster_list<StatRecord>(bytes);
  }
}

}  // namespace
}  // namespace sk::wire
