// SPDX-License-Identifier: Apache-2.0
// A downstream program: one request through a broker with the installed libscale0.
//   downstream <frontend> <service> <body>   prints the reply body; exit 0 on 200
#include <chrono>
#include <cstdio>
#include <scale0/client.hpp>
#include <scale0/error.hpp>
#include <scale0/version.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: downstream <frontend> <service> <body>\n");
    return 2;
  }
  std::fprintf(stderr, "libscale0 %s (commit %s)\n", std::string(scale0::version()).c_str(),
               std::string(scale0::commit()).c_str());
  try {
    scale0::client c(argv[1]);
    const std::string body = c.request(argv[2], argv[3], std::chrono::milliseconds(5000));
    std::printf("%s\n", body.c_str());
    return 0;
  } catch (const scale0::error& e) {
    std::fprintf(stderr, "%u %s\n", static_cast<unsigned>(e.code()), e.message().c_str());
    return 1;
  }
}
