// Address-space events of a process (see memory_manager_impl.h): the
// ranges registered with its uffd and what is present in them at exec, and
// the REMOVE, UNMAP and REMAP messages the fault thread reads from its uffd
// (madvise, munmap, mremap), with the process's lock held.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kernel/log.h"
#include "kernel/wire/messages.h"
#include "pcomponent/memory/memory_manager_impl.h"
#include "pcomponent/memory/pagemap.h"

namespace sk::pcomponent::memory {

static const Logger log("memory");

void MemoryManagerImpl::open_proc_files(Process& process, pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  process.pagemap = ::open((base + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  process.mem = ::open((base + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (process.pagemap < 0) log.warn("process {}: no pagemap: {}", pid, std::strerror(errno));
}

void MemoryManagerImpl::register_regions(Process& process, const std::vector<Region>& regions) {
  for (const Region& region : regions) {
    uint64_t start = region.start & ~(kPage - 1);
    uint64_t end = (region.end + kPage - 1) & ~(kPage - 1);
    if (start >= end) continue;
    uffdio_register reg{};
    reg.range = {start, end - start};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (process.track_dirty) {
      // Write-protect mode too, for dirty tracking; a range that cannot
      // have it is served without (its pages then always read as written).
      reg.mode |= UFFDIO_REGISTER_MODE_WP;
      if (::ioctl(process.uffd, UFFDIO_REGISTER, &reg) == 0) {
        process.regions.add(start, end);
        continue;
      }
      log.debug("process {}: cannot register {:#x}-{:#x} for write-protect: {}", process.pid.load(),
                start, end, std::strerror(errno));
      reg = uffdio_register{};
      reg.range = {start, end - start};
      reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    }
    if (::ioctl(process.uffd, UFFDIO_REGISTER, &reg) != 0) {
      log.debug("process {}: cannot register {:#x}-{:#x}: {}", process.pid.load(), start, end,
                std::strerror(errno));
      continue;
    }
    process.regions.add(start, end);
  }
}

void MemoryManagerImpl::scan_present(Process& process, const std::vector<Region>& regions) {
  if (process.pagemap < 0) return;
  for_each_present(process.pagemap, regions,
                   [&](uint64_t page) { process.pages.set(PageBits::kResident, page, true); });
}

void MemoryManagerImpl::handle_remove(Process& process, uint64_t start, uint64_t end, bool unmap) {
  start &= ~(kPage - 1);
  end = (end + kPage - 1) & ~(kPage - 1);
  if (!unmap) {
    // Our own madvise, between copy_out and dropped: those pages are saved.
    for (const Region& range : process.evicting_ranges) {
      if (start >= range.start && end <= range.end) return;
    }
  }
  if (unmap) {
    process.regions.remove(start, end);
    uint64_t released = 0;
    for (const Region& part : process.committed.remove(start, end)) released += part.size();
    if (released != 0) {
      std::lock_guard lock(m_mutex);
      m_vnodes.uncommit(process.vnode, released);
    }
  }
  auto forgotten = forget_pages(process, start, end);
  if (!forgotten) {
    // The pages are gone for the program either way; what stays behind on
    // an unreachable mComponent goes with the address space.
    log.warn("process {}: freeing {:#x}-{:#x} remotely: {}", process.pid.load(), start, end,
             forgotten.error().text());
  }
  process.streams = {};
}

void MemoryManagerImpl::handle_remap(Process& process, uint64_t from, uint64_t to,
                                     uint64_t length) {
  length = (length + kPage - 1) & ~(kPage - 1);
  process.regions.move(from, length, to);
  process.committed.move(from, length, to);
  auto resident = process.pages.list(PageBits::kResident, from, from + length);
  auto remote = process.pages.list(PageBits::kRemote, from, from + length);
  // Whatever was at the destination is gone (mremap unmapped it; its UNMAP
  // came first, so this is normally nothing).
  (void)forget_pages(process, to, to + length);

  // Pages here follow their vma.
  set_resident(process, resident, false);
  std::vector<uint64_t> moved;
  moved.reserve(resident.size());
  for (uint64_t page : resident) moved.push_back(page - from + to);
  set_resident(process, moved, true);

  // Pages on mComponents: re-keyed there (P2M_PAGE_MOVE) when the new
  // place is in a vRegion held by the same mComponent; otherwise read,
  // written to the new holder, freed at the old.
  for (size_t i = 0; i < remote.size();) {
    uint64_t source = remote[i];
    uint64_t target = source - from + to;
    size_t j = i + 1;
    while (j < remote.size() && remote[j] == remote[j - 1] + kPage &&
           vregion_of(remote[j]) == vregion_of(source) &&
           vregion_of(remote[j] - from + to) == vregion_of(target) &&
           j - i < wire::kMaxPagesPerMessage) {
      ++j;
    }
    if (!process.remote.locate(vregion_of(source))) {
      fail(process, "moved pages are on no mComponent we know");
      return;
    }
    Result<void> done = move_remote(process, source, target, j - i);
    if (!done) {
      fail(process, "moving its memory (mremap) failed: " + done.error().text());
      return;
    }
    for (size_t k = i; k < j; ++k) {
      process.pages.set(PageBits::kRemote, remote[k], false);
      process.pages.set(PageBits::kRemote, remote[k] - from + to, true);
    }
    i = j;
  }
  process.sync_counts();
  process.streams = {};
}

Result<void> MemoryManagerImpl::move_remote(Process& process, uint64_t source, uint64_t target,
                                            uint64_t count) {
  auto from = *process.remote.locate(vregion_of(source));
  McomponentClient* to_client = process.remote.assign(vregion_of(target), from.client);
  if (to_client == from.client) {
    return from.client->move(process.vnode, from.mm, source, target, count);
  }
  auto data = TRY(from.client->read(process.vnode, from.mm, source, static_cast<uint32_t>(count)));
  uint64_t to_mm = TRY(process.remote.mm_on(to_client, process.vnode));
  McomponentClient::Run run{target, static_cast<uint32_t>(count), data};
  TRY(to_client->write(process.vnode, to_mm, std::span(&run, 1)));
  return from.client->free(process.vnode, from.mm, source, count);
}

}  // namespace sk::pcomponent::memory
