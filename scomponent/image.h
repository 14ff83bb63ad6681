// What a new vNode tree starts with: a copy of an image (a directory tree
// such as scripts/build-image makes: a Debian userland), or, for an empty
// root, only the directories every vNode root needs.
//
// Images live in the sComponent's images directory (--images, default
// DATA/images), one directory per image: IMAGES/<image>/ is what the vNode
// sees as "/". The copy keeps modes, symlinks, hard links, owners and mtimes
// (`cp -a`, with reflinks where the filesystem has them). Owners stay as they
// are: on-disk ids are the vNode's ids, so a root-owned image gives files
// that vNode root owns. An image built by an unprivileged user (its "/" is
// not owned by uid 0) has that user's files handed to vNode root, since the
// builder stood in for root.
//
// Threads: any thread but the transport's: these take seconds.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/result.h"

namespace sk::scomponent {

// IMAGES/<image>, checked: ENOENT "no image 'x' on this sComponent" when
// missing, EINVAL for a name that is not a plain name.
Result<std::filesystem::path> find_image(const std::filesystem::path& images,
                                         std::string_view image);

// Fills `tree` (an empty directory) with a copy of `image`.
Result<void> copy_image(const std::filesystem::path& image, const std::filesystem::path& tree);

// Fills `tree` with the directories a vNode root needs to start programs
// that are copied in later: /proc /dev /tmp /etc /root.
Result<void> make_basic_root(const std::filesystem::path& tree);

// Runs a program (looked up in PATH) and waits for it; its stderr becomes
// the error text when it fails. For tools like cp; not for the transport's
// thread.
Result<void> run_program(const std::vector<std::string>& argv);

}  // namespace sk::scomponent
