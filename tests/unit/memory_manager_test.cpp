// The memory manager end to end on real processes: a worker child (forked
// from this test, driven over a pipe) whose anonymous memory is served
// through its userfaultfd by the memory manager, against in-process
// mComponents on the tcp fabric (loopback). A test tracer thread plays the
// pComponent's tracer: it seizes the worker, takes its uffd, reports forks
// and exits, and drops pages with the real drop_pages() (memory/drop.h).
//
// Needs root and /dev/userfaultfd (skipped otherwise), like inject_test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "kernel/fabric/transport.h"
#include "mcomponent/mcomponent.h"
#include "pcomponent/inject.h"
#include "pcomponent/memory/drop.h"
#include "pcomponent/memory/memory_manager_impl.h"
#include "pcomponent/memory/page_bits.h"
#include "pcomponent/userfault.h"

namespace {

namespace memory = sk::pcomponent::memory;
using memory::Region;

constexpr uint64_t kPage = 4096;
constexpr sk::VnodeId kVnode = 7;

bool have_userfaultfd() {
  return ::geteuid() == 0 && ::access("/dev/userfaultfd", R_OK | W_OK) == 0;
}

// ---- the worker child -------------------------------------------------------

enum Op : uint64_t {
  kMmap = 1,      // a = bytes -> address
  kWrite,         // a = address, b = pages, c = seed, d = index of page a -> 0
  kVerify,        // a, b, c, d -> pages that differ from the pattern
  kCountNonzero,  // a, b -> pages with any non-zero byte
  kMunmap,        // a, b = bytes -> result
  kDontneed,      // a, b = bytes -> result of madvise(MADV_DONTNEED)
  kMremapFixed,   // a = address, b = old bytes, c = new bytes -> new address
  kFork,          // a, b = pages, c = seed, d = new seed -> the child's exit status:
                  //   the child verifies c, writes d, verifies d, exits with the bad count
  kThreads,       // a, b = pages, c = seed, d = threads -> bad pages
  kTouchTimed,    // a, b = pages -> 0; the time of each first write in Shared::samples
  kVfork,         // -> the exit status of a vfork child that exits at once
  kWriteSome,     // a, b = pages, c = seed, d = stride -> 0: reads every page in order,
                  //   and writes each with p % stride == 0 right after reading it
  kVerifyEvery,   // a, b, c = seed of those pages, d = stride << 32 | seed of the others -> bad
  kForkReader,    // a, b = pages, c = seed -> the exit status of a child that only
                  //   verifies c (and exits with the bad count)
  kExit,
};

struct Command {
  uint64_t op, a, b, c, d;
};

constexpr size_t kMaxSamples = 1 << 16;

// A MAP_SHARED page set between the test and the worker (never registered).
struct Shared {
  std::atomic<uint64_t> done;
  std::atomic<uint64_t> bad;
  uint64_t samples[kMaxSamples];  // nanoseconds
};

inline uint64_t pattern(uint64_t seed, uint64_t page, uint64_t word) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ (page << 12) ^ word;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 29);
}

// Writes every 8th word (enough to catch a lost or wrong page).
void write_pages(uint64_t address, uint64_t pages, uint64_t seed, uint64_t first_page = 0) {
  for (uint64_t p = 0; p < pages; ++p) {
    auto* words = reinterpret_cast<volatile uint64_t*>(address + p * kPage);
    for (uint64_t w = 0; w < kPage / 8; w += 8) words[w] = pattern(seed, first_page + p, w);
  }
}

uint64_t verify_pages(uint64_t address, uint64_t pages, uint64_t seed, uint64_t first_page = 0) {
  uint64_t bad = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    auto* words = reinterpret_cast<volatile uint64_t*>(address + p * kPage);
    for (uint64_t w = 0; w < kPage / 8; w += 8) {
      if (words[w] != pattern(seed, first_page + p, w)) {
        ++bad;
        break;
      }
    }
  }
  return bad;
}

uint64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct ThreadJob {
  uint64_t address, pages, seed, first_page;
  Shared* shared;
};

int thread_main(void* arg) {
  auto* job = static_cast<ThreadJob*>(arg);
  write_pages(job->address, job->pages, job->seed, job->first_page);
  uint64_t bad = verify_pages(job->address, job->pages, job->seed, job->first_page);
  job->shared->bad.fetch_add(bad);
  job->shared->done.fetch_add(1);
  return 0;  // glibc's clone() then calls exit(2) for this thread alone
}

