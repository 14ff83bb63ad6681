// The FUSE storage manager (see storage_manager.h): mounts, unmounts, stale
// mounts. The operations themselves are in fuse_ops.cpp.
#include "pcomponent/storage_manager.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "kernel/log.h"
#include "pcomponent/fuse_ops.h"
#include "pcomponent/launcher.h"

namespace sk::pcomponent {

namespace fs = std::filesystem;

static const Logger log("storage");

// How long an unmount waits for the mount's loop to end before giving up
// on it (its threads and memory are then left behind, not freed under it).
static constexpr auto kUnmountWait = std::chrono::seconds(5);
static constexpr const char* kFusectl = "/sys/fs/fuse/connections";
static constexpr const char* kFuseType = "fuse.splitkernel";

namespace {

// One line of /proc/self/mountinfo, the fields we use.
struct MountInfo {
  std::string mount_point;
  std::string type;
  unsigned major = 0;
  unsigned minor = 0;
};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = text[i + j];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::vector<MountInfo> read_mountinfo() {
  std::vector<MountInfo> mounts;
  std::ifstream file("/proc/self/mountinfo");
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    fields >> id >> parent >> device >> root >> mount_point;
    std::string field;
    while (fields >> field && field != "-") {
    }
    MountInfo info;
    fields >> info.type;
    info.mount_point = unescape(mount_point);
    if (std::sscanf(device.c_str(), "%u:%u", &info.major, &info.minor) != 2) continue;
    mounts.push_back(std::move(info));
  }
  return mounts;
}

bool under(const fs::path& path, const fs::path& dir) {
  std::string text = path.string();
  std::string prefix = dir.string();
  if (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return text.size() > prefix.size() && text.compare(0, prefix.size(), prefix) == 0 &&
         text[prefix.size()] == '/';
}

// fusectl lets us abort a connection that a mount in another namespace
// keeps alive; mounted here if the host did not.
void ensure_fusectl() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (const auto& mount : read_mountinfo()) {
      if (mount.type == "fusectl") return;
    }
    if (::mount("fusectl", kFusectl, "fusectl", 0, nullptr) != 0) {
      log.warn(
          "cannot mount fusectl on {}: {}; a vNode root still held by a vNode's "
          "namespace cannot be cut off at unmount",
          kFusectl, strerror(errno));
    }
  });
}

void write_text(const std::string& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

// Routes libfuse's own messages into our log.
void fuse_log_to_spdlog(fuse_log_level level, const char* format, va_list args) {
  char text[1024];
  std::vsnprintf(text, sizeof text, format, args);
  std::string_view line(text);
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  static const Logger libfuse("libfuse");
  if (level <= FUSE_LOG_ERR) {
    libfuse.error("{}", line);
  } else if (level <= FUSE_LOG_NOTICE) {
    libfuse.info("{}", line);
  } else {
    libfuse.debug("{}", line);
  }
}

}  // namespace

struct StorageManager::Mount {
  VnodeStorage vnode;
  fs::path path;
  std::unique_ptr<MountContext> context;
  struct fuse* handle = nullptr;
  std::thread loop;
  std::future<void> loop_done;
  unsigned connection = 0;  // the FUSE connection's number (its device minor)

  ~Mount() { unmount(); }

  void unmount() {
    if (handle == nullptr) return;
    fuse_exit(handle);
    // Detach first: new lookups stop reaching us at once.
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      log.warn("unmount {}: {}", path.string(), strerror(errno));
    }
    // A vNode init's namespace may hold the mount, which keeps the
    // connection (and our loop's reads) alive: cut it.
    if (connection != 0) {
      ensure_fusectl();
      write_text(std::string(kFusectl) + "/" + std::to_string(connection) + "/abort", "1");
    }
    if (loop_done.wait_for(kUnmountWait) != std::future_status::ready) {
      log.error("the FUSE loop of {} did not end; leaving it behind", path.string());
      loop.detach();
      (void)context.release();  // the stuck loop may still read it
      handle = nullptr;
      return;
    }
    loop.join();
    // Closes the session's fd; the mount itself is already gone.
    fuse_unmount(handle);
    fuse_destroy(handle);
    handle = nullptr;
    log.info("unmounted the root of vNode {} '{}' from {}", vnode.vnode, vnode.name, path.string());
  }
};

fs::path StorageManager::default_run_dir() {
  return fs::path(env_or("SPLIT_RUN", "/run/splitkernel"));
}

