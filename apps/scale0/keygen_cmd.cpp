// SPDX-License-Identifier: Apache-2.0
// `scale0 keygen NAME`: a CURVE certificate pair in CZMQ's zcert format (docs/security.md).
#include <cstdio>

#include "commands.hpp"
#include "scale0/error.hpp"
#include "scale0/security.hpp"

namespace scale0::cli {

void add_keygen_command(CLI::App& root, int& exit_code) {
  auto name = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  CLI::App* sub = root.add_subcommand(
      "keygen", "Make a CURVE key pair: NAME (public certificate) and NAME_secret (mode 0600)");
  sub->footer(
      "Both files are in CZMQ's zcert text format (certificates made by CZMQ's tools load too);\n"
      "the public key is printed. Give NAME_secret to the program it belongs to (--curve-cert),\n"
      "and the public key (or the NAME file) to its peers. See docs/security.md.\n\n"
      "Examples:\n"
      "  scale0 keygen /etc/scale0/broker      # then: scale0 broker --curve-cert "
      "/etc/scale0/broker_secret ...\n"
      "  scale0 keygen worker-1");
  sub->add_option("NAME", *name, "Path of the public certificate; the secret one is NAME_secret")
      ->required();
  sub->add_flag("--force", *force, "Replace NAME and NAME_secret if they exist");
  sub->callback([name, force, &exit_code] {
    try {
      const security::keypair k = security::generate_keypair();
      security::save_certificate(*name, k, *force);
      std::printf("%s\n", k.public_key.c_str());
      exit_code = 0;
    } catch (const error& e) {
      std::fprintf(stderr, "scale0 keygen: %s\n", e.message().c_str());
      exit_code = 1;
    }
  });
}

}  // namespace scale0::cli
