// The verbs transport's datapath: fragmentation and reassembly of RPC
// messages over SEND/RECV, credits, and one-sided RDMA READ/WRITE. Request
// ids, timeouts, reply matching and dispatch are the connection's
// rpc::Endpoint's: it is fed each reassembled message and hands back what to
// send. Everything below runs on the loop thread except the public entry
// points, which only post to it.
//
// Framing: a message is the 40-byte wire::Header and its payload, exactly as
// on tcp, cut into SEND_WITH_IMM fragments of at most the peer's receive
// buffer size. Fragments of one message are sent back to back and RC keeps
// them in order, so the receiver needs no fragment header: a message starts
// with a header whose payload_length says how many bytes follow. A header
// that fails check_header() means the stream can no longer be trusted: the
// connection answers with an error reply (Endpoint::reject) and closes, as
// tcp does.
//
// The 32-bit immediate of every SEND: bits 31-24 the fragment type (data or a
// bare credit update), bits 23-0 the credits returned with it.
//
// Credits: m_credits counts receive buffers the peer has posted for us. Data
// fragments may use all but the last; that one is kept for a bare credit
// update, so two peers that each owe the other credits can always tell each
// other, and the exchange cannot deadlock. Every received SEND (data or
// update) consumes one of our buffers, which is reposted at once and owed
// back; owed credits ride on the next outgoing fragment, or go in a bare
// update once kCreditBatch are owed.
//
// One-sided access: the requester checks bounds against the RegionKey
// (EFAULT), asks the owner once per key over the control socket whether the
// key is live (EINVAL if not; see verbs_control.h), then issues RDMA READ or
// WRITE straight from/to the caller's memory when it lies in a region this
// transport registered, else through staging buffers (a memcpy per chunk).
// A timed-out access is failed at once; its chunks still complete later into
// staging buffers (or into the caller's registered memory, which the
// caller owns anyway).
#include <arpa/inet.h>

#include <cstring>

#include "kernel/fabric/verbs/verbs_transport.h"
#include "kernel/log.h"

