// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the Mongrel2 codec (src/gateway/mongrel2_codec.cpp): arbitrary bytes as a
// message Mongrel2 pushes (parse_request, then the HTTP request built from it), as a tnetstring
// header dictionary, and as a worker's encoded HTTP response (client_response). Each must return
// "" or what is wrong, never crash, leak or throw; what it builds must hold together.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/mongrel2_codec.hpp"
#include "http/beast_codec.hpp"

namespace {

namespace m2 = scale0::mongrel2_detail;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool visible(std::string_view s) {
  for (const char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

bool digits(std::string_view s) {
  for (const char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

void request(std::string_view message) {
  m2::m2_limits limits;
  limits.max_headers = 64;
  m2::m2_request r;
  if (!m2::parse_request(message, r, limits).empty()) {
    // Whatever was read before the problem is still well-formed.
    check(visible(r.sender) && digits(r.conn_id));
    return;
  }
  check(!r.sender.empty() && visible(r.sender) && !r.conn_id.empty() && digits(r.conn_id));
  check(r.header("METHOD") != nullptr && r.headers.size() <= limits.max_headers);
  check(r.body.size() <= message.size());
  (void)m2::keep_alive(r);
  (void)m2::is_head(r);
  if (r.kind != m2::m2_kind::http) return;
  m2::http_request h;
  if (!m2::to_http_request(r, "fuzz-request-id", {}, h).empty()) return;
  check(!h.target.empty() && !h.request_id.empty());
  // What the worker gets is an HTTP request it can decode.
  scale0::http_detail::beast_request decoded;
  check(scale0::http_detail::parse_request_into(h.wire, decoded).empty());
  check(decoded.body() == r.body);
}

void tnetstring_headers(std::string_view dict) {
  std::vector<m2::m2_field> fields;
  if (m2::parse_tnetstring_headers(dict, fields, 64).empty())
    for (const auto& f : fields) check(!f.name.empty());
  check(fields.size() <= 65);
}

void worker_response(std::string_view wire) {
  for (const bool head : {false, true}) {
    std::string out;
    if (!m2::client_response(wire, head, !head, "fuzz-request-id", out).empty()) continue;
    // What the client gets is itself a well-formed response.
    scale0::http_detail::beast_response decoded;
    check(scale0::http_detail::parse_response_into(out, decoded, head).empty());
    check(decoded.result_int() >= 200 && decoded.result_int() <= 599);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  request(in);
  tnetstring_headers(in);
  worker_response(in);
  return 0;
}
