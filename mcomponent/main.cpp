// mcomponent: the daemon that lends memory to vNodes. It joins the monitor,
// then stores the pages of the address spaces pComponents create on it.
#include <string>

#include "kernel/config.h"
#include "kernel/daemon.h"
#include "mcomponent/mcomponent.h"

int main(int argc, char** argv) {
  sk::Daemon daemon("mcomponent", sk::NodeKind::kMcomponent,
                    "lends memory to vNodes (stores their pages)");
  std::string capacity = "1G";
  daemon.app()
      .add_option("--capacity", capacity, "memory this mComponent lends in all, e.g. 512M, 4G")
      ->type_name("SIZE")
      ->capture_default_str();
  if (auto exit_code = daemon.parse(argc, argv)) return *exit_code;
  auto bytes = sk::parse_size(capacity);
  if (!bytes) return daemon.bad_flag("--capacity", bytes.error());
  if (*bytes < sk::wire::kPageSize) {
    return daemon.bad_flag("--capacity", sk::make_error(EINVAL, "must hold at least one page"));
  }

  sk::mcomponent::Mcomponent component(*bytes);
  return daemon.run({component.dispatcher(), [&component] { return component.usage(); }});
}
