#include "abi/syscall_table.h"

#include <algorithm>
#include <array>

#include "abi/syscall_list.h"

namespace sk::abi {

namespace {

constexpr Route kNative = Route::kNative;
constexpr Route kTraced = Route::kTraced;
constexpr Route kRefused = Route::kRefused;

constexpr std::array kSyscalls = {
#define SK_SYSCALL_ENTRY(number, name, route, reason) Syscall{number, #name, route, reason},
    SK_SYSCALLS(SK_SYSCALL_ENTRY)
#undef SK_SYSCALL_ENTRY
};

constexpr bool sorted_and_unique() {
  for (size_t i = 1; i < kSyscalls.size(); ++i) {
    if (kSyscalls[i - 1].number >= kSyscalls[i].number) return false;
  }
  return true;
}
static_assert(sorted_and_unique(), "syscall_list.h must be in strictly increasing number order");

}  // namespace

std::span<const Syscall> syscalls() { return kSyscalls; }

std::optional<Syscall> find_syscall(int number) {
  auto it = std::lower_bound(kSyscalls.begin(), kSyscalls.end(), number,
                             [](const Syscall& entry, int n) { return entry.number < n; });
  if (it == kSyscalls.end() || it->number != number) return std::nullopt;
  return *it;
}

std::optional<Syscall> find_syscall(std::string_view name) {
  for (const auto& entry : kSyscalls) {
    if (entry.name == name) return entry;
  }
  return std::nullopt;
}

std::string_view to_string(Route route) {
  switch (route) {
    case Route::kNative: return "native";
    case Route::kTraced: return "traced";
    case Route::kRefused: return "refused";
  }
  return "unknown";
}

}  // namespace sk::abi
