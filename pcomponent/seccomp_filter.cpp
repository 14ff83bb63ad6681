#include "pcomponent/seccomp_filter.h"

#include <cerrno>
#include <string>

#include "abi/syscall_table.h"

namespace sk::pcomponent {

Result<scmp_filter_ctx> build_seccomp_filter(TraceMemory trace_memory) {
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == nullptr) return make_error(ENOMEM, "seccomp_init");
  auto fail = [&](int error, std::string what) -> Error {
    seccomp_release(filter);
    return make_error(-error, std::move(what));
  };
  if (int error = seccomp_attr_set(filter, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS))) {
    return fail(error, "seccomp: bad-arch action");
  }
  for (const auto& call : abi::syscalls()) {
    if (call.route == abi::Route::kNative) continue;
    if (call.route == abi::Route::kTraced && trace_memory == TraceMemory::kNo) continue;
    // The tracer tells traced from refused calls by the number, so the
    // filter's data value is not needed.
    if (int error = seccomp_rule_add(filter, SCMP_ACT_TRACE(0), call.number, 0)) {
      // A call libseccomp cannot name on this architecture cannot be made
      // either; anything else is a real failure.
      if (error == -EDOM || error == -EINVAL) continue;
      return fail(error, "seccomp rule for " + std::string(call.name));
    }
  }
  return filter;
}

}  // namespace sk::pcomponent
