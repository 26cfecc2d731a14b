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
};

// Parses "host=...,prefix=...,service=...,timeout=...,name=..." (the `index` names unnamed rules
// without a service). Throws scale0::error (400) saying what is wrong.
route parse_route(std::string_view rule, std::size_t index);

struct route_choice {
  std::string service;  // empty: no usable service (answer 400)
  std::chrono::milliseconds timeout{0};
  std::string_view label;  // metrics label: a rule's name, or "host"
  std::string problem;     // why there is no service
};

class router {
 public:
  router() = default;
  router(std::vector<route> routes, std::string default_service);
  // `host` is the Host header as received (may hold a port, may be empty); `target` the request
  // target (path and query).
  route_choice choose(std::string_view host, std::string_view target) const;
  const std::vector<route>& routes() const noexcept { return routes_; }

 private:
  std::vector<route> routes_;
  std::string default_service_;
};

// The host part of a Host header value, lower-cased, without port ("[::1]:80" -> "[::1]").
std::string host_without_port(std::string_view host);

}  // namespace scale0::gateway_detail
