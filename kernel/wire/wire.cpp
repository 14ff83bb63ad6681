#include <cctype>

#include "kernel/node.h"
#include "kernel/wire/codec.h"
#include "kernel/wire/opcodes.h"

namespace sk::wire {

std::string_view opcode_name(uint16_t raw) {
  switch (raw) {
#define SK_WIRE_OPCODE_NAME(name, value) \
  case value: return #name;
    SK_WIRE_OPCODES(SK_WIRE_OPCODE_NAME)
#undef SK_WIRE_OPCODE_NAME
  }
  return "unknown";
}

bool is_known_opcode(uint16_t raw) { return opcode_name(raw) != "unknown"; }

std::string_view to_string(FabricKind kind) {
  switch (kind) {
    case FabricKind::kTcp: return "tcp";
    case FabricKind::kVerbs: return "verbs";
  }
  return "unknown";
}

Result<void> check_header(const Header& header) {
  if (header.magic != kMagic) return make_error(EPROTO, "bad magic");
  if (header.version != kVersion) {
    return make_error(EPROTO, "unsupported protocol version " + std::to_string(header.version));
  }
  if (header.payload_length > kMaxPayload) {
    return make_error(EMSGSIZE, "payload of " + std::to_string(header.payload_length) +
                                    " bytes exceeds the limit");
  }
  if ((header.flags & ~kFlagReply) != 0) return make_error(EPROTO, "unknown header flags");
  return {};
}

Result<void> validate_vnode_name(std::string_view name) {
  if (name.empty()) return make_error(EINVAL, "empty vNode name");
  if (name.size() >= kVnodeNameLength) {
    return make_error(EINVAL, "vNode name '" + std::string(name) + "' is longer than " +
                                  std::to_string(kVnodeNameLength - 1) + " characters");
  }
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) {
    return make_error(EINVAL, "vNode name '" + std::string(name) +
                                  "' must start with a letter or digit");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) {
      return make_error(EINVAL, "vNode name '" + std::string(name) +
                                    "' may only hold a-z, 0-9, '-' and '_'");
    }
  }
  return {};
}

static Result<void> check_fabric(uint8_t fabric) {
  if (fabric != static_cast<uint8_t>(FabricKind::kTcp) &&
      fabric != static_cast<uint8_t>(FabricKind::kVerbs)) {
    return make_error(EINVAL, "unknown fabric kind " + std::to_string(fabric));
  }
  return {};
}

Result<void> C2monJoinRequest::validate() const {
  if (!node_kind_from_wire(kind) || kind == static_cast<uint8_t>(NodeKind::kMonitor)) {
    return make_error(EINVAL, "bad component kind " + std::to_string(kind));
  }
  TRY(check_fabric(fabric));
  if (!address.terminated() || address.view().empty()) {
    return make_error(EINVAL, "bad component address");
  }
  return {};
}

Result<void> NodeRecord::validate() const {
  if (!node_kind_from_wire(kind)) return make_error(EINVAL, "bad node kind");
  if (!node_state_from_wire(state)) return make_error(EINVAL, "bad node state");
  TRY(check_fabric(fabric));
  if (!address.terminated()) return make_error(EINVAL, "bad node address");
  return {};
}

static Result<void> check_name(const FixedString<kVnodeNameLength>& name) {
  if (!name.terminated()) return make_error(EINVAL, "vNode name is not terminated");
  return validate_vnode_name(name.view());
}

// An image name is a vNode-style name, or empty.
static Result<void> check_image(const FixedString<kVnodeNameLength>& image) {
  if (!image.terminated()) return make_error(EINVAL, "image name is not terminated");
  if (image.view().empty()) return {};
  return validate_vnode_name(image.view());
}

Result<void> Ctl2monVnodeCreateRequest::validate() const {
  TRY(check_name(name));
  TRY(check_image(image));
  if ((flags & ~kVnodeEmptyRoot) != 0) return make_error(EINVAL, "unknown vNode flags");
  if ((flags & kVnodeEmptyRoot) && !image.view().empty()) {
    return make_error(EINVAL, "an empty vNode has no image");
  }
  return {};
}

Result<void> VnodeRecord::validate() const {
  TRY(check_name(name));
  return check_image(image);
}

Result<void> Ctl2monVnodeDestroyRequest::validate() const {
  return check_name(name);
}

Result<void> Mon2cVnodeCreateRequest::validate() const {
  TRY(check_name(name));
  TRY(check_image(image));
  if (!scomponent.terminated()) return make_error(EINVAL, "sComponent address is not terminated");
  return {};
}

Result<void> P2mPageRange::validate() const {
  if (address % kPageSize != 0) return make_error(EINVAL, "page address not aligned");
  if (count == 0 || count > kMaxPagesPerMessage) {
    return make_error(EINVAL, "page count " + std::to_string(count) + " out of range");
  }
  if (address + static_cast<uint64_t>(count) * kPageSize < address) {
    return make_error(EINVAL, "page range wraps");
  }
  return {};
}

}  // namespace sk::wire
