// SPDX-License-Identifier: Apache-2.0
// What the HTTP front doors accept and what they pass on (docs/http.md, "What the front door
// accepts"): the framing fields, Host, the request-target and its normal form, the forwarding
// fields, and the request encoding written from all of that. Pure functions over field views, no
// I/O: `scale0 gateway` (fields from Beast) and `scale0 mongrel2` (fields from Mongrel2) share
// them, and the fuzz target drives them directly.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace scale0::gateway_detail {

struct field_ref {
  std::string_view name;
  std::string_view value;
};

// An HTTP status to answer and why; status 0: accepted. Every refusal here is made on the head
// alone, so the connection is closed after it (the body, if any, was not read in step).
struct refusal {
  unsigned status = 0;
  std::string problem;
  explicit operator bool() const noexcept { return status != 0; }
};

// The Transfer-Encoding fields of a request (RFC 9112 §6.1, §6.3): none, or together exactly
// `chunked`. `chunked` is set when the body is chunked. HTTP/1.0 with the field: 400; a final
// coding other than chunked: 400; chunked twice: 400; another coding before chunked: 501.
refusal check_transfer_encoding(std::span<const field_ref> fields, unsigned version, bool& chunked);

// Whether the client asks to keep the connection: the tokens of every Connection field count;
// HTTP/1.1 unless one says `close`, HTTP/1.0 only when one says `keep-alive` and none `close`.
bool keep_alive(std::span<const field_ref> fields, unsigned version);

// Expect: only `100-continue` (417 otherwise); `wants_continue` when it was asked for.
refusal check_expect(std::span<const field_ref> fields, bool& wants_continue);

// True for uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2) without percent-escapes; "" too.
bool valid_host(std::string_view host) noexcept;

// The path with percent-encoded unreserved characters decoded, other escapes in upper-case hex,
// bytes that are not pchars escaped, dot-segments removed (RFC 3986 §5.2.4) and runs of '/'
// merged. Returns "" or what is wrong: a '%' not followed by two hex digits, an encoded '/', '\'
// or NUL, a raw '\', a dot segment with parameters ("..;x"). `path` starts with '/'.
std::string_view normalise_path(std::string_view path, std::string& out);

enum class target_form { origin, absolute, asterisk, authority };

// Where a request goes and what the worker is told: the result of reading Host and the target.
struct request_target {
  target_form form = target_form::origin;
  std::string host;  // the authority used for routing and sent as Host ("" none)
  bool has_host = false;
  std::string path;    // the normalised path routes match ("*" or the authority for CONNECT)
  std::string target;  // what the worker receives: path + query as sent, "*", or host:port
  bool wants_continue = false;  // Expect: 100-continue (set by admit_head)
};

// Reads Host (exactly one in HTTP/1.1, at most one in 1.0, each valid) and the request-target
// (origin-form, absolute-form with an http(s) authority, `*` for OPTIONS, authority-form for
// CONNECT) into `out`.
refusal read_target(std::string_view method, std::string_view target, unsigned version,
                    std::span<const field_ref> fields, request_target& out);

// Everything a front door decides on a request's head, in this order: the framing fields, Expect,
// Host and the target. `parser_chunked`: whether the HTTP parser reads the body as chunked (the
// gateway's Beast parser), which must agree with what the rules make of Transfer-Encoding; nullopt
// when the request arrives de-framed (Mongrel2).
refusal admit_head(std::string_view method, std::string_view target, unsigned version,
                   std::span<const field_ref> fields, std::optional<bool> parser_chunked,
                   request_target& out);

// Peers whose forwarding fields are believed (--trusted-proxies "10.0.0.0/8,::1/128,127.0.0.1").
class trusted_proxies {
 public:
  trusted_proxies() = default;
  // Throws scale0::error (400) naming the bad entry.
  explicit trusted_proxies(std::string_view list);
  bool contains(std::string_view address) const noexcept;
  bool empty() const noexcept { return nets_.empty(); }

 private:
  struct net {
    std::array<std::uint8_t, 16> bytes{};
    unsigned bits = 0;
    bool v6 = false;
  };
  std::vector<net> nets_;
};

struct encode_options {
  std::string_view peer;  // the client's address as text
  bool trusted = false;   // the peer is a trusted proxy: its forwarding fields are kept
  bool keep_underscores = false;
  std::string_view scheme = "http";
  std::string_view request_id;
};

// True when a field of this name never reaches the worker from the client as is: hop-by-hop, the
// framing, the request id and the forwarding fields (which the front door writes itself).
bool front_door_field(std::string_view name) noexcept;

// Writes the request encoding (docs/http.md) into `wire`: request line with the normal target,
// Host, the client's other fields in order (without hop-by-hop ones, those named in Connection,
// names with '_' unless kept, and the forwarding fields, which are replaced or, from a trusted
// proxy, extended), the front door's own fields, one Content-Length and the body.
void encode_request(std::string_view method, const request_target& t,
                    std::span<const field_ref> fields, std::string_view body,
                    const encode_options& o, std::string& wire);

}  // namespace scale0::gateway_detail
