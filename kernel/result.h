// Result<T>: the value of a fallible operation or the Error that stopped it.
//
// Every fallible function in splitkernel returns Result<T> and propagates
// failures with TRY(). An Error carries an errno value (so it can become a
// syscall's -errno or a wire status in exactly one place) and a short,
// human-readable context such as "connect 10.0.0.2:7070".
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace sk {

class Error {
 public:
  Error(int code, std::string message) : m_code(code), m_message(std::move(message)) {}

  // An error from the current errno, e.g. Error::from_errno("open " + path).
  static Error from_errno(std::string context) { return Error(errno, std::move(context)); }

  int code() const { return m_code; }
  const std::string& message() const { return m_message; }

  // "context: strerror(code)", or just the message when it already says it all.
  std::string text() const {
    if (m_message.empty()) return std::strerror(m_code);
    return m_message + ": " + std::strerror(m_code);
  }

 private:
  int m_code;
  std::string m_message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : m_value(std::move(value)) {}
  Result(Error error) : m_value(std::move(error)) {}

  bool ok() const { return std::holds_alternative<T>(m_value); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(m_value); }
  const T& value() const& { return std::get<T>(m_value); }
  T&& value() && { return std::get<T>(std::move(m_value)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

  const Error& error() const& { return std::get<Error>(m_value); }
  Error&& error() && { return std::get<Error>(std::move(m_value)); }

 private:
  std::variant<T, Error> m_value;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : m_error(std::move(error)), m_failed(true) {}

  bool ok() const { return !m_failed; }
  explicit operator bool() const { return ok(); }
  void value() const {}

  const Error& error() const& { return m_error; }
  Error&& error() && { return std::move(m_error); }

 private:
  Error m_error{0, {}};
  bool m_failed = false;
};

// Shorthand for "return an error with this errno and context".
inline Error make_error(int code, std::string message) { return Error(code, std::move(message)); }

}  // namespace sk

// TRY(expr): evaluates a Result; on error returns the error from the calling
// function, otherwise yields the value. Uses a GNU statement expression, as
// SerenityOS does, so it can be used inside expressions.
#define TRY(expr)                                     \
  ({                                                  \
    auto _sk_try_result = (expr);                     \
    if (!_sk_try_result.ok()) {                       \
      return std::move(_sk_try_result).error();       \
    }                                                 \
    std::move(_sk_try_result).value();                \
  })
