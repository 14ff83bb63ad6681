#include "pcomponent/userfault.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace sk::pcomponent {

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

uint64_t wanted_userfault_features() {
  // Fork, remap, remove and unmap events keep the mComponent's copy of the
  // address space in step with the process (without EVENT_FORK a child's
  // missing pages would read as zeroes).
  return UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
         UFFD_FEATURE_EVENT_UNMAP;
}

Result<Userfault> acquire_userfault(pid_t pid, Injector& injector, const char* device) {
  auto path = std::span(reinterpret_cast<const std::byte*>(device), std::strlen(device) + 1);
  uint64_t address = TRY(injector.push(path));
  long dev = TRY(injector.syscall(SYS_openat, {static_cast<uint64_t>(AT_FDCWD), address,
                                               O_RDWR | O_CLOEXEC}));
  if (dev < 0) return make_error(static_cast<int>(-dev), std::string("open ") + device + " in the tracee");
  long uffd = TRY(injector.syscall(SYS_ioctl, {static_cast<uint64_t>(dev), USERFAULTFD_IOC_NEW,
                                               O_CLOEXEC | O_NONBLOCK}));
  (void)injector.syscall(SYS_close, {static_cast<uint64_t>(dev)});
  if (uffd < 0) return make_error(static_cast<int>(-uffd), "USERFAULTFD_IOC_NEW in the tracee");

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    (void)injector.syscall(SYS_close, {static_cast<uint64_t>(uffd)});
    return Error::from_errno("pidfd_open");
  }
  int mine = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, static_cast<int>(uffd), 0));
  int error = errno;
  ::close(pidfd);
  (void)injector.syscall(SYS_close, {static_cast<uint64_t>(uffd)});
  if (mine < 0) return make_error(error, "pidfd_getfd of the tracee's userfaultfd");

  // Ask for what we want; on an older kernel that lacks some of it, take
  // what it offers (the memory manager checks `features`).
  uffdio_api api{UFFD_API, wanted_userfault_features(), 0};
  if (::ioctl(mine, UFFDIO_API, &api) != 0) {
    // UFFDIO_API may be called once per uffd: a refusal of some feature
    // needs a fresh uffd, so report it; the caller falls back to local memory.
    int api_error = errno;
    ::close(mine);
    return make_error(api_error, "UFFDIO_API");
  }
  return Userfault{mine, api.features};
}

}  // namespace sk::pcomponent
