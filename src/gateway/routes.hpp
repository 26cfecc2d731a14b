// SPDX-License-Identifier: Apache-2.0
// Route rules of the HTTP front doors (docs/http.md, "Choosing the service"): pure data and
// matching, no I/O, shared by `scale0 gateway` and `scale0 mongrel2`.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace scale0::gateway_detail {

struct route {
  std::string host;     // lower-case; "" matches any host; "*.example.com": any subdomain
  std::string prefix;   // "" matches any path
  std::string service;  // "" : the request's host
  std::chrono::milliseconds timeout{0};  // 0: the front door's default
  std::string name;                      // metrics label
  bool connect = false;                  // matches CONNECT requests (and only those)
};

// Parses "host=...,prefix=...,service=...,timeout=...,name=..." (the `index` names unnamed rules
// without a service). Throws scale0::error (400) saying what is wrong.
route parse_route(std::string_view rule, std::size_t index);

struct route_choice {
  std::string service;  // empty: no usable service (answer 400)
  std::chrono::milliseconds timeout{0};
  std::string_view label;        // metrics label: a rule's name, or "host"
  std::string problem;           // why there is no service
  bool connect_refused = false;  // a CONNECT no route allows: 405
};

class router {
 public:
  router() = default;
  router(std::vector<route> routes, std::string default_service);
  // `host` is the request's host as received (may hold a port, may be empty); `path` its
  // normalised path (request_rules.hpp); `connect`: a CONNECT request, which only a rule with
  // connect=yes and no prefix takes.
  route_choice choose(std::string_view host, std::string_view path, bool connect = false) const;
  const std::vector<route>& routes() const noexcept { return routes_; }

 private:
  std::vector<route> routes_;
  std::string default_service_;
};

// The host part of a Host header value, lower-cased, without port ("[::1]:80" -> "[::1]").
std::string host_without_port(std::string_view host);

}  // namespace scale0::gateway_detail
