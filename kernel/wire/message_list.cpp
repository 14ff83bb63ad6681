// The header checks of message_list.h.
#include "kernel/wire/message_list.h"

#include <string>

namespace sk::wire {

// The MON2x_VNODE_* bodies name the vNode they set up or tear down.
static Result<void> check_vnode_body(uint32_t body_vnode, const Header& header) {
  if (body_vnode == 0) return make_error(EINVAL, "vNode id 0 is reserved");
  if (body_vnode != header.vnode) {
    return make_error(EINVAL, "the request names vNode " + std::to_string(body_vnode) +
                                  " in its body but " + std::to_string(header.vnode) +
                                  " in its header");
  }
  return {};
}

Result<void> matches_header(const Mon2cVnodeCreateRequest& body, const Header& header) {
  return check_vnode_body(body.vnode, header);
}

Result<void> matches_header(const Mon2cVnodeDestroyRequest& body, const Header& header) {
  return check_vnode_body(body.vnode, header);
}

Result<void> matches_header(const P2monMemoryPlaceRequest& body, const Header& header) {
  if (body.vnode != header.vnode) {
    return make_error(EINVAL, "P2MON_MEMORY_PLACE names vNode " + std::to_string(body.vnode) +
                                  " in a request for " + std::to_string(header.vnode));
  }
  return {};
}

}  // namespace sk::wire
