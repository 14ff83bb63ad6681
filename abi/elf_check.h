// What execve would make of a file, decided before the pComponent starts it,
// so that a vNode user gets the shell's clear messages ("cannot execute
// binary file: Exec format error") instead of a silent failure.
#pragma once

#include <span>
#include <string_view>

namespace sk::abi {

enum class ExecKind {
  kElfX86_64,   // an x86-64 ELF executable or shared object (PIE)
  kScript,      // starts with "#!": the kernel runs its interpreter
  kForeignElf,  // ELF for another machine or class (e.g. aarch64, i386)
  kNotExecutable,  // neither: data, text without "#!", truncated ELF
};

// Classifies a file from its first bytes (64 are enough).
ExecKind classify_executable(std::span<const unsigned char> head);

std::string_view to_string(ExecKind kind);

}  // namespace sk::abi