uint64_t run_threads(const Command& c, Shared* shared) {
  uint64_t threads = std::min<uint64_t>(c.d, 16);
  shared->done = 0;
  shared->bad = 0;
  static ThreadJob jobs[16];
  uint64_t per = c.b / threads;
  for (uint64_t t = 0; t < threads; ++t) {
    uint64_t first = t * per;
    uint64_t count = t + 1 == threads ? c.b - first : per;
    jobs[t] = ThreadJob{c.a + first * kPage, count, c.c, first, shared};
    void* stack = ::mmap(nullptr, 64 * 1024, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    if (::clone(thread_main, static_cast<char*>(stack) + 64 * 1024, flags, &jobs[t]) < 0) {
      return ~0ull;
    }
  }
  while (shared->done.load() < threads) ::sched_yield();
  return shared->bad.load() + verify_pages(c.a, c.b, c.c);
}

uint64_t run(const Command& c, Shared* shared) {
  switch (c.op) {
    case kMmap:
      return reinterpret_cast<uint64_t>(
          ::mmap(nullptr, c.a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    case kWrite:
      write_pages(c.a, c.b, c.c, c.d);
      return 0;
    case kVerify:
      return verify_pages(c.a, c.b, c.c, c.d);
    case kCountNonzero: {
      uint64_t nonzero = 0;
      for (uint64_t p = 0; p < c.b; ++p) {
        auto* words = reinterpret_cast<volatile uint64_t*>(c.a + p * kPage);
        for (uint64_t w = 0; w < kPage / 8; ++w) {
          if (words[w] != 0) {
            ++nonzero;
            break;
          }
        }
      }
      return nonzero;
    }
    case kMunmap:
      return static_cast<uint64_t>(::munmap(reinterpret_cast<void*>(c.a), c.b));
    case kDontneed:
      return static_cast<uint64_t>(::madvise(reinterpret_cast<void*>(c.a), c.b, MADV_DONTNEED));
    case kMremapFixed: {
      void* target = ::mmap(nullptr, c.c, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return reinterpret_cast<uint64_t>(::mremap(reinterpret_cast<void*>(c.a), c.b, c.c,
                                                 MREMAP_MAYMOVE | MREMAP_FIXED, target));
    }
    case kFork: {
      pid_t child = ::fork();
      if (child == 0) {
        uint64_t bad = verify_pages(c.a, c.b, c.c);
        write_pages(c.a, c.b, c.d);
        bad += verify_pages(c.a, c.b, c.d);
        ::_exit(static_cast<int>(std::min<uint64_t>(bad, 250)));
      }
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      return WIFEXITED(status) ? static_cast<uint64_t>(WEXITSTATUS(status)) : 1000;
    }
    case kThreads:
      return run_threads(c, shared);
    case kTouchTimed: {
      for (uint64_t p = 0; p < c.b && p < kMaxSamples; ++p) {
        uint64_t start = now_ns();
        *reinterpret_cast<volatile char*>(c.a + p * kPage) = 1;
        shared->samples[p] = now_ns() - start;
      }
      return 0;
    }
    case kVfork: {
      pid_t child = ::vfork();
      if (child == 0) ::_exit(3);
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      return WIFEXITED(status) ? static_cast<uint64_t>(WEXITSTATUS(status)) : 1000;
    }
    case kWriteSome:
      for (uint64_t p = 0; p < c.b; ++p) {
        (void)*reinterpret_cast<volatile uint64_t*>(c.a + p * kPage + 8);
        if (p % c.d == 0) write_pages(c.a + p * kPage, 1, c.c, p);
      }
      return 0;
    case kVerifyEvery: {
      uint64_t stride = c.d >> 32;
      uint64_t other = c.d & 0xffffffffull;
      uint64_t bad = 0;
      for (uint64_t p = 0; p < c.b; ++p) {
        bad += verify_pages(c.a + p * kPage, 1, p % stride == 0 ? c.c : other, p);
      }
      return bad;
    }
    case kForkReader: {
      pid_t child = ::fork();
      if (child == 0) {
        uint64_t bad = verify_pages(c.a, c.b, c.c);
        bad += verify_pages(c.a, c.b, c.c);
        ::_exit(static_cast<int>(std::min<uint64_t>(bad, 250)));
      }
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      return WIFEXITED(status) ? static_cast<uint64_t>(WEXITSTATUS(status)) : 1000;
    }
    case kExit:
      ::_exit(0);
  }
  return ~0ull;
}

[[noreturn]] void worker_main(int in, int out, Shared* shared) {
  for (;;) {
    Command command;
    size_t got = 0;
    while (got < sizeof command) {
      ssize_t n = ::read(in, reinterpret_cast<char*>(&command) + got, sizeof command - got);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        ::_exit(0);
      }
      got += static_cast<size_t>(n);
    }
    uint64_t result = run(command, shared);
    (void)!::write(out, &result, sizeof result);
  }
}

class Worker {
 public:
  Worker() {
    void* shared = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    m_shared = static_cast<Shared*>(shared);
    int down[2], up[2];
    EXPECT_EQ(::pipe2(down, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(up, O_CLOEXEC), 0);
    m_pid = ::fork();
    if (m_pid == 0) {
      ::close(down[1]);
      ::close(up[0]);
      worker_main(down[0], up[1], m_shared);
    }
    ::close(down[0]);
    ::close(up[1]);
    m_to = down[1];
    m_from = up[0];
  }
  ~Worker() {
    ::close(m_to);
    ::close(m_from);
    ::kill(m_pid, SIGKILL);
    ::munmap(m_shared, sizeof(Shared));
  }

  pid_t pid() const { return m_pid; }
  Shared* shared() const { return m_shared; }

  // The worker's answer, or ~0 when it died (a timeout is a failure: a
  // worker must never hang).
  uint64_t call(Op op, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0,
                int timeout_ms = 60000) {
    Command command{op, a, b, c, d};
    if (::write(m_to, &command, sizeof command) != static_cast<ssize_t>(sizeof command)) {
      return ~0ull;
    }
    pollfd waiting{m_from, POLLIN, 0};
    if (::poll(&waiting, 1, timeout_ms) != 1) {
      ADD_FAILURE() << "the worker did not answer op " << op;
      return ~0ull;
    }
    uint64_t result = ~0ull;
    if (::read(m_from, &result, sizeof result) != static_cast<ssize_t>(sizeof result)) {
      return ~0ull;
    }
    return result;
  }

 private:
  pid_t m_pid = -1;
  int m_to = -1;
  int m_from = -1;
  Shared* m_shared = nullptr;
};

// ---- the test tracer ----------------------------------------------------------

class TestTracer final : public memory::PageDropper {
 public:
  TestTracer() {
    m_wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m_thread = std::thread([this] { loop(); });
  }
  ~TestTracer() override { stop(); }

  void set_memory(memory::MemoryManagerImpl* manager) { m_memory = manager; }

  void stop() {
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      m_stopping = true;
    }
    wake();
    if (m_thread.joinable()) m_thread.join();
    ::close(m_wake);
  }

  // Runs fn on the tracer thread and waits for it.
  sk::Result<void> run(std::function<sk::Result<void>()> fn) {
    auto task = std::make_shared<std::packaged_task<sk::Result<void>()>>(std::move(fn));
    auto future = task->get_future();
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return sk::make_error(ESHUTDOWN, "the test tracer stopped");
      m_commands.push_back([task] { (*task)(); });
    }
    wake();
    return future.get();
  }

  // Seizes `pid`, takes its uffd and hands it to the memory manager with
  // `regions` (all its private anonymous regions when empty and `all`).
  sk::Result<void> attach(pid_t pid, bool all, std::vector<Region> regions) {
    return run([&]() -> sk::Result<void> {
      long options = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
                     PTRACE_O_EXITKILL;
      if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(options)) != 0) {
        return sk::Error::from_errno("seize");
      }
      if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) {
        return sk::Error::from_errno("interrupt");
      }
      int status = 0;
      if (::waitpid(pid, &status, __WALL) != pid || !WIFSTOPPED(status)) {
        return sk::make_error(ESRCH, "the worker did not stop");
      }
      sk::pcomponent::Injector injector(pid);
      auto uffd = TRY(sk::pcomponent::acquire_userfault(pid, injector));
      if (all) regions = TRY(memory::private_anonymous_regions(pid));
      m_processes.insert(pid);
      m_memory->on_exec(pid, kVnode, uffd, regions);
      ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
      return {};
    });
  }

  sk::Result<void> drop(pid_t pid, std::span<const Region> ranges, const CopyOut& copy_out,
                        const std::function<void()>& dropped) override {
    return run([&]() -> sk::Result<void> {
      std::vector<memory::TraceeStop> others;
      auto result = memory::drop_pages(pid, ranges, copy_out, dropped, others);
      for (const auto& stop : others) handle(stop.tid, stop.status);
      ++m_drops;
      return result;
    });
  }

  uint64_t drops() const { return m_drops; }
  std::set<pid_t> forked() {
    std::lock_guard lock(m_mutex);
    return m_forked;
  }

 private:
  void wake() {
    uint64_t one = 1;
    (void)!::write(m_wake, &one, sizeof one);
  }

  void loop() {
    for (;;) {
      pollfd waiting{m_wake, POLLIN, 0};
      ::poll(&waiting, 1, 1);
      uint64_t value;
      (void)!::read(m_wake, &value, sizeof value);
      std::deque<std::function<void()>> commands;
      {
        std::lock_guard lock(m_mutex);
        commands.swap(m_commands);
        if (m_stopping && commands.empty()) return;
      }
      for (auto& command : commands) command();
      for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL);
        if (pid <= 0) break;
        handle(pid, status);
      }
    }
  }

  static bool is_thread(pid_t tid) {
    std::ifstream status("/proc/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Tgid:", 0) == 0) return std::stol(line.substr(5)) != tid;
    }
    return false;
  }

  void handle(pid_t pid, int status) {
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (m_processes.erase(pid) != 0 && m_memory != nullptr) m_memory->on_exit(pid);
      return;
    }
    if (!WIFSTOPPED(status)) return;
    int event = status >> 16;
    int signo = WSTOPSIG(status);
    switch (event) {
      case PTRACE_EVENT_FORK:
      case PTRACE_EVENT_VFORK:
      case PTRACE_EVENT_CLONE: {
        unsigned long child = 0;
        ::ptrace(PTRACE_GETEVENTMSG, pid, nullptr, &child);
        if (child != 0 && !(event == PTRACE_EVENT_CLONE && is_thread(static_cast<pid_t>(child)))) {
          m_processes.insert(static_cast<pid_t>(child));
          {
            std::lock_guard lock(m_mutex);
            m_forked.insert(static_cast<pid_t>(child));
          }
          m_memory->on_fork(pid, static_cast<pid_t>(child));
        }
        ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
        return;
      }
      case PTRACE_EVENT_STOP:
        if (signo == SIGSTOP || signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU) {
          ::ptrace(PTRACE_LISTEN, pid, nullptr, nullptr);
        } else {
          ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
        }
        return;
      case 0:
        ::ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(signo)));
        return;
      default:
        ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
    }
  }

  memory::MemoryManagerImpl* m_memory = nullptr;
  int m_wake = -1;
  std::thread m_thread;
  std::mutex m_mutex;  // guards m_commands, m_stopping, m_forked
  std::deque<std::function<void()>> m_commands;
  bool m_stopping = false;
  std::set<pid_t> m_forked;
  std::set<pid_t> m_processes;  // tracer thread only
  std::atomic<uint64_t> m_drops{0};
};

