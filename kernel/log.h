// Logging: spdlog behind a thin layer so that every file logs with its own
// prefix (as CRIU does) and errors carry their errno text.
//
//   static sk::Logger log("fabric");
//   log.info("listening on {}", address);
//
// Daemons call init_logging() once in main(); it sets the process name that
// starts every line and the minimum level.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace sk {

// level: "trace", "debug", "info", "warn", "error", "off". Returns false when
// the level name is unknown (the caller reports it).
bool init_logging(std::string_view process_name, std::string_view level);

class Logger {
 public:
  explicit Logger(std::string_view prefix) : m_prefix(prefix) {}

  template <typename... Args>
  void trace(fmt::format_string<Args...> format, Args&&... args) const {
    log(spdlog::level::trace, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    log(spdlog::level::debug, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(spdlog::level::info, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(spdlog::level::warn, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    log(spdlog::level::err, fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  void log(spdlog::level::level_enum level, const std::string& text) const {
    spdlog::log(level, "{}: {}", m_prefix, text);
  }

  std::string_view m_prefix;
};

}  // namespace sk
