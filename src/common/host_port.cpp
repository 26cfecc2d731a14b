#include "host_port.hpp"

#include <charconv>

#include "scale0/error.hpp"

namespace scale0::detail {

host_port parse_host_port(const std::string& text, const char* what) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw error(status::bad_request, std::string(what) + " must be host:port: " + text);
  host_port out;
  out.host = text.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  if (out.host == "localhost") out.host = "127.0.0.1";
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  unsigned long port = 0;
  const auto [end, ec] = std::from_chars(first, last, port);
  if (first == last || ec != std::errc{} || end != last || port > 65535)
    throw error(status::bad_request, std::string("invalid port in ") + what + " " + text);
  out.port = static_cast<std::uint16_t>(port);
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