namespace sk::fabric {

static const Logger log("fabric/verbs");

using verbs::kBufferSize;
using verbs::kCreditBatch;
using verbs::kSendBuffers;
using verbs::kSendQueueDepth;
using verbs::kZeroCopyChunk;

namespace {

// What a work request was for: the top byte of its wr_id; the rest is the
// buffer index or the RDMA chunk id.
enum class Work : uint64_t { kRecv = 1, kSend = 2, kCredit = 3, kRdma = 4 };
constexpr uint64_t kWorkShift = 56;
constexpr uint64_t kIndexMask = (uint64_t{1} << kWorkShift) - 1;

constexpr uint64_t work_id(Work kind, uint64_t index) {
  return (static_cast<uint64_t>(kind) << kWorkShift) | index;
}

enum class Fragment : uint32_t { kData = 1, kCredits = 2 };
constexpr uint32_t kCreditMask = 0xffffff;

uint32_t immediate(Fragment type, uint32_t credits) {
  return htonl((static_cast<uint32_t>(type) << 24) | (credits & kCreditMask));
}

}  // namespace

// ---- public entry points --------------------------------------------------------

void VerbsConnection::read_async(RegionKey region, uint64_t offset, std::span<std::byte> into,
                                 Duration timeout, DoneCallback done) {
  auto access = std::make_shared<Access>(
      Access{true, region, offset, into.data(), into.size(), std::move(done), 0});
  auto self = std::static_pointer_cast<VerbsConnection>(shared_from_this());
  bool posted = m_context->post(
      [self, access, timeout] { self->start_access(std::move(*access), timeout); });
  if (!posted) access->done(make_error(ECONNRESET, "transport stopped"));
}

void VerbsConnection::write_async(RegionKey region, uint64_t offset, ByteView from,
                                  Duration timeout, DoneCallback done) {
  // The write path only reads through `local`.
  auto* local = const_cast<std::byte*>(from.data());
  auto access = std::make_shared<Access>(
      Access{false, region, offset, local, from.size(), std::move(done), 0});
  auto self = std::static_pointer_cast<VerbsConnection>(shared_from_this());
  bool posted = m_context->post(
      [self, access, timeout] { self->start_access(std::move(*access), timeout); });
  if (!posted) access->done(make_error(ECONNRESET, "transport stopped"));
}

// ---- sending --------------------------------------------------------------------

void VerbsConnection::send_message(const wire::Header& header, Bytes payload) {
  m_out.push_back(Outgoing{header, std::move(payload), 0});
  pump();
}

void VerbsConnection::pump() {
  while (!m_closed && !m_out.empty() && post_fragment()) {
  }
  if (!m_closed && m_owed >= kCreditBatch) post_credit_update();
  if (!m_closed && m_endpoint.rejected() && m_out.empty() && m_free_send.size() == kSendBuffers) {
    shutdown("malformed message");
  }
}

bool VerbsConnection::post_fragment() {
  // The last credit is kept for a bare credit update (see the top comment).
  if (m_credits <= 1 || m_free_send.empty() || m_send_queue_used >= kSendQueueDepth) return false;
  Outgoing& out = m_out.front();
  constexpr size_t kHeader = sizeof(wire::Header);
  size_t total = kHeader + out.payload.size();
  size_t length = std::min<size_t>(m_peer_recv_size, total - out.sent);
  uint32_t index = m_free_send.back();
  std::byte* buffer = send_buffer(index);
  size_t filled = 0;
  if (out.sent < kHeader) {
    filled = std::min(kHeader - out.sent, length);
    std::memcpy(buffer, reinterpret_cast<const std::byte*>(&out.header) + out.sent, filled);
  }
  if (filled < length) {
    std::memcpy(buffer + filled, out.payload.data() + (out.sent + filled - kHeader),
                length - filled);
  }

  ibv_sge sge{reinterpret_cast<uint64_t>(buffer), static_cast<uint32_t>(length), m_mr->lkey};
  ibv_send_wr request{};
  request.wr_id = work_id(Work::kSend, index);
  request.sg_list = &sge;
  request.num_sge = 1;
  request.opcode = IBV_WR_SEND_WITH_IMM;
  request.send_flags = IBV_SEND_SIGNALED;
  request.imm_data = immediate(Fragment::kData, m_owed);
  ibv_send_wr* bad = nullptr;
  if (int error = ibv_post_send(m_qp, &request, &bad)) {
    log.warn("post SEND to {}: {}", peer(), std::strerror(error));
    shutdown("cannot post a SEND");
    return false;
  }
  m_free_send.pop_back();
  ++m_send_queue_used;
  --m_credits;
  m_owed = 0;
  out.sent += length;
  if (out.sent == total) {
    m_context->counters().message_sent(total);
    m_out.pop_front();
  }
  return true;
}

bool VerbsConnection::post_credit_update() {
  if (m_credits == 0 || m_send_queue_used >= kSendQueueDepth) return false;
  ibv_send_wr request{};
  request.wr_id = work_id(Work::kCredit, 0);
  request.num_sge = 0;  // a zero-length SEND: the immediate is the message
  request.opcode = IBV_WR_SEND_WITH_IMM;
  request.send_flags = IBV_SEND_SIGNALED;
  request.imm_data = immediate(Fragment::kCredits, m_owed);
  ibv_send_wr* bad = nullptr;
  if (int error = ibv_post_send(m_qp, &request, &bad)) {
    log.warn("post a credit update to {}: {}", peer(), std::strerror(error));
    shutdown("cannot post a SEND");
    return false;
  }
  ++m_send_queue_used;
  --m_credits;
  m_owed = 0;
  return true;
}

Result<void> VerbsConnection::post_receive(uint32_t index) {
  ibv_sge sge{reinterpret_cast<uint64_t>(recv_buffer(index)), kBufferSize, m_mr->lkey};
  ibv_recv_wr request{};
  request.wr_id = work_id(Work::kRecv, index);
  request.sg_list = &sge;
  request.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int error = ibv_post_recv(m_qp, &request, &bad)) {
    return make_error(error, "post a receive buffer");
  }
  return {};
}

