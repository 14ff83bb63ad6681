// The P2S_ bodies whose tail has structure (kernel/wire/body.h explains body
// kinds; storage_messages.h the layouts):
//   StorageBody<T>   a request: T, then path, second path or target, data
//   StorageData      P2sDataReply and its bytes (P2S_READ, P2S_READLINK)
//   StorageListing   P2sReaddirReply and its entries (P2S_READDIR)
#pragma once

#include <string_view>
#include <vector>

#include "kernel/wire/body.h"
#include "kernel/wire/storage_messages.h"

namespace sk::wire {

template <WireMessage T>
struct StorageBody {
  T message{};
  Tail tail;  // exactly storage_tail(message)'s pieces, in order

  // The caller sets the lengths in `message`, as for encode_storage_request.
  static StorageBody make(const T& message, std::string_view path, std::string_view second = {},
                          ByteView data = {}) {
    return StorageBody{message,
                       Tail(encode_storage_request(message, path, second, data), sizeof(T))};
  }

  std::string_view path() const { return piece(0, storage_tail(message).path); }
  // The new path (LINK, RENAME) or the symlink target (SYMLINK).
  std::string_view second() const {
    StorageTail layout = storage_tail(message);
    return piece(layout.path, layout.second);
  }
  ByteView data() const {
    StorageTail layout = storage_tail(message);
    size_t at = std::min(tail.size(), size_t{layout.path} + layout.second);
    return tail.view().subspan(at, std::min<size_t>(layout.data, tail.size() - at));
  }

  static Result<StorageBody> decode(Bytes payload) {
    auto checked = TRY(decode_storage_request<T>(payload));
    return StorageBody{checked.message, Tail(std::move(payload), sizeof(T))};
  }
  Result<Bytes> encode() && { return std::move(tail).take_after(message); }

 private:
  // Clamped, so that a body built with lengths that do not match its tail
  // reads short instead of past the end.
  std::string_view piece(size_t offset, size_t length) const {
    std::string_view all = tail.text();
    if (offset > all.size()) return {};
    return all.substr(offset, length);
  }
};

using StorageData = Sized<P2sDataReply, &P2sDataReply::length>;

struct StorageListing {
  P2sReaddirReply head{};
  Tail entries;  // head.count entries, each as append_dirent() lays it out

  Result<std::vector<DirEntry>> list() const { return decode_dirents(entries.view(), head.count); }

  static Result<StorageListing> decode(Bytes payload) {
    auto [head, tail] = TRY(decode_with_tail<P2sReaddirReply>(payload));
    TRY(decode_dirents(tail, head.count));
    return StorageListing{head, Tail(std::move(payload), sizeof(P2sReaddirReply))};
  }
  Result<Bytes> encode() && { return std::move(entries).take_after(head); }
};

}  // namespace sk::wire