// ---- mComponents and placement -----------------------------------------------

struct McomponentServer {
  explicit McomponentServer(uint64_t capacity) : component(capacity) {
    transport = std::move(sk::fabric::make_transport("tcp")).value();
    address = std::move(transport->listen({"127.0.0.1", 0}, component.dispatcher().handler()))
                  .value();
    EXPECT_TRUE(component.store().create_vnode(kVnode, "memtest", 0));
  }
  ~McomponentServer() { transport->stop(); }
  uint64_t used() { return component.store().stats().used; }

  sk::mcomponent::Mcomponent component;
  std::unique_ptr<sk::fabric::Transport> transport;
  sk::Address address;
};

class FakeVregionPlacer final : public memory::VregionPlacer {
 public:
  void add(sk::NodeId node, const sk::Address& address) {
    m_places.push_back(memory::VregionPlacement{node, address.to_string()});
  }
  sk::Result<memory::VregionPlacement> place(sk::VnodeId, uint64_t) override {
    std::lock_guard lock(m_mutex);
    if (m_places.empty()) return sk::make_error(EHOSTUNREACH, "no mComponent");
    return m_places[m_calls++ % m_places.size()];
  }
  size_t calls() {
    std::lock_guard lock(m_mutex);
    return m_calls;
  }

 private:
  std::mutex m_mutex;
  std::vector<memory::VregionPlacement> m_places;
  size_t m_calls = 0;
};