// ---- completions ----------------------------------------------------------------

void VerbsConnection::on_cq_event() {
  if (m_closed || !m_cq) return;
  // Re-arm before polling: a completion that lands after the last poll
  // raises a new event instead of waiting for the next one.
  ibv_req_notify_cq(m_cq, 0);
  constexpr int kBatch = 32;
  // Batches taken before letting other connections and timers run; what is
  // left raised no event, so a posted task comes back for it.
  constexpr int kMaxBatches = 8;
  ibv_wc completions[kBatch];
  for (int batch = 1;; ++batch) {
    int count = ibv_poll_cq(m_cq, kBatch, completions);
    if (count < 0) {
      shutdown("polling the completion queue failed");
      return;
    }
    for (int i = 0; i < count; ++i) {
      on_completion(completions[i]);
      if (m_closed) return;
    }
    if (count < kBatch) break;
    if (batch == kMaxBatches) {
      std::weak_ptr<VerbsConnection> weak =
          std::static_pointer_cast<VerbsConnection>(shared_from_this());
      m_context->post([weak] {
        if (auto self = weak.lock()) self->on_cq_event();
      });
      break;
    }
  }
  pump();
  if (!m_closed) pump_rdma();
}

static int errno_of(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_REM_ACCESS_ERR:
      return EINVAL;  // the key went away between its check and this access
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return ECONNRESET;  // the peer stopped answering
    default:
      return EIO;
  }
}

void VerbsConnection::on_completion(const ibv_wc& completion) {
  auto kind = static_cast<Work>(completion.wr_id >> kWorkShift);
  uint64_t index = completion.wr_id & kIndexMask;
  bool ok = completion.status == IBV_WC_SUCCESS;
  std::optional<Error> failure;
  if (!ok) {
    failure = make_error(errno_of(completion.status),
                         std::string(ibv_wc_status_str(completion.status)) + " on the QP to " +
                             peer());
  }
  switch (kind) {
    case Work::kRecv: {
      if (!ok) break;
      if (!(completion.wc_flags & IBV_WC_WITH_IMM)) {
        log.warn("SEND without immediate from {}", peer());
        shutdown("protocol error");
        return;
      }
      uint32_t word = ntohl(completion.imm_data);
      auto type = static_cast<Fragment>(word >> 24);
      m_credits += word & kCreditMask;
      if (type == Fragment::kData) {
        on_fragment(recv_buffer(static_cast<uint32_t>(index)), completion.byte_len);
        if (m_closed) return;
      } else if (type != Fragment::kCredits) {
        log.warn("unknown fragment type {} from {}", word >> 24, peer());
        shutdown("protocol error");
        return;
      }
      if (auto posted = post_receive(static_cast<uint32_t>(index)); !posted) {
        log.warn("{}", posted.error().text());
        shutdown("cannot repost a receive buffer");
        return;
      }
      ++m_owed;
      return;
    }
    case Work::kSend:
      --m_send_queue_used;
      m_free_send.push_back(static_cast<uint32_t>(index));
      break;
    case Work::kCredit:
      --m_send_queue_used;
      break;
    case Work::kRdma: {
      --m_send_queue_used;
      auto node = m_rdma_posted.extract(index);
      if (node.empty()) break;
      const Chunk& chunk = node.mapped();
      auto it = m_accesses.find(chunk.access);
      if (it != m_accesses.end()) {
        Access& access = it->second;
        if (!ok) {
          finish_access(chunk.access, *failure);
        } else {
          if (access.is_read && chunk.staging != kNoStaging) {
            std::memcpy(access.local + chunk.at, staging_buffer(chunk.staging), chunk.length);
          }
          if (--access.chunks_left == 0) finish_access(chunk.access, {});
        }
      }
      if (chunk.staging != kNoStaging) m_free_staging.push_back(chunk.staging);
      break;
    }
  }
  if (!ok && !m_closed) {
    // The QP is in the error state now: nothing more can go through it.
    log.warn("{}", failure->message());
    shutdown("work request failed");
  }
}

