// pcomponent: the daemon where vNodes' processes run. It joins the monitor,
// mounts the roots of the vNodes placed on it (FUSE, served from their
// sComponents), runs their programs under the tracer (ptrace_launcher.cpp)
// and keeps their anonymous memory on mComponents behind its ExCache
// (memory/memory_manager.h).
//
// The same binary is each vNode's init: `pcomponent --vnode-init FD HOSTNAME
// ROOT` (see launcher.h), recognised before anything else runs, since it is
// started inside the vNode's fresh namespaces and must not start threads or
// parse the daemon's flags.
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernel/config.h"
#include "kernel/daemon.h"
#include "kernel/fabric/fabric_stats.h"
#include "kernel/log.h"
#include "pcomponent/launcher.h"
#include "pcomponent/memory/memory_manager_impl.h"
#include "pcomponent/memory/vregion_placer.h"
#include "pcomponent/pcomponent.h"
#include "pcomponent/process_manager.h"
#include "pcomponent/storage_manager.h"

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask.
  sk::pcomponent::block_sigchld();
  if (sk::pcomponent::is_vnode_init(argc, argv)) sk::pcomponent::vnode_init_main(argc, argv);

  sk::Daemon daemon("pcomponent", sk::NodeKind::kPcomponent,
                    "runs vNodes' processes, caching their remote memory locally");
  std::string excache = "256M";
  std::string run_dir = sk::pcomponent::StorageManager::default_run_dir().string();
  std::string policy = "fifo";
  bool local_memory = false;
  daemon.app()
      .add_option("--excache", excache,
                  "ExCache budget: local memory for the pages of remote memory, e.g. 512M")
      ->type_name("SIZE")
      ->capture_default_str();
  daemon.app()
      .add_option("--run-dir", run_dir,
                  "where vNode roots are mounted: DIR/p<node id>/<vNode>/root (default: "
                  "$SPLIT_RUN, else /run/splitkernel)")
      ->type_name("DIR")
      ->capture_default_str();
  daemon.app()
      .add_option("--excache-policy", policy,
                  "how ExCache victims are chosen: fifo (LegoOS found it beat LRU) or clock")
      ->check(CLI::IsMember({"fifo", "clock"}))
      ->capture_default_str();
  daemon.app().add_flag("--local-memory", local_memory,
                        "keep programs' memory local (no mComponents, no ExCache bound)");
  if (auto exit_code = daemon.parse(argc, argv)) return *exit_code;
  auto bytes = sk::parse_size(excache);
  if (!bytes) return daemon.bad_flag("--excache", bytes.error());
  if (*bytes < sk::wire::kPageSize) {
    return daemon.bad_flag("--excache", sk::make_error(EINVAL, "must hold at least one page"));
  }
  if (run_dir.empty()) return daemon.bad_flag("--run-dir", sk::make_error(EINVAL, "empty path"));

  // A pComponent that died left its mounts behind, dead; they must not
  // stand in the way of this one's.
  sk::pcomponent::StorageManager::clean_stale_mounts(run_dir);
  sk::pcomponent::StorageManager::Options storage_options;
  storage_options.run_dir = run_dir;
  storage_options.node_id = [&daemon] { return daemon.node_id(); };
  sk::pcomponent::StorageManager storage(daemon.transport(), storage_options);

  auto launcher = sk::pcomponent::make_ptrace_launcher("/proc/self/exe");
  if (!launcher) {
    sk::Logger("pcomponent").error("cannot run programs: {}", launcher.error().text());
    return 1;
  }
  sk::pcomponent::Pcomponent component(*bytes, storage);
  // Runs, ps and stats (process_manager.h) on the component's dispatcher.
  sk::pcomponent::ProcessManager processes(**launcher, storage);

  // Remote memory: placement by the monitor, pages on mComponents, at most
  // the ExCache budget resident here. Attached before the first launch.
  namespace memory = sk::pcomponent::memory;
  memory::MonitorVregionPlacer placer(daemon.transport(), daemon.monitor());
  std::unique_ptr<memory::MemoryManagerImpl> memory_manager;
  if (!local_memory) {
    memory::MemoryOptions options;
    options.excache = *bytes;
    options.policy = policy == "clock" ? memory::PolicyKind::kClock : memory::PolicyKind::kFifo;
    options.on_failure = [&processes](pid_t pid, const std::string& why) {
      processes.memory_failed(pid, why);
    };
    auto made = memory::make_memory_manager(daemon.transport(), placer,
                                            (*launcher)->page_dropper(), std::move(options));
    if (!made) {
      sk::Logger("pcomponent").error("cannot serve remote memory: {} (--local-memory runs "
                                     "programs without it)",
                                     made.error().text());
      return 1;
    }
    memory_manager = std::move(made).value();
    (*launcher)->attach_memory(memory_manager.get());
    processes.attach_memory(memory_manager.get());
  }

  // `splitctl stats` shows which fabric this pComponent's traffic went over.
  processes.attach_stats([&daemon] { return sk::fabric::fabric_stats(daemon.transport()); });
  processes.register_handlers(component.dispatcher());
  component.set_vnode_observer([&processes, &memory_manager](sk::VnodeId vnode, const auto* now) {
    if (now == nullptr) {
      processes.drop_vnode(vnode);
      if (memory_manager) memory_manager->drop_vnode(vnode);
    } else if (memory_manager) {
      memory_manager->set_vnode(vnode, now->cache, now->memory);
    }
  });
  int code = daemon.run({component.dispatcher(),
                         [&component, &processes, &memory_manager] {
                           auto usage = component.usage();
                           usage.load = static_cast<uint32_t>(processes.running());
                           if (memory_manager) {
                             usage.usage = memory_manager->stats().resident_pages *
                                           sk::wire::kPageSize;
                           }
                           return usage;
                         },
                         [&component, &storage, &processes] {
                           processes.stop();
                           component.stop();
                           storage.stop();
                         }});
  // The programs were killed. The memory manager's threads stop first (no
  // more page drops through the tracer), then the tracer (whose last
  // events find a stopped manager, still alive), then the manager goes.
  if (memory_manager) memory_manager->stop();
  launcher->reset();
  return code;
}
