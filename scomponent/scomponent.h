// The sComponent's request handlers: the wire side of the file store. Every
// request is served on a worker pool, never on the transport's thread,
// because each one touches the disk; the worker replies through the
// request's Responder.
//
//   MON2S_VNODE_CREATE  VnodeSetup{vnode, flags, name, image} -> empty
//                       creates DATA/vnodes/<name>, or keeps the existing
//                       tree of that name; the header's vNode must match. A
//                       new tree is a copy of IMAGES/<image> (ENOENT "no
//                       image" when missing), or with no image (or
//                       kVnodeEmptyRoot) the basic directories only (see
//                       image.h). The reply comes once the copy is done, so
//                       the vNode is usable when it does: an image of ~90 MB
//                       takes a second or two on a local disk, more on a
//                       slow one: the monitor allows it 120 s.
//   MON2S_VNODE_DESTROY VnodeTeardown{vnode} -> empty; removes the tree.
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
// Threads: the dispatcher's handlers run on the transport's thread and only
// queue work; the pool's threads do it. Lock order: m_mutex, then the
// FileStore's (never held together in practice).
#pragma once

#include <atomic>
#include <boost/asio/thread_pool.hpp>
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
#include "kernel/member.h"
#include "kernel/rpc/rpc.h"
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

  const rpc::Dispatcher& dispatcher() const { return m_dispatcher; }
  // For heartbeats: capacity, cached bytes used, vNodes served. Cheap.
  Member::Usage usage() const;
  FileStore& store() { return *m_store; }
  // Requests served so far, by opcode name (those served at least once).
  std::map<std::string, uint64_t> served() const;
  const std::filesystem::path& images_dir() const { return m_options.images; }

  // Refuses new requests (ESHUTDOWN), finishes those queued and stops the
  // usage thread. Idempotent; the destructor calls it.
  void stop();

 private:
  using Handler = Result<wire::Bytes> (Scomponent::*)(const rpc::Message&);

  Scomponent(Options options, std::unique_ptr<FileStore> store, uint64_t capacity);
  void serve_async(wire::Opcode opcode, Handler handler);
  void measure_loop();

  Result<wire::Bytes> vnode_create(const rpc::Message& request);
  Result<wire::Bytes> vnode_destroy(const rpc::Message& request);

  // P2S_ (scomponent_datapath.cpp).
  void serve_files();
  Result<wire::Bytes> file_getattr(const rpc::Message& request);
  Result<wire::Bytes> file_open(const rpc::Message& request);
  Result<wire::Bytes> file_read(const rpc::Message& request);
  Result<wire::Bytes> file_write(const rpc::Message& request);
  Result<wire::Bytes> file_create(const rpc::Message& request);
  Result<wire::Bytes> file_mkdir(const rpc::Message& request);
  Result<wire::Bytes> file_mknod(const rpc::Message& request);
  Result<wire::Bytes> file_symlink(const rpc::Message& request);
  Result<wire::Bytes> file_link(const rpc::Message& request);
  Result<wire::Bytes> file_unlink(const rpc::Message& request);
  Result<wire::Bytes> file_rmdir(const rpc::Message& request);
  Result<wire::Bytes> file_rename(const rpc::Message& request);
  Result<wire::Bytes> file_readdir(const rpc::Message& request);
  Result<wire::Bytes> file_readlink(const rpc::Message& request);
  Result<wire::Bytes> file_setattr(const rpc::Message& request);
  Result<wire::Bytes> file_fsync(const rpc::Message& request);
  Result<wire::Bytes> file_statfs(const rpc::Message& request);

  Options m_options;
  std::unique_ptr<FileStore> m_store;
  const uint64_t m_capacity;
  std::atomic<uint64_t> m_used{0};
  rpc::Dispatcher m_dispatcher{"scomponent"};
  // Requests served, by opcode; the map is filled by the constructor and
  // never changes after, so reading it needs no lock.
  std::map<uint16_t, std::unique_ptr<std::atomic<uint64_t>>> m_served;

  std::mutex m_mutex;  // guards m_stopping; posting to m_pool happens under it
  std::condition_variable m_wake;
  bool m_stopping = false;
  boost::asio::thread_pool m_pool;
  std::thread m_measurer;
};

}  // namespace sk::scomponent
