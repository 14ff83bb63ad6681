// pcomponent: the daemon where vNodes' processes run. It joins the monitor,
// lends its ExCache budget and mounts the roots of the vNodes placed on it
// (FUSE, served from their sComponents); process execution comes with other
// issues.
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
#include "kernel/log.h"
#include "pcomponent/launcher.h"
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
  processes.register_handlers(component.dispatcher());
  component.set_vnode_observer([&processes](sk::VnodeId vnode, const auto* now) {
    if (now == nullptr) processes.drop_vnode(vnode);
  });
  return daemon.run({component.dispatcher(),
                     [&component, &processes] {
                       auto usage = component.usage();
                       usage.load = static_cast<uint32_t>(processes.running());
                       return usage;
                     },
                     [&component, &storage, &processes] {
                       processes.stop();
                       component.stop();
                       storage.stop();
                     }});
}
