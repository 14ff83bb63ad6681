// The x86-64 system call table as data: for each call its number, name,
// route and the reason for a route other than native. Nothing here depends
// on the pComponent's logic (as gVisor keeps its ABI package); the tracer and
// the seccomp filter builder read it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace sk::abi {

enum class Route : uint8_t {
  kNative,   // runs on the local kernel, never stops
  kTraced,   // stops in the tracer for bookkeeping, then runs
  kRefused,  // the tracer fails it with ENOSYS and counts it
};

struct Syscall {
  int number;
  std::string_view name;
  Route route;
  std::string_view reason;  // why the route is not kNative; empty otherwise
};

// Every known call, in number order.
std::span<const Syscall> syscalls();

// The entry for a number; nullopt for numbers Linux does not define (a stock
// program may still try them: they run natively and the kernel says ENOSYS).
std::optional<Syscall> find_syscall(int number);
std::optional<Syscall> find_syscall(std::string_view name);

std::string_view to_string(Route route);

}  // namespace sk::abi
