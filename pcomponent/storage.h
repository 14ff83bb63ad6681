// The pComponent's storage manager, as the process manager sees it: for each
// vNode a host directory that is the vNode's root, served from the vNode's
// sComponent over the fabric (a FUSE mount in the FUSE implementation,
// storage_manager.h), so that stock programs' open/read/mmap/execve/getdents
// work natively while every byte lives on the sComponent.
//
// The pComponent tells the storage where each vNode's files live when the
// monitor creates the vNode here (root(const VnodeStorage&), which also
// mounts it); the process manager then asks for the root by id
// (root(VnodeId)) before it launches a program of that vNode.
//
// Threads: any thread except the transport's (mounting blocks);
// implementations lock internally.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "kernel/config.h"
#include "kernel/node.h"
#include "kernel/result.h"

namespace sk::pcomponent {

// Where a vNode's files live, as the monitor told us in MON2P_VNODE_CREATE.
struct VnodeStorage {
  VnodeId vnode = kNoVnode;
  std::string name;
  Address scomponent;  // the sComponent holding the vNode's tree
};

// Storage operations served, by operation name ("getattr", "read", ...).
using StorageStats = std::map<std::string, uint64_t>;

class Storage {
 public:
  virtual ~Storage() = default;

  // Records where the vNode's files live (replacing what was recorded for
  // that id) and mounts its root if it is not mounted yet; returns the
  // root's host path. Fails when the mount cannot be made (the sComponent
  // is reached lazily, by the first file operation).
  virtual Result<std::filesystem::path> root(const VnodeStorage& vnode) = 0;

  // The root of a vNode recorded earlier, mounted again if it had to be.
  // ENOENT for a vNode this pComponent was never told about.
  virtual Result<std::filesystem::path> root(VnodeId vnode) = 0;

  // Unmounts the vNode's root and forgets it (its programs must be gone:
  // what still runs there gets ENOTCONN).
  virtual void drop(VnodeId vnode) = 0;

  virtual StorageStats stats() = 0;
};

}  // namespace sk::pcomponent
