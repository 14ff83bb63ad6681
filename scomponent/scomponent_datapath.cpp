// The sComponent's P2S_ handlers: run the file operation on the vNode's tree
// (file_ops.h) for a request the dispatcher decoded and checked, and build
// the reply body (kernel/wire/message_list.h). One handler per opcode, in
// the order of kernel/wire/storage_messages.h. They run on the worker pool.
#include <fcntl.h>

#include "kernel/wire/storage_messages.h"
#include "scomponent/file_ops.h"
#include "scomponent/scomponent.h"

namespace sk::scomponent {

using wire::Opcode;
using Message = rpc::Message;

void Scomponent::serve_files() {
  auto serve = [this](auto method) {
    return [this, method](const auto& request, const Message& ctx) {
      return (this->*method)(request, ctx);
    };
  };
  m_data.on<Opcode::P2S_GETATTR>(m_pool, serve(&Scomponent::file_getattr));
  m_data.on<Opcode::P2S_OPEN>(m_pool, serve(&Scomponent::file_open));
  m_data.on<Opcode::P2S_READ>(m_pool, serve(&Scomponent::file_read));
  m_data.on<Opcode::P2S_WRITE>(m_pool, serve(&Scomponent::file_write));
  m_data.on<Opcode::P2S_CREATE>(m_pool, serve(&Scomponent::file_create));
  m_data.on<Opcode::P2S_MKDIR>(m_pool, serve(&Scomponent::file_mkdir));
  m_data.on<Opcode::P2S_MKNOD>(m_pool, serve(&Scomponent::file_mknod));
  m_data.on<Opcode::P2S_SYMLINK>(m_pool, serve(&Scomponent::file_symlink));
  m_data.on<Opcode::P2S_LINK>(m_pool, serve(&Scomponent::file_link));
  m_data.on<Opcode::P2S_UNLINK>(m_pool, serve(&Scomponent::file_unlink));
  m_data.on<Opcode::P2S_RMDIR>(m_pool, serve(&Scomponent::file_rmdir));
  m_data.on<Opcode::P2S_RENAME>(m_pool, serve(&Scomponent::file_rename));
  m_data.on<Opcode::P2S_READDIR>(m_pool, serve(&Scomponent::file_readdir));
  m_data.on<Opcode::P2S_READLINK>(m_pool, serve(&Scomponent::file_readlink));
  m_data.on<Opcode::P2S_SETATTR>(m_pool, serve(&Scomponent::file_setattr));
  m_data.on<Opcode::P2S_FSYNC>(m_pool, serve(&Scomponent::file_fsync));
  m_data.on<Opcode::P2S_STATFS>(m_pool, serve(&Scomponent::file_statfs));
}

namespace {

// The tree of the request's vNode, kept open while the request runs even if
// the vNode is destroyed meanwhile.
struct Tree {
  std::shared_ptr<const UniqueFd> root;
  FileOps ops() const { return FileOps(root->get()); }
};

Result<Tree> tree_of(FileStore& store, const rpc::Message& request) {
  return Tree{TRY(store.root(request.vnode()))};
}

Result<void> require_flags(uint32_t flags, uint32_t allowed, std::string_view what) {
  if ((flags & ~allowed) != 0) return make_error(EINVAL, "unknown " + std::string(what) + " flags");
  return {};
}

}  // namespace

Result<wire::StorageStat> Scomponent::file_getattr(const Storage<wire::P2sPathRequest>& decoded,
                                                   const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "getattr"));
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().getattr(decoded.path()));
}

Result<wire::StorageStat> Scomponent::file_open(const Storage<wire::P2sPathRequest>& decoded,
                                                const Message& request) {
  TRY(require_flags(decoded.message.flags, wire::storage_open_flags_mask(), "open"));
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().open(decoded.path(), decoded.message.flags));
}

Result<wire::StorageData> Scomponent::file_read(const Storage<wire::P2sReadRequest>& decoded,
                                                const Message& request) {
  auto tree = TRY(tree_of(*m_store, request));
  // Read straight into the reply, behind room for its fixed part.
  auto data = wire::Tail::with_room(sizeof(wire::P2sDataReply), decoded.message.length);
  size_t got = TRY(tree.ops().read(decoded.path(), decoded.message.offset, data.span()));
  data.shrink(got);
  return wire::StorageData::of(wire::P2sDataReply{}, std::move(data));
}

