// The execution back-end of the pComponent: starts a stock program inside a
// vNode's namespaces under the tracer, and tells when it ends.
//
// A vNode's namespaces on this pComponent (user, pid, mount, uts, ipc) are
// held by a "vNode init", pid 1 of the vNode, created on the vNode's first
// launch and kept until the vNode is dropped, so that the programs of one
// vNode see one machine: one pid space, one hostname, one /tmp. Programs are
// root inside their vNode and an unprivileged host uid outside (vNode uid 0 ->
// host uid kHostUidBase + vnode * 65536), with no_new_privs, under ptrace and
// a seccomp filter built from abi/syscall_list.h.
//
// Threads: every method may be called from any thread; the work happens on
// the launcher's tracer thread (ptrace requires one thread to do all the
// tracing). Exit callbacks run on that thread and must not block.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "pcomponent/memory/memory_manager.h"

namespace sk::pcomponent {

// The first host uid of the range that vNode 0's ids map to. High enough to
// be unused by any host account.
inline constexpr uid_t kHostUidBase = 0x10000000;
inline constexpr uid_t kIdsPerVnode = 65536;

struct LaunchSpec {
  VnodeId vnode = kNoVnode;
  std::string hostname;                 // the vNode's uts name
  std::filesystem::path root;           // host path of the vNode's root tree
  std::vector<std::string> argv;        // argv[0] is looked up in PATH as a shell would
  std::vector<std::string> env;         // NAME=value
  std::string cwd = "/";                // inside the vNode
  int stdin_fd = -1;                    // host fds; the launcher dups them
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// How a launched program ended: like a shell's $?, 128+signal when killed.
struct ExitStatus {
  int code = 0;
  int signal = 0;  // non-zero when a signal ended it
  bool core_dumped = false;
  // Why it ended, when the pComponent knows more than the status says (its
  // memory was lost with an mComponent): sent with the exit, shown by
  // `splitctl run`. Set by the process manager, not the launcher.
  std::string note;
};

struct TracerStats {
  uint64_t stops = 0;                        // every ptrace stop handled
  std::map<std::string, uint64_t> syscalls;  // traced syscalls by name
  std::map<std::string, uint64_t> refused;   // refused syscalls by name
  uint64_t launched = 0;
  uint64_t execs = 0;
  uint64_t forks = 0;  // fork, vfork and clone of processes
  uint64_t threads = 0;
  uint64_t userfaults = 0;  // processes whose memory the memory manager serves
  uint64_t fallbacks = 0;   // processes left on local memory (no userfaultfd)
  uint64_t drops = 0;       // page drops done for the memory manager
};

// A process the launcher traces: a launched program or one of its
// descendants (threads are not listed).
struct TracedProcess {
  pid_t pid = -1;        // host pid
  VnodeId vnode = kNoVnode;
  pid_t launched = -1;   // host pid of the launched program it descends from
};

class Launcher {
 public:
  using ExitFn = std::function<void(ExitStatus)>;

  virtual ~Launcher() = default;

  // Starts spec.argv in the vNode. Returns the program's host pid once it is
  // traced and running; on_exit runs once when it ends. The launcher closes
  // none of the caller's fds. Errors: ENOENT/EACCES/ENOEXEC do not fail here
  // (the program exits 127/126 with a shell-style message on its stderr, as
  // bash would); failures to set up the vNode do.
  virtual Result<pid_t> launch(const LaunchSpec& spec, ExitFn on_exit) = 0;

  // Sends a signal to a launched program (its host pid).
  virtual Result<void> signal(pid_t pid, int signo) = 0;

  // The pid the program has inside its vNode.
  virtual Result<pid_t> vnode_pid(pid_t pid) = 0;

  // Every traced process (thread group leaders only), in pid order.
  virtual std::vector<TracedProcess> processes() = 0;

  // Kills every program of the vNode and its init; a later launch starts over.
  virtual void drop_vnode(VnodeId vnode) = 0;

  virtual TracerStats stats() = 0;

  // Hands every launched program's private anonymous memory to the memory
  // manager from now on (see memory/memory_manager.h): the tracer takes a
  // userfaultfd after each exec and stops mmap/brk/mremap. Call before the
  // first launch; vNode inits started before keep tracing nothing.
  virtual void attach_memory(memory::AddressSpaceEvents* events) = 0;

  // Drops pages of a traced process, for the memory manager's evictions.
  virtual memory::PageDropper& page_dropper() = 0;
};

// Blocks SIGCHLD in the calling thread. Call it first thing in main(), before
// any thread starts, so that every thread inherits the mask and the tracer's
// signalfd sees each child's state change at once (otherwise it notices
// within its 50 ms safety-net poll).
void block_sigchld();

// The ptrace + seccomp launcher (ptrace_launcher.h). `self_exe` is the
// pcomponent binary, re-run with --vnode-init as each vNode's init.
Result<std::unique_ptr<Launcher>> make_ptrace_launcher(std::filesystem::path self_exe);

// Whether this process was started as a vNode init (`pcomponent
// --vnode-init ...`): main() checks it first and then calls vnode_init_main.
bool is_vnode_init(int argc, char** argv);

// The entry point of a vNode init, run inside the vNode's fresh namespaces
// with the arguments the launcher gave it: never returns.
[[noreturn]] void vnode_init_main(int argc, char** argv);

}  // namespace sk::pcomponent