// Everything a test needs, torn down in the right order.
struct Rig {
  explicit Rig(memory::MemoryOptions options, int mcomponents = 1) {
    for (int i = 0; i < mcomponents; ++i) {
      servers.push_back(std::make_unique<McomponentServer>(uint64_t{512} << 20));
      placer.add(static_cast<sk::NodeId>(10 + i), servers.back()->address);
    }
    transport = std::move(sk::fabric::make_transport("tcp")).value();
    manager = std::move(memory::make_memory_manager(*transport, placer, tracer, options)).value();
    tracer.set_memory(manager.get());
  }
  ~Rig() {
    worker.reset();
    tracer.stop();  // its tracees die with it (PTRACE_O_EXITKILL)
    manager->stop();
    transport->stop();
  }

  // Starts the worker and attaches it; `regions` are its regions at "exec".
  pid_t start(bool all_regions) {
    worker = std::make_unique<Worker>();
    auto attached = tracer.attach(worker->pid(), all_regions, {});
    EXPECT_TRUE(attached) << attached.error().text();
    return worker->pid();
  }

  // A fresh region of the worker, registered as the tracer would after mmap.
  uint64_t map(uint64_t bytes, bool accounted = true) {
    uint64_t address = worker->call(kMmap, bytes);
    manager->on_map(worker->pid(), address, bytes, accounted);
    return address;
  }

  uint64_t rss_anon_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8));
    }
    return 0;
  }

  std::vector<std::unique_ptr<McomponentServer>> servers;
  FakeVregionPlacer placer;
  TestTracer tracer;
  std::unique_ptr<sk::fabric::Transport> transport;
  std::unique_ptr<memory::MemoryManagerImpl> manager;
  std::unique_ptr<Worker> worker;
};

memory::MemoryOptions small_cache(uint64_t pages) {
  memory::MemoryOptions options;
  options.excache = pages * kPage;
  return options;
}

std::string describe(const sk::Histogram& histogram) {
  char text[160];
  std::snprintf(text, sizeof text, "n=%llu median=%.1f us p99=%.1f us mean=%.1f us",
                static_cast<unsigned long long>(histogram.count()),
                static_cast<double>(histogram.percentile(0.5)) / 1000.0,
                static_cast<double>(histogram.percentile(0.99)) / 1000.0,
                histogram.count() == 0
                    ? 0.0
                    : static_cast<double>(histogram.sum()) / histogram.count() / 1000.0);
  return text;
}

// ---- tests -----------------------------------------------------------------

TEST(PageBits, SetsListsAndCounts) {
  memory::PageBits bits;
  EXPECT_TRUE(bits.set(memory::PageBits::kResident, 0x7f0000001000, true));
  EXPECT_FALSE(bits.set(memory::PageBits::kResident, 0x7f0000001000, true));
  EXPECT_TRUE(bits.set(memory::PageBits::kRemote, 0x7f0000400000, true));
  EXPECT_TRUE(bits.set(memory::PageBits::kResident, 0x7f0000400000, true));
  EXPECT_EQ(bits.count(memory::PageBits::kResident), 2u);
  EXPECT_EQ(bits.list(memory::PageBits::kResident),
            (std::vector<uint64_t>{0x7f0000001000, 0x7f0000400000}));
  EXPECT_EQ(bits.list(memory::PageBits::kResident, 0x7f0000002000, 0x7f0000500000),
            (std::vector<uint64_t>{0x7f0000400000}));
  EXPECT_TRUE(bits.set(memory::PageBits::kRemote, 0x7f0000400000, false));
  EXPECT_TRUE(bits.resident(0x7f0000400000));
  EXPECT_FALSE(bits.remote(0x7f0000400000));
  EXPECT_EQ(bits.count(memory::PageBits::kRemote), 0u);
}

TEST(ExCacheForTheEvictionThread, AddThenAskForVictims) {
  memory::ExCache cache(8, memory::PolicyKind::kFifo);
  cache.set_vnode_budget(2, 2);
  for (uint64_t i = 0; i < 6; ++i) cache.add(1, memory::PageKey{1, i * kPage});
  EXPECT_TRUE(cache.victims(4).empty()) << "within every budget";
  EXPECT_EQ(cache.excess(1), 0u);
  for (uint64_t i = 0; i < 3; ++i) cache.add(2, memory::PageKey{2, i * kPage});
  // vNode 2 is over its own budget of 2: its oldest page goes first.
  EXPECT_EQ(cache.excess(2), 1u);
  auto victims = cache.victims(4);
  ASSERT_FALSE(victims.empty());
  EXPECT_EQ(victims[0], (memory::PageKey{2, 0}));
  cache.remove(2, victims[0], true);
  // Now only the pComponent's budget (9 > 8): the vNode holding most gives.
  EXPECT_EQ(cache.excess(1), 0u);
  cache.add(1, memory::PageKey{1, 6 * kPage});
  EXPECT_EQ(cache.excess(1), 1u);
  victims = cache.victims(1);
  ASSERT_EQ(victims.size(), 1u);
  EXPECT_EQ(victims[0], (memory::PageKey{1, 0}));
}