Result<wire::P2sWriteReply> Scomponent::file_write(const Storage<wire::P2sWriteRequest>& decoded,
                                                   const Message& request) {
  auto tree = TRY(tree_of(*m_store, request));
  auto written = TRY(tree.ops().write(decoded.path(), decoded.message.offset, decoded.data(),
                                      decoded.message.flags));
  return wire::P2sWriteReply{written.size, written.written, 0};
}

Result<wire::StorageStat> Scomponent::file_create(const Storage<wire::P2sMakeRequest>& decoded,
                                                  const Message& request) {
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.rdev != 0) return make_error(EINVAL, "bad create request");
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(
      tree.ops().create(decoded.path(), make.mode & 07777, make.flags, {make.uid, make.gid}));
}

Result<wire::StorageStat> Scomponent::file_mkdir(const Storage<wire::P2sMakeRequest>& decoded,
                                                 const Message& request) {
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.rdev != 0 || make.flags != 0) {
    return make_error(EINVAL, "bad mkdir request");
  }
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().mkdir(decoded.path(), make.mode & 07777, {make.uid, make.gid}));
}

Result<wire::StorageStat> Scomponent::file_mknod(const Storage<wire::P2sMakeRequest>& decoded,
                                                 const Message& request) {
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.flags != 0) return make_error(EINVAL, "bad mknod request");
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().mknod(decoded.path(), make.mode, static_cast<dev_t>(make.rdev),
                              {make.uid, make.gid}));
}

Result<wire::StorageStat> Scomponent::file_symlink(const Storage<wire::P2sMakeRequest>& decoded,
                                                   const Message& request) {
  const auto& make = decoded.message;
  if (make.target_length == 0 || make.flags != 0 || make.rdev != 0) {
    return make_error(EINVAL, "bad symlink request");
  }
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().symlink(decoded.path(), decoded.second(), {make.uid, make.gid}));
}

Result<wire::StorageStat> Scomponent::file_link(const Storage<wire::P2sTwoPathRequest>& decoded,
                                                const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "link"));
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().link(decoded.path(), decoded.second()));
}

Result<void> Scomponent::file_unlink(const Storage<wire::P2sPathRequest>& decoded,
                                     const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "unlink"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().unlink(decoded.path()));
  return {};
}

Result<void> Scomponent::file_rmdir(const Storage<wire::P2sPathRequest>& decoded,
                                    const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "rmdir"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().rmdir(decoded.path()));
  return {};
}

Result<void> Scomponent::file_rename(const Storage<wire::P2sTwoPathRequest>& decoded,
                                     const Message& request) {
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().rename(decoded.path(), decoded.second(), decoded.message.flags));
  return {};
}

Result<wire::StorageListing> Scomponent::file_readdir(
    const Storage<wire::P2sReaddirRequest>& decoded, const Message& request) {
  auto tree = TRY(tree_of(*m_store, request));
  wire::Bytes reply(sizeof(wire::P2sReaddirReply));
  uint32_t count = 0;
  bool end = TRY(tree.ops().readdir(decoded.path(), decoded.message.cookie,
                                    decoded.message.max_bytes, reply, count));
  wire::P2sReaddirReply header{count, end ? wire::kReaddirEnd : 0u};
  return wire::StorageListing{header, wire::Tail(std::move(reply), sizeof header)};
}

Result<wire::StorageData> Scomponent::file_readlink(const Storage<wire::P2sPathRequest>& decoded,
                                                    const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "readlink"));
  auto tree = TRY(tree_of(*m_store, request));
  std::string target = TRY(tree.ops().readlink(decoded.path()));
  return wire::StorageData::of(wire::P2sDataReply{}, wire::Tail(std::string_view(target)));
}

Result<wire::StorageStat> Scomponent::file_setattr(const Storage<wire::P2sSetattrRequest>& decoded,
                                                   const Message& request) {
  auto tree = TRY(tree_of(*m_store, request));
  return TRY(tree.ops().setattr(decoded.path(), decoded.message));
}

Result<void> Scomponent::file_fsync(const Storage<wire::P2sPathRequest>& decoded,
                                    const Message& request) {
  TRY(require_flags(decoded.message.flags, wire::kFsyncData, "fsync"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().fsync(decoded.path(), decoded.message.flags & wire::kFsyncData));
  return {};
}

Result<wire::StorageStatfs> Scomponent::file_statfs(const Storage<wire::P2sPathRequest>& decoded,
                                                    const Message& request) {
  TRY(require_flags(decoded.message.flags, 0, "statfs"));
  auto tree = TRY(tree_of(*m_store, request));
  return tree.ops().statfs();
}

}  // namespace sk::scomponent
