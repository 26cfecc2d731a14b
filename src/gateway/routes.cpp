// SPDX-License-Identifier: Apache-2.0
#include "routes.hpp"

#include <cctype>
#include <charconv>

#include "request_rules.hpp"
#include "scale0/error.hpp"

namespace scale0::gateway_detail {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool host_matches(const std::string& pattern, std::string_view host) {
  if (pattern.empty() || pattern == "*") return true;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
  }
  return host == pattern;
}

bool prefix_matches(const std::string& prefix, std::string_view path) {
  if (prefix.empty()) return true;
  if (path.substr(0, prefix.size()) != prefix) return false;
  // "/api" matches "/api", "/api/x", "/api;v=1" (path parameters, which some servers strip), not
  // "/apix"; a prefix ending in '/' matches what follows.
  return path.size() == prefix.size() || prefix.back() == '/' || path[prefix.size()] == '/' ||
         path[prefix.size()] == ';';
}

// mmi.* and scale0.* are answered by the broker itself (docs/protocol.md), never by an HTTP worker:
// a Host header must not reach them.
bool reserved_service(std::string_view s) {
  const auto starts = [s](std::string_view p) { return s.substr(0, p.size()) == p; };
  return starts("mmi.") || starts("scale0.");
}

bool valid_service(std::string_view s) {
  return !s.empty() && s.size() <= 255 && !reserved_service(s);
}

}  // namespace

std::string host_without_port(std::string_view host) {
  host = trim(host);
  if (!host.empty() && host.front() == '[') {  // IPv6 literal
    const auto end = host.find(']');
    return lower(end == std::string_view::npos ? host : host.substr(0, end + 1));
  }
  host = host.substr(0, host.find(':'));
  // "example.com." is the fully qualified spelling of "example.com": one trailing dot goes.
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return lower(host);
}

route parse_route(std::string_view rule, std::size_t index) {
  route r;
  bool has_host = false;
  bool has_prefix = false;
  std::size_t i = 0;
  const std::string where = "route '" + std::string(rule) + "': ";
  while (i <= rule.size()) {
    const std::size_t comma = std::min(rule.find(',', i), rule.size());
    const std::string_view item = trim(rule.substr(i, comma - i));
    i = comma + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      throw error(status::bad_request,
                  where + "expected key=value, got '" + std::string(item) + "'");
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view value = trim(item.substr(eq + 1));
    if (key == "host") {
      r.host = lower(value);
      has_host = true;
    } else if (key == "prefix") {
      if (value.empty() || value.front() != '/')
        throw error(status::bad_request, where + "prefix must start with '/'");
      // Requests are routed by their normalised path: the prefix is put in the same form.
      if (const std::string_view problem = normalise_path(value, r.prefix); !problem.empty())
        throw error(status::bad_request, where + "prefix: " + std::string(problem));
      has_prefix = true;
    } else if (key == "connect") {
      if (value != "yes" && value != "no")
        throw error(status::bad_request, where + "connect must be yes or no");
      r.connect = value == "yes";
    } else if (key == "service") {
      if (reserved_service(value))
        throw error(status::bad_request,
                    where + "service names starting with mmi. or scale0. are reserved");
      if (!valid_service(value))
        throw error(status::bad_request, where + "service must be 1-255 bytes");
      r.service = std::string(value);
    } else if (key == "timeout") {
      long ms = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec != std::errc{} || end != value.data() + value.size() || ms <= 0 || ms > 3600000)
        throw error(status::bad_request, where + "timeout must be 1-3600000 ms");
      r.timeout = std::chrono::milliseconds(ms);
    } else if (key == "name") {
      if (value.empty()) throw error(status::bad_request, where + "empty name");
      r.name = std::string(value);
    } else {
      throw error(status::bad_request, where + "unknown key '" + std::string(key) +
                                           "' (host, prefix, service, timeout, name, connect)");
    }
  }
  if (!has_host && !has_prefix)
    throw error(status::bad_request, where + "give host= or prefix= (or both)");
  if (r.connect && has_prefix)
    throw error(status::bad_request,
                where + "a connect=yes rule has no prefix (CONNECT has no path)");
  if (r.name.empty()) r.name = r.service.empty() ? "route" + std::to_string(index) : r.service;
  return r;
}

router::router(std::vector<route> routes, std::string default_service)
    : routes_(std::move(routes)), default_service_(std::move(default_service)) {}

route_choice router::choose(std::string_view host_header, std::string_view path,
                            bool connect) const {
  const std::string host = host_without_port(host_header);
  path = path.substr(0, path.find('?'));
  route_choice c;
  const route* hit = nullptr;
  for (const auto& r : routes_)
    if (r.connect == connect && host_matches(r.host, host) &&
        (connect ? r.prefix.empty() : prefix_matches(r.prefix, path))) {
      hit = &r;
      break;
    }
  if (connect && hit == nullptr) {
    c.label = "none";
    c.problem = "CONNECT is not allowed here";
    c.connect_refused = true;
    return c;
  }
  if (hit != nullptr) {
    c.label = hit->name;
    c.timeout = hit->timeout;
    c.service = hit->service;
  } else {
    c.label = "host";
  }
  if (c.service.empty()) c.service = host.empty() ? default_service_ : host;
  if (c.service.empty()) {
    c.problem = "the request names no host and there is no default service";
  } else if (!valid_service(c.service)) {
    c.problem = "the host is not a valid service name";
    c.service.clear();
  }
  return c;
}

}  // namespace scale0::gateway_detail
