// Taking a userfaultfd for a vNode process: the first step of serving its
// anonymous memory from mComponents (DESIGN.md, "Memory").
//
// A uffd belongs to the mm that created it, so the process itself must make
// it: with the tracee stopped, the tracer injects
//   fd  = openat(AT_FDCWD, "/dev/userfaultfd", O_RDWR | O_CLOEXEC)
//   uffd = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK)
//   close(fd)
// takes uffd with pidfd_getfd, and closes the tracee's copy, so the program
// never sees an extra fd. /dev/userfaultfd (not the userfaultfd() syscall)
// because vm.unprivileged_userfaultfd is 0 by default and the tracee is
// unprivileged on the host. FIXME: the launcher must give each vNode its own
// device node (a mknod of the host's 10:N under /dev, owned by the vNode's
// root, bind-mounted at the vNode's /dev/userfaultfd) before the memory
// manager can use this for vNode programs; today only root tracees can
// open the host's node. UFFD_USER_MODE_ONLY
// is not used: a read(2) into a missing page would then fail with EFAULT.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "kernel/result.h"
#include "pcomponent/inject.h"

namespace sk::pcomponent {

struct Userfault {
  int fd = -1;            // the pComponent's copy; the caller closes it
  uint64_t features = 0;  // UFFD_FEATURE_* granted by UFFDIO_API
};

// Features newer than the oldest headers we build with (Linux 6.1's).
// WP_ASYNC (6.7): a write to a write-protected page of a range registered
// with UFFDIO_REGISTER_MODE_WP makes it writable again without a fault
// message, so the write-protect bit says "not written since it was
// protected"; PAGEMAP_SCAN reads it (PAGE_IS_WRITTEN). The kernel turns on
// WP_UNPOPULATED with it.
inline constexpr uint64_t kUffdFeatureWpUnpopulated = uint64_t{1} << 13;
inline constexpr uint64_t kUffdFeatureWpAsync = uint64_t{1} << 15;

// Every UFFD_FEATURE_* this kernel offers, probed once with a uffd of our
// own (0 when none could be made: then nothing optional is asked for).
uint64_t supported_userfault_features();

// The features the memory manager asks for: the fork, remap, remove and
// unmap events it needs, and WP_ASYNC for dirty tracking when the kernel
// has it (asking for a feature the kernel lacks would fail UFFDIO_API).
uint64_t wanted_userfault_features();

// Creates a userfaultfd for the stopped tracee `pid` (see the file comment)
// and negotiates the API. `device` is the path of /dev/userfaultfd as the
// tracee sees it.
Result<Userfault> acquire_userfault(pid_t pid, Injector& injector,
                                    const char* device = "/dev/userfaultfd");

}  // namespace sk::pcomponent
