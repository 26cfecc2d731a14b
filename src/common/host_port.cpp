// SPDX-License-Identifier: Apache-2.0
#include "host_port.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>

#include <charconv>
#include <memory>

#include "scale0/error.hpp"

namespace scale0::detail {

namespace {

// An IP literal, taken as written (an IPv6 literal with a zone, fe80::1%eth0, too).
bool ip_literal(const std::string& host) noexcept {
  in6_addr buf{};
  return ::inet_pton(AF_INET, host.c_str(), &buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &buf) == 1 ||
         (host.find(':') != std::string::npos && host.find('%') != std::string::npos);
}

// The address of a host name, as text: its first IPv4 address, else its first IPv6 one (a client
// given the same name connects over IPv4: libzmq resolves names without ZMQ_IPV6); "" when it
// does not resolve. "localhost" is 127.0.0.1 whatever /etc/hosts lists first.
std::string resolve_first(const std::string& host) {
  if (host == "localhost") return "127.0.0.1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  hints.ai_family = AF_INET;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    hints.ai_family = AF_INET6;
    found = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return {};
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> hold(found, ::freeaddrinfo);
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr = found->ai_family == AF_INET6
                         ? static_cast<const void*>(
                               &reinterpret_cast<const sockaddr_in6*>(found->ai_addr)->sin6_addr)
                         : static_cast<const void*>(
                               &reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr);
  if (::inet_ntop(found->ai_family, addr, text, sizeof text) == nullptr) return {};
  return text;
}

std::string unbracket(const std::string& host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

std::string format_host_port(const std::string& ip, std::uint16_t port) {
  const bool v6 = ip.find(':') != std::string::npos;
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

std::string bind_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return endpoint;
  const std::string rest = endpoint.substr(6);
  if (rest.find(';') != std::string::npos) return endpoint;  // a source interface: libzmq's
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) return endpoint;  // libzmq says what is wrong
  const std::string host = unbracket(rest.substr(0, colon));
  if (host.empty() || host == "*" || ip_literal(host) || ::if_nametoindex(host.c_str()) != 0)
    return endpoint;
  const std::string ip = resolve_first(host);
  if (ip.empty())
    throw error(status::bad_request, "cannot resolve the host of endpoint " + endpoint);
  const bool v6 = ip.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + ip + "]" : ip) + rest.substr(colon);
}

bool ipv6_endpoint(const std::string& endpoint) noexcept {
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string rest = endpoint.substr(6);
  if (const auto semi = rest.find(';'); semi != std::string::npos) rest = rest.substr(semi + 1);
  return !rest.empty() && rest.front() == '[';
}

host_port parse_host_port(const std::string& text, const char* what) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw error(status::bad_request, std::string(what) + " must be host:port: " + text);
  host_port out;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  unsigned long port = 0;
  const auto [end, ec] = std::from_chars(first, last, port);
  if (first == last || ec != std::errc{} || end != last || port > 65535)
    throw error(status::bad_request, std::string("invalid port in ") + what + " " + text);
  out.port = static_cast<std::uint16_t>(port);
  out.host = unbracket(text.substr(0, colon));
  if (!ip_literal(out.host)) {
    std::string ip = resolve_first(out.host);
    if (ip.empty())
      throw error(status::bad_request,
                  "cannot resolve the host of " + std::string(what) + " " + text);
    out.host = std::move(ip);
  }
  return out;
}

namespace {
bool loopback_host(std::string host) noexcept {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad
  unsigned parts = 0;
  std::size_t i = 0;
  unsigned first = 0;
  while (i <= host.size()) {
    const std::size_t dot = std::min(host.find('.', i), host.size());
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(host.data() + i, host.data() + dot, v);
    if (ec != std::errc{} || end != host.data() + dot || dot == i || v > 255) return false;
    // 0127.0.0.1 is not 127.0.0.1 to the resolver (a leading zero is octal): not loopback
    if (dot - i > 1 && host[i] == '0') return false;
    if (parts == 0) first = v;
    ++parts;
    i = dot + 1;
  }
  return parts == 4 && first == 127;
}
}  // namespace

bool loopback_listen(const std::string& text) noexcept {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  return loopback_host(text.substr(0, colon));
}

bool loopback_endpoint(const std::string& endpoint) noexcept {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string rest = endpoint.substr(6);
  // tcp://iface;host:port names a source interface first; the bound address is after ';'
  if (const auto semi = rest.find(';'); semi != std::string::npos) rest = rest.substr(semi + 1);
  return loopback_listen(rest);
}

std::vector<std::string> split_endpoint_list(std::string_view list) {
  std::vector<std::string> out;
  for (;;) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty())
      throw error(status::bad_request,
                  "invalid broker endpoint list '" + std::string(list) + "': an empty endpoint");
    out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

bool wildcard_endpoint(const std::string& endpoint) noexcept {
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string rest = endpoint.substr(6);
  if (const auto semi = rest.find(';'); semi != std::string::npos) rest = rest.substr(semi + 1);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) return false;
  const std::string host = rest.substr(0, colon);
  return host == "*" || host == "0.0.0.0" || host == "::" || host == "[::]" || host == "[*]" ||
         host == "[::0]" || host == "::0";
}

}  // namespace scale0::detail
