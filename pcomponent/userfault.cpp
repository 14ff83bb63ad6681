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

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

namespace {

// A uffd of the pComponent's own, only to ask the kernel what it offers:
// UFFD_USER_MODE_ONLY needs no privilege (vm.unprivileged_userfaultfd
// does not apply to it), /dev/userfaultfd and the plain syscall are tried
// after it.
int probe_userfaultfd() {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
  if (fd >= 0) return fd;
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
    ::close(dev);
    if (fd >= 0) return fd;
  }
  return static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC));
}

}  // namespace

uint64_t supported_userfault_features() {
  static const uint64_t features = [] {
    int fd = probe_userfaultfd();
    if (fd < 0) return uint64_t{0};
    // Asking for nothing always succeeds, and the answer lists every
    // feature the kernel has.
    uffdio_api api{UFFD_API, 0, 0};
    uint64_t offered = ::ioctl(fd, UFFDIO_API, &api) == 0 ? api.features : 0;
    ::close(fd);
    return offered;
  }();
  return features;
}

uint64_t wanted_userfault_features() {
  // Fork, remap, remove and unmap events keep the mComponent's copy of the
  // address space in step with the process (without EVENT_FORK a child's
  // missing pages would read as zeroes).
  uint64_t wanted = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                    UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
  return wanted | (supported_userfault_features() & kUffdFeatureWpAsync);
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
  const uint64_t wanted = wanted_userfault_features();
  uffdio_api api{UFFD_API, wanted, 0};
  if (::ioctl(mine, UFFDIO_API, &api) != 0) {
    // UFFDIO_API may be called once per uffd: a refusal of some feature
    // needs a fresh uffd, so report it; the caller falls back to local memory.
    int api_error = errno;
    ::close(mine);
    return make_error(api_error, "UFFDIO_API");
  }
  // The answer lists every feature the kernel has; a success means that
  // all of those asked for are on (WP_ASYNC brings WP_UNPOPULATED along).
  uint64_t granted = wanted & api.features;
  if (granted & kUffdFeatureWpAsync) granted |= kUffdFeatureWpUnpopulated;
  return Userfault{mine, granted};
}

}  // namespace sk::pcomponent
