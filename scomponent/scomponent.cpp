// The sComponent's request handlers (see scomponent.h for the protocol and
// the threads).
#include "scomponent/scomponent.h"

#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "scomponent/image.h"

namespace sk::scomponent {

static const Logger log("scomponent");

using wire::Opcode;
using Message = rpc::Message;

Result<std::unique_ptr<Scomponent>> Scomponent::create(Options options) {
  auto store = TRY(FileStore::open(options.data));
  if (options.images.empty()) options.images = store->data_dir() / "images";
  uint64_t capacity;
  if (options.capacity) {
    capacity = *options.capacity;
  } else {
    capacity = TRY(store->free_space());
  }
  return std::unique_ptr<Scomponent>(
      new Scomponent(std::move(options), std::move(store), capacity));
}

Scomponent::Scomponent(Options options, std::unique_ptr<FileStore> store, uint64_t capacity)
    : m_options(std::move(options)),
      m_store(std::move(store)),
      m_capacity(capacity),
      m_pool("sComponent", m_options.workers) {
  // Measured once before the first heartbeat can ask.
  m_used.store(m_store->measure_usage());
  m_control.on<Opcode::MON2S_VNODE_CREATE>(
      m_pool, [this](const auto& setup, const Message& ctx) { return vnode_create(setup, ctx); });
  m_control.on<Opcode::MON2S_VNODE_DESTROY>(
      m_pool,
      [this](const auto& teardown, const Message& ctx) { return vnode_destroy(teardown, ctx); });
  serve_files();
  m_measurer = std::thread([this] { measure_loop(); });
  log.info("lending {} of disk in {} ({} in use); images in {}", format_size(m_capacity),
           m_store->data_dir().string(), format_size(m_used.load()), m_options.images.string());
}

Scomponent::~Scomponent() {
  stop();
}

void Scomponent::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  m_wake.notify_all();
  // Runs what is queued (their replies still go out), then ends the threads.
  m_pool.stop();
  if (m_measurer.joinable()) m_measurer.join();
}

MembershipClient::Usage Scomponent::usage() const {
  return MembershipClient::Usage{m_capacity, m_used.load(),
                                 static_cast<uint32_t>(m_store->vnode_count())};
}

std::map<std::string, uint64_t> Scomponent::served() const {
  return m_dispatcher.served();
}

void Scomponent::measure_loop() {
  std::unique_lock lock(m_mutex);
  while (!m_wake.wait_for(lock, m_options.usage_interval, [&] { return m_stopping; })) {
    lock.unlock();
    m_used.store(m_store->measure_usage());
    lock.lock();
  }
}

Result<void> Scomponent::vnode_create(const wire::Mon2cVnodeCreateRequest& setup, const Message&) {
  // Runs only when the tree is new: an existing tree keeps its files, and a
  // re-sent create of a vNode whose image has since gone still works.
  FileStore::Populate populate;
  if (!setup.image.view().empty() && !(setup.flags & wire::kVnodeEmptyRoot)) {
    populate = [this,
                image = setup.image.str()](const std::filesystem::path& tree) -> Result<void> {
      auto source = TRY(find_image(m_options.images, image));
      return copy_image(source, tree);
    };
  } else {
    populate = make_basic_root;
  }
  // The usage walk (every usage_interval) counts a new tree's bytes soon;
  // the reply does not wait for it.
  TRY(m_store->create_vnode(setup.vnode, setup.name.view(), populate));
  return {};
}

Result<void> Scomponent::vnode_destroy(const wire::Mon2cVnodeDestroyRequest& teardown,
                                       const Message&) {
  TRY(m_store->destroy_vnode(teardown.vnode));
  // The tree is gone: do not report it in use until the next walk.
  m_used.store(m_store->measure_usage());
  return {};
}

}  // namespace sk::scomponent