void VerbsConnection::on_fragment(const std::byte* data, size_t length) {
  if (m_endpoint.rejected()) return;  // the stream is being closed; ignore the rest
  constexpr size_t kHeader = sizeof(wire::Header);
  if (!m_in_message) {
    if (length < kHeader) {
      reject_stream(make_error(EPROTO, "a message fragment shorter than a header"));
      return;
    }
    std::memcpy(&m_in_header, data, kHeader);
    // A bad header is rejected (an error reply, then close).
    if (!m_endpoint.check_incoming(m_in_header)) return;
    m_in_payload.clear();
    m_in_payload.reserve(m_in_header.payload_length);
    data += kHeader;
    length -= kHeader;
    m_in_message = true;
  }
  if (length > m_in_header.payload_length - m_in_payload.size()) {
    reject_stream(make_error(EPROTO, "a message longer than its header says"));
    return;
  }
  m_in_payload.insert(m_in_payload.end(), data, data + length);
  if (m_in_payload.size() < m_in_header.payload_length) return;
  m_in_message = false;
  Message message{m_in_header, std::move(m_in_payload)};
  m_in_payload = {};
  m_context->counters().message_received(kHeader + message.payload.size());
  m_endpoint.deliver(std::move(message));
}

void VerbsConnection::reject_stream(const Error& error) {
  m_in_message = false;
  m_endpoint.reject(error);
}

// ---- one-sided access -----------------------------------------------------------

void VerbsConnection::start_access(Access access, Duration timeout) {
  if (m_closed) {
    access.done(make_error(ECONNRESET, "connection to " + peer() + " is closed"));
    return;
  }
  const RegionKey& region = access.region;
  if (access.offset > region.length || access.length > region.length - access.offset) {
    access.done(make_error(EFAULT, "access outside the registered region"));
    return;
  }
  uint64_t id = m_next_access++;
  std::weak_ptr<VerbsConnection> weak =
      std::static_pointer_cast<VerbsConnection>(shared_from_this());
  access.timer = m_context->add_timer(timeout, [weak, id] {
    if (auto self = weak.lock()) {
      self->finish_access(id, make_error(ETIMEDOUT, "one-sided access to " + self->peer() +
                                                        " timed out"));
    }
  });
  RemoteKeyId key{region.rkey, region.address, region.length};
  m_accesses.emplace(id, std::move(access));
  RemoteKey& known = m_remote_keys[key];
  if (known.valid) {
    issue_access(id);
    return;
  }
  known.waiting.push_back(id);
  if (known.check_token != 0) return;  // a check is already out
  verbs::ControlRecord check = verbs::make_record(verbs::ControlKind::kKeyCheck);
  check.token = m_next_token++;
  check.rkey = region.rkey;
  check.address = region.address;
  check.length = region.length;
  known.check_token = check.token;
  m_key_checks.emplace(check.token, key);
  send_control(check);
}

void VerbsConnection::on_key_answer(RemoteKeyId key, int status) {
  auto it = m_remote_keys.find(key);
  if (it == m_remote_keys.end()) return;
  auto waiting = std::move(it->second.waiting);
  if (status == 0) {
    it->second.valid = true;
    it->second.check_token = 0;
    it->second.waiting.clear();
    for (uint64_t id : waiting) issue_access(id);
    return;
  }
  m_remote_keys.erase(it);
  for (uint64_t id : waiting) {
    finish_access(id, make_error(status > 0 ? status : EINVAL, "unknown region key"));
  }
}

