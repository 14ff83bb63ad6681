// Checks of the process protocol's messages (see process_messages.h).
// Lengths are compared with the bytes really there before anything is read.
#include "kernel/wire/process_messages.h"

#include <cctype>
#include <cstring>

namespace sk::wire {

static Result<void> check_chunk(uint32_t length, const char* what) {
  if (length > kMaxRunChunk) {
    return make_error(EMSGSIZE, std::string(what) + " of " + std::to_string(length) +
                                    " bytes is over the limit of " + std::to_string(kMaxRunChunk));
  }
  return {};
}

Result<void> Ctl2pRunRequest::validate() const {
  if (!vnode_name.terminated()) return make_error(EBADMSG, "unterminated vNode name");
  TRY(validate_vnode_name(vnode_name.view()));
  if (argc == 0) return make_error(EINVAL, "no command to run");
  if (argc > kMaxRunArgs) return make_error(E2BIG, "too many arguments");
  if (envc > kMaxRunEnv) return make_error(E2BIG, "too many environment entries");
  if (strings_length > kMaxRunStrings) {
    return make_error(E2BIG, "arguments and environment exceed " +
                                 std::to_string(kMaxRunStrings) + " bytes");
  }
  if ((flags & ~kRunNoStdin) != 0) return make_error(EINVAL, "unknown run flags");
  return {};
}

Result<Ctl2pRunCommand> decode_run(ByteView payload) {
  auto [request, tail] =
      TRY(decode_sized<Ctl2pRunRequest>(payload, &Ctl2pRunRequest::strings_length));
  Ctl2pRunCommand command;
  command.request = request;
  // Splits the tail into exactly 1 + argc + envc NUL-terminated strings.
  const char* text = reinterpret_cast<const char*>(tail.data());
  size_t at = 0;
  uint64_t wanted = 1ull + request.argc + request.envc;
  std::vector<std::string> strings;
  strings.reserve(static_cast<size_t>(wanted));
  while (at < tail.size()) {
    const void* end = std::memchr(text + at, '\0', tail.size() - at);
    if (end == nullptr) return make_error(EBADMSG, "run strings are not NUL-terminated");
    size_t length = static_cast<size_t>(static_cast<const char*>(end) - (text + at));
    if (strings.size() == wanted) return make_error(EBADMSG, "more run strings than counted");
    strings.emplace_back(text + at, length);
    at += length + 1;
  }
  if (strings.size() != wanted) {
    return make_error(EBADMSG, "run carries " + std::to_string(strings.size()) +
                                   " strings, expected " + std::to_string(wanted));
  }
  command.cwd = std::move(strings[0]);
  if (command.cwd.empty() || command.cwd[0] != '/') {
    return make_error(EINVAL, "working directory '" + command.cwd + "' is not absolute");
  }
  command.argv.assign(std::make_move_iterator(strings.begin() + 1),
                      std::make_move_iterator(strings.begin() + 1 + request.argc));
  command.env.assign(std::make_move_iterator(strings.begin() + 1 + request.argc),
                     std::make_move_iterator(strings.end()));
  if (command.argv[0].empty()) return make_error(EINVAL, "empty command");
  for (const auto& entry : command.env) {
    size_t equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      return make_error(EINVAL, "environment entry '" + entry + "' is not NAME=value");
    }
  }
  return command;
}

Result<Bytes> encode_run(Ctl2pRunRequest request, std::string_view cwd,
                         const std::vector<std::string>& argv,
                         const std::vector<std::string>& env) {
  std::string strings;
  auto add = [&](std::string_view text) -> Result<void> {
    if (text.find('\0') != std::string_view::npos) {
      return make_error(EINVAL, "'" + std::string(text.substr(0, text.find('\0'))) +
                                    "...' holds a NUL byte");
    }
    strings.append(text);
    strings.push_back('\0');
    return {};
  };
  TRY(add(cwd));
  for (const auto& arg : argv) TRY(add(arg));
  for (const auto& entry : env) TRY(add(entry));
  if (strings.size() > kMaxRunStrings || argv.size() > kMaxRunArgs || env.size() > kMaxRunEnv) {
    return make_error(E2BIG, "arguments and environment exceed " +
                                 std::to_string(kMaxRunStrings) + " bytes");
  }
  request.argc = static_cast<uint32_t>(argv.size());
  request.envc = static_cast<uint32_t>(env.size());
  request.strings_length = static_cast<uint32_t>(strings.size());
  TRY(request.validate());
  return encode(request, as_bytes(std::string_view(strings)));
}

Result<void> P2ctlRunOutput::validate() const {
  if (stream != static_cast<uint8_t>(RunStream::kStdout) &&
      stream != static_cast<uint8_t>(RunStream::kStderr)) {
    return make_error(EINVAL, "unknown output stream " + std::to_string(stream));
  }
  if (length == 0) return make_error(EINVAL, "empty output chunk");
  return check_chunk(length, "output chunk");
}

Result<void> Ctl2pRunInput::validate() const {
  if ((flags & ~kInputEof) != 0) return make_error(EINVAL, "unknown input flags");
  return check_chunk(length, "input chunk");
}

Result<void> Ctl2pRunSignal::validate() const {
  if (signo < 1 || signo > 64) return make_error(EINVAL, "bad signal " + std::to_string(signo));
  return {};
}

Result<void> P2ctlRunExit::validate() const {
  if (code < 0 || code > 255) return make_error(EINVAL, "exit code out of range");
  if (signal < 0 || signal > 64) return make_error(EINVAL, "bad signal");
  if ((flags & ~(kExitCoreDumped | kExitLost)) != 0) {
    return make_error(EINVAL, "unknown exit flags");
  }
  if (text_length > kMaxExitText) return make_error(EMSGSIZE, "exit text too long");
  return {};
}

Result<void> Ctl2monPsRequest::validate() const {
  if (!vnode_name.terminated()) return make_error(EBADMSG, "unterminated vNode name");
  if (vnode_name.view().empty()) return {};
  return validate_vnode_name(vnode_name.view());
}

Result<void> ProcessRecord::validate() const {
  if (!vnode_name.terminated() || !command.terminated()) {
    return make_error(EBADMSG, "unterminated string in a process record");
  }
  if (!std::isgraph(state)) return make_error(EBADMSG, "bad process state");
  return {};
}

Result<void> StatRecord::validate() const {
  if (!group.terminated() || !name.terminated()) {
    return make_error(EBADMSG, "unterminated string in a counter record");
  }
  if (group.view().empty() || name.view().empty()) {
    return make_error(EBADMSG, "counter without a group or a name");
  }
  return {};
}

StatRecord make_stat(std::string_view group, std::string_view name, uint64_t value) {
  StatRecord record{};
  record.value = value;
  record.group.set(group);
  record.name.set(name);
  return record;
}

}  // namespace sk::wire
