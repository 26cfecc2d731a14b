// Beast-typed halves of the HTTP encoding, for the translation units that already use Beast (the
// gateway, the HTTP sidecar). Everyone else goes through scale0/http.hpp.
#pragma once

#include <boost/beast/http.hpp>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including <utility>

namespace scale0::http_detail {

using beast_request = boost::beast::http::request<boost::beast::http::string_body>;
using beast_response = boost::beast::http::response<boost::beast::http::string_body>;

// Parses an encoded response into `out` (hop-by-hop fields removed); `to_head`: it answers a HEAD
// request, so it has no body whatever its Content-Length says. Returns "" or what is wrong.
std::string parse_response_into(std::string_view wire, beast_response& out, bool to_head);

// Parses an encoded request into `out`. Returns "" or what is wrong.
std::string parse_request_into(std::string_view wire, beast_request& out);

}  // namespace scale0::http_detail
