// The tracer's dispatch table: for each syscall number the handler of the
// call, generated from abi/syscall_list.h (SK_SYSCALLS for the numbers and
// routes, SK_TRACED_SYSCALL_HANDLERS for the handlers) and checked against
// it at compile time.
#include <array>
#include <iterator>
#include <string_view>

#include "abi/syscall_list.h"
#include "abi/syscall_table.h"
#include "pcomponent/tracer/syscall_handler.h"

namespace sk::pcomponent::tracer {

namespace {

struct ListedCall {
  int number;
  std::string_view name;
  abi::Route route;
};

constexpr ListedCall kCalls[] = {
#define SK_LISTED_CALL(number, name, route, reason) {number, #name, abi::Route::route},
    SK_SYSCALLS(SK_LISTED_CALL)
#undef SK_LISTED_CALL
};

struct NamedHandler {
  std::string_view name;
  const SyscallHandler* handler;
};

constexpr NamedHandler kHandlers[] = {
#define SK_NAMED_HANDLER(name, handler) {#name, &handler},
    SK_TRACED_SYSCALL_HANDLERS(SK_NAMED_HANDLER)
#undef SK_NAMED_HANDLER
};

constexpr const SyscallHandler* handler_named(std::string_view name) {
  for (const auto& entry : kHandlers) {
    if (entry.name == name) return entry.handler;
  }
  return nullptr;
}

constexpr bool traced_exactly_when_handled() {
  for (const auto& call : kCalls) {
    if ((call.route == abi::Route::kTraced) != (handler_named(call.name) != nullptr)) return false;
  }
  return true;
}
static_assert(traced_exactly_when_handled(),
              "every kTraced call in SK_SYSCALLS needs a handler in SK_TRACED_SYSCALL_HANDLERS, "
              "and no other call may have one");

constexpr bool every_handler_is_listed_once() {
  for (size_t i = 0; i < std::size(kHandlers); ++i) {
    int listed = 0;
    for (const auto& call : kCalls) listed += call.name == kHandlers[i].name;
    if (listed != 1) return false;
    for (size_t j = 0; j < i; ++j) {
      if (kHandlers[j].name == kHandlers[i].name) return false;
    }
  }
  return true;
}
static_assert(every_handler_is_listed_once(),
              "each SK_TRACED_SYSCALL_HANDLERS entry must name one call of SK_SYSCALLS, once");

// SK_SYSCALLS is in increasing number order (syscall_table.cpp checks it).
constexpr int kSlots = kCalls[std::size(kCalls) - 1].number + 1;

constexpr std::array<const SyscallHandler*, kSlots> kTable = [] {
  std::array<const SyscallHandler*, kSlots> table{};
  for (const auto& call : kCalls) table[call.number] = handler_named(call.name);
  return table;
}();

}  // namespace

const SyscallHandler* find_handler(long number) {
  if (number < 0 || number >= kSlots) return nullptr;
  return kTable[static_cast<size_t>(number)];
}

}  // namespace sk::pcomponent::tracer
