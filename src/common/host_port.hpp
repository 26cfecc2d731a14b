// "host:port" listen addresses as operators write them ("127.0.0.1:8080", "[::1]:0",
// "localhost:9555"), split without any networking library.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace scale0::detail {

struct host_port {
  std::string host;  // an IP literal: "localhost" becomes 127.0.0.1, brackets are removed
  std::uint16_t port = 0;
};

// Throws scale0::error (400) naming `what` when `text` is not host:port.
host_port parse_host_port(const std::string& text, const char* what);

// Protected mode (docs/security.md): true when only this machine can reach it. A listen address
// host:port on 127.0.0.0/8, ::1 or localhost; a ZeroMQ endpoint that is ipc://, inproc:// or
// tcp:// on such a host. Anything else (0.0.0.0, *, an interface name, another address) is false.
bool loopback_listen(const std::string& host_port_text) noexcept;
bool loopback_endpoint(const std::string& endpoint) noexcept;

// A broker list as the libraries and the CLI take it: "tcp://a:5555,tcp://b:5555" (spaces around
// the commas are dropped). Throws scale0::error (400) on an empty list or an empty item.
std::vector<std::string> split_endpoint_list(std::string_view list);

// A tcp:// endpoint bound on every address (host `*`, 0.0.0.0, :: or [::]): where to bind, not
// where another machine can connect, so it cannot be advertised.
bool wildcard_endpoint(const std::string& endpoint) noexcept;

}  // namespace scale0::detail
