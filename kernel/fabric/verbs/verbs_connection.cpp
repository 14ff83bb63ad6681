// A verbs connection's set-up and teardown: its CQ, QP and buffers, the QP
// state transitions, the control socket after the handshake (key checks and
// revocations, see verbs_control.h) and shutdown.
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "kernel/fabric/verbs/verbs_transport.h"
#include "kernel/log.h"

namespace sk::fabric {

static const Logger log("fabric/verbs");

using verbs::ControlKind;
using verbs::ControlRecord;
using verbs::kBufferSize;
using verbs::kRecvDepth;
using verbs::kSendBuffers;
using verbs::kSendQueueDepth;
using verbs::kStagingBuffers;

// RC retransmission: 4.096 us * 2^14 = 67 ms per try, 7 tries; RNR retries
// are unlimited, though credits mean a receiver is never short of buffers.
static constexpr uint8_t kAckTimeout = 14;
static constexpr uint8_t kRetryCount = 7;
static constexpr uint8_t kRnrRetryForever = 7;
static constexpr uint8_t kMinRnrTimer = 12;  // 0.64 ms
static constexpr uint8_t kHopLimit = 64;

VerbsConnection::VerbsConnection(std::shared_ptr<VerbsContext> context, int control_fd,
                                 RequestHandler handler)
    : EndpointConnection(context->io(), verbs::peer_name(control_fd), std::move(handler)),
      m_context(std::move(context)),
      m_fd(control_fd) {}

VerbsConnection::~VerbsConnection() { release_resources(); }

Result<std::shared_ptr<VerbsConnection>> VerbsConnection::create(
    std::shared_ptr<VerbsContext> context, int control_fd, RequestHandler handler) {
  std::shared_ptr<VerbsConnection> connection(
      new VerbsConnection(std::move(context), control_fd, std::move(handler)));
  TRY(connection->create_resources());
  return connection;
}

std::byte* VerbsConnection::recv_buffer(uint32_t index) const {
  return m_buffers + static_cast<size_t>(index) * kBufferSize;
}
std::byte* VerbsConnection::send_buffer(uint32_t index) const {
  return m_buffers + static_cast<size_t>(kRecvDepth + index) * kBufferSize;
}
std::byte* VerbsConnection::staging_buffer(uint32_t index) const {
  return m_buffers + static_cast<size_t>(kRecvDepth + kSendBuffers + index) * kBufferSize;
}

Result<void> VerbsConnection::create_resources() {
  VerbsDevice& device = m_context->device();
  int cq_size = static_cast<int>(kRecvDepth + kSendQueueDepth);
  if (device.max_cqe() > 0 && cq_size > device.max_cqe()) cq_size = device.max_cqe();
  m_cq = ibv_create_cq(device.context(), cq_size, this, device.channel(), 0);
  if (!m_cq) return Error::from_errno("create a completion queue");

  ibv_qp_init_attr init{};
  init.send_cq = m_cq;
  init.recv_cq = m_cq;
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = kSendQueueDepth;
  init.cap.max_recv_wr = kRecvDepth;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  m_qp = ibv_create_qp(device.pd(), &init);
  if (!m_qp) return Error::from_errno("create an RC queue pair");

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = device.port();
  attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  if (int error = ibv_modify_qp(m_qp, &attr,
                                IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
    return make_error(error, "move the queue pair to INIT");
  }

  m_buffers_size = static_cast<size_t>(kRecvDepth + kSendBuffers + kStagingBuffers) * kBufferSize;
  void* memory = ::mmap(nullptr, m_buffers_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return Error::from_errno("allocate the connection's buffers");
  m_buffers = static_cast<std::byte*>(memory);
  m_mr = ibv_reg_mr(device.pd(), m_buffers, m_buffers_size, IBV_ACCESS_LOCAL_WRITE);
  if (!m_mr) return Error::from_errno("register the connection's buffers (RLIMIT_MEMLOCK?)");

  for (uint32_t i = 0; i < kRecvDepth; ++i) TRY(post_receive(i));
  for (uint32_t i = kSendBuffers; i > 0; --i) m_free_send.push_back(i - 1);
  for (uint32_t i = kStagingBuffers; i > 0; --i) m_free_staging.push_back(i - 1);
  m_psn = std::random_device{}() & 0xffffff;
  return {};
}

void VerbsConnection::release_resources() {
  // The QP first: once it is gone the device touches none of the buffers.
  if (m_qp) ibv_destroy_qp(std::exchange(m_qp, nullptr));
  if (m_cq) ibv_destroy_cq(std::exchange(m_cq, nullptr));
  if (m_mr) ibv_dereg_mr(std::exchange(m_mr, nullptr));
  if (m_buffers) ::munmap(std::exchange(m_buffers, nullptr), m_buffers_size);
  if (m_fd >= 0) ::close(std::exchange(m_fd, -1));
}

ControlRecord VerbsConnection::hello() const {
  VerbsDevice& device = m_context->device();
  ControlRecord record = verbs::make_record(ControlKind::kHello);
  record.qp_number = m_qp->qp_num;
  record.psn = m_psn;
  record.lid = device.lid();
  record.mtu = static_cast<uint8_t>(device.active_mtu());
  record.max_reads = device.max_target_reads();
  record.recv_depth = kRecvDepth;
  record.recv_size = kBufferSize;
  std::memcpy(record.gid, device.gid().raw, sizeof record.gid);
  return record;
}

Result<void> VerbsConnection::connect_qp(const ControlRecord& peer) {
  if (peer.recv_depth < 2 || peer.recv_size < sizeof(wire::Header)) {
    return make_error(EPROTO, "the peer offers " + std::to_string(peer.recv_depth) +
                                  " receive buffers of " + std::to_string(peer.recv_size) +
                                  " bytes: too few or too small");
  }
  if (peer.mtu < IBV_MTU_256 || peer.mtu > IBV_MTU_4096) {
    return make_error(EPROTO, "the peer's path MTU is invalid");
  }
  VerbsDevice& device = m_context->device();

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = std::min(device.active_mtu(), static_cast<ibv_mtu>(peer.mtu));
  attr.dest_qp_num = peer.qp_number;
  attr.rq_psn = peer.psn;
  attr.max_dest_rd_atomic = device.max_target_reads();
  attr.min_rnr_timer = kMinRnrTimer;
  attr.ah_attr.port_num = device.port();
  attr.ah_attr.dlid = peer.lid;
  if (device.is_ethernet()) {
    // RoCE is routed by GID; the GRH is mandatory.
    attr.ah_attr.is_global = 1;
    std::memcpy(attr.ah_attr.grh.dgid.raw, peer.gid, sizeof peer.gid);
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(device.gid_index());
    attr.ah_attr.grh.hop_limit = kHopLimit;
  }
  if (int error = ibv_modify_qp(m_qp, &attr,
                                IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                    IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                                    IBV_QP_MIN_RNR_TIMER)) {
    return make_error(error, "move the queue pair to RTR (is the peer's GID reachable?)");
  }

  attr = {};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = kAckTimeout;
  attr.retry_cnt = kRetryCount;
  attr.rnr_retry = kRnrRetryForever;
  attr.sq_psn = m_psn;
  attr.max_rd_atomic = std::min(device.max_initiator_reads(), std::max<uint8_t>(peer.max_reads, 1));
  if (int error = ibv_modify_qp(m_qp, &attr,
                                IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                    IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC)) {
    return make_error(error, "move the queue pair to RTS");
  }
  m_credits = peer.recv_depth;
  m_peer_recv_size = std::min(peer.recv_size, kBufferSize);
  return {};
}

void VerbsConnection::start() {
  m_started = true;
  auto self = std::static_pointer_cast<VerbsConnection>(shared_from_this());
  std::weak_ptr<VerbsConnection> weak = self;
  m_watch = m_context->watch(m_fd, VerbsContext::kReadable, [weak](uint32_t events) {
    if (auto connection = weak.lock()) connection->on_control(events);
  });
  // Arm, then poll: completions that came before arming are not lost.
  on_cq_event();
  log.debug("verbs connection with {} up (qp {})", peer(), m_qp ? m_qp->qp_num : 0);
}

void VerbsConnection::close() {
  m_open = false;
  auto self = std::static_pointer_cast<VerbsConnection>(shared_from_this());
  // Bypasses post()'s stopping check: stop relies on closing.
  m_context->post_always([self] { self->shutdown("closed locally"); });
}

// ---- the control socket after the handshake -----------------------------------

void VerbsConnection::on_control(uint32_t events) {
  if (m_closed) return;
  if (events & VerbsContext::kWritable) flush_control();
  if (m_closed || !(events & VerbsContext::kReadable)) return;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::recv(m_fd, buffer, sizeof buffer, 0);
    if (got > 0) {
      m_control_in.insert(m_control_in.end(), buffer, buffer + got);
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    shutdown(got == 0 ? "closed by peer" : "control socket failed");
    return;
  }
  size_t used = 0;
  while (m_control_in.size() - used >= sizeof(ControlRecord) && !m_closed) {
    ControlRecord record;
    std::memcpy(&record, m_control_in.data() + used, sizeof record);
    used += sizeof record;
    if (auto ok = verbs::check_record(record); !ok) {
      log.warn("bad control record from {}: {}", peer(), ok.error().text());
      shutdown("bad control record");
      return;
    }
    on_record(record);
  }
  if (!m_closed) m_control_in.erase(m_control_in.begin(), m_control_in.begin() + used);
}

void VerbsConnection::on_record(const ControlRecord& record) {
  switch (static_cast<ControlKind>(record.kind)) {
    case ControlKind::kKeyCheck: {
      int status = m_context->check_region(record.rkey, record.address, record.length);
      if (status == 0) m_granted.insert(record.rkey);
      ControlRecord answer = verbs::make_record(ControlKind::kKeyAnswer);
      answer.token = record.token;
      answer.rkey = record.rkey;
      answer.status = status;
      send_control(answer);
      return;
    }
    case ControlKind::kKeyAnswer: {
      auto it = m_key_checks.find(record.token);
      if (it == m_key_checks.end()) return;
      RemoteKeyId key = it->second;
      m_key_checks.erase(it);
      on_key_answer(key, record.status);
      return;
    }
    case ControlKind::kRevoke: {
      // Checked keys are forgotten; a check still out is answered after the
      // revocation (the control socket is ordered), so it is left alone.
      for (auto it = m_remote_keys.begin(); it != m_remote_keys.end();) {
        if (std::get<0>(it->first) == record.rkey && it->second.check_token == 0) {
          it = m_remote_keys.erase(it);
        } else {
          ++it;
        }
      }
      ControlRecord ack = verbs::make_record(ControlKind::kRevokeAck);
      ack.token = record.token;
      send_control(ack);
      return;
    }
    case ControlKind::kRevokeAck: {
      auto it = m_revokes.find(record.token);
      if (it == m_revokes.end()) return;
      auto wait = std::move(it->second);
      m_revokes.erase(it);
      wait->one_done();
      return;
    }
    case ControlKind::kHello:
      break;
  }
  log.warn("unexpected control record {} from {}", record.kind, peer());
  shutdown("unexpected control record");
}

void VerbsConnection::revoke_key(uint32_t rkey, const std::shared_ptr<RevokeWait>& wait) {
  if (m_closed || m_granted.erase(rkey) == 0) return;
  ControlRecord record = verbs::make_record(ControlKind::kRevoke);
  record.token = m_next_token++;
  record.rkey = rkey;
  // Counted before sending: a failing send shuts down, which counts it done.
  ++wait->remaining;
  m_revokes.emplace(record.token, wait);
  send_control(record);
}

void VerbsConnection::send_control(const ControlRecord& record) {
  auto* bytes = reinterpret_cast<const char*>(&record);
  m_control_out.insert(m_control_out.end(), bytes, bytes + sizeof record);
  flush_control();
}

void VerbsConnection::flush_control() {
  while (!m_control_out.empty()) {
    ssize_t sent = ::send(m_fd, m_control_out.data(), m_control_out.size(),
                          MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      m_control_out.erase(m_control_out.begin(), m_control_out.begin() + sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    shutdown("control socket failed");
    return;
  }
  bool want_out = !m_control_out.empty();
  if (want_out != m_want_out && m_watch != 0) {
    m_want_out = want_out;
    m_context->modify(m_watch, VerbsContext::kReadable | (want_out ? VerbsContext::kWritable : 0u));
  }
}

// ---- shutdown -------------------------------------------------------------------

void VerbsConnection::shutdown(const char* reason) {
  if (m_closed) return;
  m_closed = true;
  m_open = false;
  // The loop's reference may be the last one.
  auto self = std::static_pointer_cast<VerbsConnection>(shared_from_this());
  log.debug("verbs connection with {} closed: {}", peer(), reason);
  if (m_watch != 0) m_context->unwatch(std::exchange(m_watch, 0));
  if (m_fd >= 0) ::shutdown(m_fd, SHUT_RDWR);
  release_resources();
  fail_everything("connection to " + peer() + " lost");
  auto revokes = std::move(m_revokes);
  m_revokes.clear();
  for (auto& [token, wait] : revokes) wait->one_done();
  m_context->forget(this);
  m_endpoint.notify_closed();
}

}  // namespace sk::fabric