TEST(MemoryCounters, NameEveryCounterAndTheHistogramBuckets) {
  memory::MemoryStats stats;
  stats.faults = 3;
  stats.fault_latency.record(5000);
  stats.fault_latency.record(6000);
  stats.fault_latency.record(200000);
  std::map<std::string, uint64_t> named;
  for (const auto& [name, value] : memory::memory_counters(stats)) {
    EXPECT_LT(name.size(), 48u) << name;
    EXPECT_TRUE(named.emplace(name, value).second) << "twice: " << name;
  }
  EXPECT_EQ(named["faults"], 3u);
  EXPECT_EQ(named["fault_count"], 3u);
  EXPECT_EQ(named["fault_ns_lt_8192"], 2u);
  EXPECT_EQ(named["fault_ns_lt_262144"], 1u);
  EXPECT_EQ(named["fault_mean_ns"], 70333u);
  EXPECT_TRUE(named.contains("fetch_p99_ns"));
}

TEST(Regions, PrivateAnonymousRegionsOfThisProcess) {
  void* mapping = ::mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
  auto regions = memory::private_anonymous_regions(::getpid());
  ASSERT_TRUE(regions);
  uint64_t address = reinterpret_cast<uint64_t>(mapping);
  bool found = false;
  for (const auto& region : *regions) {
    found = found || (region.start <= address && address + 3 * kPage <= region.end);
  }
  EXPECT_TRUE(found);
  ::munmap(mapping, 3 * kPage);
}

TEST(MemoryManager, FirstTouchesAreZeroFilledWithoutAFetch) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(16384));
  pid_t pid = rig.start(false);
  uint64_t region = rig.map(1024 * kPage);
  // Reads of never-touched memory: zero pages.
  EXPECT_EQ(rig.worker->call(kCountNonzero, region, 512), 0u);
  rig.worker->call(kWrite, region + 512 * kPage, 512, 1);
  EXPECT_EQ(rig.worker->call(kVerify, region + 512 * kPage, 512, 1), 0u);
  auto stats = rig.manager->stats();
  EXPECT_GT(stats.zero_fills, 0u);
  EXPECT_EQ(stats.fetched_pages, 0u);
  EXPECT_EQ(stats.evicted_pages, 0u);
  EXPECT_EQ(rig.placer.calls(), 0u) << "nothing was written back, so nothing was placed";
  EXPECT_LT(stats.faults, 1024u) << "sequential first touches are zero-filled in windows";
  EXPECT_GT(stats.prefetched_pages, 0u);
  // (The last window is counted just after the worker was woken.)
  for (int i = 0; i < 500 && rig.manager->process(pid).resident_pages < 1024; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(rig.manager->process(pid).resident_pages, 1024u);
  EXPECT_EQ(rig.servers[0]->used(), 0u);
}

TEST(MemoryManager, EvictedPagesAreWrittenBackAndFetchedAgain) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  const uint64_t budget = 256;  // pages
  Rig rig(small_cache(budget));
  // Every private anonymous region of the worker (its stack and the heap it
  // inherited from this test) is served and evicted too.
  pid_t pid = rig.start(true);
  const uint64_t pages = 4096;  // 16 MiB through a 1 MiB cache
  uint64_t region = rig.map(pages * kPage);
  // What the worker holds that we do not serve: copy-on-write pages of its
  // file mappings (a program's .data; large in a sanitizer build), which
  // userfaultfd cannot take. Measured once the inherited pages we do serve
  // were evicted down to the budget.
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  uint64_t rss_before = rig.rss_anon_kib(pid);
  rig.worker->call(kWrite, region, pages, 42);
  uint64_t rss_after_write = rig.rss_anon_kib(pid);
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 42), 0u);
  uint64_t rss_after_verify = rig.rss_anon_kib(pid);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  auto stats = rig.manager->stats();
  EXPECT_GT(stats.evicted_pages, pages - budget);
  EXPECT_GT(stats.written_back_pages, pages - budget);
  EXPECT_GE(stats.fetched_pages, pages - 2 * budget);
  EXPECT_LE(stats.resident_pages, budget);
  EXPECT_GE(rig.servers[0]->used(), (pages - budget) * kPage);
  EXPECT_GT(rig.tracer.drops(), 0u);
  auto process = rig.manager->process(pid);
  EXPECT_GT(process.remote_pages, pages - budget);
  std::printf("[ memory   ] %llu pages through a %llu-page cache: %llu faults, %llu fetched "
              "(%llu prefetched), %llu evicted in %llu drops, %llu written back, %llu parked; "
              "RssAnon %llu KiB before, %llu KiB after writing, %llu KiB after verifying\n",
              (unsigned long long)pages, (unsigned long long)budget,
              (unsigned long long)stats.faults, (unsigned long long)stats.fetched_pages,
              (unsigned long long)stats.prefetched_pages,
              (unsigned long long)stats.evicted_pages, (unsigned long long)rig.tracer.drops(),
              (unsigned long long)stats.written_back_pages,
              (unsigned long long)stats.parked_faults, (unsigned long long)rss_before,
              (unsigned long long)rss_after_write,
              (unsigned long long)rss_after_verify);
  // What we do not serve, plus the budget, plus the high-water mark, plus
  // a small slack: far below the 16 MiB written.
  uint64_t slack_kib = rss_before + (budget + memory::MemoryOptions{}.high_water) * 4 + 2048;
  EXPECT_LE(rss_after_write, slack_kib);
  EXPECT_LE(rss_after_verify, slack_kib);
}

