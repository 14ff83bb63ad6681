// The sComponent's request handlers: the wire side of the file store. Every
// request is served on a worker pool, never on the transport's thread,
// because each one touches the disk; the worker replies through the
// request's Responder.
//
//   MON2S_VNODE_CREATE  Mon2cVnodeCreateRequest{vnode, flags, name, image} -> empty
//                       creates DATA/vnodes/<name>, or keeps the existing
//                       tree of that name; the header's vNode must match. A
//                       new tree is a copy of IMAGES/<image> (ENOENT "no
//                       image" when missing), or with no image (or
//                       kVnodeEmptyRoot) the basic directories only (see
//                       image.h). The reply comes once the copy is done, so
//                       the vNode is usable when it does: an image of ~90 MB
//                       takes a second or two on a local disk, more on a
//                       slow one: the monitor allows it 120 s.
//   MON2S_VNODE_DESTROY Mon2cVnodeDestroyRequest{vnode} -> empty; removes the tree.
//   P2S_*               the stateless file operations on a vNode's tree
//                       (kernel/wire/storage_messages.h, file_ops.h); ENOENT
//                       for a vNode not served here.
//
// Usage for heartbeats (bytes the trees use) is measured by a walk every
// few seconds on a thread of its own and cached, so a heartbeat costs no
// disk I/O. Requests served are counted by opcode name for a later stats
// request.
//
// FIXME: any node may send P2S_ requests for any vNode served here; the
// sComponent should check that the sender is a pComponent the monitor
// placed the vNode on, once the monitor tells it.
//
// Threads: every handler runs on the worker pool (the dispatcher queues it
// there from the transport's thread). Lock order: m_mutex, then the
// FileStore's (never held together in practice); the pool has its own.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kernel/config.h"
#include "kernel/membership_client.h"
#include "kernel/rpc/rpc.h"
#include "kernel/rpc/worker_pool.h"
#include "kernel/wire/message_list.h"
#include "scomponent/file_store.h"

namespace sk::scomponent {

class Scomponent {
 public:
  struct Options {
    std::filesystem::path data = "scomponent-data";
    // Bytes of disk lent to vNodes; unset: the data directory's free space
    // when the sComponent starts.
    std::optional<uint64_t> capacity;
    // Images for new trees; empty: DATA/images.
    std::filesystem::path images;
    // Disk-bound workers: enough that a long image copy or fsync does not
    // stall the file operations of other requests.
    unsigned workers = 8;
    Duration usage_interval = std::chrono::seconds(5);
  };

  // Opens the data directory (see FileStore::open) and starts the workers.
  static Result<std::unique_ptr<Scomponent>> create(Options options);
  ~Scomponent();
  Scomponent(const Scomponent&) = delete;
  Scomponent& operator=(const Scomponent&) = delete;

  // Serves both planes (MON2S_ and P2S_) on one listener.
  const rpc::Dispatcher& dispatcher() const { return m_dispatcher; }
  const rpc::ControlDispatcher& control() const { return m_control; }
  const rpc::DataDispatcher& data() const { return m_data; }
  // For heartbeats: capacity, cached bytes used, vNodes served. Cheap.
  MembershipClient::Usage usage() const;
  FileStore& store() { return *m_store; }
  // Requests served so far, by opcode name (those served at least once).
  std::map<std::string, uint64_t> served() const;
  const std::filesystem::path& images_dir() const { return m_options.images; }

  // Refuses new requests (ESHUTDOWN), finishes those queued and stops the
  // usage thread. Idempotent; the destructor calls it.
  void stop();

 private:
  using Message = rpc::Message;
  template <typename T>
  using Storage = wire::StorageBody<T>;

  Scomponent(Options options, std::unique_ptr<FileStore> store, uint64_t capacity);
  void measure_loop();

  Result<void> vnode_create(const wire::Mon2cVnodeCreateRequest& setup, const Message& ctx);
  Result<void> vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown, const Message& ctx);

  // P2S_ (scomponent_datapath.cpp).
  void serve_files();
  Result<wire::StorageStat> file_getattr(const Storage<wire::P2sPathRequest>& decoded,
                                         const Message& request);
  Result<wire::StorageStat> file_open(const Storage<wire::P2sPathRequest>& decoded,
                                      const Message& request);
  Result<wire::StorageData> file_read(const Storage<wire::P2sReadRequest>& decoded,
                                      const Message& request);
  Result<wire::P2sWriteReply> file_write(const Storage<wire::P2sWriteRequest>& decoded,
                                         const Message& request);
  Result<wire::StorageStat> file_create(const Storage<wire::P2sMakeRequest>& decoded,
                                        const Message& request);
  Result<wire::StorageStat> file_mkdir(const Storage<wire::P2sMakeRequest>& decoded,
                                       const Message& request);
  Result<wire::StorageStat> file_mknod(const Storage<wire::P2sMakeRequest>& decoded,
                                       const Message& request);
  Result<wire::StorageStat> file_symlink(const Storage<wire::P2sMakeRequest>& decoded,
                                         const Message& request);
  Result<wire::StorageStat> file_link(const Storage<wire::P2sTwoPathRequest>& decoded,
                                      const Message& request);
  Result<void> file_unlink(const Storage<wire::P2sPathRequest>& decoded, const Message& request);
  Result<void> file_rmdir(const Storage<wire::P2sPathRequest>& decoded, const Message& request);
  Result<void> file_rename(const Storage<wire::P2sTwoPathRequest>& decoded, const Message& request);
  Result<wire::StorageListing> file_readdir(const Storage<wire::P2sReaddirRequest>& decoded,
                                            const Message& request);
  Result<wire::StorageData> file_readlink(const Storage<wire::P2sPathRequest>& decoded,
                                          const Message& request);
  Result<wire::StorageStat> file_setattr(const Storage<wire::P2sSetattrRequest>& decoded,
                                         const Message& request);
  Result<void> file_fsync(const Storage<wire::P2sPathRequest>& decoded, const Message& request);
  Result<wire::StorageStatfs> file_statfs(const Storage<wire::P2sPathRequest>& decoded,
                                          const Message& request);

  Options m_options;
  std::unique_ptr<FileStore> m_store;
  const uint64_t m_capacity;
  std::atomic<uint64_t> m_used{0};
  rpc::ControlDispatcher m_control{"scomponent"};
  rpc::DataDispatcher m_data{"scomponent"};
  rpc::Dispatcher m_dispatcher{"scomponent", {&m_control, &m_data}};

  std::mutex m_mutex;  // guards m_stopping (of the usage thread)
  std::condition_variable m_wake;
  bool m_stopping = false;
  rpc::WorkerPool m_pool;
  std::thread m_measurer;
};

}  // namespace sk::scomponent
