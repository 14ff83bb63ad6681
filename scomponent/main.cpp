// scomponent: the daemon that holds vNodes' files. It joins the monitor,
// then keeps one directory tree per vNode under its data directory.
#include <string>

#include "kernel/config.h"
#include "kernel/daemon.h"
#include "kernel/log.h"
#include "scomponent/scomponent.h"

int main(int argc, char** argv) {
  sk::Daemon daemon("scomponent", sk::NodeKind::kScomponent,
                    "holds vNodes' files, one tree per vNode on local disk");
  sk::scomponent::Scomponent::Options options;
  std::string data = "./scomponent-data";
  std::string capacity;
  std::string images;
  daemon.app()
      .add_option("--data", data, "directory of the vNode trees (created if missing)")
      ->type_name("DIR")
      ->capture_default_str();
  daemon.app()
      .add_option("--capacity", capacity,
                  "disk lent to vNodes, e.g. 20G (default: the data directory's free "
                  "space at start)")
      ->type_name("SIZE");
  daemon.app()
      .add_option("--images", images,
                  "directory of the images new vNode trees start from, one directory per "
                  "image (default: DATA/images)")
      ->type_name("DIR");
  if (auto exit_code = daemon.parse(argc, argv)) return *exit_code;
  if (data.empty()) return daemon.bad_flag("--data", sk::make_error(EINVAL, "empty path"));
  options.data = data;
  options.images = images;
  if (!capacity.empty()) {
    auto bytes = sk::parse_size(capacity);
    if (!bytes) return daemon.bad_flag("--capacity", bytes.error());
    options.capacity = *bytes;
  }

  auto component = sk::scomponent::Scomponent::create(options);
  if (!component) {
    sk::Logger("scomponent").error("{}", component.error().text());
    return 1;
  }
  auto& scomponent = **component;
  return daemon.run({scomponent.dispatcher(), [&scomponent] { return scomponent.usage(); },
                     [&scomponent] { scomponent.stop(); }});
}