void VerbsConnection::issue_access(uint64_t id) {
  if (m_closed) return;
  auto it = m_accesses.find(id);
  if (it == m_accesses.end()) return;  // timed out while the key was checked
  Access& access = it->second;
  if (access.length == 0) {
    finish_access(id, {});
    return;
  }
  auto lkey = m_context->local_key(access.local, access.length);
  uint64_t step = lkey ? kZeroCopyChunk : kBufferSize;
  for (uint64_t at = 0; at < access.length; at += step) {
    auto length = static_cast<uint32_t>(std::min<uint64_t>(step, access.length - at));
    m_rdma_queue.push_back(Chunk{id, at, length, kNoStaging, lkey});
    ++access.chunks_left;
  }
  pump_rdma();
}

void VerbsConnection::pump_rdma() {
  while (!m_closed && !m_rdma_queue.empty() && m_send_queue_used < kSendQueueDepth) {
    Chunk chunk = m_rdma_queue.front();
    auto it = m_accesses.find(chunk.access);
    if (it == m_accesses.end()) {  // failed or timed out: drop its other chunks
      m_rdma_queue.pop_front();
      continue;
    }
    Access& access = it->second;
    std::byte* local = nullptr;
    uint32_t lkey = 0;
    if (chunk.lkey) {
      local = access.local + chunk.at;
      lkey = *chunk.lkey;
    } else {
      if (m_free_staging.empty()) break;
      chunk.staging = m_free_staging.back();
      local = staging_buffer(chunk.staging);
      lkey = m_mr->lkey;
      if (!access.is_read) std::memcpy(local, access.local + chunk.at, chunk.length);
    }
    ibv_sge sge{reinterpret_cast<uint64_t>(local), chunk.length, lkey};
    uint64_t chunk_id = m_next_chunk++;
    ibv_send_wr request{};
    request.wr_id = work_id(Work::kRdma, chunk_id);
    request.sg_list = &sge;
    request.num_sge = 1;
    request.opcode = access.is_read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
    request.send_flags = IBV_SEND_SIGNALED;
    request.wr.rdma.remote_addr = access.region.address + access.offset + chunk.at;
    request.wr.rdma.rkey = access.region.rkey;
    ibv_send_wr* bad = nullptr;
    if (int error = ibv_post_send(m_qp, &request, &bad)) {
      log.warn("post RDMA {} to {}: {}", access.is_read ? "READ" : "WRITE", peer(),
               std::strerror(error));
      finish_access(chunk.access, make_error(EIO, "cannot post an RDMA request"));
      shutdown("cannot post an RDMA request");
      return;
    }
    if (chunk.staging != kNoStaging) m_free_staging.pop_back();
    m_rdma_queue.pop_front();
    ++m_send_queue_used;
    m_rdma_posted.emplace(chunk_id, chunk);
  }
}

void VerbsConnection::finish_access(uint64_t id, Result<void> result) {
  auto node = m_accesses.extract(id);
  if (node.empty()) return;
  Access& access = node.mapped();
  m_context->cancel_timer(access.timer);
  if (result) {
    if (access.is_read) {
      m_context->counters().one_sided_read(access.length);
    } else {
      m_context->counters().one_sided_write(access.length);
    }
  }
  access.done(std::move(result));
}

void VerbsConnection::fail_everything(const std::string& why) {
  m_out.clear();
  m_rdma_queue.clear();
  m_rdma_posted.clear();
  m_remote_keys.clear();
  m_key_checks.clear();
  m_endpoint.close(why);
  auto accesses = std::move(m_accesses);
  m_accesses.clear();
  for (auto& [id, access] : accesses) {
    m_context->cancel_timer(access.timer);
    access.done(make_error(ECONNRESET, why));
  }
}

}  // namespace sk::fabric
