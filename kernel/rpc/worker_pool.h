// Threads of a server's own for request handlers that block (disk I/O,
// mounts), so that they never run on the transport's thread. Once stop()
// has begun, new work is refused with ESHUTDOWN instead of queued.
//
// Threads: post() and stop() from any thread; stop() must not be called
// from one of the pool's own threads. Lock: m_mutex, held while posting, so
// that nothing is queued after stop() joined.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <mutex>
#include <string>
#include <utility>

#include "kernel/result.h"

namespace sk::rpc {

class WorkerPool {
 public:
  // `owner` names the server in the refusal ("the sComponent is shutting
  // down").
  WorkerPool(std::string owner, unsigned threads)
      : m_owner(std::move(owner)), m_pool(threads == 0 ? 1 : threads) {}
  ~WorkerPool() { stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs work(Result<void>{}) on a worker, or, once stop() has begun,
  // work(ESHUTDOWN) at once on the calling thread. `work` may be move-only.
  template <typename F>
  void post(F work) {
    std::unique_lock lock(m_mutex);
    if (m_stopping) {
      lock.unlock();
      work(Result<void>(make_error(ESHUTDOWN, "the " + m_owner + " is shutting down")));
      return;
    }
    boost::asio::post(m_pool, [work = std::move(work)]() mutable { work(Result<void>{}); });
  }

  // Refuses new work, runs what is queued, then ends the threads.
  // Idempotent.
  void stop() {
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      m_stopping = true;
    }
    m_pool.join();
  }

 private:
  const std::string m_owner;
  std::mutex m_mutex;  // guards m_stopping; posting happens under it
  bool m_stopping = false;
  boost::asio::thread_pool m_pool;
};

}  // namespace sk::rpc
