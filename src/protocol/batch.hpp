// SPDX-License-Identifier: Apache-2.0
// BATCH (S0/2, command 9): several messages for one peer carried as one ZeroMQ message, and taken
// apart again (docs/protocol.md, "Batches"). A batch means exactly its entries, sent one after
// another in order. Internal to the library: the broker, the client and the worker use it alike.
//
//   "" · header command=9 count:u16 entry… · separate body frames…
//   entry = size:u32 (the entry's packed frame without its 4-byte header: command, fields)
//           parts:u8 · parts × (size:u32 bytes | 0xFFFFFFFF: the next separate frame)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/packing.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

inline constexpr std::uint8_t batch_command = 9;
// What a sender may put in one batch, and what every receiver takes.
inline constexpr std::size_t max_batch_entries = 256;
inline constexpr std::size_t max_batch_frames = 64;         // body frames carried separately
inline constexpr std::size_t max_batch_packed = 256 << 10;  // bytes of the batch's packed frame
// A sender copies a body frame up to this size into the packed frame (a separate frame costs
// more than the copy); a larger one travels as a frame of its own and is never copied.
inline constexpr std::size_t batch_inline_body = 256;
// A message whose entry would be larger than this is sent alone.
inline constexpr std::size_t max_batch_entry = 4096;
inline constexpr std::uint32_t batch_separate = 0xffffffffu;

// f[at] is an empty delimiter and f[at + 1] a packed S0/2 frame with the BATCH command.
bool is_batch(const frames& f, std::size_t at) noexcept;

// Takes a received batch apart. open() checks the whole batch before any entry is handed out;
// then each next() yields one entry as the message it stands for.
class batch_reader {
 public:
  // `at`: the index of the delimiter (1 at a ROUTER: the identity comes first; 0 at a DEALER).
  // False when the batch is malformed: nothing of it may be used then.
  bool open(frames& f, std::size_t at) noexcept;
  std::size_t size() const noexcept { return count_; }
  // The next entry into `out`: the addressing frames (copied), "", the packed frame (header and
  // entry), then its bodies (inline ones copied, separate ones moved out of the batch). `bytes`
  // gets the size of its bodies. False after the last.
  bool next(frames& out, std::size_t& bytes);

 private:
  frames* f_ = nullptr;
  std::size_t at_ = 0;
  std::string_view header_;
  packing::reader entries_{{}};
  std::size_t count_ = 0;
  std::size_t taken_ = 0;
  std::size_t next_frame_ = 0;
};

// Collects the messages for one peer until they are sent: one message goes out as it is, two or
// more as one BATCH. Reuses its storage: after warm-up, adding and taking allocate nothing (the
// batch's frame itself is libzmq's).
class batch_writer {
 public:
  // `addressing`: frames before the delimiter (1 at a ROUTER: the peer's identity; 0 at a DEALER).
  explicit batch_writer(std::size_t addressing = 0) : addressing_(addressing) {}
  // Whether `msg` may travel in a batch at all: an S0/2 message with a small packed frame and
  // inline bodies, and few body frames. Others are sent alone.
  bool batchable(const frames& msg) const noexcept;
  // Whether the batchable `msg` fits with what is held; else take() first.
  bool fits(const frames& msg) const noexcept;
  // Takes the frames of a batchable message that fits.
  void add(frames& msg);
  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  // What is held, into `out` (cleared first): the single message as it was added, or one BATCH.
  // Empty afterwards.
  void take(frames& out);

 private:
  struct entry_size {
    std::size_t packed = 0;    // bytes in the batch's packed frame
    std::size_t separate = 0;  // separate frames
  };
  entry_size size_of(const frames& msg) const noexcept;
  void encode(frames& msg);

  std::size_t addressing_;
  std::size_t count_ = 0;
  frames first_;             // the first message, until a second comes
  zmq::message_t identity_;  // a batch's addressing frame
  std::string packed_;       // header, command, count, entries
  frames separate_;          // bodies carried as frames of their own
  std::size_t separate_count_ = 0;
};

}  // namespace scale0::protocol
