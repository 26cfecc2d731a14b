// SPDX-License-Identifier: Apache-2.0
// An HTTP/1.1 message parser that keeps a chunked body's trailer fields out of the header section.
// Beast's own `http::parser` inserts trailer fields into the message's fields as if they had come
// with the head (Beast 1.74), so a `Host` or `Set-Cookie` sent after the body would join the
// header; this parser counts and drops them (docs/http.md: trailers are read and thrown away).
// Everything else is Beast's basic_parser, which this derives from, as Beast intends.
#pragma once

#include <algorithm>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <string>

namespace scale0::http_detail {

template <bool isRequest>
class message_parser : public boost::beast::http::basic_parser<isRequest> {
 public:
  using message_type = boost::beast::http::message<isRequest, boost::beast::http::string_body>;

  message_type& get() noexcept { return m_; }
  const message_type& get() const noexcept { return m_; }
  message_type release() noexcept { return std::move(m_); }
  // Trailer fields received and dropped.
  std::size_t trailer_fields() const noexcept { return trailers_; }

 private:
  using string_view = boost::beast::string_view;
  using error_code = boost::beast::error_code;
  using field = boost::beast::http::field;
  using verb = boost::beast::http::verb;

  void on_request_impl(verb method, string_view method_str, string_view target, int version,
                       error_code&) override {
    if constexpr (isRequest) {
      m_.target(target);
      if (method != verb::unknown)
        m_.method(method);
      else
        m_.method_string(method_str);
      m_.version(static_cast<unsigned>(version));
    }
  }
  void on_response_impl(int code, string_view reason, int version, error_code&) override {
    if constexpr (!isRequest) {
      m_.result(static_cast<unsigned>(code));
      m_.version(static_cast<unsigned>(version));
      m_.reason(reason);
    }
  }
  void on_field_impl(field name, string_view name_string, string_view value, error_code&) override {
    if (header_done_) {
      ++trailers_;  // a trailer field: never part of the header section
      return;
    }
    m_.insert(name, name_string, value);
  }
  void on_header_impl(error_code&) override { header_done_ = true; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    // Reserve what is announced, up to 1 MiB: a client announcing the body limit and sending
    // nothing then holds little (basic_parser has already refused lengths over body_limit).
    if (length)
      m_.body().reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*length, 1 << 20)));
  }
  std::size_t on_body_impl(string_view body, error_code&) override {
    m_.body().append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    m_.body().append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  message_type m_;
  std::size_t trailers_ = 0;
  bool header_done_ = false;
};

}  // namespace scale0::http_detail
