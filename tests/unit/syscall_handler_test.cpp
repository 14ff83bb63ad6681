// The tracer's syscall handlers (pcomponent/tracer/syscall_handler.h): the
// table built from abi/syscall_list.h, and the memory calls' decisions, on
// a fake memory manager and without a tracee.
#include "pcomponent/tracer/syscall_handler.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cerrno>
#include <vector>

#include "abi/syscall_table.h"

namespace sk::pcomponent::tracer {
namespace {

constexpr uint64_t kMiB = 1u << 20;

class FakeMemory final : public memory::AddressSpaceEvents {
 public:
  void on_exec(pid_t, VnodeId, Userfault, std::vector<memory::Region>) override {}
  void on_fork(pid_t, pid_t) override {}
  Result<void> reserve(pid_t pid, uint64_t bytes) override {
    reserves.push_back({pid, bytes, 0, false});
    if (bytes > limit) return make_error(ENOMEM, "over the test's limit");
    return {};
  }
  void on_map(pid_t pid, uint64_t start, uint64_t length, bool accounted) override {
    maps.push_back({pid, start, length, accounted});
  }
  void on_exit(pid_t) override {}

  struct Call {
    pid_t pid;
    uint64_t bytes_or_start;
    uint64_t length;
    bool accounted;
  };
  std::vector<Call> reserves;
  std::vector<Call> maps;
  uint64_t limit = ~0ull;
};

class SyscallHandlerTest : public ::testing::Test {
 protected:
  SyscallContext call(std::array<uint64_t, 6> args, bool with_memory = true) {
    return SyscallContext{kTid, kTgid, args, with_memory ? &memory : nullptr, &processes};
  }
  EntryVerdict enter(long number, SyscallContext& context) {
    const SyscallHandler* handler = find_handler(number);
    EXPECT_NE(handler, nullptr);
    return handler->on_entry(context);
  }
  void leave(long number, SyscallContext& context, uint64_t result) {
    find_handler(number)->on_exit(context, result);
  }

