// The sComponent's file store (see file_store.h). Lock order: m_mutex only.
#include "scomponent/file_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "kernel/log.h"
#include "kernel/wire/messages.h"

namespace sk::scomponent {

namespace fs = std::filesystem;

static const Logger log("file_store");

static constexpr const char* kIndexName = "vnodes.json";
static constexpr int kIndexVersion = 1;
// A vNode's root: its programs see it as "/", which is world-readable.
static constexpr mode_t kTreeMode = 0755;

static Error from_error_code(const std::error_code& code, std::string context) {
  return Error(code.value(), std::move(context));
}

static Result<void> fsync_path(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno("open " + path.string());
  if (::fsync(fd.get()) != 0) return Error::from_errno("fsync " + path.string());
  return {};
}

// Creates a directory if missing; an existing one must be a real directory,
// not a symlink someone planted to send us elsewhere.
static Result<void> ensure_directory(const fs::path& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return {};
  if (errno != EEXIST) return Error::from_errno("mkdir " + path.string());
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Error::from_errno("stat " + path.string());
  if (!S_ISDIR(st.st_mode)) return make_error(ENOTDIR, path.string() + " is not a directory");
  return {};
}

// Removes a tree even where a vNode's programs took away write permission
// on its directories (an unprivileged owner could not unlink inside them).
static Result<void> remove_tree(const fs::path& path) {
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(path, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_directory(error) && !it->is_symlink(error)) {
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, error);
    }
  }
  error.clear();
  fs::remove_all(path, error);
  if (error) return from_error_code(error, "remove " + path.string());
  return {};
}

FileStore::FileStore(fs::path data) : m_data(std::move(data)) {}

Result<std::unique_ptr<FileStore>> FileStore::open(const fs::path& data) {
  std::error_code error;
  fs::create_directories(data, error);
  if (error) return from_error_code(error, "create the data directory " + data.string());
  fs::path absolute = fs::canonical(data, error);
  if (error) return from_error_code(error, "resolve " + data.string());

  std::unique_ptr<FileStore> store(new FileStore(absolute));
  TRY(ensure_directory(store->vnodes_dir(), 0755));
  TRY(ensure_directory(store->trash_dir(), 0700));
  TRY(ensure_directory(store->m_data / "images", 0755));
  // Trees whose removal a crash interrupted.
  for (auto& entry : fs::directory_iterator(store->trash_dir(), error)) {
    if (auto removed = remove_tree(entry.path()); !removed) {
      log.warn("emptying the trash: {}", removed.error().text());
    }
  }
  TRY(store->load_index());
  for (auto& [vnode, name] : store->m_names) {
    auto tree = store->tree_path(name);
    if (!fs::exists(fs::symlink_status(tree))) {
      log.warn("the tree of vNode {} '{}' is missing; starting it empty", vnode, name);
    }
    TRY(ensure_directory(tree, kTreeMode));
    store->m_roots[vnode] = TRY(store->open_tree(name));
  }
  log.info("data in {}: {} vNode tree(s)", absolute.string(), store->m_names.size());
  return store;
}

Result<bool> FileStore::create_vnode(VnodeId vnode, std::string_view name_view,
                                     const Populate& populate) {
  if (vnode == kNoVnode) return make_error(EINVAL, "vNode id 0 is reserved");
  TRY(wire::validate_vnode_name(name_view));
  std::string name(name_view);

  // A new tree is made in the trash and filled there, outside the lock.
  fs::path staging;
  if (populate && !fs::exists(fs::symlink_status(tree_path(name)))) {
    auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    staging =
        trash_dir() / ("new." + name + "." + std::to_string(vnode) + "." + std::to_string(stamp));
    TRY(ensure_directory(staging, kTreeMode));
    if (auto filled = populate(staging); !filled) {
      if (auto removed = remove_tree(staging); !removed) {
        log.warn("{} (left in the trash)", removed.error().text());
      }
      return std::move(filled).error();
    }
  }
  bool created = false;
  auto bound = bind(vnode, name, staging, created);
  // Not used: the tree existed after all (made by a concurrent create of
  // the same name), or binding failed.
  if (!staging.empty()) {
    if (auto removed = remove_tree(staging); !removed) {
      log.warn("{} (left in the trash)", removed.error().text());
    }
  }
  if (!bound) return std::move(bound).error();
  return created;
}

