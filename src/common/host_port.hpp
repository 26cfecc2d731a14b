// "host:port" listen addresses as operators write them ("127.0.0.1:8080", "[::1]:0",
// "localhost:9555"), split without any networking library.
#pragma once

#include <cstdint>
#include <string>

namespace scale0::detail {

struct host_port {
  std::string host;  // an IP literal: "localhost" becomes 127.0.0.1, brackets are removed
  std::uint16_t port = 0;
};

// Throws scale0::error (400) naming `what` when `text` is not host:port.
host_port parse_host_port(const std::string& text, const char* what);

}  // namespace scale0::detail
