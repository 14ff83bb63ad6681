// The sComponent's P2S_ handlers: decode, run the file operation on the
// vNode's tree (file_ops.h), encode the reply. One handler per opcode, in
// the order of kernel/wire/storage_messages.h. They run on the worker pool.
#include <fcntl.h>

#include "kernel/wire/storage_messages.h"
#include "scomponent/file_ops.h"
#include "scomponent/scomponent.h"

namespace sk::scomponent {

using wire::Opcode;

void Scomponent::serve_files() {
  serve_async(Opcode::P2S_GETATTR, &Scomponent::file_getattr);
  serve_async(Opcode::P2S_OPEN, &Scomponent::file_open);
  serve_async(Opcode::P2S_READ, &Scomponent::file_read);
  serve_async(Opcode::P2S_WRITE, &Scomponent::file_write);
  serve_async(Opcode::P2S_CREATE, &Scomponent::file_create);
  serve_async(Opcode::P2S_MKDIR, &Scomponent::file_mkdir);
  serve_async(Opcode::P2S_MKNOD, &Scomponent::file_mknod);
  serve_async(Opcode::P2S_SYMLINK, &Scomponent::file_symlink);
  serve_async(Opcode::P2S_LINK, &Scomponent::file_link);
  serve_async(Opcode::P2S_UNLINK, &Scomponent::file_unlink);
  serve_async(Opcode::P2S_RMDIR, &Scomponent::file_rmdir);
  serve_async(Opcode::P2S_RENAME, &Scomponent::file_rename);
  serve_async(Opcode::P2S_READDIR, &Scomponent::file_readdir);
  serve_async(Opcode::P2S_READLINK, &Scomponent::file_readlink);
  serve_async(Opcode::P2S_SETATTR, &Scomponent::file_setattr);
  serve_async(Opcode::P2S_FSYNC, &Scomponent::file_fsync);
  serve_async(Opcode::P2S_STATFS, &Scomponent::file_statfs);
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

template <typename T>
Result<wire::StorageRequest<T>> decode(const rpc::Message& request) {
  return wire::decode_storage_request<T>(request.payload);
}

wire::Bytes stat_reply(const wire::StorageStat& st) {
  return wire::encode(st);
}

Result<void> require_flags(uint32_t flags, uint32_t allowed, std::string_view what) {
  if ((flags & ~allowed) != 0) return make_error(EINVAL, "unknown " + std::string(what) + " flags");
  return {};
}

}  // namespace

Result<wire::Bytes> Scomponent::file_getattr(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "getattr"));
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().getattr(decoded.path)));
}

Result<wire::Bytes> Scomponent::file_open(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, wire::storage_open_flags_mask(), "open"));
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().open(decoded.path, decoded.message.flags)));
}

Result<wire::Bytes> Scomponent::file_read(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageReadRequest>(request));
  auto tree = TRY(tree_of(*m_store, request));
  // Read straight into the reply, behind its fixed part.
  wire::Bytes reply(sizeof(wire::StorageDataReply) + decoded.message.length);
  auto into = std::span<std::byte>(reply).subspan(sizeof(wire::StorageDataReply));
  size_t got = TRY(tree.ops().read(decoded.path, decoded.message.offset, into));
  wire::StorageDataReply header{static_cast<uint32_t>(got), 0};
  std::memcpy(reply.data(), &header, sizeof header);
  reply.resize(sizeof header + got);
  return reply;
}

Result<wire::Bytes> Scomponent::file_write(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageWriteRequest>(request));
  auto tree = TRY(tree_of(*m_store, request));
  auto written = TRY(
      tree.ops().write(decoded.path, decoded.message.offset, decoded.data, decoded.message.flags));
  return wire::encode(wire::StorageWriteReply{written.size, written.written, 0});
}

Result<wire::Bytes> Scomponent::file_create(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageMakeRequest>(request));
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.rdev != 0) return make_error(EINVAL, "bad create request");
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(
      TRY(tree.ops().create(decoded.path, make.mode & 07777, make.flags, {make.uid, make.gid})));
}

Result<wire::Bytes> Scomponent::file_mkdir(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageMakeRequest>(request));
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.rdev != 0 || make.flags != 0) {
    return make_error(EINVAL, "bad mkdir request");
  }
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().mkdir(decoded.path, make.mode & 07777, {make.uid, make.gid})));
}

Result<wire::Bytes> Scomponent::file_mknod(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageMakeRequest>(request));
  const auto& make = decoded.message;
  if (make.target_length != 0 || make.flags != 0) return make_error(EINVAL, "bad mknod request");
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().mknod(decoded.path, make.mode, static_cast<dev_t>(make.rdev),
                                         {make.uid, make.gid})));
}

Result<wire::Bytes> Scomponent::file_symlink(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageMakeRequest>(request));
  const auto& make = decoded.message;
  if (make.target_length == 0 || make.flags != 0 || make.rdev != 0) {
    return make_error(EINVAL, "bad symlink request");
  }
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().symlink(decoded.path, decoded.second, {make.uid, make.gid})));
}

Result<wire::Bytes> Scomponent::file_link(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageTwoPathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "link"));
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().link(decoded.path, decoded.second)));
}

Result<wire::Bytes> Scomponent::file_unlink(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "unlink"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().unlink(decoded.path));
  return wire::Bytes{};
}

Result<wire::Bytes> Scomponent::file_rmdir(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "rmdir"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().rmdir(decoded.path));
  return wire::Bytes{};
}

Result<wire::Bytes> Scomponent::file_rename(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageTwoPathRequest>(request));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().rename(decoded.path, decoded.second, decoded.message.flags));
  return wire::Bytes{};
}

Result<wire::Bytes> Scomponent::file_readdir(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageReaddirRequest>(request));
  auto tree = TRY(tree_of(*m_store, request));
  wire::Bytes reply(sizeof(wire::StorageReaddirReply));
  uint32_t count = 0;
  bool end = TRY(tree.ops().readdir(decoded.path, decoded.message.cookie, decoded.message.max_bytes,
                                    reply, count));
  wire::StorageReaddirReply header{count, end ? wire::kReaddirEnd : 0u};
  std::memcpy(reply.data(), &header, sizeof header);
  return reply;
}

Result<wire::Bytes> Scomponent::file_readlink(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "readlink"));
  auto tree = TRY(tree_of(*m_store, request));
  std::string target = TRY(tree.ops().readlink(decoded.path));
  wire::StorageDataReply header{static_cast<uint32_t>(target.size()), 0};
  return wire::encode(header, wire::as_bytes(std::string_view(target)));
}

Result<wire::Bytes> Scomponent::file_setattr(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StorageSetattrRequest>(request));
  auto tree = TRY(tree_of(*m_store, request));
  return stat_reply(TRY(tree.ops().setattr(decoded.path, decoded.message)));
}

Result<wire::Bytes> Scomponent::file_fsync(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, wire::kFsyncData, "fsync"));
  auto tree = TRY(tree_of(*m_store, request));
  TRY(tree.ops().fsync(decoded.path, decoded.message.flags & wire::kFsyncData));
  return wire::Bytes{};
}

Result<wire::Bytes> Scomponent::file_statfs(const rpc::Message& request) {
  auto decoded = TRY(decode<wire::StoragePathRequest>(request));
  TRY(require_flags(decoded.message.flags, 0, "statfs"));
  auto tree = TRY(tree_of(*m_store, request));
  return wire::encode(TRY(tree.ops().statfs()));
}

}  // namespace sk::scomponent