// The locked part of create_vnode(): binds `vnode` to the tree `name`,
// moving `staging` (when not empty) into place if the tree does not exist;
// clears `staging` once it is used.
Result<void> FileStore::bind(VnodeId vnode, const std::string& name, fs::path& staging,
                             bool& created) {
  std::lock_guard lock(m_mutex);
  fs::path tree = tree_path(name);
  auto make_tree = [&]() -> Result<void> {
    if (fs::exists(fs::symlink_status(tree))) return ensure_directory(tree, kTreeMode);
    if (!staging.empty()) {
      if (::rename(staging.c_str(), tree.c_str()) != 0) {
        return Error::from_errno("move the new tree into " + tree.string());
      }
      staging.clear();
    } else {
      TRY(ensure_directory(tree, kTreeMode));
    }
    created = true;
    return fsync_path(vnodes_dir());
  };

  if (auto it = m_names.find(vnode); it != m_names.end() && it->second == name) {
    TRY(make_tree());
    m_roots[vnode] = TRY(open_tree(name));
    return {};
  }

  auto names = m_names;
  if (auto it = names.find(vnode); it != names.end()) {
    // A monitor that restarted without its table numbers vNodes afresh; it
    // is the authority on ids. The old tree stays on disk, unbound, until a
    // vNode of its name comes back.
    log.warn("vNode {} was '{}' and is now '{}'; tree '{}' is kept but unbound", vnode, it->second,
             name, it->second);
    names.erase(it);
  }
  for (auto it = names.begin(); it != names.end();) {
    if (it->second == name) {
      // The monitor reuses a name only after the vNode of that name is gone
      // (e.g. it restarted and renumbered): the tree follows the name.
      log.info("tree '{}' moves from vNode {} to vNode {}", name, it->first, vnode);
      it = names.erase(it);
    } else {
      ++it;
    }
  }
  names[vnode] = name;

  TRY(make_tree());
  std::swap(m_names, names);
  if (auto saved = save_index(); !saved) {
    std::swap(m_names, names);
    return std::move(saved).error();
  }
  std::erase_if(m_roots, [&](const auto& entry) { return !m_names.contains(entry.first); });
  m_roots.erase(vnode);  // it may have named another tree
  m_roots[vnode] = TRY(open_tree(name));
  log.info("vNode {} '{}': {} tree {}", vnode, name, created ? "created" : "kept the existing",
           tree.string());
  return {};
}

Result<void> FileStore::destroy_vnode(VnodeId vnode) {
  fs::path doomed;
  {
    std::lock_guard lock(m_mutex);
    auto it = m_names.find(vnode);
    if (it == m_names.end()) {
      return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
    }
    std::string name = it->second;
    fs::path tree = tree_path(name);
    // Into the trash first, then out of the index: a crash in between
    // leaves an index entry with an empty tree (destroyed again on the next
    // request), never a forgotten tree that a new vNode would inherit.
    auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    doomed = trash_dir() / (name + "." + std::to_string(vnode) + "." + std::to_string(stamp));
    bool moved = ::rename(tree.c_str(), doomed.c_str()) == 0;
    if (!moved && errno != ENOENT) return Error::from_errno("move " + tree.string() + " away");
    m_names.erase(it);
    if (auto saved = save_index(); !saved) {
      m_names[vnode] = name;
      if (moved) ::rename(doomed.c_str(), tree.c_str());
      return std::move(saved).error();
    }
    m_roots.erase(vnode);
    if (!moved) doomed.clear();
    log.info("vNode {} '{}': removing its tree", vnode, name);
  }
  // Outside the lock: a big tree takes a while and other vNodes need not wait.
  if (!doomed.empty()) {
    if (auto removed = remove_tree(doomed); !removed) {
      log.warn("{} (left in the trash; emptied at the next start)", removed.error().text());
    }
  }
  return {};
}

Result<std::shared_ptr<const UniqueFd>> FileStore::root(VnodeId vnode) const {
  std::lock_guard lock(m_mutex);
  auto it = m_roots.find(vnode);
  if (it == m_roots.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
  }
  return it->second;
}

