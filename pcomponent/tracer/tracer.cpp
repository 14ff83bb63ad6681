// The tracer's stop handling (see tracer.h): every ptrace stop of a tracee
// comes through Tracer::handle, which sorts it by kind; a traced system
// call's seccomp stop goes to the call's handler from the table generated
// from abi/syscall_list.h, and the handler's verdict becomes ptrace calls
// here, in one place.
#include "pcomponent/tracer/tracer.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <string>

#include "abi/syscall_table.h"
#include "kernel/log.h"

namespace sk::pcomponent::tracer {

namespace {

const Logger log("tracer");

// TRACESYSGOOD marks syscall-exit stops (SIGTRAP | 0x80), which a handler
// asks for (EntryVerdict::kRunToExit).
constexpr long kTraceOptions = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK |
                               PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                               PTRACE_O_TRACESYSGOOD;
constexpr int kSyscallExitStop = SIGTRAP | 0x80;

// Skips the call the tracee is entering; `result` becomes its return value.
void fail_syscall(pid_t pid, user_regs_struct& regs, long result) {
  regs.orig_rax = static_cast<unsigned long long>(-1);
  regs.rax = static_cast<unsigned long long>(result);
  ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
}

}  // namespace

Result<void> Tracer::seize(pid_t pid, VnodeId vnode, Launcher::ExitFn on_exit) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(kTraceOptions)) != 0) {
    int error = errno;
    ::kill(pid, SIGKILL);
    return make_error(error, "ptrace the program");
  }
  m_launched[pid] = Launched{std::move(on_exit)};
  m_tracees[pid] = Tracee{vnode, pid, false, pid};
  m_counters.update([](TracerStats& stats) { ++stats.launched; });
  return {};
}

void Tracer::handle(pid_t pid, int status) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    on_ended(pid, status);
    return;
  }
  if (!WIFSTOPPED(status)) return;
  m_counters.update([](TracerStats& stats) { ++stats.stops; });
  int signo = WSTOPSIG(status);
  int event = status >> 16;
  if (event == 0 && signo == kSyscallExitStop) {
    on_syscall_exit(pid);
    return;
  }
  switch (event) {
    case PTRACE_EVENT_SECCOMP:
      on_seccomp(pid);
      return;
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK:
    case PTRACE_EVENT_CLONE:
      on_new_child(pid, event);
      break;
    case PTRACE_EVENT_EXEC:
      m_counters.update([](TracerStats& stats) { ++stats.execs; });
      if (m_memory) {
        attach_after_exec(pid);  // resumes the tracee itself
        return;
      }
      break;
    case PTRACE_EVENT_STOP:
      // A group-stop (SIGSTOP and friends) must stay stopped until SIGCONT:
      // PTRACE_LISTEN does that while still reporting the next event. Any
      // other event-stop is a new tracee's first stop.
      if (signo == SIGSTOP || signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU) {
        ::ptrace(PTRACE_LISTEN, pid, nullptr, nullptr);
        return;
      }
      break;
    case 0:
      // A signal on its way to the tracee: deliver it unchanged.
      ::ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(signo)));
      return;
    default:
      break;
  }
  ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
}

// A call the seccomp filter sent here: refused (or unknown to the table) ->
// ENOSYS; traced -> its handler decides.
void Tracer::on_seccomp(pid_t tid) {
  user_regs_struct regs;
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) return;  // it died meanwhile
  int number = static_cast<int>(regs.orig_rax);
  auto call = abi::find_syscall(number);
  std::string name = call ? std::string(call->name) : "syscall_" + std::to_string(number);
  bool refuse = !call || call->route == abi::Route::kRefused;
  m_counters.update([&](TracerStats& stats) {
    ++stats.syscalls[name];
    if (refuse) ++stats.refused[name];
  });
  if (refuse) {
    fail_syscall(tid, regs, -ENOSYS);
    log.debug("refused {} from host pid {}", name, tid);
    ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
    return;
  }
  const SyscallHandler* handler = call->route == abi::Route::kTraced ? find_handler(number) : nullptr;
  auto tracee = m_tracees.find(tid);
  if (handler == nullptr || tracee == m_tracees.end()) {
    ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
    return;
  }
  long call_number = static_cast<long>(regs.orig_rax);
  SyscallContext context{tid,
                         tracee->second.tgid,
                         {regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9},
                         m_memory,
                         &m_processes};
  EntryVerdict verdict = handler->on_entry(context);
  switch (verdict.action) {
    case EntryVerdict::Action::kRun:
      ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
      return;
    case EntryVerdict::Action::kFail:
      fail_syscall(tid, regs, verdict.result);
      ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
      return;
    case EntryVerdict::Action::kRunToExit:
      tracee->second.pending_call = call_number;
      tracee->second.pending_args = context.args;
      ::ptrace(PTRACE_SYSCALL, tid, nullptr, nullptr);
      return;
  }
}

void Tracer::on_syscall_exit(pid_t tid) {
  auto tracee = m_tracees.find(tid);
  user_regs_struct regs;
  if (tracee == m_tracees.end() || tracee->second.pending_call < 0 ||
      ::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
    ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
    return;
  }
  long number = std::exchange(tracee->second.pending_call, -1);
  if (const SyscallHandler* handler = find_handler(number)) {
    SyscallContext context{tid, tracee->second.tgid, tracee->second.pending_args, m_memory,
                           &m_processes};
    handler->on_exit(context, regs.rax);
  }
  ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
}

}  // namespace sk::pcomponent::tracer
