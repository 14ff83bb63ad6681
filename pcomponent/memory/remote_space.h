// Which mComponents hold a process's pages, and its address space on each.
//
// A vNode's virtual address space is cut into vRegions (kVregionBytes); the
// first write-back of a page of a vRegion places it (VregionPlacer), and the
// process keeps that holder for the vRegion from then on, so that a page is
// always fetched from where it was written. The address space (mm) on a
// holder is made lazily at the first write-back there, forked with
// P2M_MM_FORK when the process forks, and freed when it exits.
//
// Not thread-safe: it is part of a ManagedProcess and guarded by that
// process's lock. The calls that talk to an mComponent block on the network.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "pcomponent/memory/mcomponent_client.h"

namespace sk::pcomponent::memory {

class RemoteSpace {
 public:
  // The holder of a vRegion, or nullptr if none was chosen yet.
  McomponentClient* holder(uint64_t vregion) const;
  // Records `client` as the holder of `vregion` unless it has one already;
  // returns the holder.
  McomponentClient* assign(uint64_t vregion, McomponentClient* client);
  // Its mm on `client`, made there (P2M_MM_CREATE) the first time.
  Result<uint64_t> mm_on(McomponentClient* client, VnodeId vnode);

  // Where the pages of a vRegion are: its holder and the mm there.
  struct Location {
    McomponentClient* client = nullptr;
    uint64_t mm = 0;
  };
  // Where the vRegion's pages are, if it has a holder with an mm.
  std::optional<Location> locate(uint64_t vregion) const;

  // Frees `count` pages at `address` (all in `vregion`) where they are;
  // nothing when the vRegion or its mm is unknown.
  Result<void> free_pages(VnodeId vnode, uint64_t vregion, uint64_t address, uint64_t count);

  // A copy for a forked child: the same holders, and on each a
  // copy-on-write duplicate of every mm (P2M_MM_FORK). `failure` is set to
  // why when an mm could not be copied (the child then cannot be served).
  RemoteSpace fork(VnodeId vnode, std::string& failure) const;

  // Hands over every mm (to be freed at exit) and forgets them.
  std::map<McomponentClient*, uint64_t> take_mms();

 private:
  std::map<uint64_t, McomponentClient*> m_holders;  // vRegion index -> holder
  std::map<McomponentClient*, uint64_t> m_mms;      // holder -> mm there
};

}  // namespace sk::pcomponent::memory
