// SPDX-License-Identifier: Apache-2.0
#include "protocol/batch.hpp"

namespace scale0::protocol {
namespace {

// header (4) · command (1) · count (2)
constexpr std::size_t batch_head = packing::head_size + 2;

bool s0_v2_header(std::string_view packed) noexcept {
  const std::string_view h = packed.substr(0, 4);
  return h == client_header_v2 || h == worker_header_v2;
}

void put_u32(std::string& s, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  s.append(b, 4);
}

}  // namespace

bool is_batch(const frames& f, std::size_t at) noexcept {
  if (f.size() < at + 2 || f[at].size() != 0) return false;
  const std::string_view packed = view(f[at + 1]);
  return packed.size() >= packing::head_size && s0_v2_header(packed) &&
         packing::command_of(packed) == batch_command;
}

bool batch_reader::open(frames& f, std::size_t at) noexcept {
  f_ = nullptr;
  if (!is_batch(f, at)) return false;
  const std::string_view packed = view(f[at + 1]);
  packing::reader r(packed.substr(packing::head_size));
  const std::size_t count = r.u16();
  if (!r.ok() || count == 0 || count > max_batch_entries) return false;
  const std::string_view entries = r.rest();
  // One pass over the whole batch: every length within the frame, every separate frame there and
  // used exactly once, nothing left over.
  std::size_t separate = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string_view entry = r.str32();
    if (!r.ok() || entry.empty()) return false;
    if (static_cast<std::uint8_t>(entry[0]) == batch_command) return false;  // no nesting
    const std::size_t parts = r.u8();
    for (std::size_t p = 0; p < parts && r.ok(); ++p) {
      const std::uint32_t size = r.u32();
      if (size == batch_separate)
        ++separate;
      else
        r.skip(size);
    }
    if (!r.ok()) return false;
  }
  if (!r.complete() || separate > max_batch_frames || f.size() != at + 2 + separate) return false;
  f_ = &f;
  at_ = at;
  header_ = packed.substr(0, 4);
  entries_ = packing::reader(entries);
  count_ = count;
  taken_ = 0;
  next_frame_ = at + 2;
  return true;
}

bool batch_reader::next(frames& out, std::size_t& bytes) {
  if (f_ == nullptr || taken_ == count_) return false;
  ++taken_;
  out.clear();
  for (std::size_t i = 0; i < at_; ++i) {
    out.emplace_back();
    out.back().copy((*f_)[i]);
  }
  out.emplace_back();
  const std::string_view entry = entries_.str32();
  out.emplace_back(header_.size() + entry.size());
  packing::writer(out.back()).bytes(header_).bytes(entry);
  bytes = 0;
  const std::size_t parts = entries_.u8();
  for (std::size_t p = 0; p < parts; ++p) {
    const std::uint32_t size = entries_.u32();
    if (size == batch_separate) {
      out.push_back(std::move((*f_)[next_frame_++]));
    } else {
      const std::string_view body = entries_.bytes(size);
      out.emplace_back(body.data(), body.size());
    }
    bytes += out.back().size();
  }
  return true;
}

batch_writer::entry_size batch_writer::size_of(const frames& msg) const noexcept {
  entry_size s;
  s.packed = 4 + (msg[addressing_ + 1].size() - 4) + 1;
  for (std::size_t i = addressing_ + 2; i < msg.size(); ++i) {
    s.packed += 4;
    if (msg[i].size() <= batch_inline_body)
      s.packed += msg[i].size();
    else
      ++s.separate;
  }
  return s;
}

bool batch_writer::batchable(const frames& msg) const noexcept {
  if (msg.size() < addressing_ + 2 || msg.size() - addressing_ - 2 > 255) return false;
  if (msg[addressing_].size() != 0) return false;
  const std::string_view packed = view(msg[addressing_ + 1]);
  if (packed.size() < packing::head_size || !s0_v2_header(packed) ||
      packing::command_of(packed) == batch_command)
    return false;
  const entry_size s = size_of(msg);
  return s.packed <= max_batch_entry && s.separate <= max_batch_frames;
}

bool batch_writer::fits(const frames& msg) const noexcept {
  if (count_ == 0) return true;
  if (count_ >= max_batch_entries) return false;
  if (view(msg[addressing_ + 1]).substr(0, 4) != (count_ == 1
                                                      ? view(first_[addressing_ + 1]).substr(0, 4)
                                                      : std::string_view(packed_).substr(0, 4)))
    return false;  // one header per batch
  const entry_size s = size_of(msg);
  std::size_t packed = packed_.size();
  std::size_t separate = separate_count_;
  if (count_ == 1) {
    const entry_size f = size_of(first_);
    packed = batch_head + f.packed;
    separate = f.separate;
  }
  return packed + s.packed <= max_batch_packed && separate + s.separate <= max_batch_frames;
}

void batch_writer::encode(frames& msg) {
  const std::string_view packed = view(msg[addressing_ + 1]);
  put_u32(packed_, static_cast<std::uint32_t>(packed.size() - 4));
  packed_.append(packed.substr(4));
  packed_.push_back(static_cast<char>(msg.size() - addressing_ - 2));
  for (std::size_t i = addressing_ + 2; i < msg.size(); ++i) {
    if (msg[i].size() <= batch_inline_body) {
      put_u32(packed_, static_cast<std::uint32_t>(msg[i].size()));
      packed_.append(view(msg[i]));
    } else {
      put_u32(packed_, batch_separate);
      separate_.push_back(std::move(msg[i]));
      ++separate_count_;
    }
  }
  msg.clear();
}

void batch_writer::add(frames& msg) {
  if (count_ == 0) {
    first_.swap(msg);
    msg.clear();
    count_ = 1;
    return;
  }
  if (count_ == 1) {  // a second message: the first becomes the batch's first entry
    packed_.clear();
    packed_.append(view(first_[addressing_ + 1]).substr(0, 4));
    packed_.push_back(static_cast<char>(batch_command));
    packed_.append(2, '\0');  // the count, written by take()
    if (addressing_ == 1) identity_ = std::move(first_[0]);
    encode(first_);
  }
  encode(msg);
  ++count_;
}

void batch_writer::take(frames& out) {
  out.clear();
  if (count_ == 1) {
    out.swap(first_);
  } else if (count_ > 1) {
    if (addressing_ == 1) out.push_back(std::move(identity_));
    out.emplace_back();
    packed_[5] = static_cast<char>(count_ >> 8);
    packed_[6] = static_cast<char>(count_);
    out.emplace_back(packed_.data(), packed_.size());
    for (auto& f : separate_) out.push_back(std::move(f));
    separate_.clear();
    separate_count_ = 0;
  }
  count_ = 0;
}

}  // namespace scale0::protocol