StorageManager::StorageManager(fabric::Transport& transport, Options options)
    : m_transport(transport),
      m_options(std::move(options)),
      m_counters(std::make_unique<StorageCounters>()) {
  fuse_set_log_func(fuse_log_to_spdlog);
}

StorageManager::~StorageManager() {
  stop();
}

void StorageManager::stop() {
  std::map<VnodeId, std::unique_ptr<Mount>> mounts;
  {
    std::lock_guard lock(m_mutex);
    m_stopped = true;
    std::swap(mounts, m_mounts);
  }
  mounts.clear();  // unmounts
}

Result<fs::path> StorageManager::root(const VnodeStorage& vnode) {
  if (vnode.vnode == kNoVnode) return make_error(EINVAL, "vNode id 0 is reserved");
  std::lock_guard lock(m_mutex);
  if (m_stopped) return make_error(ESHUTDOWN, "the storage manager is stopping");
  if (auto it = m_mounts.find(vnode.vnode); it != m_mounts.end()) {
    const VnodeStorage& mounted = it->second->vnode;
    if (mounted.name != vnode.name || mounted.scomponent != vnode.scomponent) {
      // The monitor renumbered (it restarted) or moved the root: the old
      // mount serves another tree now. Unmounted under the lock, which no
      // FUSE request ever takes.
      log.info("vNode {}: root moves from '{}' on {} to '{}' on {}", vnode.vnode, mounted.name,
               mounted.scomponent.to_string(), vnode.name, vnode.scomponent.to_string());
      m_mounts.erase(it);
    }
  }
  m_vnodes[vnode.vnode] = vnode;
  return mount_locked(vnode);
}

Result<fs::path> StorageManager::root(VnodeId vnode) {
  std::lock_guard lock(m_mutex);
  if (m_stopped) return make_error(ESHUTDOWN, "the storage manager is stopping");
  auto it = m_vnodes.find(vnode);
  if (it == m_vnodes.end()) {
    return make_error(ENOENT, "vNode " + std::to_string(vnode) + " has no root on this pComponent");
  }
  return mount_locked(it->second);
}

void StorageManager::drop(VnodeId vnode) {
  std::unique_ptr<Mount> mount;
  {
    std::lock_guard lock(m_mutex);
    m_vnodes.erase(vnode);
    if (auto it = m_mounts.find(vnode); it != m_mounts.end()) {
      mount = std::move(it->second);
      m_mounts.erase(it);
    }
  }
  mount.reset();  // unmounts, outside the lock
}

StorageStats StorageManager::stats() {
  StorageStats stats;
  for (size_t i = 0; i < static_cast<size_t>(StorageOp::kCount); ++i) {
    stats[std::string(storage_op_name(static_cast<StorageOp>(i)))] =
        m_counters->served[i].load(std::memory_order_relaxed);
  }
  stats["io_errors"] = m_counters->io_errors.load(std::memory_order_relaxed);
  std::lock_guard lock(m_mutex);
  stats["mounts"] = m_mounts.size();
  return stats;
}

std::shared_ptr<StorageClient> StorageManager::client_locked(const Address& address) {
  auto& client = m_clients[address.to_string()];
  if (!client) client = std::make_shared<StorageClient>(m_transport, address, m_options.timeout);
  return client;
}

size_t StorageManager::clean_stale_mounts(const fs::path& run_dir) {
  size_t cleaned = 0;
  auto mounts = read_mountinfo();
  // Deepest first, so that a mount inside another goes before it.
  std::sort(mounts.begin(), mounts.end(), [](const MountInfo& a, const MountInfo& b) {
    return a.mount_point.size() > b.mount_point.size();
  });
  for (const auto& mount : mounts) {
    if (mount.type.rfind("fuse", 0) != 0 || !under(mount.mount_point, run_dir)) continue;
    struct stat st;
    if (::stat(mount.mount_point.c_str(), &st) == 0 ||
        (errno != ENOTCONN && errno != ECONNABORTED)) {
      continue;  // alive: another pComponent's
    }
    if (::umount2(mount.mount_point.c_str(), MNT_DETACH) == 0) {
      log.info("detached the dead mount {} left by an earlier pComponent", mount.mount_point);
      ++cleaned;
    } else {
      log.warn("cannot detach the dead mount {}: {}", mount.mount_point, strerror(errno));
    }
  }
  return cleaned;
}

