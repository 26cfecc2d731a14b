// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the sidecar's response path: arbitrary bytes as what an HTTP app answers.
// They are read with the parser the sidecar uses (trailers dropped, framing other than `chunked`
// alone refused) and turned into the response encoding the worker sends (encode_app_response);
// the encoding must re-parse to one response with the same status and body, one Content-Length
// (unless bodiless), no Transfer-Encoding and none of the app's trailer fields; then what the
// front door writes to the client (Mongrel2's client_response, the same fields as the gateway's)
// must parse as one response too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/mongrel2_codec.hpp"
#include "http/beast_codec.hpp"

namespace {

namespace bhttp = boost::beast::http;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void response(std::string_view in) {
  for (const bool head : {false, true}) {
    scale0::http_detail::beast_response m;
    if (!scale0::http_detail::parse_response_into(in, m, head).empty()) continue;
    const unsigned code = m.result_int();
    const std::string wire = scale0::http_detail::encode_app_response(m, head);

    scale0::http_detail::beast_response d;
    check(scale0::http_detail::parse_response_into(wire, d, head).empty());
    check(d.result_int() == code);
    const bool bodyless = head || code < 200 || code == 204 || code == 304;
    if (!bodyless) check(d.body() == m.body());
    std::size_t codings = 0, lengths = 0;
    for (const auto& f : d) {
      codings += f.name() == bhttp::field::transfer_encoding;
      lengths += f.name() == bhttp::field::content_length;
    }
    check(codings == 0);
    if (!bodyless) check(lengths == 1);
    // Only fields of the app's header section reach the encoding (trailers never do).
    check(d.base().begin() == d.base().end() ||
          std::distance(d.base().begin(), d.base().end()) <=
              std::distance(m.base().begin(), m.base().end()) + 1);

    if (code < 200) continue;  // the front door answers 502 to an interim status
    std::string out;
    if (!scale0::mongrel2_detail::client_response(wire, head, true, "fuzz", out).empty()) continue;
    scale0::http_detail::beast_response c;
    check(scale0::http_detail::parse_response_into(out, c, head).empty());
    check(c.result_int() == code);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  response(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
