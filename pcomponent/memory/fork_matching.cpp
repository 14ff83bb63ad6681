// Forks (see memory_manager_impl.h): a forked child's memory is its
// parent's, copy-on-write, here and on the mComponents. The two halves of a
// fork come separately and in either order — UFFD_EVENT_FORK brings the
// child's uffd (fault thread, the parent's lock held), the tracer's on_fork
// its pid — and are matched here (ForkBook, process_table.h).
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "kernel/log.h"
#include "pcomponent/memory/memory_manager_impl.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

namespace {

uint64_t vdso_address(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") != std::string::npos) {
      return std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    }
  }
  return 0;
}

}  // namespace

void MemoryManagerImpl::handle_fork(const ProcessPtr& parent, int child_uffd) {
  set_nonblocking(child_uffd);
  auto child = std::make_shared<Process>();
  child->vnode = parent->vnode;
  child->uffd = child_uffd;
  // The child's uffd has its parent's features, its vmas their
  // registration, and its pages their uffd-wp bits (and so their dirty
  // state: the child's copy on the mComponent is the parent's as of now).
  child->track_dirty = parent->track_dirty;
  child->pinned = parent->pinned;
  child->parent = parent->pid;
  child->regions = parent->regions;
  child->committed = parent->committed;
  // The child has what was present in the parent when the kernel copied its
  // page tables: about what we know as resident now (the parent cannot
  // have been evicted since, as the forking thread could not stop before
  // this event was read). An estimate: copy_out checks presence, and a
  // fault on a page thought resident is served like any other.
  child->pages = parent->pages;
  // Pages the parent wrote back are copied (copy-on-write) before any more
  // of the parent's messages, and so any write-back of the parent after the
  // fork, can happen: the parent's lock is held throughout.
  std::string failure;
  child->remote = parent->remote.fork(parent->vnode, failure);
  if (!failure.empty()) {
    child->failed = true;
    child->failure = failure;
  }
  child->sync_counts();
  {
    std::lock_guard lock(m_mutex);
    add_process(child);
    m_forks.add_child(parent->serial, child);
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  event.data.u64 = child->serial;
  if (::epoll_ctl(m_epoll, EPOLL_CTL_ADD, child_uffd, &event) != 0) {
    log.error("epoll_ctl a forked child's uffd: {}", std::strerror(errno));
  }
}

bool MemoryManagerImpl::uffd_alive(int uffd, pid_t parent) {
  // A uffd whose mm is gone (a fork that failed after copying the mm)
  // answers ESRCH to any fill; a live one says ENOENT for the vDSO, which
  // no uffd can register, so the probe never changes anything.
  uint64_t probe = vdso_address(parent);
  if (probe == 0) return true;
  uffdio_zeropage zero{{probe, kPage}, UFFDIO_ZEROPAGE_MODE_DONTWAKE, 0};
  return ::ioctl(uffd, UFFDIO_ZEROPAGE, &zero) == 0 || errno != ESRCH;
}

void MemoryManagerImpl::on_fork(pid_t parent, pid_t child) {
  long same = ::syscall(SYS_kcmp, parent, child, KCMP_VM, 0, 0);
  if (same < 0) return;  // one of them is gone already
  if (same == 0) {
    // vfork or CLONE_VM: one mm, one uffd (the parent's). The parent must
    // not be evicted while the child may write to it unstopped.
    std::lock_guard lock(m_mutex);
    if (m_processes.has_pid(parent)) m_processes.share(parent, child);
    return;
  }
  ProcessPtr process;
  {
    std::lock_guard lock(m_mutex);
    // A child that exec'd before its parent's fork event was handled has
    // its own entry (and uffd) already.
    if (m_processes.has_pid(child)) return;
    process = m_processes.by_pid(parent);
    if (!process) {
      m_forks.add_early(parent, child);
      return;
    }
  }
  match_child(process, child);
}

void MemoryManagerImpl::match_child(const ProcessPtr& parent, pid_t child) {
  ProcessPtr matched;
  std::vector<ProcessPtr> stillborn;
  parent->lock.lock();
  if (parent->uffd < 0 && !parent->dead) {
    add_local_child(*parent, child);
    return;
  }
  // The FORK event was read before the fork returned, and reading and
  // handling are one step under the parent's lock: it is handled now.
  std::deque<ProcessPtr> candidates;
  {
    std::lock_guard lock(m_mutex);
    candidates = m_forks.children(parent->serial);
  }
  // Two forks at once from two threads of the parent leave two candidates;
  // the events come in the order the forks finished copying the mm, which
  // is the order their ptrace events come in, but a fork that failed after
  // copying leaves a uffd whose mm is already gone: skip those.
  // FIXME: two simultaneous successful forks could still be matched the
  // wrong way round if the tracer sees their events out of order.
  for (auto& candidate : candidates) {
    if (candidates.size() == 1 || uffd_alive(candidate->uffd, parent->pid)) {
      matched = candidate;
      break;
    }
    stillborn.push_back(candidate);
  }
  {
    std::lock_guard lock(m_mutex);
    m_forks.remove_children(parent->serial, matched, stillborn);
  }
  release(*parent);
  for (auto& entry : stillborn) close_and_free(entry);
  if (!matched) {
    // A vfork child that exited (a zombie has no mm to compare) or exec'd
    // already; anything else would be a fork whose UFFD_EVENT_FORK never
    // came, and the child's faults would then go unanswered.
    log.debug("process {} forked {}, and no userfaultfd is waiting for the child",
              parent->pid.load(), child);
    return;
  }

  matched->lock.lock();
  matched->pid = child;
  matched->parent = -1;
  open_proc_files(*matched, child);
  {
    std::lock_guard lock(m_mutex);
    m_processes.bind(child, matched);
    add_to_cache(*matched);
  }
  if (matched->failed) {
    std::string reason = matched->failure;
    matched->failed = false;
    fail(*matched, reason);
  }
  release(*matched);

  // Forks the child made before it was matched.
  std::vector<pid_t> early;
  {
    std::lock_guard lock(m_mutex);
    early = m_forks.take_early(child);
  }
  for (pid_t grandchild : early) on_fork(child, grandchild);
}

void MemoryManagerImpl::add_local_child(ManagedProcess& parent, pid_t child) {
  auto process = std::make_shared<Process>();
  process->vnode = parent.vnode;
  process->pid = child;
  process->committed = parent.committed;
  release(parent);
  std::lock_guard lock(m_mutex);
  process->in_cache = true;
  add_process(process);
  m_processes.bind(child, process);
  ++m_stats.fallbacks;
}

}  // namespace sk::pcomponent::memory
