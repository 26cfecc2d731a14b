#include <iostream>
#include <iterator>

#include "commands.hpp"
#include "curve_flags.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"

namespace scale0::cli {
namespace {

struct request_args {
  std::string broker = "tcp://127.0.0.1:5555";
  long timeout_ms = 2500;
  int retries = 0;
  bool idempotent = false;
  bool verbose = false;
  std::string service;
  std::optional<std::string> body;
  curve_flags curve;
};

int run_request(request_args& a) {
  if (!a.body) a.body = std::string(std::istreambuf_iterator<char>(std::cin), {});
  try {
    client_options co;
    co.timeout = std::chrono::milliseconds(a.timeout_ms);
    co.retries = a.retries;
    co.idempotent = a.idempotent;
    co.curve = a.curve.resolve();
    client c(a.broker, co);
    std::vector<zmq::message_t> body;
    body.emplace_back(a.body->data(), a.body->size());
    const reply r = c.call(a.service, std::move(body));
    if (r.status != status::ok) {
      std::cerr << r.status << " " << r.message << "\n";
      return 1;
    }
    if (a.verbose) std::cerr << r.status << " " << r.message << "\n";
    std::cout << r.text();
    if (!r.text().empty() && r.text().back() != '\n') std::cout << "\n";
    return 0;
  } catch (const error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}

}  // namespace

void add_request_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<request_args>();
  CLI::App* sub = root.add_subcommand("request", "Send one request and print the reply");
  sub->footer(
      "Examples:\n"
      "  scale0 request echo hello\n"
      "  echo hello | scale0 request --timeout 500 --verbose echo\n"
      "  scale0 request mmi.service echo      # 200 if a worker serves 'echo', else 404");
  sub->add_option("--broker", args->broker,
                  "Broker endpoint, or a list EP[,EP...] (taken in random order; the next one "
                  "is used when a broker is lost)")
      ->capture_default_str();
  sub->add_flag("--idempotent", args->idempotent,
                "The request may run twice: if its broker is lost, send it once more through "
                "the next one (else it ends in 502)");
  args->curve.add_to(sub);
  sub->add_option("--timeout", args->timeout_ms, "Deadline (ms)")
      ->capture_default_str()
      ->check(CLI::Range(1L, 86400000L));
  sub->add_option("--retries", args->retries, "Resend on timeout this many times")
      ->check(CLI::Range(0, 100));
  sub->add_flag("--verbose,-v", args->verbose, "Print the status and message on stderr");
  sub->add_option("service", args->service, "Service name")->required();
  sub->add_option("body", args->body, "Request body (default: stdin)");
  sub->callback([args, &exit_code] { exit_code = run_request(*args); });
}

}  // namespace scale0::cli
