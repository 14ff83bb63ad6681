// Opening the RDMA device, port and GID of a verbs transport (see
// verbs_device.h for the rules of choice).
#include "kernel/fabric/verbs/verbs_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "kernel/log.h"

namespace sk::fabric {

static const Logger log("fabric/verbs");

static constexpr const char* kNoDeviceHint =
    "no RDMA device: load rdma_rxe and add a link: rdma link add rxe0 type rxe netdev eth0";

// More outstanding RDMA READs than this per QP buys nothing for page-sized
// and fragment-sized reads, and costs responder resources on real NICs.
static constexpr int kMaxReadsInFlight = 16;

namespace {

struct DeviceList {
  ibv_device** list = nullptr;
  int count = 0;
  ~DeviceList() {
    if (list) ibv_free_device_list(list);
  }
};

struct ContextCloser {
  void operator()(ibv_context* context) const { ibv_close_device(context); }
};
using ContextPtr = std::unique_ptr<ibv_context, ContextCloser>;

// What $SK_VERBS_DEVICE asks for.
struct Wanted {
  std::optional<std::string> device;
  std::optional<uint8_t> port;
  std::optional<int> gid_index;
};

Result<Wanted> wanted_from_env() {
  Wanted wanted;
  if (const char* text = std::getenv("SK_VERBS_DEVICE"); text && *text) {
    std::string value(text);
    auto colon = value.find(':');
    wanted.device = value.substr(0, colon);
    if (colon != std::string::npos) {
      int port = std::atoi(value.c_str() + colon + 1);
      if (port < 1 || port > 255) {
        return make_error(EINVAL, "SK_VERBS_DEVICE='" + value + "': bad port number");
      }
      wanted.port = static_cast<uint8_t>(port);
    }
  }
  if (const char* text = std::getenv("SK_VERBS_GID_INDEX"); text && *text) {
    char* end = nullptr;
    long index = std::strtol(text, &end, 10);
    if (*end != '\0' || index < 0 || index > 0xffff) {
      return make_error(EINVAL, std::string("SK_VERBS_GID_INDEX='") + text + "' is not an index");
    }
    wanted.gid_index = static_cast<int>(index);
  }
  return wanted;
}

bool is_zero(const ibv_gid& gid) {
  static const ibv_gid zero{};
  return std::memcmp(&gid, &zero, sizeof gid) == 0;
}

bool is_ipv4_mapped(const ibv_gid& gid) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(gid.raw, prefix, sizeof prefix) == 0;
}

// The GID index to use on a RoCE port, or an error saying why there is none.
Result<int> choose_roce_gid(ibv_context* context, uint8_t port, int table_length,
                            const Wanted& wanted, const std::string& where) {
  if (wanted.gid_index) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context, port, *wanted.gid_index, &entry, 0) != 0 ||
        is_zero(entry.gid)) {
      return make_error(ENODEV, where + " has no GID at SK_VERBS_GID_INDEX=" +
                                    std::to_string(*wanted.gid_index));
    }
    return *wanted.gid_index;
  }
  int best = -1;
  int best_score = 0;
  for (int index = 0; index < table_length; ++index) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context, port, index, &entry, 0) != 0) continue;  // empty slot
    if (is_zero(entry.gid)) continue;
    int score = 0;
    if (entry.gid_type == IBV_GID_TYPE_ROCE_V2) {
      score = is_ipv4_mapped(entry.gid) ? 3 : 2;
    } else if (entry.gid_type == IBV_GID_TYPE_ROCE_V1) {
      score = 1;
    }
    if (score > best_score) {
      best = index;
      best_score = score;
    }
  }
  if (best < 0) {
    return make_error(ENODEV, where +
                                  " has no usable GID: give its network interface an IP address "
                                  "(ip addr add ... dev eth0) and bring it up");
  }
  return best;
}

}  // namespace

