// SPDX-License-Identifier: Apache-2.0
// The HTTP sidecar (`scale0 worker --http URL`, docs/http.md): a worker handler that forwards each
// encoded request to an existing HTTP/1.1 application over a pool of keep-alive connections, and
// a health probe for that application. Boost.Beast stays inside the library.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "scale0/worker.hpp"

namespace scale0::http {

// Where the application listens: http://host[:port][/base-path].
struct app_url {
  std::string host;  // a name or an address; IPv6 without brackets
  std::uint16_t port = 80;
  std::string base_path;  // "" or "/base" (no trailing '/'): prefixed to every request target
  std::string authority() const;  // "host:port", IPv6 in brackets: the Host of probes
  std::string text() const;       // back as a URL, for logs
};

// Throws scale0::error (400) saying what is wrong: only http://host[:port][/base-path] is accepted
// (no https, user info, query or fragment).
app_url parse_app_url(std::string_view url);

struct forward_options {
  std::string url;  // http://host[:port][/base-path]
  // Per request, the job's time left before the client's deadline; this when a job has none.
  std::chrono::milliseconds default_timeout{30000};
  std::size_t max_response_body = 8u << 20;  // larger app responses are answered 502
  std::size_t max_response_header = 64u << 10;
  // Called on the handler's thread when a request found the application unreachable (connect
  // refused, reset, closed: answered 502; no answer before the deadline: answered 504).
  std::function<void(const std::string&)> on_app_error;
};

// The handler: parses the job as an encoded request (400 if it is not one), sends it to the app
// (target prefixed with the base path, hop-by-hop fields dropped, Host as the client sent it), and
// replies 200 with the app's response in the encoding (de-chunked, hop-by-hop fields dropped).
// The app unreachable or answering something that is not HTTP: a 502 reply with a message; no
// answer before the job's deadline: 504 (the broker answers the client 504 then anyway). Safe to
// call from any number of threads: each call uses its own connection from the pool. A pooled
// connection the app has closed is replaced before use; one it closes under an idempotent request
// (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) before any byte of a response is retried once on a new
// connection. Throws scale0::error (400) for a bad URL.
job_handler make_http_forwarder(forward_options options);

struct probe_options {
  std::string url;  // as for the forwarder
  std::string
      health_path;  // "": a TCP connect is the probe; "/path": GET it, 2xx or 3xx is healthy
  std::chrono::milliseconds timeout{1000};
};

// One health probe: "" when the app answers, otherwise what went wrong. Throws scale0::error (400)
// for a bad URL.
std::string probe_app(const probe_options& options);

}  // namespace scale0::http
