// Path confinement (see confine.h): openat2(RESOLVE_IN_ROOT) where the
// kernel has it, else a walk that opens one component at a time with
// O_NOFOLLOW and expands symlinks itself, so that it, not the kernel,
// decides where ".." and absolute targets lead.
#include "scomponent/confine.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <deque>
#include <vector>

namespace sk::scomponent {

// Linux's limit on symlinks followed in one lookup; the walk keeps it too.
static constexpr int kMaxSymlinks = 40;
// openat2 asks for a retry (EAGAIN) when a rename races with a ".." lookup;
// a few retries beat failing a request, endless ones would let a busy tree
// stall a worker.
static constexpr int kMaxRetries = 8;

static Result<void> check_path(std::string_view path) {
  if (path.empty()) return make_error(EINVAL, "empty path");
  if (path.find('\0') != std::string_view::npos) return make_error(EINVAL, "path holds a NUL");
  return {};
}

// The path relative to the root: leading slashes dropped; the root itself
// is ".".
static std::string relative(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  return path.empty() ? std::string(".") : std::string(path);
}

static Result<UniqueFd> open_with_openat2(int root, const std::string& path, int flags,
                                          mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // openat2 insists on mode 0 unless the call may create a file.
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, root, path.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    // EAGAIN: a concurrent rename made the kernel unsure that ".." stayed
    // inside; the lookup is safe to repeat.
    if (errno != EAGAIN || attempt == kMaxRetries) return Error::from_errno("open " + path);
  }
}

static void push_components(std::deque<std::string>& components, std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    parts.emplace_back(
        path.substr(start, slash == std::string_view::npos ? path.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  components.insert(components.begin(), parts.begin(), parts.end());
}

static Result<std::string> read_link(int fd, const std::string& name) {
  // Link targets are at most PATH_MAX; one more byte tells truncation apart.
  std::string target(PATH_MAX + 1, '\0');
  ssize_t length = ::readlinkat(fd, "", target.data(), target.size());
  if (length < 0) return Error::from_errno("readlink " + name);
  if (static_cast<size_t>(length) > PATH_MAX) return make_error(ENAMETOOLONG, "readlink " + name);
  target.resize(static_cast<size_t>(length));
  if (target.empty()) return make_error(ENOENT, "empty symlink " + name);
  return target;
}

static Result<UniqueFd> open_with_walk(int root, const std::string& path, int flags, mode_t mode) {
  std::vector<UniqueFd> stack;  // stack[0] is the root; the back is the current directory
  int root_copy = ::openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_copy < 0) return Error::from_errno("open the root");
  stack.emplace_back(root_copy);

  std::deque<std::string> components;
  push_components(components, path);
  int symlinks = 0;

  auto follow = [&](int link_fd, const std::string& name) -> Result<void> {
    if (++symlinks > kMaxSymlinks) return make_error(ELOOP, "open " + path);
    std::string target = TRY(read_link(link_fd, name));
    // An absolute target starts again from the tree's root, never the host's.
    if (target.front() == '/') stack.resize(1);
    push_components(components, target);
    return {};
  };

  while (!components.empty()) {
    std::string name = std::move(components.front());
    components.pop_front();
    bool last = components.empty();
    int dir = stack.back().get();

    if (name.empty() || name == "." || name == "..") {
      // ".." at the root stays at the root, as in a chroot.
      if (name == ".." && stack.size() > 1) stack.pop_back();
      if (last) {
        int fd = ::openat(stack.back().get(), ".", flags | O_CLOEXEC, mode);
        if (fd < 0) return Error::from_errno("open " + path);
        return UniqueFd(fd);
      }
      continue;
    }

    if (last) {
      if (!(flags & O_NOFOLLOW)) {
        struct stat st;
        if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
          UniqueFd link(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
          if (!link) return Error::from_errno("open " + path);
          TRY(follow(link.get(), name));
          continue;
        }
      }
      // O_NOFOLLOW also catches a symlink swapped in since the fstatat: the
      // open then fails (ELOOP) instead of leaving the tree.
      int fd = ::openat(dir, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd < 0) return Error::from_errno("open " + path);
      return UniqueFd(fd);
    }

    UniqueFd next(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return Error::from_errno("open " + path);
    struct stat st;
    if (::fstat(next.get(), &st) != 0) return Error::from_errno("stat " + path);
    if (S_ISLNK(st.st_mode)) {
      TRY(follow(next.get(), name));
    } else if (S_ISDIR(st.st_mode)) {
      stack.push_back(std::move(next));
    } else {
      return make_error(ENOTDIR, "open " + path);
    }
  }
  // Unreachable: the last component always returns above.
  return make_error(EINVAL, "open " + path);
}

Result<UniqueFd> open_confined(int root, std::string_view path, int flags, mode_t mode,
                               Resolver resolver) {
  TRY(check_path(path));
  std::string rel = relative(path);
  if (resolver != Resolver::kWalk) {
    auto opened = open_with_openat2(root, rel, flags, mode);
    if (opened || opened.error().code() != ENOSYS || resolver == Resolver::kOpenat2) {
      return opened;
    }
  }
  return open_with_walk(root, rel, flags, mode);
}

Result<ParentAndName> open_parent_confined(int root, std::string_view path, Resolver resolver) {
  TRY(check_path(path));
  std::string rel = relative(path);
  while (rel.size() > 1 && rel.back() == '/') rel.pop_back();
  if (rel == ".") {
    auto dir = TRY(open_confined(root, ".", O_PATH | O_DIRECTORY, 0, resolver));
    return ParentAndName{std::move(dir), ""};
  }
  size_t slash = rel.rfind('/');
  std::string parent = slash == std::string::npos ? "." : rel.substr(0, slash);
  std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  if (name == "." || name == "..") {
    return make_error(EINVAL, "'" + std::string(path) + "' does not end in a name");
  }
  if (parent.empty()) parent = ".";
  auto dir = TRY(open_confined(root, parent, O_PATH | O_DIRECTORY, 0, resolver));
  return ParentAndName{std::move(dir), std::move(name)};
}

}  // namespace sk::scomponent
