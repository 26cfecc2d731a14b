// SPDX-License-Identifier: Apache-2.0
#include "request_rules.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "http/encoding.hpp"
#include "scale0/error.hpp"
#include "scale0/http.hpp"

namespace scale0::gateway_detail {
namespace {

using http_detail::iequals;

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_tchar(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return std::string_view("\"(),/:;<=>?@[\\]{}").find(c) == std::string_view::npos;
}

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

bool is_unreserved(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool is_sub_delim(char c) noexcept {
  return std::string_view("!$&'()*+,;=").find(c) != std::string_view::npos;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Calls fn(member) for each non-empty member of a comma-separated list (RFC 9110 §5.6.1).
template <class Fn>
void for_each_member(std::string_view value, Fn&& fn) {
  std::size_t i = 0;
  while (i <= value.size()) {
    const std::size_t comma = std::min(value.find(',', i), value.size());
    const std::string_view member = trim_ows(value.substr(i, comma - i));
    if (!member.empty()) fn(member);
    i = comma + 1;
  }
}

bool valid_port(std::string_view p) noexcept {
  if (p.size() > 5) return false;
  for (const char c : p)
    if (c < '0' || c > '9') return false;
  return true;
}

bool valid_reg_name(std::string_view s) noexcept {
  for (const char c : s)
    if (!is_unreserved(c) && !is_sub_delim(c)) return false;
  return true;
}

bool valid_ip_literal(std::string_view s) noexcept {  // between the brackets
  if (s.empty()) return false;
  if (s.front() == 'v' || s.front() == 'V') {  // IPvFuture: "v" 1*HEXDIG "." 1*( ... )
    const auto dot = s.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == s.size()) return false;
    for (std::size_t i = 1; i < dot; ++i)
      if (hex_value(s[i]) < 0) return false;
    for (const char c : s.substr(dot + 1))
      if (!is_unreserved(c) && !is_sub_delim(c) && c != ':') return false;
    return true;
  }
  in6_addr a{};
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// The request-target's authority for absolute-form: "http://host:port/path?q" -> "host:port",
// and `rest` the path and query. False when the scheme is not http(s) or the form is broken.
bool split_absolute(std::string_view target, std::string_view& authority, std::string_view& rest) {
  const auto colon = target.find("://");
  if (colon == std::string_view::npos) return false;
  const std::string_view scheme = target.substr(0, colon);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return false;
  const std::string_view after = target.substr(colon + 3);
  const auto end = std::min(after.find_first_of("/?#"), after.size());
  authority = after.substr(0, end);
  rest = after.substr(end);
  return true;
}

void append_forwarded_for(std::string& out, std::string_view peer) {
  const bool v6 = peer.find(':') != std::string_view::npos;
  out.append("for=");
  if (v6)
    out.append("\"[").append(peer).append("]\"");
  else
    out.append(peer);
}

}  // namespace

refusal check_transfer_encoding(std::span<const field_ref> fields, unsigned version,
                                bool& chunked) {
  chunked = false;
  bool present = false;
  std::size_t chunked_count = 0;
  bool other_coding = false;
  bool bad_coding = false;
  std::string_view last;
  for (const auto& f : fields) {
    if (!iequals(f.name, "transfer-encoding")) continue;
    present = true;
    for_each_member(f.value, [&](std::string_view member) {
      // A coding is a token, optionally with parameters (RFC 9110 §10.1.4).
      const std::string_view name = trim_ows(member.substr(0, member.find(';')));
      if (!is_token(name)) bad_coding = true;
      if (iequals(name, "chunked") && name.size() == member.size())
        ++chunked_count;
      else
        other_coding = true;
      last = member;
    });
  }
  if (!present) return {};
  if (version < 11) return {400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)"};
  if (last.empty() || !iequals(last, "chunked") || bad_coding)
    return {400, "the final transfer coding is not chunked (RFC 9112 §6.3)"};
  if (chunked_count > 1) return {400, "chunked applied more than once (RFC 9112 §6.1)"};
  if (other_coding) return {501, "transfer codings other than chunked are not implemented"};
  chunked = true;
  return {};
}

bool keep_alive(std::span<const field_ref> fields, unsigned version) {
  bool close = false;
  bool keep = false;
  for (const auto& f : fields) {
    if (!iequals(f.name, "connection")) continue;
    for_each_member(f.value, [&](std::string_view token) {
      close = close || iequals(token, "close");
      keep = keep || iequals(token, "keep-alive");
    });
  }
  if (close) return false;
  return version >= 11 || keep;
}

refusal check_expect(std::span<const field_ref> fields, bool& wants_continue) {
  wants_continue = false;
  for (const auto& f : fields) {
    if (!iequals(f.name, "expect")) continue;
    bool fine = true;
    bool any = false;
    for_each_member(f.value, [&](std::string_view member) {
      any = true;
      fine = fine && iequals(member, "100-continue");
    });
    if (!fine || !any) return {417, "only Expect: 100-continue is understood"};
    wants_continue = true;
  }
  return {};
}

bool valid_host(std::string_view host) noexcept {
  if (host.empty()) return true;
  std::string_view port;
  if (host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos || !valid_ip_literal(host.substr(1, close - 1)))
      return false;
    const std::string_view after = host.substr(close + 1);
    if (after.empty()) return true;
    if (after.front() != ':') return false;
    port = after.substr(1);
  } else {
    const auto colon = host.find(':');
    const std::string_view name = host.substr(0, colon);
    if (name.empty() || !valid_reg_name(name)) return false;
    if (colon != std::string_view::npos) port = host.substr(colon + 1);
  }
  return valid_port(port);
}

std::string_view normalise_path(std::string_view path, std::string& out) {
  // First the bytes: percent-encoded unreserved characters decoded, other escapes kept in
  // upper-case hex, and every byte that is not a pchar or '/' ('"', '{', a byte of UTF-8, ...)
  // escaped, so that raw and escaped spellings meet.
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string decoded;
  decoded.reserve(path.size());
  auto escape = [&decoded](unsigned char c) {
    decoded.push_back('%');
    decoded.push_back(digits[c >> 4]);
    decoded.push_back(digits[c & 15]);
  };
  for (std::size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c != '%') {
      if (c == '\\') return "a '\\' in the path (a separator to some servers, not to others)";
      if (is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '/')
        decoded.push_back(c);
      else
        escape(static_cast<unsigned char>(c));
      continue;
    }
    if (i + 2 >= path.size()) return "a '%' in the path is not followed by two hex digits";
    const int hi = hex_value(path[i + 1]);
    const int lo = hex_value(path[i + 2]);
    if (hi < 0 || lo < 0) return "a '%' in the path is not followed by two hex digits";
    const auto byte = static_cast<unsigned char>(hi * 16 + lo);
    // Workers disagree on these: some decode before they split or compare, some stop at NUL.
    if (byte == '/' || byte == '\\' || byte == 0) return "an encoded '/', '\\' or NUL in the path";
    if (is_unreserved(static_cast<char>(byte)))
      decoded.push_back(static_cast<char>(byte));
    else
      escape(byte);
    i += 2;
  }
  // Then the segments: empty ones and "." vanish, ".." removes the one before (never the root);
  // whether the path ends in '/' is decided by its last segment alone.
  std::vector<std::string_view> kept;
  bool ends_in_slash = false;
  std::string_view rest = std::string_view(decoded).substr(1);
  for (bool last = false; !last;) {
    const auto slash = rest.find('/');
    last = slash == std::string_view::npos;
    const std::string_view seg = rest.substr(0, slash);
    if (!last) rest.remove_prefix(slash + 1);
    // "..;x" is ".." to servers that strip path parameters and a name to those that do not.
    const std::string_view bare = seg.substr(0, seg.find(';'));
    if (bare.size() != seg.size() && (bare == "." || bare == ".."))
      return "a dot segment with parameters in the path";
    if (seg == ".." && !kept.empty()) kept.pop_back();
    if (seg.empty() || seg == "." || seg == "..") {
      ends_in_slash = last;
      continue;
    }
    kept.push_back(seg);
    ends_in_slash = false;
  }
  out.clear();
  for (const auto seg : kept) out.append("/").append(seg);
  if (out.empty() || ends_in_slash) out.push_back('/');
  return {};
}

refusal read_target(std::string_view method, std::string_view target, unsigned version,
                    std::span<const field_ref> fields, request_target& out) {
  out = request_target{};
  std::size_t hosts = 0;
  std::string_view host;
  for (const auto& f : fields) {
    if (!iequals(f.name, "host")) continue;
    ++hosts;
    host = f.value;
  }
  if (hosts > 1) return {400, "more than one Host field (RFC 9112 §3.2)"};
  if (hosts == 0 && version >= 11) return {400, "an HTTP/1.1 request without Host (RFC 9112 §3.2)"};
  if (!valid_host(host)) return {400, "the Host field is not a valid host[:port] (RFC 9112 §3.2)"};
  out.host = std::string(host);
  out.has_host = hosts == 1;

  const bool connect = method == "CONNECT";
  std::string_view path_and_query;
  if (connect) {
    // authority-form: host:port, nothing else (RFC 9112 §3.2.3).
    const auto colon = target.rfind(':');
    const auto bracket = target.rfind(']');
    const std::string_view port =
        colon == std::string_view::npos || (bracket != std::string_view::npos && colon < bracket)
            ? std::string_view()
            : target.substr(colon + 1);
    unsigned number = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (target.empty() || target.front() == '/' || port.empty() || ec != std::errc{} ||
        end != port.data() + port.size() || number == 0 || number > 65535 || !valid_host(target) ||
        target.find('@') != target.npos)
      return {400, "CONNECT needs an authority-form target host:port (RFC 9112 §3.2.3)"};
    out.form = target_form::authority;
    out.host = std::string(target);
    out.has_host = true;
    out.path = out.target = std::string(target);
    return {};
  }
  if (target == "*") {
    if (method != "OPTIONS") return {400, "the asterisk-form target is for OPTIONS only"};
    out.form = target_form::asterisk;
    out.path = out.target = "*";
    return {};
  }
  if (!target.empty() && target.front() == '/') {
    path_and_query = target;
  } else {
    std::string_view authority;
    if (!split_absolute(target, authority, path_and_query))
      return {400, "the request-target is not a path or an http(s) URI"};
    if (authority.find('@') != std::string_view::npos)
      return {400, "user information in the request-target (RFC 9110 §4.2.4)"};
    if (authority.empty() || authority.front() == ':' || !valid_host(authority))
      return {400, "the request-target's authority is not a valid host[:port]"};
    out.form = target_form::absolute;
    out.host = std::string(authority);  // replaces Host (RFC 9112 §3.2.2)
    out.has_host = true;
    if (!path_and_query.empty() && path_and_query.front() == '#') path_and_query = {};
  }
  const auto fragment = path_and_query.find('#');
  if (fragment != std::string_view::npos) path_and_query = path_and_query.substr(0, fragment);
  const auto query = path_and_query.find('?');
  std::string_view path = path_and_query.substr(0, query);
  if (path.empty()) path = "/";
  if (const std::string_view problem = normalise_path(path, out.path); !problem.empty())
    return {400, std::string(problem)};
  out.target = out.path;
  if (query != std::string_view::npos) out.target.append(path_and_query.substr(query));
  return {};
}

refusal admit_head(std::string_view method, std::string_view target, unsigned version,
                   std::span<const field_ref> fields, std::optional<bool> parser_chunked,
                   request_target& out) {
  if (version != 10 && version != 11) return {505, "only HTTP/1.0 and HTTP/1.1 are spoken here"};
  bool chunked = false;
  if (auto r = check_transfer_encoding(fields, version, chunked)) return r;
  if (parser_chunked && *parser_chunked != chunked) return {400, "ambiguous Transfer-Encoding"};
  if (auto r = check_expect(fields, out.wants_continue)) return r;
  const bool wants_continue = out.wants_continue;
  if (auto r = read_target(method, target, version, fields, out)) return r;
  out.wants_continue = wants_continue;
  return {};
}

trusted_proxies::trusted_proxies(std::string_view list) {
  for_each_member(list, [&](std::string_view entry) {
    const auto slash = entry.find('/');
    const std::string address(entry.substr(0, slash));
    net n;
    if (inet_pton(AF_INET, address.c_str(), n.bytes.data()) == 1) {
      n.bits = 32;
    } else if (inet_pton(AF_INET6, address.c_str(), n.bytes.data()) == 1) {
      n.bits = 128;
      n.v6 = true;
      static constexpr std::array<std::uint8_t, 12> mapped{0, 0, 0, 0, 0,    0,
                                                           0, 0, 0, 0, 0xff, 0xff};
      if (std::equal(mapped.begin(), mapped.end(), n.bytes.begin())) {
        // ::ffff:a.b.c.d/N is the IPv4 net a.b.c.d/(N-96), as peers are matched (contains).
        std::copy(n.bytes.begin() + 12, n.bytes.end(), n.bytes.begin());
        n.bits = 32;
        n.v6 = false;
      }
    } else {
      throw error(status::bad_request,
                  "trusted-proxies: '" + std::string(entry) + "' is not an address or CIDR");
    }
    if (slash != std::string_view::npos) {
      const std::string_view bits = entry.substr(slash + 1);
      unsigned b = 0;
      const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), b);
      const bool mapped = !n.v6 && address.find(':') != std::string::npos;
      if (ec != std::errc{} || end != bits.data() + bits.size() || bits.empty() ||
          b > (mapped ? 128u : n.bits))
        throw error(status::bad_request,
                    "trusted-proxies: bad prefix length in '" + std::string(entry) + "'");
      if (mapped) {
        if (b < 96)
          throw error(status::bad_request, "trusted-proxies: '" + std::string(entry) +
                                               "': an IPv4-mapped net needs a prefix of 96-128");
        b -= 96;
      }
      n.bits = b;
    }
    nets_.push_back(n);
  });
}

