// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the gateway's request path: arbitrary bytes as what a client sends. They go
// through the parser the gateway uses (trailers kept out of the header section), the front door's
// rules on the head (request_rules.hpp: framing, Expect, Host, target) and, when admitted and
// complete, the request encoding. Invariants: a refusal is 400, 417, 501 or 505; an admitted
// request's encoding re-parses to exactly one request with the same method, the normalised target
// and the same body, one Host (when the request had a host), one Content-Length, no
// Transfer-Encoding; and the normal form is a fixed point (admitting the encoding again changes
// nothing).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/request_rules.hpp"
#include "http/beast_codec.hpp"
#include "http/message_parser.hpp"

namespace {

namespace bhttp = boost::beast::http;
namespace gd = scale0::gateway_detail;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

template <class Message>
std::vector<gd::field_ref> fields_of(const Message& m) {
  std::vector<gd::field_ref> out;
  for (const auto& f : m) out.push_back({sv(f.name_string()), sv(f.value())});
  return out;
}

// Feeds `in` as the gateway does: the head (at most 16 KiB), then the body (at most 64 KiB).
// Returns how far it got: 0 nothing usable, 1 the head, 2 the whole request.
int feed(scale0::http_detail::message_parser<true>& p, std::string_view in, bool& admitted,
         gd::request_target& t) {
  p.header_limit(16384);
  p.body_limit(65536);
  p.eager(false);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (!p.is_header_done()) {
    const std::size_t n = p.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
    if (ec == bhttp::error::need_more && n == 0) return 0;
    if (ec && ec != bhttp::error::need_more) return 0;
    used += n;
  }
  const auto& req = p.get();
  const auto fields = fields_of(req);
  const gd::refusal r = gd::admit_head(sv(req.method_string()), sv(req.target()), req.version(),
                                       fields, p.chunked(), t);
  if (r) {
    check(r.status == 400 || r.status == 417 || r.status == 501 || r.status == 505);
    check(!r.problem.empty());
    return 1;
  }
  admitted = true;
  p.eager(true);
  while (!p.is_done() && used < in.size()) {
    const std::size_t n = p.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
    if (ec == bhttp::error::need_more) {
      ec = {};
      if (n == 0) break;
    }
    if (ec) return 1;
    used += n;
  }
  return p.is_done() ? 2 : 1;
}

void request(std::string_view in) {
  scale0::http_detail::message_parser<true> p;
  gd::request_target t;
  bool admitted = false;
  if (feed(p, in, admitted, t) != 2 || !admitted) return;
  const auto& req = p.get();
  const auto fields = fields_of(req);
  for (const auto& f : fields) check(!f.name.empty());

  gd::encode_options o;
  o.peer = "192.0.2.1";
  o.request_id = "fuzz";
  std::string wire;
  gd::encode_request(sv(req.method_string()), t, fields, req.body(), o, wire);

  scale0::http_detail::beast_request d;
  check(scale0::http_detail::parse_request_into(wire, d).empty());
  check(sv(d.method_string()) == sv(req.method_string()));
  check(sv(d.target()) == t.target);
  check(d.body() == req.body());
  std::size_t hosts = 0, lengths = 0, codings = 0;
  for (const auto& f : d) {
    hosts += f.name() == bhttp::field::host;
    lengths += f.name() == bhttp::field::content_length;
    codings += f.name() == bhttp::field::transfer_encoding;
  }
  check(hosts == (t.has_host ? 1u : 0u));
  check(lengths == 1 && codings == 0);

  // The encoding is itself a request the front door admits, to the same place.
  if (!t.has_host) return;
  const auto again = fields_of(d);
  gd::request_target t2;
  check(!gd::admit_head(sv(d.method_string()), sv(d.target()), 11, again, false, t2));
  check(t2.target == t.target && t2.path == t.path && t2.host == t.host);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  request(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