Result<std::string> FileStore::vnode_name(VnodeId vnode) const {
  std::lock_guard lock(m_mutex);
  auto it = m_names.find(vnode);
  if (it == m_names.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " is not served here");
  }
  return it->second;
}

std::map<VnodeId, std::string> FileStore::vnodes() const {
  std::lock_guard lock(m_mutex);
  return m_names;
}

size_t FileStore::vnode_count() const {
  std::lock_guard lock(m_mutex);
  return m_names.size();
}

uint64_t FileStore::measure_usage() const {
  uint64_t bytes = 0;
  std::set<std::pair<dev_t, ino_t>> linked;  // files with several names, counted once
  std::error_code error;
  auto options = fs::directory_options::skip_permission_denied;
  for (auto it = fs::recursive_directory_iterator(vnodes_dir(), options, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    struct stat st;
    // Files come and go while we walk; what vanished costs nothing.
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !linked.emplace(st.st_dev, st.st_ino).second) {
      continue;
    }
    bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return bytes;
}

Result<uint64_t> FileStore::free_space() const {
  struct statvfs st;
  if (::statvfs(m_data.c_str(), &st) != 0) return Error::from_errno("statvfs " + m_data.string());
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

Result<void> FileStore::load_index() {
  fs::path path = m_data / kIndexName;
  std::error_code error;
  if (!fs::exists(path, error)) return {};
  auto corrupt = [&](const std::string& why) {
    return make_error(EINVAL, "corrupt vNode index " + path.string() + ": " + why +
                                  " (fix or remove it; the trees are in " + vnodes_dir().string() +
                                  ")");
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno("open " + path.string());
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0) return Error::from_errno("read " + path.string());
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return corrupt("not a JSON object");
  if (json.value("version", 0) != kIndexVersion) return corrupt("unknown version");
  auto list = json.find("vnodes");
  if (list == json.end() || !list->is_array()) return corrupt("no vnodes list");
  std::set<std::string> names;
  for (auto& entry : *list) {
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_unsigned() ||
        !entry.contains("name") || !entry["name"].is_string()) {
      return corrupt("bad entry " + entry.dump());
    }
    uint64_t id = entry["id"].get<uint64_t>();
    std::string name = entry["name"].get<std::string>();
    if (id == kNoVnode || id > UINT32_MAX) return corrupt("bad vNode id " + std::to_string(id));
    if (auto valid = wire::validate_vnode_name(name); !valid) {
      return corrupt(valid.error().message());
    }
    if (m_names.contains(static_cast<VnodeId>(id)) || !names.insert(name).second) {
      return corrupt("vNode " + std::to_string(id) + " '" + name + "' listed twice");
    }
    m_names[static_cast<VnodeId>(id)] = name;
  }
  return {};
}

Result<void> FileStore::save_index() {
  nlohmann::json list = nlohmann::json::array();
  for (auto& [vnode, name] : m_names) list.push_back({{"id", vnode}, {"name", name}});
  std::string text = nlohmann::json{{"version", kIndexVersion}, {"vnodes", list}}.dump(2) + "\n";

  fs::path path = m_data / kIndexName;
  fs::path temporary = m_data / (std::string(kIndexName) + ".tmp");
  {
    UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return Error::from_errno("create " + temporary.string());
    size_t done = 0;
    while (done < text.size()) {
      ssize_t wrote = ::write(fd.get(), text.data() + done, text.size() - done);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return Error::from_errno("write " + temporary.string());
      }
      done += static_cast<size_t>(wrote);
    }
    if (::fsync(fd.get()) != 0) return Error::from_errno("fsync " + temporary.string());
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error::from_errno("replace " + path.string());
  }
  return fsync_path(m_data);
}

Result<std::shared_ptr<const UniqueFd>> FileStore::open_tree(const std::string& name) const {
  fs::path tree = tree_path(name);
  UniqueFd fd(::open(tree.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Error::from_errno("open " + tree.string());
  return std::make_shared<const UniqueFd>(std::move(fd));
}

fs::path FileStore::tree_path(const std::string& name) const {
  return vnodes_dir() / name;
}

}  // namespace sk::scomponent
