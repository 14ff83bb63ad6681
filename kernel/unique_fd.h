// The one owner of a file descriptor: move-only, closes what it holds when
// destroyed or reset. -1 means "holds nothing", so a failed open(2) can be
// wrapped first and tested after (`UniqueFd fd(::open(...)); if (!fd) ...`).
//
// Threads: like an int; one owner at a time.
#pragma once

#include <unistd.h>

#include <utility>

namespace sk {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : m_fd(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.m_fd, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  // The descriptor, still owned; -1 when none.
  int get() const { return m_fd; }
  // Whether it holds a descriptor (>= 0).
  explicit operator bool() const { return m_fd >= 0; }
  // Gives the descriptor up without closing it.
  int release() { return std::exchange(m_fd, -1); }
  // Closes the current descriptor, if any, and takes `fd`.
  void reset(int fd = -1) {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = fd;
  }

 private:
  int m_fd = -1;
};

}  // namespace sk