TEST(MemoryManager, AForkedChildSeesItsParentsEvictedPages) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(128));
  rig.start(false);
  const uint64_t pages = 2048;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 7);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  ASSERT_GT(rig.manager->stats().evicted_pages, pages / 2);
  // The child verifies the parent's pattern (most of it on the mComponent),
  // writes its own and verifies that; it exits with its count of bad pages.
  EXPECT_EQ(rig.worker->call(kFork, region, pages, 7, 8), 0u);
  EXPECT_EQ(rig.tracer.forked().size(), 1u);
  // The parent's pages are unchanged by the child's writes.
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 7), 0u);
  // A vfork child shares the mm for a moment; evictions go on after it.
  EXPECT_EQ(rig.worker->call(kVfork), 3u);
  uint64_t evicted = rig.manager->stats().evicted_pages;
  rig.worker->call(kWrite, region, pages, 12);
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 12), 0u);
  EXPECT_GT(rig.manager->stats().evicted_pages, evicted);
}

TEST(MemoryManager, ThreadsFaultAndAreStoppedTogether) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(128));
  rig.start(false);
  const uint64_t pages = 2048;
  uint64_t region = rig.map(pages * kPage);
  EXPECT_EQ(rig.worker->call(kThreads, region, pages, 99, 4), 0u);
  EXPECT_EQ(rig.worker->call(kThreads, region, pages, 100, 4), 0u);
  EXPECT_GT(rig.manager->stats().evicted_pages, 0u);
  EXPECT_GT(rig.manager->stats().fetched_pages, 0u);
}

TEST(MemoryManager, DroppedAndUnmappedPagesAreFreedEverywhere) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(64));
  rig.start(false);
  const uint64_t pages = 1024;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 3);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  uint64_t used = rig.servers[0]->used();
  ASSERT_GT(used, 0u);
  // madvise(DONTNEED) of the first half: it reads as zeroes, evicted or not,
  // and the mComponent lets those pages go.
  EXPECT_EQ(rig.worker->call(kDontneed, region, pages / 2 * kPage), 0u);
  EXPECT_EQ(rig.worker->call(kCountNonzero, region, pages / 2), 0u);
  EXPECT_EQ(rig.worker->call(kVerify, region + pages / 2 * kPage, pages / 2, 3, pages / 2), 0u);
  EXPECT_LT(rig.servers[0]->used(), used);
  // munmap of everything: nothing of it stays on the mComponent (the munmap
  // returns once its UNMAP event was read; the freeing follows at once).
  EXPECT_EQ(rig.worker->call(kMunmap, region, pages * kPage), 0u);
  for (int i = 0; i < 500 && (rig.servers[0]->used() != 0 ||
                              rig.manager->process(rig.worker->pid()).remote_pages != 0);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(rig.servers[0]->used(), 0u);
  EXPECT_EQ(rig.manager->process(rig.worker->pid()).remote_pages, 0u);
}

TEST(MemoryManager, MremapMovesEvictedPagesOnTheMcomponent) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(64));
  pid_t pid = rig.start(false);
  const uint64_t pages = 512;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 11);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  uint64_t moved = rig.worker->call(kMremapFixed, region, pages * kPage, 2 * pages * kPage);
  ASSERT_NE(moved, region);
  ASSERT_NE(moved, ~0ull);
  rig.manager->on_map(pid, moved + pages * kPage, pages * kPage, true);
  EXPECT_EQ(rig.worker->call(kVerify, moved, pages, 11), 0u);
  EXPECT_EQ(rig.worker->call(kCountNonzero, moved + pages * kPage, pages), 0u);
}

TEST(MemoryManager, ReservationsBeyondTheQuotaAreRefused) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(1024));
  rig.manager->set_vnode(kVnode, 0, 8 << 20);
  pid_t pid = rig.start(false);
  uint64_t region = rig.map(4 << 20);
  EXPECT_TRUE(rig.manager->reserve(pid, 2 << 20));
  auto refused = rig.manager->reserve(pid, 5 << 20);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ENOMEM);
  // A PROT_NONE reservation of address space costs nothing.
  rig.map(64 << 20, /*accounted=*/false);
  EXPECT_TRUE(rig.manager->reserve(pid, 4 << 20));
  // munmap gives the commit back (the UNMAP event is handled by the fault
  // thread; the munmap returned once it was read).
  EXPECT_EQ(rig.worker->call(kMunmap, region, 4 << 20), 0u);
  bool allowed = false;
  for (int i = 0; i < 200 && !allowed; ++i) {
    allowed = rig.manager->reserve(pid, 7 << 20).ok();
    if (!allowed) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(allowed);
  EXPECT_EQ(rig.manager->stats().refused_reservations >= 1, true);
}

TEST(MemoryManager, SpreadsVregionsOverMcomponents) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  memory::MemoryOptions options = small_cache(64);
  options.vregion_bytes = 1 << 20;  // 1 MiB vRegions: 8 of them in 8 MiB
  Rig rig(options, 2);
  rig.start(false);
  const uint64_t pages = 2048;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 5);
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 5), 0u);
  EXPECT_GT(rig.servers[0]->used(), 0u);
  EXPECT_GT(rig.servers[1]->used(), 0u);
  EXPECT_GE(rig.placer.calls(), 8u);
}

TEST(MemoryManager, AnMcomponentThatDiesKillsTheProcessWithAReport) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  memory::MemoryOptions options = small_cache(64);
  options.rpc_timeout = std::chrono::seconds(2);
  std::mutex mutex;
  std::vector<std::string> reports;
  options.on_failure = [&](pid_t, const std::string& reason) {
    std::lock_guard lock(mutex);
    reports.push_back(reason);
  };
  Rig rig(options);
  pid_t pid = rig.start(false);
  const uint64_t pages = 512;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 9);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  rig.servers[0]->transport->stop();
  // The worker touches its evicted pages: it must die, not hang.
  uint64_t result = rig.worker->call(kVerify, region, pages, 9, 0, 20000);
  EXPECT_EQ(result, ~0ull) << "the worker answered although its memory was lost";
  std::lock_guard lock(mutex);
  // Killed at its first fault on a lost page, or at the first write-back
  // that could not be made, whichever came first; either way with a report
  // that names the mComponent.
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("mComponent 10"), std::string::npos) << reports[0];
  EXPECT_EQ(rig.manager->stats().failed_processes, 1u);
  (void)pid;
}

