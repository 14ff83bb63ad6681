#include "pcomponent/inject.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace sk::pcomponent {

namespace {

// The x86-64 `syscall` instruction.
constexpr uint16_t kSyscallOpcode = 0x050f;
// Bytes below rsp the ABI lets leaf functions use without moving rsp.
constexpr uint64_t kRedZone = 128;

// Waits for the next stop of `pid` and requires it to be a SIGTRAP.
Result<void> wait_trap(pid_t pid, const char* what) {
  int status = 0;
  for (;;) {
    pid_t got = ::waitpid(pid, &status, __WALL | __WNOTHREAD);
    if (got == pid) break;
    if (got < 0 && errno == EINTR) continue;
    return Error::from_errno(std::string(what) + ": waitpid");
  }
  if (!WIFSTOPPED(status)) return make_error(ESRCH, std::string(what) + ": the tracee ended");
  if (WSTOPSIG(status) != SIGTRAP) {
    return make_error(EINTR, std::string(what) + ": interrupted by signal " +
                                 std::to_string(WSTOPSIG(status)));
  }
  return {};
}

}  // namespace

Result<void> step_out_of_syscall(pid_t pid) {
  if (::ptrace(PTRACE_SINGLESTEP, pid, nullptr, nullptr) != 0) {
    return Error::from_errno("single-step out of the syscall");
  }
  return wait_trap(pid, "single-step out of the syscall");
}

Result<uint64_t> Injector::syscall_instruction(uint64_t rip) {
  if (m_syscall_instruction != 0) return m_syscall_instruction;
  // A tracee stopped right after a syscall has one just behind rip.
  errno = 0;
  long word = ::ptrace(PTRACE_PEEKTEXT, m_pid, rip - 2, nullptr);
  if (errno == 0 && (word & 0xffff) == kSyscallOpcode) return m_syscall_instruction = rip - 2;
  // Otherwise the vDSO has one; it is mapped into every process, static
  // binaries included.
  std::ifstream maps("/proc/" + std::to_string(m_pid) + "/maps");
  std::string line;
  uint64_t low = 0, high = 0;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") != std::string::npos) {
      low = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
      high = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
      break;
    }
  }
  for (uint64_t address = low; address + 8 <= high; address += 7) {
    errno = 0;
    long value = ::ptrace(PTRACE_PEEKTEXT, m_pid, address, nullptr);
    if (errno != 0) break;
    for (int i = 0; i < 7; ++i) {
      if (((static_cast<uint64_t>(value) >> (8 * i)) & 0xffff) == kSyscallOpcode) {
        return m_syscall_instruction = address + static_cast<uint64_t>(i);
      }
    }
  }
  return make_error(ENOEXEC, "no syscall instruction in the tracee");
}

Result<long> Injector::syscall(long number, std::array<uint64_t, 6> args) {
  user_regs_struct saved;
  if (::ptrace(PTRACE_GETREGS, m_pid, nullptr, &saved) != 0) return Error::from_errno("GETREGS");
  user_regs_struct regs = saved;
  regs.rip = TRY(syscall_instruction(saved.rip));
  regs.rax = static_cast<uint64_t>(number);
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  if (::ptrace(PTRACE_SETREGS, m_pid, nullptr, &regs) != 0) return Error::from_errno("SETREGS");
  if (::ptrace(PTRACE_SINGLESTEP, m_pid, nullptr, nullptr) != 0) {
    return Error::from_errno("SINGLESTEP");
  }
  auto trapped = wait_trap(m_pid, "injected syscall");
  user_regs_struct after{};
  bool have_result = trapped.ok() && ::ptrace(PTRACE_GETREGS, m_pid, nullptr, &after) == 0;
  // Restore whatever happened; a tracee that vanished makes this fail too.
  ::ptrace(PTRACE_SETREGS, m_pid, nullptr, &saved);
  if (!trapped) return std::move(trapped).error();
  if (!have_result) return Error::from_errno("GETREGS after the injected syscall");
  return static_cast<long>(after.rax);
}

Result<uint64_t> Injector::push(std::span<const std::byte> bytes) {
  user_regs_struct regs;
  if (::ptrace(PTRACE_GETREGS, m_pid, nullptr, &regs) != 0) return Error::from_errno("GETREGS");
  uint64_t length = (bytes.size() + 7) & ~uint64_t{7};
  uint64_t address = (regs.rsp - kRedZone - length) & ~uint64_t{15};
  for (uint64_t offset = 0; offset < length; offset += 8) {
    uint64_t word = 0;
    if (offset < bytes.size()) {
      std::memcpy(&word, bytes.data() + offset, std::min<size_t>(8, bytes.size() - offset));
    }
    if (::ptrace(PTRACE_POKEDATA, m_pid, address + offset, word) != 0) {
      return Error::from_errno("POKEDATA");
    }
  }
  return address;
}

}  // namespace sk::pcomponent
