// SPDX-License-Identifier: Apache-2.0
// What one authenticated peer may do (docs/security.md): the grant its public key has on the
// endpoint it came through. The event loop finds it from the message's ZAP User-Id; the broker core
// checks it on READY (serve) and on each request (call). No grant at all: CURVE is off, anything
// goes.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "scale0/security.hpp"

namespace scale0::broker_detail {

struct access_grant {
  std::string key;      // the Z85 public key it belongs to ("" for the `any` grant)
  bool serve = false;   // a worker key (backend): may register for `globs`
  bool call = false;    // a client key (frontend): may call `globs`
  bool any = false;     // every service (--client-keys any)
  bool status = false;  // may ask scale0.status (a listed client key, or an --admin-keys key)
  std::vector<std::string> globs;

  bool allows(std::string_view service) const noexcept {
    if (any) return true;
    for (const auto& g : globs)
      if (security::glob_match(g, service)) return true;
    return false;
  }
  bool may_serve(std::string_view service) const noexcept { return serve && allows(service); }
  bool may_call(std::string_view service) const noexcept { return call && allows(service); }
};

// Grants by public key, looked up with the string_view libzmq gives (no allocation per message).
struct key_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};
using grant_table = std::unordered_map<std::string, access_grant, key_hash, std::equal_to<>>;

// The grant a worker key has now (after a reload), or nullptr when it has none.
using grant_lookup = std::function<const access_grant*(const std::string& key)>;

}  // namespace scale0::broker_detail
