// SPDX-License-Identifier: Apache-2.0
// Mongrel2's handler protocol and its translation to the HTTP encoding (docs/http.md, "Mongrel2 as
// the front door"): parsing the messages Mongrel2 pushes, writing the ones it subscribes to, and
// the HTTP requests and responses in between. Pure functions over bytes: no sockets, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/encoding.hpp"
#include "request_rules.hpp"

namespace scale0::mongrel2_detail {

struct m2_field {
  std::string name;  // as Mongrel2 sent it: client headers lower-case, its own upper-case
  std::string value;
};

enum class m2_kind : std::uint8_t {
  http,        // an HTTP request to forward
  disconnect,  // the client went away (METHOD "JSON", body {"type":"disconnect"})
  other,       // a JSON/XML socket message or a WebSocket frame: not for an HTTP backend
};

struct m2_request {
  std::string sender;   // the server's UUID: replies are published under it
  std::string conn_id;  // the client connection's id (decimal)
  std::string path;
  std::vector<m2_field> headers;  // in the order sent; a list value becomes one field per item
  std::string body;
  m2_kind kind = m2_kind::http;

  // The value of the first field with exactly this name, or nullptr.
  const std::string* header(std::string_view name) const;
};

struct m2_limits {
  std::size_t max_message = 64u << 20;  // bytes of one Mongrel2 message
  std::size_t max_headers = 1024;       // header fields (list items count one each)
};

// Parses "UUID ID PATH SIZE:HEADERS,SIZE:BODY," (JSON headers) or "UUID ID PATH SIZE:HEADERS}
// SIZE:BODY," (tnetstring headers, handler protocol='tnetstring'). Returns "" or what is wrong;
// `out.sender` and `out.conn_id` are set as soon as they were read, so a message that is broken
// only further on can still be answered.
std::string parse_request(std::string_view message, m2_request& out, const m2_limits& limits = {});

// Reads a tnetstring dictionary payload (the bytes between "SIZE:" and "}") of string keys and
// string or list-of-strings values, appending one field per value. Returns "" or what is wrong.
std::string parse_tnetstring_headers(std::string_view dict, std::vector<m2_field>& out,
                                     std::size_t max_fields);

// A message for Mongrel2's SUB socket: "UUID SIZE:ID ID ..., payload". An empty payload tells
// Mongrel2 to close those connections.
std::string reply_message(std::string_view sender, std::string_view conn_ids,
                          std::string_view payload);

// What the client asked for: keep the connection open after this response (HTTP/1.1 unless
// "Connection: close"; HTTP/1.0 only with "Connection: keep-alive").
bool keep_alive(const m2_request& r);
bool is_head(const m2_request& r);

struct http_request {
  std::string wire;        // the HTTP request encoding
  std::string host;        // the request's host (Host, or an absolute-form target's authority)
  std::string path;        // the normalised path routes match
  std::string target;      // what the worker receives: the normalised path and the query
  std::string request_id;  // X-Request-Id sent to the worker
  bool connect = false;    // a CONNECT request (routed only by a connect=yes rule)
  unsigned status = 400;   // when refused: the HTTP status to answer
};

// What the handler believes and keeps (docs/http.md, "What the front door accepts").
struct m2_rules {
  const gateway_detail::trusted_proxies* trusted = nullptr;  // REMOTE_ADDRs whose fields are kept
  bool keep_underscores = false;
};

// Builds the HTTP request encoding of `r` (docs/http.md) under the front door's rules
// (request_rules.hpp): request line from METHOD and URI (or PATH and QUERY) with the normalised
// path, Host, the client's fields without Mongrel2's meta fields and hop-by-hop ones, the
// forwarding fields for REMOTE_ADDR, X-Request-Id (the client's when valid, else `fresh_id`).
// Returns "" or what is wrong (answer `out.status`).
std::string to_http_request(const m2_request& r, std::string_view fresh_id, const m2_rules& rules,
                            http_request& out);

// Turns a worker's encoded response into the bytes for the client: its status, reason and fields,
// with this connection's Connection, Content-Length and X-Request-Id. `head`: no body. Returns ""
// or what is wrong with the worker's reply (answer 502).
std::string client_response(std::string_view worker_wire, bool head, bool keep_alive,
                            std::string_view request_id, std::string& out);

// An answer made by the front door itself: text/plain, one line, X-Request-Id, and
// Retry-After when `retry_after_s` is not 0.
std::string error_response(unsigned status, std::string_view text, bool head, bool keep_alive,
                           std::string_view request_id, unsigned retry_after_s = 0);

// Shared with the gateway (src/http/encoding.hpp).
using http_detail::http_status_for;
using http_detail::valid_request_id;

}  // namespace scale0::mongrel2_detail