// Dirty tracking (WP_ASYNC + PAGEMAP_SCAN, Linux 6.7+): pages fetched and
// only read are dropped without a write-back. The same read-mostly run
// without tracking, for comparison, writes every victim back.
TEST(MemoryManager, PagesOnlyReadSinceTheirFetchAreNotWrittenBack) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  const uint64_t budget = 128;
  const uint64_t pages = 2048;
  struct Run {
    memory::MemoryStats first;  // after the write and one read pass
    memory::MemoryStats last;   // after three more read passes
    double read_ms = 0;
  };
  auto run = [&](bool track) {
    memory::MemoryOptions options = small_cache(budget);
    options.track_dirty = track;
    Rig rig(options);
    rig.start(false);
    uint64_t region = rig.map(pages * kPage);
    rig.worker->call(kWrite, region, pages, 21);
    // The first read pass fetches every evicted page back (and evicts the
    // last ones written, which are dirty).
    EXPECT_EQ(rig.worker->call(kVerify, region, pages, 21), 0u);
    EXPECT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
    Run result;
    result.first = rig.manager->stats();
    auto start = std::chrono::steady_clock::now();
    for (int pass = 0; pass < 3; ++pass) {
      EXPECT_EQ(rig.worker->call(kVerify, region, pages, 21), 0u) << "pass " << pass;
    }
    result.read_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
    result.last = rig.manager->stats();
    return std::make_pair(result, rig.manager->tracks_dirty());
  };
  auto [untracked, untracked_mode] = run(false);
  EXPECT_FALSE(untracked_mode);
  uint64_t untracked_writes =
      untracked.last.written_back_pages - untracked.first.written_back_pages;
  EXPECT_GT(untracked_writes, 3 * (pages - 2 * budget)) << "every victim is written back";
  EXPECT_EQ(untracked.last.clean_drops, 0u);
  auto [tracked, tracked_mode] = run(true);
  std::printf("[ dirty    ] %llu pages read 3 times through a %llu-page cache: without tracking "
              "%llu evicted, %llu written back (%.0f ms); with %s %llu evicted, %llu written "
              "back, %llu dropped clean (%.0f ms)\n",
              (unsigned long long)pages, (unsigned long long)budget,
              (unsigned long long)(untracked.last.evicted_pages - untracked.first.evicted_pages),
              (unsigned long long)untracked_writes, untracked.read_ms,
              tracked_mode ? "WP_ASYNC tracking" : "(no tracking on this kernel)",
              (unsigned long long)(tracked.last.evicted_pages - tracked.first.evicted_pages),
              (unsigned long long)(tracked.last.written_back_pages -
                                   tracked.first.written_back_pages),
              (unsigned long long)(tracked.last.clean_drops - tracked.first.clean_drops),
              tracked.read_ms);
  if (!tracked_mode) GTEST_SKIP() << "this kernel lacks UFFD_FEATURE_WP_ASYNC or PAGEMAP_SCAN";
  EXPECT_EQ(tracked.last.written_back_pages, tracked.first.written_back_pages)
      << "pages only read were written back";
  EXPECT_GT(tracked.last.clean_drops - tracked.first.clean_drops, 3 * (pages - 2 * budget));
  EXPECT_GT(tracked.last.fetched_pages - tracked.first.fetched_pages, 3 * (pages - 2 * budget));
}

// The lost-write check: a page fetched write-protected (by a read fault or
// its prefetch window) and then written, at once or later while still
// resident, is written back at its next eviction and reads back as written
// after more evictions; pages only read are not written back.
TEST(MemoryManager, WritesToFetchedPagesAreWrittenBack) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  const uint64_t budget = 128;
  const uint64_t pages = 2048;
  Rig rig(small_cache(budget));
  rig.start(false);
  uint64_t region = rig.map(pages * kPage);
  const uint64_t small = 256;
  uint64_t other = rig.map(small * kPage);
  rig.worker->call(kWrite, other, small, 41);
  rig.worker->call(kWrite, region, pages, 31);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  // Read all: every page comes back write-protected, and is evicted clean.
  ASSERT_EQ(rig.worker->call(kVerify, region, pages, 31), 0u);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  uint64_t written_before = rig.manager->stats().written_back_pages;
  // A small window read, then written while still resident.
  const uint64_t window = 32;
  ASSERT_EQ(rig.worker->call(kVerify, other, window, 41), 0u);
  rig.worker->call(kWrite, other, window, 42);
  // Every page read, and every third one written right after: fetched
  // write-protected by a read fault (or its window), then written. This
  // pushes the small window out too.
  rig.worker->call(kWriteSome, region, pages, 33, 3);
  // Read it all back, twice: the second time after the first was evicted.
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(rig.worker->call(kVerify, other, window, 42), 0u) << "pass " << pass;
    EXPECT_EQ(rig.worker->call(kVerify, other + window * kPage, small - window, 41, window), 0u)
        << "pass " << pass;
    EXPECT_EQ(rig.worker->call(kVerifyEvery, region, pages, 33, (uint64_t{3} << 32) | 31), 0u)
        << "pass " << pass;
  }
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  auto stats = rig.manager->stats();
  if (!rig.manager->tracks_dirty()) {
    GTEST_SKIP() << "this kernel lacks UFFD_FEATURE_WP_ASYNC or PAGEMAP_SCAN (contents checked)";
  }
  EXPECT_GT(stats.clean_drops, pages);
  // Each page written went back once (the first read pass evicted them
  // all; what is resident at the end was fetched by the second), and no
  // page only read did.
  uint64_t written = stats.written_back_pages - written_before;
  const uint64_t expected = (pages + 2) / 3 + window;
  EXPECT_GE(written, expected) << "a written page was dropped as clean";
  EXPECT_LE(written, expected + budget / 8) << "pages only read were written back";
}

