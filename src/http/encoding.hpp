// SPDX-License-Identifier: Apache-2.0
// Writing the HTTP encoding (docs/http.md) without Beast: the front doors build requests field by
// field from whatever they parsed (Beast messages, Mongrel2 headers), workers build responses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace scale0::http_detail {

// Field names listed in a Connection header value ("close, X-Foo"), lower-cased: they are
// hop-by-hop too.
std::vector<std::string> connection_tokens(std::string_view connection_value);

// Appends "Name: value\r\n" unless the field is hop-by-hop or listed in `dropped`.
class head_writer {
 public:
  explicit head_writer(std::string& out, std::vector<std::string> dropped = {})
      : out_(out), dropped_(std::move(dropped)) {}
  // False when the field was dropped.
  bool add(std::string_view name, std::string_view value);
  // Appends the field whatever `dropped` says: the front door's own fields.
  void put(std::string_view name, std::string_view value);
  // Appends Content-Length, the blank line and the body.
  void finish(std::string_view body);

 private:
  std::string& out_;
  std::vector<std::string> dropped_;
};

bool iequals(std::string_view a, std::string_view b) noexcept;

// The HTTP status a front door answers for a non-200 S0 reply (docs/http.md, "Status mapping at
// the front door").
unsigned http_status_for(std::uint16_t s0_status) noexcept;

// True for 1-128 visible ASCII characters: a client's X-Request-Id worth keeping.
bool valid_request_id(std::string_view id) noexcept;

}  // namespace scale0::http_detail
