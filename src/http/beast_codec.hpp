// SPDX-License-Identifier: Apache-2.0
// Beast-typed halves of the HTTP encoding, for the translation units that already use Beast (the
// gateway, the HTTP sidecar). Everyone else goes through scale0/http.hpp.
#pragma once

#include <boost/beast/http.hpp>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including <utility>
#include <vector>

#include "encoding.hpp"

namespace scale0::http_detail {

using beast_request = boost::beast::http::request<boost::beast::http::string_body>;
using beast_response = boost::beast::http::response<boost::beast::http::string_body>;

// What is wrong with a parsed response's status line or framing ("" when nothing): a status
// outside 100-599; any Transfer-Encoding but
// `chunked` alone (and read as chunked by the parser: `chunked`), or one in an HTTP/1.0
// response, is refused (only chunked is ever decoded).
std::string framing_problem(const beast_response& m, bool chunked);

// Parses an encoded response into `out` (hop-by-hop fields removed); `to_head`: it answers a HEAD
// request, so it has no body whatever its Content-Length says. Returns "" or what is wrong.
std::string parse_response_into(std::string_view wire, beast_response& out, bool to_head);

// The field names listed in every Connection field of `fields`, lower-cased (hop-by-hop too).
template <class Fields>
std::vector<std::string> connection_listed(const Fields& fields) {
  std::vector<std::string> out;
  const auto [first, last] = fields.equal_range(boost::beast::http::field::connection);
  for (auto it = first; it != last; ++it) {
    auto tokens = connection_tokens(std::string_view(it->value().data(), it->value().size()));
    out.insert(out.end(), tokens.begin(), tokens.end());
  }
  return out;
}

// An app's response (as the sidecar read it) in the response encoding: status, reason, the
// end-to-end fields, one Content-Length and the body. Without a body (HEAD, 1xx, 204, 304) the
// app's own Content-Length, if any, is kept: it describes the body a GET would get.
std::string encode_app_response(const beast_response& m, bool head);

// Parses an encoded request into `out`. Returns "" or what is wrong.
std::string parse_request_into(std::string_view wire, beast_request& out);

}  // namespace scale0::http_detail