// Fork after pages were fetched write-protected: the child inherits them
// with their uffd-wp bits (and its copy on the mComponent is its parent's);
// a child that only reads and one that writes both see the right bytes, and
// so does the parent after them.
TEST(MemoryManager, AForkedChildOfCleanPagesSeesTheRightBytes) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  Rig rig(small_cache(128));
  rig.start(false);
  const uint64_t pages = 1024;
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 51);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  ASSERT_EQ(rig.worker->call(kVerify, region, pages, 51), 0u);  // resident ones now clean
  EXPECT_EQ(rig.worker->call(kForkReader, region, pages, 51), 0u);
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 51), 0u);
  EXPECT_EQ(rig.worker->call(kFork, region, pages, 51, 52), 0u);
  EXPECT_EQ(rig.worker->call(kVerify, region, pages, 51), 0u);
  // The parent writes some after all that, and reads everything back.
  rig.worker->call(kWriteSome, region, pages, 53, 2);
  EXPECT_EQ(rig.worker->call(kVerifyEvery, region, pages, 53, (uint64_t{2} << 32) | 51), 0u);
  EXPECT_EQ(rig.worker->call(kVerifyEvery, region, pages, 53, (uint64_t{2} << 32) | 51), 0u);
  EXPECT_EQ(rig.tracer.forked().size(), 2u);
}

std::string describe_samples(std::vector<uint64_t> samples) {
  std::sort(samples.begin(), samples.end());
  char text[120];
  std::snprintf(text, sizeof text, "median=%.1f us p99=%.1f us",
                static_cast<double>(samples[samples.size() / 2]) / 1000.0,
                static_cast<double>(samples[samples.size() * 99 / 100]) / 1000.0);
  return text;
}

// Fault service times on loopback, one page per fault (no prefetch): a
// first touch (zero-filled locally, nothing else going on) and a remote
// fetch (with evictions going on, as they do when a working set exceeds the
// cache); and the time the worker itself sees for each. The histogram's
// percentiles are only accurate to its power-of-two buckets; the means are
// exact.
TEST(MemoryManager, FaultServiceTimes) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  const uint64_t pages = 4096;
  {
    memory::MemoryOptions options = small_cache(2 * pages);
    options.prefetch_pages = 1;
    Rig rig(options);
    rig.start(false);
    uint64_t region = rig.map(pages * kPage);
    rig.worker->call(kTouchTimed, region, pages);
    std::vector<uint64_t> seen(rig.worker->shared()->samples,
                               rig.worker->shared()->samples + pages);
    // (The last fault is counted just after its thread was woken.)
    for (int i = 0; i < 500 && rig.manager->stats().zero_fills < pages; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    auto stats = rig.manager->stats();
    EXPECT_EQ(stats.zero_fills, pages);
    std::printf("[ latency  ] zero-fill, service: %s\n", describe(stats.zero_fill_latency).c_str());
    std::printf("[ latency  ] zero-fill, first write as the program sees it: %s\n",
                describe_samples(seen).c_str());
  }
  memory::MemoryOptions options = small_cache(256);
  options.prefetch_pages = 1;
  Rig rig(options);
  rig.start(false);
  uint64_t region = rig.map(pages * kPage);
  rig.worker->call(kWrite, region, pages, 1);
  ASSERT_TRUE(rig.manager->wait_for_evictions(std::chrono::seconds(10)));
  rig.worker->call(kTouchTimed, region, pages);
  std::vector<uint64_t> seen(rig.worker->shared()->samples, rig.worker->shared()->samples + pages);
  auto stats = rig.manager->stats();
  EXPECT_GT(stats.fetch_latency.count(), pages / 2);
  std::printf("[ latency  ] remote fetch, service: %s\n", describe(stats.fetch_latency).c_str());
  std::printf("[ latency  ] remote fetch, first write as the program sees it: %s\n",
              describe_samples(seen).c_str());
}

// How fast memory moves through a small cache, against the same work on
// local memory (the worker's unregistered region): a first look at the
// benchmark's numbers, not a timed test.
TEST(MemoryManager, ThroughputThroughASmallCache) {
  if (!have_userfaultfd()) GTEST_SKIP() << "needs root and /dev/userfaultfd";
  const uint64_t pages = 16384;  // 64 MiB
  Rig rig(small_cache(pages / 8));
  rig.start(false);
  auto time_ms = [&](Op op, uint64_t region, uint64_t seed) {
    auto start = std::chrono::steady_clock::now();
    uint64_t result = rig.worker->call(op, region, pages, seed);
    EXPECT_EQ(result, 0u);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  };
  uint64_t local = rig.worker->call(kMmap, pages * kPage);  // not registered: local memory
  double local_write = time_ms(kWrite, local, 1);
  double local_verify = time_ms(kVerify, local, 1);
  uint64_t remote = rig.map(pages * kPage);
  double remote_write = time_ms(kWrite, remote, 1);
  double remote_verify = time_ms(kVerify, remote, 1);
  auto stats = rig.manager->stats();
  std::printf("[ memory   ] 64 MiB through an 8 MiB cache: write %.0f ms (local %.0f ms), "
              "re-read %.0f ms (local %.0f ms); %llu faults, %llu evicted, %llu fetched\n",
              remote_write, local_write, remote_verify, local_verify,
              (unsigned long long)stats.faults, (unsigned long long)stats.evicted_pages,
              (unsigned long long)stats.fetched_pages);
}

}  // namespace
