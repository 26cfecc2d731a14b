// SPDX-License-Identifier: Apache-2.0
// The CURVE flags every subcommand that connects to a broker takes (docs/security.md).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "scale0/security.hpp"

namespace scale0::cli {

struct curve_flags {
  std::string server_key;  // the broker's public key: Z85 or a certificate file
  std::string cert;        // own secret certificate; absent: an ephemeral key pair

  void add_to(CLI::App* sub) {
    sub->add_option("--curve-server-key", server_key,
                    "The broker's CURVE public key (Z85, or its certificate file); given, the "
                    "connection to the broker is encrypted with CURVE");
    sub->add_option("--curve-cert", cert,
                    "Own secret CURVE certificate (scale0 keygen); default: an ephemeral key");
  }
  // Throws scale0::error (400) naming what is wrong.
  security::curve_client resolve() const { return security::curve_client_from(server_key, cert); }
};

}  // namespace scale0::cli
