// The RDMA device a verbs transport runs on: the opened context, its
// protection domain and completion channel, and the port and GID that every
// queue pair of the transport uses.
//
// Choice of device and port: $SK_VERBS_DEVICE ("rxe0" or "rxe0:2") names
// one; otherwise the first device with an ACTIVE port is taken. Choice of GID
// (RoCE only): $SK_VERBS_GID_INDEX names one; otherwise a RoCE v2 GID that
// maps an IPv4 address is preferred (what rdma_rxe over a VM's IPv4 netdev
// needs), then any RoCE v2 GID, then RoCE v1. InfiniBand ports are addressed
// by LID and need no GID.
//
// Opening fails with a message that says what to do: no device at all (load
// rdma_rxe and add a link), no active port, or no usable GID.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kernel/result.h"

namespace sk::fabric {

class VerbsDevice {
 public:
  static Result<std::shared_ptr<VerbsDevice>> open();
  ~VerbsDevice();
  VerbsDevice(const VerbsDevice&) = delete;
  VerbsDevice& operator=(const VerbsDevice&) = delete;

  ibv_context* context() const { return m_context; }
  ibv_pd* pd() const { return m_pd; }
  ibv_comp_channel* channel() const { return m_channel; }
  uint8_t port() const { return m_port; }
  int gid_index() const { return m_gid_index; }
  const ibv_gid& gid() const { return m_gid; }
  uint16_t lid() const { return m_lid; }
  bool is_ethernet() const { return m_ethernet; }
  ibv_mtu active_mtu() const { return m_mtu; }
  // Outstanding RDMA READs this device allows per QP, as initiator and as
  // target (capped: more buys nothing at our message sizes).
  uint8_t max_initiator_reads() const { return m_max_init_rd_atom; }
  uint8_t max_target_reads() const { return m_max_rd_atom; }
  int max_cqe() const { return m_max_cqe; }
  // "rxe0:1 gid 3", for logs.
  const std::string& name() const { return m_name; }

 private:
  VerbsDevice() = default;

  ibv_context* m_context = nullptr;
  ibv_pd* m_pd = nullptr;
  ibv_comp_channel* m_channel = nullptr;
  uint8_t m_port = 1;
  int m_gid_index = 0;
  ibv_gid m_gid{};
  uint16_t m_lid = 0;
  bool m_ethernet = false;
  ibv_mtu m_mtu = IBV_MTU_1024;
  uint8_t m_max_init_rd_atom = 1;
  uint8_t m_max_rd_atom = 1;
  int m_max_cqe = 0;
  std::string m_name;
};

}  // namespace sk::fabric
