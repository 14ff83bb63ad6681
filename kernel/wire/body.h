// The kinds of message body, so that every opcode's request and reply is one
// C++ type (kernel/wire/message_list.h says which). A body is a value that
// owns its bytes: decoding takes the payload, encoding gives it back, and a
// big tail (pages, file data) is neither copied in nor out.
//
//   a WireMessage T          exactly one fixed struct (codec.h's decode<T>)
//   Empty                    no bytes at all
//   RawBytes                 any bytes (pages, one-sided data, a ping)
//   Tailed<T>                T, then a tail of any length
//   Sized<T, &T::length>     T, then exactly `length` bytes
//   RecordList<Head, R>      Head{count, ...}, then count records of R
//
// and, in their own headers, bodies whose tail has more structure
// (Ctl2pRunCommand in process_messages.h; StorageBody and StorageListing in
// storage_body.h). Each kind provides
//   static Result<K> decode(Bytes payload);   checked: length, then validate()
//   Result<Bytes> encode() &&;                the payload to send
// and body_decode / body_encode below call either these or codec.h's for a
// fixed struct.
#pragma once

#include <concepts>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernel/result.h"
#include "kernel/wire/codec.h"

namespace sk::wire {

// Bytes after a message's fixed part. Keeps the whole payload it came in (or
// a buffer with room in front for the fixed part) and an offset, so that
// decoding and encoding move the buffer instead of copying the tail.
class Tail {
 public:
  Tail() = default;
  // A copy of `bytes`.
  explicit Tail(ByteView bytes) : m_buffer(bytes.begin(), bytes.end()) {}
  explicit Tail(std::string_view text) : Tail(as_bytes(text)) {}
  // The bytes of `buffer` from `offset` on.
  Tail(Bytes buffer, size_t offset) : m_buffer(std::move(buffer)), m_offset(offset) {}

  // `size` bytes to fill in place (span()), with `front` bytes of room before
  // them for the fixed part of the message that will carry them.
  static Tail with_room(size_t front, size_t size) { return Tail(Bytes(front + size), front); }

  ByteView view() const { return ByteView(m_buffer).subspan(m_offset); }
  std::span<std::byte> span() { return std::span<std::byte>(m_buffer).subspan(m_offset); }
  size_t size() const { return m_buffer.size() - m_offset; }
  bool empty() const { return size() == 0; }
  std::string_view text() const {
    return std::string_view(reinterpret_cast<const char*>(m_buffer.data()) + m_offset, size());
  }
  // Drops bytes from the end (a read that came up short).
  void shrink(size_t size) { m_buffer.resize(m_offset + std::min(size, this->size())); }

  // `head`, then the tail, as one payload; moves the buffer when it has
  // exactly sizeof(T) bytes of room in front.
  template <WireMessage T>
  Bytes take_after(const T& head) && {
    if (m_offset == sizeof(T)) {
      std::memcpy(m_buffer.data(), &head, sizeof(T));
      return std::move(m_buffer);
    }
    return encode(head, view());
  }
  // The tail alone.
  Bytes take() && {
    if (m_offset == 0) return std::move(m_buffer);
    return Bytes(view().begin(), view().end());
  }

 private:
  Bytes m_buffer;
  size_t m_offset = 0;
};

// A body kind: decode() and encode() as at the top of this file.
template <typename K>
concept BodyKind = requires(Bytes payload, K body) {
  { K::decode(std::move(payload)) } -> std::same_as<Result<K>>;
  { std::move(body).encode() } -> std::same_as<Result<Bytes>>;
};

struct Empty {
  static Result<Empty> decode(Bytes payload) {
    if (!payload.empty()) {
      return make_error(EBADMSG,
                        "message takes no body, got " + std::to_string(payload.size()) + " bytes");
    }
    return Empty{};
  }
  Result<Bytes> encode() && { return Bytes{}; }
};

struct RawBytes {
  Tail bytes;
  static Result<RawBytes> decode(Bytes payload) { return RawBytes{Tail(std::move(payload), 0)}; }
  Result<Bytes> encode() && { return std::move(bytes).take(); }
};

template <WireMessage T>
struct Tailed {
  T head{};
  Tail tail;
  static Result<Tailed> decode(Bytes payload) {
    auto [head, rest] = TRY(decode_with_tail<T>(payload));
    (void)rest;
    return Tailed{head, Tail(std::move(payload), sizeof(T))};
  }
  Result<Bytes> encode() && { return std::move(tail).take_after(head); }
};

// T and exactly head.*Length bytes (decode_sized in process_messages.h).
template <WireMessage T, uint32_t T::*Length>
struct Sized {
  T head{};
  Tail tail;
  // head with its length set to the tail's.
  static Sized of(T head, Tail tail) {
    head.*Length = static_cast<uint32_t>(tail.size());
    return Sized{head, std::move(tail)};
  }
  static Result<Sized> decode(Bytes payload) {
    auto [head, rest] = TRY(decode_with_tail<T>(payload));
    if (rest.size() != head.*Length) {
      return make_error(EBADMSG, "message says " + std::to_string(head.*Length) +
                                     " bytes follow, but " + std::to_string(rest.size()) + " do");
    }
    return Sized{head, Tail(std::move(payload), sizeof(T))};
  }
  Result<Bytes> encode() && {
    if (tail.size() != head.*Length) {
      return make_error(EINVAL, "message says " + std::to_string(head.*Length) +
                                    " bytes follow, but has " + std::to_string(tail.size()));
    }
    return std::move(tail).take_after(head);
  }
};

// Head (whose `count` says how many records follow), then the records.
template <WireMessage Head, WireMessage R>
struct RecordList {
  Head head{};
  std::vector<R> records;
  static Result<RecordList> decode(Bytes payload) {
    auto [head, tail] = TRY(decode_with_tail<Head>(payload));
    auto records = TRY(decode_records<R>(tail, head.count));
    return RecordList{head, std::move(records)};
  }
  Result<Bytes> encode() && {
    head.count = static_cast<uint32_t>(records.size());
    ByteView tail(reinterpret_cast<const std::byte*>(records.data()), records.size() * sizeof(R));
    return wire::encode(head, tail);
  }
};

// ---- any body ---------------------------------------------------------------

template <typename B>
concept Body = BodyKind<B> || WireMessage<B>;

template <Body B>
Result<B> body_decode(Bytes payload) {
  if constexpr (BodyKind<B>) {
    return B::decode(std::move(payload));
  } else {
    return decode<B>(payload);
  }
}

template <Body B>
Result<B> body_decode(ByteView payload) {
  return body_decode<B>(Bytes(payload.begin(), payload.end()));
}

template <Body B>
Result<Bytes> body_encode(B body) {
  if constexpr (BodyKind<B>) {
    return std::move(body).encode();
  } else {
    return encode(body);
  }
}

}  // namespace sk::wire
