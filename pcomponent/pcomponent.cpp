// The pComponent's request handlers (see pcomponent.h). Lock order: m_mutex
// only; the Storage's lock is never taken while holding it.
#include "pcomponent/pcomponent.h"

#include "kernel/config.h"
#include "kernel/log.h"

namespace sk::pcomponent {

static const Logger log("pcomponent");

using wire::Opcode;

Pcomponent::Pcomponent(uint64_t excache, Storage& storage)
    : m_excache(excache), m_storage(storage) {
  m_dispatcher.on<Opcode::MON2P_VNODE_CREATE>(
      m_workers, [this](const wire::Mon2cVnodeCreateRequest& setup, const rpc::Message&) {
        return vnode_create(setup);
      });
  m_dispatcher.on<Opcode::MON2P_VNODE_DESTROY>(
      m_workers, [this](const wire::Mon2cVnodeDestroyRequest& teardown, const rpc::Message&) {
        return vnode_destroy(teardown);
      });
}

Pcomponent::~Pcomponent() {
  stop();
}

void Pcomponent::stop() {
  m_workers.stop();
}

MembershipClient::Usage Pcomponent::usage() const {
  // The daemon fills in the resident bytes and the load (main.cpp).
  return MembershipClient::Usage{m_excache, 0, 0};
}

std::map<VnodeId, Pcomponent::Vnode> Pcomponent::vnodes() const {
  std::lock_guard lock(m_mutex);
  return m_vnodes;
}

Result<void> Pcomponent::vnode_create(const wire::Mon2cVnodeCreateRequest& setup) {
  uint64_t cache = setup.cache == 0 ? m_excache : setup.cache;
  std::string scomponent = setup.scomponent.str();
  if (scomponent.empty()) {
    log.warn(
        "vNode {} '{}': the monitor did not say which sComponent holds its root; it has "
        "no root here",
        setup.vnode, setup.name.view());
  } else {
    auto address = parse_address(scomponent);
    if (!address) {
      return make_error(
          EINVAL, "bad sComponent address '" + scomponent + "': " + address.error().message());
    }
    auto root = TRY(m_storage.root(VnodeStorage{setup.vnode, setup.name.str(), *address}));
    log.info("vNode {} '{}': root from sComponent {} on {}", setup.vnode, setup.name.view(),
             scomponent, root.string());
  }
  Vnode entry{setup.vnode, setup.name.str(), cache, setup.memory, scomponent};
  {
    std::lock_guard lock(m_mutex);
    auto [it, inserted] = m_vnodes.try_emplace(setup.vnode);
    if (!inserted && it->second.name != setup.name.view()) {
      // The monitor owns ids: one that comes back with another name means it
      // restarted and the old vNode is gone (the storage moved its root
      // already). FIXME: kill the old vNode's processes here once processes
      // run.
      log.warn("vNode {} was '{}' and is now '{}'", setup.vnode, it->second.name,
               setup.name.view());
    }
    it->second = entry;
  }
  if (m_observer) m_observer(setup.vnode, &entry);
  log.info("hosting vNode {} '{}' (ExCache budget {}, memory quota {})", setup.vnode,
           setup.name.view(), format_size(cache),
           setup.memory == 0 ? std::string("none") : format_size(setup.memory));
  return {};
}

Result<void> Pcomponent::vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown) {
  {
    std::lock_guard lock(m_mutex);
    if (m_vnodes.erase(teardown.vnode) == 0) {
      return make_error(ENOENT, "vNode " + std::to_string(teardown.vnode) + " is not hosted here");
    }
  }
  // The observers (the process manager) end the vNode's programs before its
  // root goes, so none of them sees its files vanish.
  if (m_observer) m_observer(teardown.vnode, nullptr);
  m_storage.drop(teardown.vnode);
  log.info("no longer hosting vNode {}", teardown.vnode);
  return {};
}

}  // namespace sk::pcomponent
