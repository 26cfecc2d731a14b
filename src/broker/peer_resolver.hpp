// SPDX-License-Identifier: Apache-2.0
// The configured peers (--peer) as endpoints to link to. An endpoint whose host is an IP literal
// (or an ipc:// one) is what it says, at once. A host name means every address it resolves to, and
// is resolved again every 30 s -- on a thread of its own, because getaddrinfo blocks for as long
// as DNS takes and the event loop must never wait for it. The loop polls fd() and take()s a new
// endpoint list when one is ready.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace scale0::broker_detail {

// One --peer as given, and the endpoints it stands for now.
struct configured_peer {
  std::string spec;
  std::vector<std::string> endpoints;
  std::string error;  // why its last resolution failed ("" when it did not)
};

class peer_resolver {
 public:
  // `specs`: the --peer endpoints as given (validated). `every`: how often names are resolved.
  explicit peer_resolver(std::vector<std::string> specs,
                         std::chrono::milliseconds every = std::chrono::seconds(30));
  // Tells the resolving thread to stop and returns at once: a thread inside getaddrinfo finishes it
  // on its own (it owns what it touches) and exits.
  ~peer_resolver();
  peer_resolver(const peer_resolver&) = delete;
  peer_resolver& operator=(const peer_resolver&) = delete;

  // Readable (an eventfd) when take() has something new. -1 when no spec needs resolving.
  int fd() const noexcept;
  // Every configured peer with the endpoints it stands for now, when something changed since the
  // last take. A name that fails to resolve keeps its last addresses (and says why).
  std::optional<std::vector<configured_peer>> take();

  // Resolves one tcp://HOST:PORT spec now (blocking): tcp://ADDRESS:PORT for each address, IPv6
  // ones in brackets. Throws nothing; fills `error` on failure. An IP literal or ipc:// spec is
  // returned as it is without any lookup.
  static std::vector<std::string> resolve(const std::string& spec, std::string& error);
  // True when the spec needs no lookup (ipc://, or a tcp:// host that is an IP literal).
  static bool literal(const std::string& spec);

 private:
  struct shared;
  std::shared_ptr<shared> state_;
};

}  // namespace scale0::broker_detail
