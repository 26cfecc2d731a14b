// SPDX-License-Identifier: Apache-2.0
// HTTP through Scale0: the request and response encodings the front doors (scale0 gateway,
// scale0 mongrel2) and HTTP workers exchange as S0/1 bodies (docs/http.md), and a helper that turns
// a function of request -> response into a worker handler. Parsing is Boost.Beast's, kept inside
// the library so users of this header do not compile it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/worker.hpp"

namespace scale0::http {

struct field {
  std::string name;
  std::string value;
};

struct request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // origin form: path and query
  std::vector<field> headers;
  std::string body;

  // The first header of that name (case-insensitive), if any.
  std::optional<std::string_view> header(std::string_view name) const;
  std::string_view path() const;  // the target without its query
};

struct response {
  unsigned status = 200;
  std::string reason;  // empty: the standard reason phrase of `status`
  std::vector<field> headers;
  std::string body;

  std::optional<std::string_view> header(std::string_view name) const;
  // Replaces every header of that name (case-insensitive) with one.
  response& set(std::string_view name, std::string_view value);
};

// True for the header fields that concern one connection only (Connection, Keep-Alive,
// Transfer-Encoding, TE, Upgrade, Trailer, Proxy-Connection, Expect).
bool hop_by_hop(std::string_view name) noexcept;

// Reads an encoded request. Throws scale0::error (400) when `wire` is not one complete HTTP/1.x
// request.
request parse_request(std::string_view wire);
// Writes a request in the encoding: hop-by-hop fields dropped, one Content-Length.
std::string encode_request(const request& r);

// Reads an encoded response (Content-Length, chunked, or the rest of `wire` as the body). Throws
// scale0::error (502) when `wire` is not an HTTP/1.x response.
response parse_response(std::string_view wire);
// Writes a response in the encoding: hop-by-hop fields dropped, one Content-Length.
std::string encode_response(const response& r);

// A worker handler serving the encoding: parses each job's body as a request, calls `fn`, replies
// 200 with the encoded response. A job that is not an encoded request is answered 400; an
// exception from `fn` becomes an HTTP 500 response carrying its text.
using request_handler = std::function<response(const request&)>;
job_handler serve(request_handler fn);

}  // namespace scale0::http
