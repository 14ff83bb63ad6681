// Dropping pages of a traced process (see drop.h).
#include "pcomponent/memory/drop.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "kernel/log.h"
#include "pcomponent/inject.h"

namespace sk::pcomponent::memory {

static const Logger log("drop");

namespace {

enum class ThreadState {
  kOurs,           // in the PTRACE_EVENT_STOP we asked for: resume with CONT
  kOursGroupStop,  // in a group-stop reported as an event stop: resume with LISTEN
  kHeld,           // stopped, but not for us: leave it
  kLate,           // interrupted, but not stopped in time: its stop is the tracer's
  kGone,
};

// How long a thread may take to stop. A thread normally stops within
// microseconds; one that does not is waiting for something that may need
// the tracer (a vfork parent waits for its child, which may sit in its
// first stop until the tracer, busy here, lets it go).
constexpr auto kStopTimeout = std::chrono::milliseconds(100);

std::vector<pid_t> list_threads(pid_t pid) {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return tids;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    tids.push_back(static_cast<pid_t>(std::atoi(entry->d_name)));
  }
  ::closedir(dir);
  return tids;
}

// The state letter of /proc/PID/task/TID/stat, or 0 when it is gone.
char thread_state(pid_t pid, pid_t tid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return 0;
  return line[paren + 2];
}

bool is_group_stop_signal(int signo) {
  return signo == SIGSTOP || signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU;
}

ThreadState stop_thread(pid_t pid, pid_t tid, std::vector<TraceeStop>& other_stops) {
  int status = 0;
  // A stop (or exit) the tracer has not reaped yet: it is the tracer's.
  pid_t got = ::waitpid(tid, &status, WNOHANG | __WALL);
  if (got == tid) {
    other_stops.push_back(TraceeStop{tid, status});
    return WIFSTOPPED(status) ? ThreadState::kHeld : ThreadState::kGone;
  }
  if (got < 0) return ThreadState::kGone;  // not (or no longer) our tracee
  char state = thread_state(pid, tid);
  if (state == 't' || state == 'T') return ThreadState::kHeld;  // reaped, held by the tracer
  if (state == 0 || state == 'Z' || state == 'X' || state == 'x') return ThreadState::kGone;
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) return ThreadState::kGone;
  auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  for (int polls = 0;; ++polls) {
    got = ::waitpid(tid, &status, WNOHANG | __WALL);
    if (got == tid) break;
    if (got < 0 && errno != EINTR) return ThreadState::kGone;
    if (std::chrono::steady_clock::now() >= deadline) return ThreadState::kLate;
    // A stop takes microseconds: yield at first, then sleep a little.
    if (polls < 100) {
      ::sched_yield();
    } else {
      ::usleep(50);
    }
  }
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP) {
    return is_group_stop_signal(WSTOPSIG(status)) ? ThreadState::kOursGroupStop
                                                  : ThreadState::kOurs;
  }
  other_stops.push_back(TraceeStop{tid, status});
  return WIFSTOPPED(status) ? ThreadState::kHeld : ThreadState::kGone;
}

void resume(const std::map<pid_t, ThreadState>& threads) {
  for (const auto& [tid, state] : threads) {
    if (state == ThreadState::kOurs) {
      ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
    } else if (state == ThreadState::kOursGroupStop) {
      ::ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
    }
  }
}

// The Injector consumes the stop that interrupted it; a signal-delivery
// stop must go back to the tracer or the signal would be lost.
// FIXME(inject.h): have Injector::syscall report the interrupting wait
// status instead of this parse of its message.
int interrupting_signal(const Error& error) {
  const std::string& text = error.message();
  auto at = text.rfind("signal ");
  if (error.code() != EINTR || at == std::string::npos) return 0;
  return std::atoi(text.c_str() + at + 7);
}

}  // namespace

Result<void> drop_pages(pid_t pid, std::span<const Region> ranges,
                        const PageDropper::CopyOut& copy_out,
                        const std::function<void()>& dropped,
                        std::vector<TraceeStop>& other_stops) {
  // 1. Stop every thread, again for threads that appear meanwhile (a new
  // thread cannot run before the tracer, which is us, lets it).
  std::map<pid_t, ThreadState> threads;
  for (;;) {
    bool more = false;
    for (pid_t tid : list_threads(pid)) {
      if (threads.contains(tid)) continue;
      more = true;
      threads[tid] = stop_thread(pid, tid, other_stops);
    }
    if (!more) break;
  }
  pid_t injectable = -1;
  bool alive = false;
  bool late = false;
  for (const auto& [tid, state] : threads) {
    if (state != ThreadState::kGone) alive = true;
    if (state == ThreadState::kLate) late = true;
    if (injectable < 0 && (state == ThreadState::kOurs || state == ThreadState::kOursGroupStop)) {
      injectable = tid;
    }
  }
  if (!alive) {
    resume(threads);
    return make_error(ESRCH, "process " + std::to_string(pid) + " is gone");
  }
  if (late) {
    resume(threads);
    return make_error(EAGAIN, "a thread of process " + std::to_string(pid) +
                                  " did not stop in time");
  }
  if (injectable < 0) {
    resume(threads);
    return make_error(EAGAIN, "no thread of process " + std::to_string(pid) +
                                  " can take an injected madvise now");
  }

  // 2. Save what must be saved.
  auto droppable = copy_out();
  if (!droppable) {
    resume(threads);
    return std::move(droppable).error();
  }

  // 3. Drop.
  Injector injector(injectable);
  size_t asked = 0;
  for (const Region& range : ranges) asked += range.size();
  uint64_t bytes = 0;
  for (const Region& range : *droppable) {
    auto result = injector.syscall(SYS_madvise, {range.start, range.size(), MADV_DONTNEED});
    if (!result) {
      if (int signo = interrupting_signal(result.error())) {
        other_stops.push_back(TraceeStop{injectable, (signo << 8) | 0x7f});
        threads[injectable] = ThreadState::kHeld;
      } else if (result.error().code() == ESRCH) {
        threads[injectable] = ThreadState::kGone;
      }
      log.warn("process {}: dropping pages failed: {}", pid, result.error().text());
      break;
    }
    if (*result < 0) {
      // Part of the range went (munmap raced the eviction): what was there
      // is saved, so it is only memory not given back.
      log.debug("process {}: madvise({:#x}, {}) = {}", pid, range.start, range.size(), *result);
      continue;
    }
    bytes += range.size();
  }
  log.debug("process {}: dropped {} of {} bytes asked", pid, bytes, asked);

  // 4, 5.
  if (dropped) dropped();
  resume(threads);
  return {};
}

}  // namespace sk::pcomponent::memory
