// The handlers of the memory calls: mmap, mprotect, brk and mremap (see
// syscall_handler.h and memory/memory_manager.h).
//
// At entry: refuse what the vNode's quota cannot hold (ENOMEM, as Linux does
// at its commit limit), else let the call run and stop again at its exit to
// learn what it mapped. What counts is what Linux commits: writable private
// anonymous memory. At exit: tell the memory manager about the new private
// anonymous range, to register with the process's userfaultfd. Nothing is
// traced while no memory manager is attached.
#include <sys/mman.h>

#include <cerrno>

#include "pcomponent/tracer/syscall_handler.h"

namespace sk::pcomponent::tracer {

namespace {

constexpr uint64_t kPage = 4096;

uint64_t page_up(uint64_t value) { return (value + kPage - 1) & ~(kPage - 1); }

// The call runs and stops at its exit if the quota holds `commit` more
// bytes (none: nothing to ask); else it returns `refused` without running.
EntryVerdict reserve_then_run(const SyscallContext& call, uint64_t commit, long refused) {
  if (commit > 0) {
    if (auto allowed = call.memory->reserve(call.tgid, commit); !allowed) {
      return EntryVerdict::fail(refused);
    }
  }
  return EntryVerdict::run_to_exit();
}

// mmap(addr, length, prot, flags, fd, offset)
EntryVerdict mmap_entry(SyscallContext& call) {
  if (!call.memory) return EntryVerdict::run();
  uint64_t flags = call.args[3];
  if (!(flags & MAP_ANONYMOUS) || (flags & MAP_TYPE) != MAP_PRIVATE) {
    return EntryVerdict::run();  // not the memory manager's
  }
  uint64_t commit = (call.args[2] & PROT_WRITE) ? page_up(call.args[1]) : 0;
  return reserve_then_run(call, commit, -ENOMEM);
}

void mmap_exit(SyscallContext& call, uint64_t result) {
  if (syscall_failed(result)) return;
  call.memory->on_map(call.tgid, result, page_up(call.args[1]), (call.args[2] & PROT_WRITE) != 0);
}

// mprotect(addr, length, prot)
EntryVerdict mprotect_entry(SyscallContext& call) {
  if (!call.memory) return EntryVerdict::run();
  if (!(call.args[2] & PROT_WRITE)) return EntryVerdict::run();
  return reserve_then_run(call, page_up(call.args[1]), -ENOMEM);
}

void mprotect_exit(SyscallContext& call, uint64_t result) {
  if (syscall_failed(result)) return;
  // Made writable: committed now (the memory manager ignores ranges that
  // are not its private anonymous regions).
  call.memory->on_map(call.tgid, call.args[0], page_up(call.args[1]), true);
}

// brk(new_break): the break as last seen is known from the exec on; until
// then nothing is counted.
EntryVerdict brk_entry(SyscallContext& call) {
  if (!call.memory) return EntryVerdict::run();
  uint64_t current = call.process().brk;
  uint64_t wanted = call.args[0];
  uint64_t commit = current != 0 && wanted > current ? page_up(wanted) - page_up(current) : 0;
  // brk reports failure by returning the unchanged break.
  return reserve_then_run(call, commit, static_cast<long>(current));
}

void brk_exit(SyscallContext& call, uint64_t result) {
  uint64_t& brk = call.process().brk;
  if (brk != 0 && page_up(result) > page_up(brk)) {
    call.memory->on_map(call.tgid, page_up(brk), page_up(result) - page_up(brk), true);
  }
  brk = result;
}

// mremap(old_address, old_size, new_size, flags, new_address)
EntryVerdict mremap_entry(SyscallContext& call) {
  if (!call.memory) return EntryVerdict::run();
  uint64_t old_size = call.args[1];
  uint64_t new_size = call.args[2];
  uint64_t commit = new_size > old_size ? page_up(new_size) - page_up(old_size) : 0;
  return reserve_then_run(call, commit, -ENOMEM);
}

void mremap_exit(SyscallContext& call, uint64_t result) {
  uint64_t old_size = call.args[1];
  uint64_t new_size = call.args[2];
  if (syscall_failed(result) || new_size <= old_size) return;
  // Grown in place or moved: the part beyond the old length is new.
  call.memory->on_map(call.tgid, result + page_up(old_size), page_up(new_size) - page_up(old_size),
                      true);
}

}  // namespace

const SyscallHandler mmap_handler{mmap_entry, mmap_exit};
const SyscallHandler mprotect_handler{mprotect_entry, mprotect_exit};
const SyscallHandler brk_handler{brk_entry, brk_exit};
const SyscallHandler mremap_handler{mremap_entry, mremap_exit};

}  // namespace sk::pcomponent::tracer
