// The tracer at a tracee's exec (see tracer.h): a fresh address space, whose
// userfaultfd the tracer takes by injecting the calls into the process and
// whose private anonymous regions it hands to the memory manager before the
// program can touch them. Only when a memory manager is attached.
#include <sys/ptrace.h>

#include <vector>

#include "kernel/log.h"
#include "pcomponent/inject.h"
#include "pcomponent/memory/region_map.h"
#include "pcomponent/proc_stat.h"
#include "pcomponent/tracer/tracer.h"
#include "pcomponent/userfault.h"

namespace sk::pcomponent::tracer {

namespace {

const Logger log("tracer");

// Field 47 of /proc/PID/stat, start_brk: the program break right after
// exec (0 when it cannot be read).
uint64_t start_brk(pid_t pid) {
  auto stat = read_proc_stat(pid);
  return stat ? stat->number(47) : 0;
}

}  // namespace

// At the exec event: take the new mm's userfaultfd and hand the process's
// anonymous regions to the memory manager, then let it run.
void Tracer::attach_after_exec(pid_t pid) {
  auto tracee = m_tracees.find(pid);
  VnodeId vnode = tracee != m_tracees.end() ? tracee->second.vnode : kNoVnode;
  // The event stop is inside execve; injection needs it finished.
  auto stepped = step_out_of_syscall(pid);
  Result<Userfault> uffd = stepped ? Result<Userfault>(Userfault{}) : stepped.error();
  if (stepped) {
    Injector injector(pid);
    uffd = acquire_userfault(pid, injector);
  }
  m_processes[pid].brk = start_brk(pid);
  m_counters.update([&](TracerStats& stats) { ++(uffd ? stats.userfaults : stats.fallbacks); });
  if (!uffd) {
    // Its memory stays local; its commits still count against the quota.
    log.warn("host pid {}: memory stays local: {}", pid, uffd.error().text());
    uffd = Userfault{};
  }
  auto regions = memory::private_anonymous_regions(pid);
  m_memory->on_exec(pid, vnode, uffd.value(),
                    regions ? std::move(regions).value() : std::vector<memory::Region>{});
  ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
}

}  // namespace sk::pcomponent::tracer