bool trusted_proxies::contains(std::string_view address) const noexcept {
  if (nets_.empty() || address.size() >= 64) return false;
  char text[64];
  address.copy(text, address.size());
  text[address.size()] = '\0';
  std::array<std::uint8_t, 16> a{};
  bool v6 = false;
  if (inet_pton(AF_INET, text, a.data()) != 1) {
    if (inet_pton(AF_INET6, text, a.data()) != 1) return false;
    v6 = true;
    // An IPv4-mapped address (::ffff:10.1.2.3, a dual-stack listener's view of an IPv4 peer) is
    // that IPv4 address.
    static constexpr std::array<std::uint8_t, 12> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(mapped.begin(), mapped.end(), a.begin())) {
      std::copy(a.begin() + 12, a.end(), a.begin());
      v6 = false;
    }
  }
  for (const auto& n : nets_) {
    if (n.v6 != v6) continue;
    unsigned bits = n.bits;
    bool match = true;
    for (std::size_t i = 0; bits > 0 && match; ++i) {
      const unsigned take = std::min(bits, 8u);
      const auto mask = static_cast<std::uint8_t>(0xff00u >> take);
      match = (a[i] & mask) == (n.bytes[i] & mask);
      bits -= take;
    }
    if (match) return true;
  }
  return false;
}