Result<std::shared_ptr<VerbsDevice>> VerbsDevice::open() {
  Wanted wanted = TRY(wanted_from_env());
  DeviceList devices;
  errno = 0;
  devices.list = ibv_get_device_list(&devices.count);
  if (!devices.list || devices.count == 0) return make_error(ENODEV, kNoDeviceHint);

  std::vector<std::string> seen;  // what was looked at, for the error text
  for (int i = 0; i < devices.count; ++i) {
    std::string device_name = ibv_get_device_name(devices.list[i]);
    if (wanted.device && device_name != *wanted.device) continue;
    ContextPtr context(ibv_open_device(devices.list[i]));
    if (!context) {
      seen.push_back(device_name + " (cannot open: " + std::strerror(errno) + ")");
      continue;
    }
    ibv_device_attr device_attr{};
    if (ibv_query_device(context.get(), &device_attr) != 0) {
      seen.push_back(device_name + " (cannot query)");
      continue;
    }
    for (int port = 1; port <= device_attr.phys_port_cnt; ++port) {
      if (wanted.port && port != *wanted.port) continue;
      std::string where = device_name + ":" + std::to_string(port);
      ibv_port_attr port_attr{};
      if (ibv_query_port(context.get(), static_cast<uint8_t>(port), &port_attr) != 0) {
        seen.push_back(where + " (cannot query)");
        continue;
      }
      if (port_attr.state != IBV_PORT_ACTIVE) {
        seen.push_back(where + " (" + ibv_port_state_str(port_attr.state) + ")");
        continue;
      }
      bool ethernet = port_attr.link_layer == IBV_LINK_LAYER_ETHERNET;
      int gid_index = 0;
      if (ethernet) {
        auto chosen = choose_roce_gid(context.get(), static_cast<uint8_t>(port),
                                      port_attr.gid_tbl_len, wanted, where);
        if (!chosen) {
          if (wanted.device) return std::move(chosen).error();
          seen.push_back(where + " (no usable GID)");
          continue;
        }
        gid_index = chosen.value();
      } else if (port_attr.lid == 0) {
        seen.push_back(where + " (no LID: is a subnet manager running?)");
        continue;
      }

      std::shared_ptr<VerbsDevice> device(new VerbsDevice());
      device->m_port = static_cast<uint8_t>(port);
      device->m_gid_index = gid_index;
      device->m_ethernet = ethernet;
      device->m_lid = port_attr.lid;
      device->m_mtu = port_attr.active_mtu;
      device->m_max_init_rd_atom =
          static_cast<uint8_t>(std::clamp(device_attr.max_qp_init_rd_atom, 1, kMaxReadsInFlight));
      device->m_max_rd_atom =
          static_cast<uint8_t>(std::clamp(device_attr.max_qp_rd_atom, 1, kMaxReadsInFlight));
      device->m_max_cqe = device_attr.max_cqe;
      device->m_name = where + (ethernet ? " gid " + std::to_string(gid_index) : "");
      if (ibv_query_gid(context.get(), device->m_port, gid_index, &device->m_gid) != 0) {
        return make_error(errno ? errno : EIO, "query the GID of " + where);
      }
      device->m_context = context.release();
      device->m_pd = ibv_alloc_pd(device->m_context);
      if (!device->m_pd) return Error::from_errno("allocate a protection domain on " + where);
      device->m_channel = ibv_create_comp_channel(device->m_context);
      if (!device->m_channel) return Error::from_errno("create a completion channel on " + where);
      log.debug("using RDMA port {}", device->m_name);
      return device;
    }
  }
  if (wanted.device && seen.empty()) {
    return make_error(ENODEV, "SK_VERBS_DEVICE names " + *wanted.device +
                                  (wanted.port ? ":" + std::to_string(*wanted.port) : "") +
                                  ", which does not exist");
  }
  std::string list;
  for (const auto& entry : seen) list += (list.empty() ? "" : ", ") + entry;
  return make_error(ENODEV, "no active RDMA port (" + list +
                                "): bring the network interface under the device up");
}

VerbsDevice::~VerbsDevice() {
  if (m_channel) ibv_destroy_comp_channel(m_channel);
  if (m_pd) ibv_dealloc_pd(m_pd);
  if (m_context) ibv_close_device(m_context);
}

}  // namespace sk::fabric
