// SPDX-License-Identifier: Apache-2.0
// "host:port" listen addresses as operators write them ("127.0.0.1:8080", "[::1]:0",
// "localhost:9555"), split without any networking library.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace scale0::detail {

struct host_port {
  // An IP literal, brackets removed: "localhost" becomes 127.0.0.1, another host name its first
  // address (getaddrinfo).
  std::string host;
  std::uint16_t port = 0;
};

// Throws scale0::error (400) naming `what` when `text` is not host:port, or its host name does
// not resolve.
host_port parse_host_port(const std::string& text, const char* what);

// "127.0.0.1:9555", "[::1]:9555": an address and port as printed and as parse_host_port takes it.
std::string format_host_port(const std::string& ip, std::uint16_t port);

// Where to bind a ZeroMQ endpoint. A tcp:// host that is a name (not `*`, an IP literal or a
// network interface, which libzmq takes as they are) becomes its first address:
// "tcp://localhost:5555" -> "tcp://127.0.0.1:5555". Other endpoints are returned as they are.
// Throws scale0::error (400) when the name does not resolve.
std::string bind_endpoint(const std::string& endpoint);

// A tcp:// endpoint whose host is an IPv6 literal ("tcp://[::1]:5555"): its socket needs
// ZMQ_IPV6 to bind or connect.
bool ipv6_endpoint(const std::string& endpoint) noexcept;

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
