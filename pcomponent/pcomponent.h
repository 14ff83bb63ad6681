// The pComponent: where vNodes' processes run. It joins the cluster, lends
// its ExCache budget, keeps the table of vNodes the monitor placed on it and
// mounts each one's root through the Storage (storage.h); process execution
// and the ExCache come with other issues.
//
//   MON2P_VNODE_CREATE  Mon2cVnodeCreateRequest{vnode, cache, memory, name, scomponent}
//                       -> empty. Records the vNode; cache is its ExCache
//                       budget (0: the whole of this pComponent's). Mounts
//                       its root from `scomponent` before replying, so a
//                       mount that cannot be made fails the create; a setup
//                       without an sComponent address records the vNode
//                       without a root (logged). The header's vNode must
//                       match. Idempotent (the monitor may re-send): again
//                       with the same name updates the budget; with
//                       another name (a restarted monitor renumbered its
//                       vNodes) replaces the old vNode.
//   MON2P_VNODE_DESTROY Mon2cVnodeDestroyRequest{vnode} -> empty; unmounts the root;
//                       ENOENT if unknown.
//
// Threads: both handlers mount or unmount, which blocks, so they run on a
// worker of the component's own (rpc::WorkerPool), never on the transport's
// thread. The table is guarded by m_mutex (never held while mounting).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "kernel/membership_client.h"
#include "kernel/rpc/rpc.h"
#include "kernel/rpc/worker_pool.h"
#include "pcomponent/storage.h"

namespace sk::pcomponent {

class Pcomponent {
 public:
  struct Vnode {
    VnodeId id = kNoVnode;
    std::string name;
    uint64_t cache = 0;      // ExCache budget in bytes
    uint64_t memory = 0;     // memory quota in bytes (0: none)
    std::string scomponent;  // where its root lives ("" if the monitor did not say)
  };
  // Told of every vNode created (or updated) here, and of every vNode
  // destroyed (`now` null), on the worker thread, after the table changed
  // (for a destroyed vNode: before its root is unmounted): the process
  // manager ends its programs; the memory manager's budgets and quotas
  // (MemoryManager::set_vnode / drop_vnode).
  using VnodeObserver = std::function<void(VnodeId vnode, const Vnode* now)>;

  // excache: the ExCache budget, in bytes, shared by all local processes.
  // `storage` mounts the vNodes' roots; it must outlive the component.
  Pcomponent(uint64_t excache, Storage& storage);
  ~Pcomponent();
  // The dispatcher's handlers point at this object.
  Pcomponent(const Pcomponent&) = delete;
  Pcomponent& operator=(const Pcomponent&) = delete;

  // The pComponent serves only the control plane (MON2P_).
  const rpc::ControlDispatcher& dispatcher() const { return m_dispatcher; }
  // For the process manager's handlers (ProcessManager::register_handlers).
  rpc::ControlDispatcher& dispatcher() { return m_dispatcher; }
  // For heartbeats: the ExCache budget as capacity (usage and load are the
  // memory and process managers', which the daemon adds).
  MembershipClient::Usage usage() const;
  std::map<VnodeId, Vnode> vnodes() const;
  // The vNodes' roots, for the process manager.
  Storage& storage() { return m_storage; }

  // Set it before the component serves requests.
  void set_vnode_observer(VnodeObserver observer) { m_observer = std::move(observer); }

  // Finishes the requests in hand and refuses new ones (ESHUTDOWN).
  // Idempotent; the destructor calls it.
  void stop();

 private:
  Result<void> vnode_create(const wire::Mon2cVnodeCreateRequest& setup);
  Result<void> vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown);

  const uint64_t m_excache;
  Storage& m_storage;
  rpc::ControlDispatcher m_dispatcher{"pcomponent"};
  mutable std::mutex m_mutex;  // guards m_vnodes
  std::map<VnodeId, Vnode> m_vnodes;
  VnodeObserver m_observer;  // set before serving; called on the worker
  // One thread: vNode creates and destroys are rare, and in order they
  // cannot race each other's mounts.
  rpc::WorkerPool m_workers{"pComponent", 1};
};

}  // namespace sk::pcomponent
