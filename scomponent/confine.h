// Path confinement: resolving a path a vNode names inside that vNode's tree
// and nowhere else. Every file operation of the sComponent goes through
// here, so a path such as "../../etc/shadow", an absolute symlink to "/" or
// a symlink pointing outside the tree can never reach the host's files.
//
// Semantics are those of a chroot (openat2's RESOLVE_IN_ROOT): the tree's
// root is "/", ".." at the root stays at the root, absolute symlinks are
// resolved from the root. Magic links (/proc/self/fd/...) are refused. On
// kernels without openat2 (ENOSYS), a component-by-component walk with
// O_NOFOLLOW gives the same answers.
//
// Threads: stateless; any thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "kernel/result.h"
#include "kernel/unique_fd.h"

namespace sk::scomponent {

// How to resolve: kAuto uses openat2 and falls back to the walk only when
// the kernel lacks it; the others force one (for tests).
enum class Resolver { kAuto, kOpenat2, kWalk };

// Opens `path` inside the tree whose root directory `root` is open (O_PATH
// is enough). `path` is relative to the tree's root; a leading '/' means the
// same. `flags`/`mode` are open(2)'s; with O_NOFOLLOW a final symlink is not
// followed (ELOOP, or the link itself with O_PATH). Errors: those of
// open(2), ELOOP for too many symlinks, EXDEV/EACCES never happen for paths
// that stay inside (they cannot leave), EINVAL for an empty path or one
// with a NUL.
Result<UniqueFd> open_confined(int root, std::string_view path, int flags, mode_t mode = 0,
                               Resolver resolver = Resolver::kAuto);

// For operations on a name rather than on what it points at (unlink,
// rename, symlink, readlink, mkdir, lstat): the directory that holds the
// last component, opened O_PATH inside the tree, and that component. The
// last component is "" when the path names the root itself, and is never
// "." or ".." (EINVAL) so that it is always a plain name in `dir`.
struct ParentAndName {
  UniqueFd dir;
  std::string name;
};
Result<ParentAndName> open_parent_confined(int root, std::string_view path,
                                           Resolver resolver = Resolver::kAuto);

}  // namespace sk::scomponent
