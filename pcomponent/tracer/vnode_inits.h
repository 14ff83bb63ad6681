// The launcher's vNode inits (see launcher.h): each vNode's init is created
// on the vNode's first launch, in fresh namespaces with the vNode's uid
// range, and forks the vNode's programs on request. The protocol spoken
// with it is init_protocol.h; its side is vnode_init.cpp.
//
// Threads: the launcher's tracer thread only (an init is a child of the
// thread that cloned it, and its programs are traced by that thread).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "kernel/unique_fd.h"
#include "pcomponent/launcher.h"

namespace sk::pcomponent::tracer {

// Whether the vNode's programs hand their memory to the memory manager:
// the init then binds a userfaultfd device for them.
enum class VnodeMemory { kLocal, kManaged };

class VnodeInits {
 public:
  // `self_exe` is the pcomponent binary, re-run with --vnode-init.
  explicit VnodeInits(std::filesystem::path self_exe) : m_self_exe(std::move(self_exe)) {}

  // A program the vNode's init forked: waiting, before its exec, for one
  // byte on `go` (the caller traces it first), or for `go` to close (then it
  // exits).
  struct Spawned {
    pid_t pid = -1;        // host pid
    pid_t vnode_pid = -1;  // its pid inside the vNode
    UniqueFd go;
    UniqueFd pidfd;  // the init's pidfd of it, held until it is traced
  };

  // Has spec.vnode's init (made now if it has none, or lost it) fork
  // spec.argv. Errors: EINVAL for an empty command or a NUL in an argument,
  // E2BIG for too long a command line, and whatever failed while setting
  // up the vNode or talking to its init.
  Result<Spawned> spawn(const LaunchSpec& spec, VnodeMemory memory);

  // Kills the vNode's init (and with it every program of the vNode); the
  // next launch makes a new one.
  void drop(VnodeId vnode);

  // `pid` ended: if it was an init, forget it.
  void on_ended(pid_t pid);

  // At shutdown: kills every init and removes the userfaultfd devices.
  void kill_all();

 private:
  struct Init {
    pid_t pid = -1;
    UniqueFd control;
  };

  Result<Init*> ensure(const LaunchSpec& spec, VnodeMemory memory);
  Result<std::string> make_userfault_device(VnodeId vnode, uid_t owner);

  std::filesystem::path m_self_exe;
  std::unordered_map<VnodeId, Init> m_inits;
  std::vector<std::string> m_device_dirs;
};

}  // namespace sk::pcomponent::tracer
