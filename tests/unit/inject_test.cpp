// Syscall injection and userfaultfd acquisition on a real child process:
// the building blocks of the memory manager. Needs root (ptrace of a child
// is fine unprivileged, but /dev/userfaultfd is root-only on the host).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "pcomponent/inject.h"
#include "pcomponent/userfault.h"

namespace {

constexpr size_t kPage = 4096;

// A child that maps a private anonymous page, tells the parent where, and
// after the parent says go, reads the page's first byte back to it.
struct Child {
  pid_t pid = -1;
  int to_child = -1;
  int from_child = -1;
  uint64_t page = 0;
};

Child start_child() {
  int down[2], up[2];
  EXPECT_EQ(::pipe(down), 0);
  EXPECT_EQ(::pipe(up), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(down[1]);
    ::close(up[0]);
    void* page = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t address = reinterpret_cast<uint64_t>(page);
    (void)!::write(up[1], &address, sizeof address);
    char go;
    while (::read(down[0], &go, 1) == 1) {
      char value = *static_cast<volatile char*>(page);  // faults into the uffd
      (void)!::write(up[1], &value, 1);
    }
    ::_exit(0);
  }
  ::close(down[0]);
  ::close(up[1]);
  Child child{pid, down[1], up[0], 0};
  EXPECT_EQ(::read(child.from_child, &child.page, sizeof child.page),
            static_cast<ssize_t>(sizeof child.page));
  return child;
}

// Seizes and interrupts the child: a PTRACE_EVENT_STOP, where injection is safe.
void seize_and_stop(pid_t pid) {
  ASSERT_EQ(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0);
  ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, __WALL), pid);
  ASSERT_TRUE(WIFSTOPPED(status));
}

void finish(Child& child) {
  ::close(child.to_child);
  ::ptrace(PTRACE_DETACH, child.pid, nullptr, nullptr);
  ::kill(child.pid, SIGKILL);
  int status;
  ::waitpid(child.pid, &status, __WALL);
  ::close(child.from_child);
}

TEST(Inject, SyscallRunsInTheTraceeAndRegistersSurvive) {
  Child child = start_child();
  seize_and_stop(child.pid);
  sk::pcomponent::Injector injector(child.pid);
  auto pid = injector.syscall(SYS_getpid);
  ASSERT_TRUE(pid.ok()) << pid.error().text();
  EXPECT_EQ(*pid, child.pid);
  auto bad = injector.syscall(SYS_close, {9999});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(*bad, -EBADF);
  // The child still works after being resumed.
  ASSERT_EQ(::ptrace(PTRACE_CONT, child.pid, nullptr, nullptr), 0);
  ASSERT_EQ(::write(child.to_child, "g", 1), 1);
  char value = 1;
  ASSERT_EQ(::read(child.from_child, &value, 1), 1);
  EXPECT_EQ(value, 0);
  finish(child);
}

TEST(Inject, UserfaultServesTheTraceesFaults) {
  if (::geteuid() != 0 || ::access("/dev/userfaultfd", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs root and /dev/userfaultfd";
  }
  Child child = start_child();
  seize_and_stop(child.pid);
  sk::pcomponent::Injector injector(child.pid);
  auto uffd = sk::pcomponent::acquire_userfault(child.pid, injector);
  ASSERT_TRUE(uffd.ok()) << uffd.error().text();
  EXPECT_NE(uffd->features & UFFD_FEATURE_EVENT_FORK, 0u);

  // Register the child's page from here: REGISTER acts on the uffd's mm.
  uffdio_register reg{{child.page, kPage}, UFFDIO_REGISTER_MODE_MISSING, 0};
  ASSERT_EQ(::ioctl(uffd->fd, UFFDIO_REGISTER, &reg), 0) << std::strerror(errno);
  ASSERT_EQ(::ptrace(PTRACE_CONT, child.pid, nullptr, nullptr), 0);

  ASSERT_EQ(::write(child.to_child, "g", 1), 1);
  pollfd waiting{uffd->fd, POLLIN, 0};
  ASSERT_EQ(::poll(&waiting, 1, 5000), 1);
  uffd_msg message;
  ASSERT_EQ(::read(uffd->fd, &message, sizeof message), static_cast<ssize_t>(sizeof message));
  ASSERT_EQ(message.event, UFFD_EVENT_PAGEFAULT);
  EXPECT_EQ(message.arg.pagefault.address & ~(kPage - 1), child.page);
  alignas(kPage) static char source[kPage];
  std::memset(source, 0x5a, sizeof source);
  uffdio_copy copy{child.page, reinterpret_cast<uint64_t>(source), kPage, 0, 0};
  ASSERT_EQ(::ioctl(uffd->fd, UFFDIO_COPY, &copy), 0) << std::strerror(errno);
  char value = 0;
  ASSERT_EQ(::read(child.from_child, &value, 1), 1);
  EXPECT_EQ(value, 0x5a);
  ::close(uffd->fd);
  finish(child);
}

}  // namespace
