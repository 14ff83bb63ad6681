// The sComponent's request handlers (see scomponent.h for the protocol and
// the threads).
#include "scomponent/scomponent.h"

#include <boost/asio/post.hpp>

#include "kernel/daemon.h"
#include "kernel/log.h"
#include "kernel/wire/codec.h"
#include "scomponent/image.h"

namespace sk::scomponent {

static const Logger log("scomponent");

using wire::Opcode;

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
      m_pool(m_options.workers == 0 ? 1 : m_options.workers) {
  // Measured once before the first heartbeat can ask.
  m_used.store(m_store->measure_usage());
  serve_async(Opcode::MON2S_VNODE_CREATE, &Scomponent::vnode_create);
  serve_async(Opcode::MON2S_VNODE_DESTROY, &Scomponent::vnode_destroy);
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
  m_pool.join();
  if (m_measurer.joinable()) m_measurer.join();
}

Member::Usage Scomponent::usage() const {
  return Member::Usage{m_capacity, m_used.load(), static_cast<uint32_t>(m_store->vnode_count())};
}

std::map<std::string, uint64_t> Scomponent::served() const {
  std::map<std::string, uint64_t> counts;
  for (const auto& [opcode, count] : m_served) {
    if (uint64_t n = count->load(std::memory_order_relaxed)) {
      counts[std::string(wire::opcode_name(opcode))] = n;
    }
  }
  return counts;
}

void Scomponent::serve_async(Opcode opcode, Handler handler) {
  auto& counter = m_served[static_cast<uint16_t>(opcode)];
  counter = std::make_unique<std::atomic<uint64_t>>(0);
  std::atomic<uint64_t>* served = counter.get();
  m_dispatcher.on_async(
      opcode, [this, handler, served](rpc::Message request, rpc::Responder responder) {
        std::unique_lock lock(m_mutex);
        if (m_stopping) {
          lock.unlock();
          responder.fail(make_error(ESHUTDOWN, "the sComponent is shutting down"));
          return;
        }
        boost::asio::post(m_pool, [this, handler, served, request = std::move(request),
                                   responder = std::move(responder)]() mutable {
          auto result = (this->*handler)(request);
          served->fetch_add(1, std::memory_order_relaxed);
          if (result) {
            responder.reply(std::move(result).value());
          } else {
            log.debug("{} failed: {}", wire::opcode_name(request.opcode()), result.error().text());
            responder.fail(result.error());
          }
        });
      });
}

void Scomponent::measure_loop() {
  std::unique_lock lock(m_mutex);
  while (!m_wake.wait_for(lock, m_options.usage_interval, [&] { return m_stopping; })) {
    lock.unlock();
    m_used.store(m_store->measure_usage());
    lock.lock();
  }
}

Result<wire::Bytes> Scomponent::vnode_create(const rpc::Message& request) {
  auto setup = TRY(decode_vnode_setup(request));
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
  return wire::Bytes{};
}

Result<wire::Bytes> Scomponent::vnode_destroy(const rpc::Message& request) {
  auto teardown = TRY(decode_vnode_teardown(request));
  TRY(m_store->destroy_vnode(teardown.vnode));
  // The tree is gone: do not report it in use until the next walk.
  m_used.store(m_store->measure_usage());
  return wire::Bytes{};
}

}  // namespace sk::scomponent