bool front_door_field(std::string_view name) noexcept {
  if (http::hop_by_hop(name)) return true;
  for (std::string_view own :
       {"host", "content-length", "x-request-id", "x-forwarded-for", "x-forwarded-proto",
        "x-forwarded-host", "forwarded", "x-real-ip", "x-original-url", "x-rewrite-url"})
    if (iequals(name, own)) return true;
  return false;
}

void encode_request(std::string_view method, const request_target& t,
                    std::span<const field_ref> fields, std::string_view body,
                    const encode_options& o, std::string& wire) {
  wire.clear();
  wire.reserve(256 + t.target.size() + body.size() + fields.size() * 40);
  wire.append(method).append(" ").append(t.target).append(" HTTP/1.1\r\n");
  if (t.has_host) wire.append("Host: ").append(t.host).append("\r\n");

  // Fields named in any Connection field are hop-by-hop too; they cannot remove Host or the front
  // door's own fields, which are written below whatever Connection says.
  std::vector<std::string> listed;
  for (const auto& f : fields)
    if (iequals(f.name, "connection")) {
      auto tokens = http_detail::connection_tokens(f.value);
      listed.insert(listed.end(), tokens.begin(), tokens.end());
    }
  std::string forwarded_for, forwarded, proto, forwarded_host, real_ip;
  auto join = [](std::string& into, std::string_view v) {
    if (!into.empty()) into.append(", ");
    into.append(v);
  };
  http_detail::head_writer w(wire, std::move(listed));
  for (const auto& f : fields) {
    if (!o.keep_underscores && f.name.find('_') != std::string_view::npos) continue;
    if (!front_door_field(f.name)) {
      w.add(f.name, f.value);
      continue;
    }
    if (!o.trusted) continue;  // the client's word for where it came from is not taken
    if (iequals(f.name, "x-forwarded-for"))
      join(forwarded_for, f.value);
    else if (iequals(f.name, "forwarded"))
      join(forwarded, f.value);
    else if (iequals(f.name, "x-forwarded-proto") && proto.empty())
      proto = f.value;
    else if (iequals(f.name, "x-forwarded-host") && forwarded_host.empty())
      forwarded_host = f.value;
    else if (iequals(f.name, "x-real-ip") && real_ip.empty())
      real_ip = f.value;
    else if (iequals(f.name, "x-original-url") || iequals(f.name, "x-rewrite-url"))
      w.put(f.name, f.value);  // a path override only a trusted proxy may make
  }
  join(forwarded_for, o.peer);
  std::string element;
  append_forwarded_for(element, o.peer);
  element.append(";proto=").append(o.scheme);
  join(forwarded, element);
  w.put("X-Forwarded-For", forwarded_for);
  w.put("X-Forwarded-Proto", proto.empty() ? o.scheme : std::string_view(proto));
  if (!forwarded_host.empty()) w.put("X-Forwarded-Host", forwarded_host);
  w.put("Forwarded", forwarded);
  w.put("X-Real-IP", real_ip.empty() ? o.peer : std::string_view(real_ip));
  w.put("X-Request-Id", o.request_id);
  w.finish(body);
}

}  // namespace scale0::gateway_detail
