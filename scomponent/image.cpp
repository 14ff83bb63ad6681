// Installing images into new vNode trees (see image.h).
#include "scomponent/image.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include "kernel/log.h"
#include "kernel/wire/messages.h"
#include "scomponent/confine.h"

extern char** environ;

namespace sk::scomponent {

namespace fs = std::filesystem;

static const Logger log("image");

// The most of a failing program's stderr kept for the error text.
static constexpr size_t kMaxErrorText = 2000;

Result<fs::path> find_image(const fs::path& images, std::string_view image) {
  if (auto valid = wire::validate_vnode_name(image); !valid) {
    return make_error(EINVAL, "bad image name '" + std::string(image) + "'");
  }
  fs::path path = images / std::string(image);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(ENOENT, "no image '" + std::string(image) +
                                  "' on this sComponent (looked in " + images.string() + ")");
  }
  return path;
}

Result<void> run_program(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  // The daemon blocks SIGINT/SIGTERM in every thread and ignores SIGPIPE;
  // the program gets the defaults back.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int spawned = ::posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (spawned != 0) return Error(spawned, "run " + argv[0]);
  write_end = UniqueFd();

  std::string output;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::read(read_end.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (output.size() < kMaxErrorText) output.append(buffer, static_cast<size_t>(got));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Error::from_errno("wait for " + argv[0]);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  return make_error(EIO, argv[0] + " failed (" + how + ")" + (output.empty() ? "" : ": " + output));
}

Result<void> copy_image(const fs::path& image, const fs::path& tree) {
  struct stat st;
  if (::stat(image.c_str(), &st) != 0) return Error::from_errno("stat " + image.string());
  auto started = std::chrono::steady_clock::now();
  // "IMAGE/." copies the contents and gives the tree's root the image
  // root's mode, owner and times.
  TRY(run_program(
      {"cp", "-a", "--reflink=auto", "--", (image / ".").string(), (tree / ".").string()}));
  if (st.st_uid != 0 || st.st_gid != 0) {
    // Built unprivileged: the builder's files are vNode root's.
    std::string from = std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    TRY(run_program({"chown", "-hR", "--from=" + from, "0:0", "--", tree.string()}));
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  log.info("copied image {} into {} in {} ms", image.string(), tree.string(), took.count());
  return {};
}

Result<void> make_basic_root(const fs::path& tree) {
  struct Dir {
    const char* name;
    mode_t mode;
  };
  for (Dir dir : {Dir{"proc", 0555}, Dir{"dev", 0755}, Dir{"tmp", 01777}, Dir{"etc", 0755},
                  Dir{"root", 0700}}) {
    fs::path path = tree / dir.name;
    if (::mkdir(path.c_str(), dir.mode) != 0 && errno != EEXIST) {
      return Error::from_errno("mkdir " + path.string());
    }
    // Exactly these modes, whatever the umask.
    if (::chmod(path.c_str(), dir.mode) != 0) return Error::from_errno("chmod " + path.string());
  }
  if (::chmod(tree.c_str(), 0755) != 0) return Error::from_errno("chmod " + tree.string());
  return {};
}

}  // namespace sk::scomponent
