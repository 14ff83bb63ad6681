// The syscall table: numbers match the kernel's, routes are what the
// pComponent relies on.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "abi/syscall_table.h"

namespace {

using sk::abi::Route;

TEST(SyscallTable, NumbersMatchTheKernelHeaders) {
  EXPECT_EQ(sk::abi::find_syscall(SYS_read)->name, "read");
  EXPECT_EQ(sk::abi::find_syscall(SYS_execve)->name, "execve");
  EXPECT_EQ(sk::abi::find_syscall(SYS_clone3)->name, "clone3");
  EXPECT_EQ(sk::abi::find_syscall(SYS_getppid)->name, "getppid");
  EXPECT_EQ(sk::abi::find_syscall("mseal")->number, 462);
  EXPECT_FALSE(sk::abi::find_syscall(100000).has_value());
  EXPECT_FALSE(sk::abi::find_syscall("no_such_call").has_value());
}

TEST(SyscallTable, EscapeRoutesAreRefusedWithAReason) {
  for (const char* name : {"mount", "pivot_root", "setns", "unshare", "kexec_load", "bpf",
                           "userfaultfd", "open_by_handle_at", "init_module"}) {
    auto entry = sk::abi::find_syscall(name);
    ASSERT_TRUE(entry.has_value()) << name;
    EXPECT_EQ(entry->route, Route::kRefused) << name;
    EXPECT_FALSE(entry->reason.empty()) << name;
  }
}

TEST(SyscallTable, EverydayCallsRunNatively) {
  for (const char* name : {"read", "write", "openat", "getppid", "futex", "clone", "execve",
                           "wait4", "pipe2", "rt_sigaction", "getdents64"}) {
    EXPECT_EQ(sk::abi::find_syscall(name)->route, Route::kNative) << name;
  }
  for (const auto& entry : sk::abi::syscalls()) {
    if (entry.route == Route::kNative) {
      EXPECT_TRUE(entry.reason.empty()) << entry.name;
    }
  }
}

}  // namespace
