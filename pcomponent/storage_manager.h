// The FUSE storage manager: the Storage (storage.h) of a pComponent. Each
// vNode hosted here gets a libfuse mount at
//
//   RUN/p<node id>/<vNode name>/root      RUN: --run-dir, default
//                                         ${SPLIT_RUN:-/run/splitkernel}
//
// mounted allow_other (the vNode's programs run as other host uids) and
// default_permissions (the kernel checks permissions against the ids
// getattr reports), served by a multithreaded libfuse loop of its own that
// forwards every operation to the vNode's sComponent (fuse_ops.h,
// storage_client.h). Clients are shared per sComponent address.
//
// Unmounting (drop(), stop(), the destructor): the loop is told to exit,
// the mount is detached (MNT_DETACH: programs still inside see it go) and
// the FUSE connection is aborted through fusectl, since a vNode init's
// mount namespace may still hold the mount and keep the connection alive;
// then the loop's thread is joined. A pComponent that died without doing
// this leaves a dead mount (ENOTCONN); clean_stale_mounts() detaches those
// at start-up, leaving the live mounts of other pComponents on this host.
//
// Needs root (mounting, allow_other) and /dev/fuse.
//
// Threads: every public method from any thread but the transport's.
// Lock order: m_mutex only; no FUSE request is ever served under it (the
// loops run on their own threads and never take it).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "kernel/fabric/transport.h"
#include "pcomponent/storage.h"

namespace sk::pcomponent {

struct StorageCounters;
class StorageClient;

class StorageManager final : public Storage {
 public:
  struct Options {
    // Mounts go under run_dir/p<node id>/.
    std::filesystem::path run_dir = default_run_dir();
    // This pComponent's node id (known once it joined), for the mount paths.
    std::function<NodeId()> node_id;
    // Bounds each request to an sComponent.
    Duration timeout = std::chrono::seconds(30);
    // libfuse worker threads per mount, at most.
    unsigned max_threads = 16;
  };

  // ${SPLIT_RUN:-/run/splitkernel}
  static std::filesystem::path default_run_dir();

  StorageManager(fabric::Transport& transport, Options options);
  ~StorageManager() override;
  StorageManager(const StorageManager&) = delete;
  StorageManager& operator=(const StorageManager&) = delete;

  Result<std::filesystem::path> root(const VnodeStorage& vnode) override;
  Result<std::filesystem::path> root(VnodeId vnode) override;
  void drop(VnodeId vnode) override;
  // Operations served by name, "io_errors" (the sComponent unreachable),
  // "mounts" (mounted now).
  StorageStats stats() override;

  // Unmounts everything; later root() calls fail (ESHUTDOWN). Idempotent.
  void stop();

  // Detaches the dead FUSE mounts under `run_dir` (their daemon is gone:
  // ENOTCONN) and returns how many. Live mounts are left alone.
  static size_t clean_stale_mounts(const std::filesystem::path& run_dir);

 private:
  struct Mount;

  Result<std::filesystem::path> mount_locked(const VnodeStorage& vnode);
  std::shared_ptr<StorageClient> client_locked(const Address& address);

  fabric::Transport& m_transport;
  const Options m_options;
  std::unique_ptr<StorageCounters> m_counters;

  std::mutex m_mutex;  // guards everything below
  bool m_stopped = false;
  std::map<VnodeId, VnodeStorage> m_vnodes;
  std::map<VnodeId, std::unique_ptr<Mount>> m_mounts;
  std::map<std::string, std::shared_ptr<StorageClient>> m_clients;  // by address
};

}  // namespace sk::pcomponent
