// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>

#include "commands.hpp"
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"

namespace scale0::cli {
namespace {

struct request_args {
  std::string broker = "tcp://127.0.0.1:5555";
  long timeout_ms = 2500;
  int retries = 0;
  int count = 1;
  bool idempotent = false;
  bool verbose = false;
  std::string service;
  std::optional<std::string> body;
  curve_flags curve;
};

// The body exactly as it came: to a terminal, a newline is added when it lacks one. False when
// stdout could not take it (a full disk, a closed pipe).
bool write_body(const reply& r) {
  for (const zmq::message_t& frame : r.body) std::fwrite(frame.data(), 1, frame.size(), stdout);
  if (::isatty(STDOUT_FILENO) != 0) {
    const zmq::message_t* last = nullptr;
    for (const zmq::message_t& frame : r.body)
      if (frame.size() != 0) last = &frame;
    if (last != nullptr && static_cast<const char*>(last->data())[last->size() - 1] != '\n')
      std::fputc('\n', stdout);
  }
  return std::fflush(stdout) == 0 && std::ferror(stdout) == 0;
}

// No reply came in time. Whether a broker is there at all decides what to say: a PING answered
// means the broker is up and the request was slow (504); none means nobody answered.
int no_reply(client& c, const request_args& a, std::uint16_t code, const std::string& message) {
  bool answered = false;
  try {
    answered = c.ping(std::chrono::milliseconds(std::clamp(a.timeout_ms, 200L, 1000L)));
  } catch (const error&) {  // the send queue is full: nobody is reading it
  }
  if (!answered) {
    std::cerr << "scale0 request: no answer from the broker at " << a.broker
              << " \u2014 is it running?\n";
    return exit_status::no_broker;
  }
  std::cerr << code << " " << message << "\n";
  return exit_status::of_reply(code);
}

int run_request(request_args& a) {
  if (!a.body) a.body = std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::optional<client> c;
  try {
    client_options co;
    co.timeout = std::chrono::milliseconds(a.timeout_ms);
    co.retries = a.retries;
    co.idempotent = a.idempotent;
    co.curve = a.curve.resolve();
    c.emplace(a.broker, co);
  } catch (const std::exception& e) {
    std::cerr << "scale0 request: " << e.what() << "\n";
    return exit_status::usage;
  }
  for (int i = 0; i < a.count; ++i) {
    std::uint16_t made_here = 0;  // a 504 or 502 the library made: is a broker there at all?
    std::string why;
    try {
      std::vector<zmq::message_t> body;
      body.emplace_back(a.body->data(), a.body->size());
      const reply r = c->call(a.service, std::move(body));
      if (r.status != status::ok) {
        std::cerr << r.status << " " << r.message << "\n";
        return exit_status::of_reply(r.status);
      }
      if (a.verbose) std::cerr << r.status << " " << r.message << "\n";
      if (!write_body(r)) {
        std::cerr << "scale0 request: cannot write the reply to stdout\n";
        return exit_status::failure;
      }
      // 8/MMI answers 200 with the status in the body ("404": no worker serves it); the exit
      // status follows the body, so `scale0 request mmi.service echo` is a check for scripts.
      const std::string text = r.text();
      const auto digit = [](char ch) { return ch >= '0' && ch <= '9'; };
      if (a.service.starts_with("mmi.") && text.size() == 3 &&
          std::all_of(text.begin(), text.end(), digit))
        if (const int code = exit_status::of_reply(static_cast<std::uint16_t>(std::stoi(text)));
            code != exit_status::ok)
          return code;
    } catch (const error& e) {
      // Thrown, these were made by the library: nothing came back in time, or the broker went
      // silent while holding the request.
      if (e.code() != status::deadline && e.code() != status::worker_lost) {
        std::cerr << e.code() << " " << e.message() << "\n";
        return exit_status::of_reply(e.code());
      }
      made_here = e.code();
      why = e.message();
    }
    if (made_here != 0) return no_reply(*c, a, made_here, why);
  }
  return exit_status::ok;
}

}  // namespace

void add_request_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<request_args>();
  CLI::App* sub = root.add_subcommand("request", "Send one request and print the reply");
  sub->footer(
      "Examples:\n"
      "  scale0 request echo hello\n"
      "  echo hello | scale0 request --timeout 500 --verbose echo\n"
      "  scale0 request mmi.service echo      # prints 200 if a worker serves 'echo' (exit 0),\n"
      "                                       # else 404 (exit 4)\n"
      "  scale0 request --count 3 echo hi\n\n"
      "The reply body is written to stdout byte for byte (a newline is added only on a "
      "terminal).");
  sub->add_option("--broker", args->broker,
                  "Broker endpoint, or a list EP[,EP...] (taken in random order; the next one "
                  "is used when a broker is lost)")
      ->capture_default_str();
  sub->add_flag("--idempotent", args->idempotent,
                "The request may run twice: if its broker is lost, send it once more through "
                "the next one (else it ends in 502)");
  args->curve.add_to(sub);
  sub->add_option("--timeout", args->timeout_ms, "Deadline (ms, or with a unit: 500ms, 2s)")
      ->capture_default_str()
      ->transform(milliseconds_with_unit())
      ->check(CLI::Range(1L, 86400000L));
  sub->add_option("--count", args->count,
                  "Send it this many times, one after another; stops at the first failure")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  sub->add_option("--retries", args->retries, "Resend on timeout this many times")
      ->check(CLI::Range(0, 100));
  sub->add_flag("--verbose,-v", args->verbose, "Print the status and message on stderr");
  sub->add_option("service", args->service, "Service name")->required();
  sub->add_option("body", args->body, "Request body (default: stdin)");
  sub->callback([args, &exit_code] { exit_code = run_request(*args); });
}

}  // namespace scale0::cli
