// The sComponent's file store: one directory tree per vNode on the local
// disk, under a data directory laid out as
//
//   DATA/vnodes.json        the index: which vNode id owns which tree
//   DATA/vnodes/<name>/     a vNode's tree (its "/"), named after the vNode
//   DATA/trash/             trees being removed, and new trees being filled
//                           (emptied at start-up)
//   DATA/images/<image>/    images new trees may start from (see image.h)
//
// Trees and the index survive restarts: a vNode created again under the
// same name finds its files, and a restarted sComponent still knows which
// tree to remove when the monitor destroys a vNode. The index is replaced
// atomically (write, fsync, rename, fsync the directory).
//
// No networking, so that it can be tested on its own. File operations on a
// tree are file_ops.h's; root() and confine.h are what they use.
//
// Threads: every method may be called from any thread, but most do disk
// I/O: never call them from the transport's thread. One mutex guards the
// index and serializes create/destroy; measure_usage() does not take it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernel/node.h"
#include "kernel/result.h"
#include "scomponent/confine.h"

namespace sk::scomponent {

class FileStore {
 public:
  // Opens the data directory, creating it (and its layout) if missing,
  // loads the index and empties the trash. Fails on an unreadable or
  // corrupt index rather than guessing which tree is whose.
  static Result<std::unique_ptr<FileStore>> open(const std::filesystem::path& data);

  // Fills a new tree (an empty directory, not yet the vNode's) before it
  // becomes the vNode's root: copies an image, makes the basic directories.
  using Populate = std::function<Result<void>(const std::filesystem::path& tree)>;

  // Creates the vNode's tree, or adopts the existing one of that name (left
  // by an earlier run or an earlier vNode of the same name: the monitor
  // owns names, and a name is the identity of a tree). The same id and name
  // again is a no-op. The monitor owns ids too: an id bound to another name
  // (a monitor that restarted and renumbered) is rebound, and the other
  // name's tree stays on disk, unbound, until a vNode of that name returns.
  //
  // A new tree is filled by `populate` first, in the trash directory and
  // without holding the store's lock (an image copy takes seconds; other
  // vNodes' requests go on meanwhile), then renamed into place, so a crash
  // or a failure part way leaves no half-made tree, only trash. Returns
  // true when the tree is new, false when an existing one was adopted.
  Result<bool> create_vnode(VnodeId vnode, std::string_view name, const Populate& populate = {});

  // Forgets the vNode and removes its tree. ENOENT if unknown.
  Result<void> destroy_vnode(VnodeId vnode);

  // The vNode's tree root, opened O_PATH, for confine.h. ENOENT if unknown.
  Result<std::shared_ptr<const UniqueFd>> root(VnodeId vnode) const;
  Result<std::string> vnode_name(VnodeId vnode) const;
  std::map<VnodeId, std::string> vnodes() const;
  size_t vnode_count() const;

  // Bytes of disk the trees use (allocated blocks; hard links counted
  // once). Walks every tree: call it now and then, not per request.
  uint64_t measure_usage() const;
  // Free bytes on the data directory's filesystem (for unprivileged users).
  Result<uint64_t> free_space() const;

  const std::filesystem::path& data_dir() const { return m_data; }

 private:
  explicit FileStore(std::filesystem::path data);

  Result<void> load_index();
  Result<void> save_index();
  Result<std::shared_ptr<const UniqueFd>> open_tree(const std::string& name) const;
  std::filesystem::path tree_path(const std::string& name) const;
  std::filesystem::path vnodes_dir() const { return m_data / "vnodes"; }
  std::filesystem::path trash_dir() const { return m_data / "trash"; }
  Result<void> bind(VnodeId vnode, const std::string& name, std::filesystem::path& staging,
                    bool& created);

  const std::filesystem::path m_data;

  mutable std::mutex m_mutex;  // guards m_names and m_roots
  std::map<VnodeId, std::string> m_names;
  // Open roots by vNode, so that requests need no path lookup of the tree.
  std::map<VnodeId, std::shared_ptr<const UniqueFd>> m_roots;
};

}  // namespace sk::scomponent