  static constexpr pid_t kTid = 101;
  static constexpr pid_t kTgid = 100;
  FakeMemory memory;
  ProcessStates processes;
};

using Action = EntryVerdict::Action;

TEST(HandlerTable, ExactlyTheTracedCallsHaveAHandler) {
  int traced = 0;
  for (const auto& call : abi::syscalls()) {
    bool is_traced = call.route == abi::Route::kTraced;
    EXPECT_EQ(find_handler(call.number) != nullptr, is_traced) << call.name;
    traced += is_traced;
  }
  EXPECT_EQ(traced, 4);
  EXPECT_NE(find_handler(SYS_mmap), find_handler(SYS_brk));
  EXPECT_EQ(find_handler(-1), nullptr);
  EXPECT_EQ(find_handler(100000), nullptr);
  EXPECT_EQ(find_handler(400), nullptr);  // a gap in the x86-64 numbers
}

TEST_F(SyscallHandlerTest, NothingIsTracedWithoutAMemoryManager) {
  for (long number : {SYS_mmap, SYS_mprotect, SYS_brk, SYS_mremap}) {
    auto context = call({0, 4 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0},
                        false);
    EXPECT_EQ(enter(number, context).action, Action::kRun) << number;
  }
  EXPECT_TRUE(processes.empty());
}

TEST_F(SyscallHandlerTest, MmapCountsWritablePrivateAnonymousMemory) {
  auto anonymous = call({0, 4 * kMiB + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0});
  EXPECT_EQ(enter(SYS_mmap, anonymous).action, Action::kRunToExit);
  ASSERT_EQ(memory.reserves.size(), 1u);
  EXPECT_EQ(memory.reserves[0].pid, kTgid);
  EXPECT_EQ(memory.reserves[0].bytes_or_start, 4 * kMiB + 4096);  // whole pages

  leave(SYS_mmap, anonymous, 0x7f0000000000);
  ASSERT_EQ(memory.maps.size(), 1u);
  EXPECT_EQ(memory.maps[0].pid, kTgid);
  EXPECT_EQ(memory.maps[0].bytes_or_start, 0x7f0000000000u);
  EXPECT_EQ(memory.maps[0].length, 4 * kMiB + 4096);
  EXPECT_TRUE(memory.maps[0].accounted);
}

TEST_F(SyscallHandlerTest, MmapOfFilesAndSharedMemoryIsNotTheMemoryManagers) {
  auto file = call({0, kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, 3, 0});
  EXPECT_EQ(enter(SYS_mmap, file).action, Action::kRun);
  auto shared = call({0, kMiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, 0, 0});
  EXPECT_EQ(enter(SYS_mmap, shared).action, Action::kRun);
  EXPECT_TRUE(memory.reserves.empty());
}

TEST_F(SyscallHandlerTest, ReadOnlyMmapIsRegisteredButNotCounted) {
  auto none = call({0, kMiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0});
  EXPECT_EQ(enter(SYS_mmap, none).action, Action::kRunToExit);
  EXPECT_TRUE(memory.reserves.empty());
  leave(SYS_mmap, none, 0x10000);
  ASSERT_EQ(memory.maps.size(), 1u);
  EXPECT_FALSE(memory.maps[0].accounted);
}

TEST_F(SyscallHandlerTest, MmapOverTheQuotaFailsWithEnomem) {
  memory.limit = kMiB;
  auto big = call({0, 2 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0});
  EntryVerdict verdict = enter(SYS_mmap, big);
  EXPECT_EQ(verdict.action, Action::kFail);
  EXPECT_EQ(verdict.result, -ENOMEM);
}

TEST_F(SyscallHandlerTest, AFailedMmapRegistersNothing) {
  auto anonymous = call({0, kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0});
  enter(SYS_mmap, anonymous);
  leave(SYS_mmap, anonymous, static_cast<uint64_t>(-ENOMEM));
  EXPECT_TRUE(memory.maps.empty());
}

TEST_F(SyscallHandlerTest, BrkCountsGrowthFromTheKnownBreak) {
  // Before the break is known (0), nothing is counted; the exit learns it.
  auto first = call({0});
  EXPECT_EQ(enter(SYS_brk, first).action, Action::kRunToExit);
  EXPECT_TRUE(memory.reserves.empty());
  leave(SYS_brk, first, 0x500000);
  EXPECT_TRUE(memory.maps.empty());
  EXPECT_EQ(processes[kTgid].brk, 0x500000u);

  auto grow = call({0x500000 + kMiB + 1});
  EXPECT_EQ(enter(SYS_brk, grow).action, Action::kRunToExit);
  ASSERT_EQ(memory.reserves.size(), 1u);
  EXPECT_EQ(memory.reserves[0].bytes_or_start, kMiB + 4096);
  leave(SYS_brk, grow, 0x500000 + kMiB + 1);
  ASSERT_EQ(memory.maps.size(), 1u);
  EXPECT_EQ(memory.maps[0].bytes_or_start, 0x500000u);
  EXPECT_EQ(memory.maps[0].length, kMiB + 4096);
  EXPECT_TRUE(memory.maps[0].accounted);
  EXPECT_EQ(processes[kTgid].brk, 0x500000 + kMiB + 1);
}

TEST_F(SyscallHandlerTest, BrkOverTheQuotaReturnsTheOldBreak) {
  processes[kTgid].brk = 0x500000;
  memory.limit = kMiB;
  auto grow = call({0x500000 + 2 * kMiB});
  EntryVerdict verdict = enter(SYS_brk, grow);
  EXPECT_EQ(verdict.action, Action::kFail);
  EXPECT_EQ(verdict.result, 0x500000);
}

TEST_F(SyscallHandlerTest, MprotectCountsOnlyAddingWrite) {
  auto read_only = call({0x10000, kMiB, PROT_READ});
  EXPECT_EQ(enter(SYS_mprotect, read_only).action, Action::kRun);
  EXPECT_TRUE(memory.reserves.empty());

  auto writable = call({0x10000, kMiB, PROT_READ | PROT_WRITE});
  EXPECT_EQ(enter(SYS_mprotect, writable).action, Action::kRunToExit);
  ASSERT_EQ(memory.reserves.size(), 1u);
  EXPECT_EQ(memory.reserves[0].bytes_or_start, kMiB);
  leave(SYS_mprotect, writable, 0);
  ASSERT_EQ(memory.maps.size(), 1u);
  EXPECT_EQ(memory.maps[0].bytes_or_start, 0x10000u);
  EXPECT_TRUE(memory.maps[0].accounted);
}

TEST_F(SyscallHandlerTest, MremapCountsAndRegistersOnlyTheGrowth) {
  auto grow = call({0x10000, kMiB, 3 * kMiB, MREMAP_MAYMOVE});
  EXPECT_EQ(enter(SYS_mremap, grow).action, Action::kRunToExit);
  ASSERT_EQ(memory.reserves.size(), 1u);
  EXPECT_EQ(memory.reserves[0].bytes_or_start, 2 * kMiB);
  leave(SYS_mremap, grow, 0x900000);  // moved
  ASSERT_EQ(memory.maps.size(), 1u);
  EXPECT_EQ(memory.maps[0].bytes_or_start, 0x900000 + kMiB);
  EXPECT_EQ(memory.maps[0].length, 2 * kMiB);

  auto shrink = call({0x10000, 3 * kMiB, kMiB, 0});
  EXPECT_EQ(enter(SYS_mremap, shrink).action, Action::kRunToExit);
  EXPECT_EQ(memory.reserves.size(), 1u);
  leave(SYS_mremap, shrink, 0x10000);
  EXPECT_EQ(memory.maps.size(), 1u);
}

}  // namespace
}  // namespace sk::pcomponent::tracer
