// Sockets of the verbs control channel (the protocol is in verbs_control.h).
#include "kernel/fabric/verbs/verbs_control.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace sk::fabric::verbs {

Result<void> check_record(const ControlRecord& record) {
  if (record.magic != kControlMagic) return make_error(EPROTO, "not a verbs control record");
  if (record.version != kControlVersion) {
    return make_error(EPROTO, "verbs control version " + std::to_string(record.version) +
                                  ", expected " + std::to_string(kControlVersion));
  }
  return {};
}

static int remaining_ms(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<long>(left.count(), 1 << 30));
}

// Waits until fd is ready for `events`; ETIMEDOUT at the deadline.
static Result<void> wait_for(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    pollfd entry{fd, events, 0};
    int ready = ::poll(&entry, 1, remaining_ms(deadline));
    if (ready > 0) return {};
    if (ready == 0) return make_error(ETIMEDOUT, what);
    if (errno != EINTR) return Error::from_errno(what);
  }
}

static void set_socket_options(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Result<int> connect_socket(const Address& address, Deadline deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  std::string port = std::to_string(address.port);
  int resolved = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &results);
  if (resolved != 0 || !results) {
    return make_error(EHOSTUNREACH,
                      "cannot resolve " + address.to_string() + ": " + ::gai_strerror(resolved));
  }
  Error last = make_error(EHOSTUNREACH, "connect " + address.to_string());
  for (addrinfo* entry = results; entry; entry = entry->ai_next) {
    int fd = ::socket(entry->ai_family, entry->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      entry->ai_protocol);
    if (fd < 0) {
      last = Error::from_errno("connect " + address.to_string());
      continue;
    }
    int error = 0;
    if (::connect(fd, entry->ai_addr, entry->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        error = errno;
      } else if (auto ready = wait_for(fd, POLLOUT, deadline, "connect"); !ready) {
        error = ready.error().code();
      } else {
        socklen_t length = sizeof error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
      }
    }
    if (error == 0) {
      ::freeaddrinfo(results);
      set_socket_options(fd);
      return fd;
    }
    ::close(fd);
    last = make_error(error, "connect " + address.to_string());
    if (error == ETIMEDOUT) break;
  }
  ::freeaddrinfo(results);
  return last;
}

Result<void> send_record(int fd, const ControlRecord& record, Deadline deadline) {
  auto* bytes = reinterpret_cast<const char*>(&record);
  size_t done = 0;
  while (done < sizeof record) {
    ssize_t sent = ::send(fd, bytes + done, sizeof record - done, MSG_NOSIGNAL);
    if (sent > 0) {
      done += static_cast<size_t>(sent);
    } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      TRY(wait_for(fd, POLLOUT, deadline, "send the verbs handshake"));
    } else if (sent < 0 && errno != EINTR) {
      return Error::from_errno("send the verbs handshake");
    }
  }
  return {};
}

Result<ControlRecord> receive_record(int fd, Deadline deadline) {
  ControlRecord record{};
  auto* bytes = reinterpret_cast<char*>(&record);
  size_t done = 0;
  while (done < sizeof record) {
    ssize_t got = ::recv(fd, bytes + done, sizeof record - done, 0);
    if (got > 0) {
      done += static_cast<size_t>(got);
    } else if (got == 0) {
      return make_error(ECONNRESET, "the peer closed the connection during the verbs handshake");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      TRY(wait_for(fd, POLLIN, deadline, "wait for the verbs handshake"));
    } else if (errno != EINTR) {
      return Error::from_errno("receive the verbs handshake");
    }
  }
  TRY(check_record(record));
  return record;
}

Result<std::pair<int, Address>> listen_socket(const Address& address) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* results = nullptr;
  std::string port = std::to_string(address.port);
  const char* host = address.host.empty() ? nullptr : address.host.c_str();
  int resolved = ::getaddrinfo(host, port.c_str(), &hints, &results);
  if (resolved != 0 || !results) {
    return make_error(EHOSTUNREACH,
                      "cannot resolve " + address.to_string() + ": " + ::gai_strerror(resolved));
  }
  int fd = ::socket(results->ai_family, results->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    results->ai_protocol);
  if (fd < 0) {
    ::freeaddrinfo(results);
    return Error::from_errno("listen on " + address.to_string());
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, results->ai_addr, results->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    Error error = Error::from_errno("listen on " + address.to_string());
    ::freeaddrinfo(results);
    ::close(fd);
    return error;
  }
  ::freeaddrinfo(results);
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  uint16_t bound_port = bound.ss_family == AF_INET6
                            ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                            : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::pair<int, Address>(fd, Address{address.host, bound_port});
}

std::string peer_name(int fd) {
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (peer.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return std::string("[") + host + "]:" + std::to_string(port);
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(&peer);
  ::inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
  port = ntohs(in4->sin_port);
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace sk::fabric::verbs