Result<fs::path> StorageManager::mount_locked(const VnodeStorage& vnode) {
  if (auto it = m_mounts.find(vnode.vnode); it != m_mounts.end()) return it->second->path;
  if (vnode.scomponent.host.empty() || vnode.scomponent.port == 0) {
    return make_error(EHOSTUNREACH, "the monitor did not say which sComponent holds vNode " +
                                        std::to_string(vnode.vnode) + "'s root");
  }
  TRY(wire::validate_vnode_name(vnode.name));
  uint64_t base = uint64_t{kHostUidBase} + uint64_t{vnode.vnode} * kIdsPerVnode;
  if (base + kIdsPerVnode > UINT32_MAX) {
    return make_error(
        ERANGE, "vNode id " + std::to_string(vnode.vnode) + " is too large for the host uid range");
  }

  NodeId node = m_options.node_id ? m_options.node_id() : kNoNode;
  fs::path path = m_options.run_dir / ("p" + std::to_string(node)) / vnode.name / "root";
  std::error_code error;
  fs::create_directories(path, error);
  struct stat st;
  if (error) {
    // A dead mount of a crashed pComponent that had our node id.
    if (::stat(path.c_str(), &st) != 0 && (errno == ENOTCONN || errno == ECONNABORTED)) {
      ::umount2(path.c_str(), MNT_DETACH);
      error.clear();
    } else {
      return Error(error.value(), "create " + path.string());
    }
  }
  struct stat parent;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOTCONN && errno != ECONNABORTED)
      return Error::from_errno("stat " + path.string());
    ::umount2(path.c_str(), MNT_DETACH);
    if (::stat(path.c_str(), &st) != 0) return Error::from_errno("stat " + path.string());
  }
  if (::stat(path.parent_path().c_str(), &parent) != 0) {
    return Error::from_errno("stat " + path.parent_path().string());
  }
  if (st.st_dev != parent.st_dev) {
    return make_error(EBUSY, path.string() +
                                 " is already mounted (another pComponent with node id " +
                                 std::to_string(node) + "?)");
  }

  auto mount = std::make_unique<Mount>();
  mount->vnode = vnode;
  mount->path = path;
  mount->context = std::make_unique<MountContext>();
  mount->context->vnode = vnode.vnode;
  mount->context->client = client_locked(vnode.scomponent);
  mount->context->ids = IdMap{static_cast<uint32_t>(base)};
  mount->context->counters = m_counters.get();

  std::string options =
      "allow_other,default_permissions,fsname=splitkernel:" + vnode.name + ",subtype=splitkernel";
  std::vector<std::string> words = {"pcomponent", "-o", options};
  std::vector<char*> argv;
  for (auto& word : words) argv.push_back(word.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_operations& operations = storage_fuse_operations();
  struct fuse* handle = fuse_new(&args, &operations, sizeof operations, mount->context.get());
  fuse_opt_free_args(&args);
  if (handle == nullptr) return make_error(EIO, "fuse_new failed (see libfuse's message above)");
  if (fuse_mount(handle, path.c_str()) != 0) {
    fuse_destroy(handle);
    return make_error(EIO, "mount the root of vNode " + std::to_string(vnode.vnode) + " on " +
                               path.string() + " (is /dev/fuse there, are we root?)");
  }
  mount->handle = handle;
  for (const auto& info : read_mountinfo()) {
    if (info.mount_point == path.string() && info.type == kFuseType) {
      mount->connection = info.minor;
      mount->context->readahead_file = "/sys/class/bdi/" + std::to_string(info.major) + ":" +
                                       std::to_string(info.minor) + "/read_ahead_kb";
    }
  }

  std::promise<void> done;
  mount->loop_done = done.get_future();
  unsigned max_threads = m_options.max_threads;
  mount->loop = std::thread([handle, max_threads, done = std::move(done)]() mutable {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, max_threads);
    fuse_loop_cfg_set_clone_fd(config, 0);
    int result = fuse_loop_mt(handle, config);
    fuse_loop_cfg_destroy(config);
    if (result != 0 && result != -ENODEV) log.debug("FUSE loop ended with {}", result);
    done.set_value();
  });
  log.info("mounted the root of vNode {} '{}' (sComponent {}) on {}", vnode.vnode, vnode.name,
           vnode.scomponent.to_string(), path.string());
  auto [it, inserted] = m_mounts.emplace(vnode.vnode, std::move(mount));
  return it->second->path;
}

}  // namespace sk::pcomponent
