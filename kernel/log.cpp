#include "kernel/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sk {

bool init_logging(std::string_view process_name, std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str returns "off" for unknown names; only accept "off" when asked.
  if (parsed == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_color_mt(std::string(process_name));
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n[%P] %^%l%$ %v");
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return true;
}

}  // namespace sk
