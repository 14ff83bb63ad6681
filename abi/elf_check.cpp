#include "abi/elf_check.h"

#include <elf.h>

#include <cstring>

namespace sk::abi {

ExecKind classify_executable(std::span<const unsigned char> head) {
  if (head.size() >= 2 && head[0] == '#' && head[1] == '!') return ExecKind::kScript;
  if (head.size() < SELFMAG || std::memcmp(head.data(), ELFMAG, SELFMAG) != 0) {
    return ExecKind::kNotExecutable;
  }
  if (head.size() < sizeof(Elf64_Ehdr)) return ExecKind::kNotExecutable;
  if (head[EI_CLASS] != ELFCLASS64 || head[EI_DATA] != ELFDATA2LSB) return ExecKind::kForeignElf;
  Elf64_Ehdr header;
  std::memcpy(&header, head.data(), sizeof header);
  if (header.e_machine != EM_X86_64) return ExecKind::kForeignElf;
  if (header.e_type != ET_EXEC && header.e_type != ET_DYN) return ExecKind::kNotExecutable;
  return ExecKind::kElfX86_64;
}

std::string_view to_string(ExecKind kind) {
  switch (kind) {
    case ExecKind::kElfX86_64: return "x86-64 ELF";
    case ExecKind::kScript: return "script";
    case ExecKind::kForeignElf: return "ELF for another machine";
    case ExecKind::kNotExecutable: return "not an executable";
  }
  return "unknown";
}

}  // namespace sk::abi
