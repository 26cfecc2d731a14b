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

}  // namespace scale0::detail
