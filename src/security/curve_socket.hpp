// SPDX-License-Identifier: Apache-2.0
// Applying CURVE to a ZeroMQ socket (the libraries' client side, the broker's server side).
#pragma once

#include <zmq.hpp>

#include "scale0/security.hpp"

namespace scale0::security {

// Makes `s` a CURVE client of the broker whose public key `c` holds (before connect). An empty own
// key pair is replaced by a fresh ephemeral one.
inline void apply_curve_client(zmq::socket_t& s, const curve_client& c) {
  if (!c.enabled()) return;
  keypair own{c.public_key, c.secret_key};
  if (own.secret_key.empty()) own = generate_keypair();
  s.set(zmq::sockopt::curve_serverkey, c.server_key);
  s.set(zmq::sockopt::curve_publickey, own.public_key);
  s.set(zmq::sockopt::curve_secretkey, own.secret_key);
}

// Makes `s` a CURVE server with `secret_key` (before bind); `domain` names the endpoint in ZAP
// requests.
inline void apply_curve_server(zmq::socket_t& s, const std::string& secret_key,
                               const std::string& domain) {
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, secret_key);
  s.set(zmq::sockopt::zap_domain, domain);
}

}  // namespace scale0::security
