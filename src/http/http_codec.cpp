// SPDX-License-Identifier: Apache-2.0
// The HTTP encoding of docs/http.md: Beast parses, plain string appends write.
#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <cctype>
#include <limits>

#include "beast_codec.hpp"
#include "encoding.hpp"
#include "message_parser.hpp"
#include "scale0/error.hpp"
#include "scale0/http.hpp"

namespace scale0 {
namespace {
std::string_view sv(boost::beast::string_view s) noexcept {
  return {s.data(), s.size()};
}
}  // namespace

namespace http_detail {
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

unsigned http_status_for(std::uint16_t s0_status) noexcept {
  switch (s0_status) {
    case status::too_many_requests:
    case status::unavailable:
      return 503;
    case status::bad_request:
    case status::too_large:
    case status::worker_lost:
    case status::deadline:
      return s0_status;
    default:
      return s0_status >= 500 && s0_status <= 599 ? s0_status : 502;
  }
}

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  for (const unsigned char c : id)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

std::vector<std::string> connection_tokens(std::string_view value) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < value.size()) {
    const std::size_t comma = std::min(value.find(',', i), value.size());
    std::string_view token = value.substr(i, comma - i);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty()) {
      std::string lower(token);
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.push_back(std::move(lower));
    }
    i = comma + 1;
  }
  return out;
}

bool head_writer::add(std::string_view name, std::string_view value) {
  if (http::hop_by_hop(name) || iequals(name, "content-length")) return false;
  for (const auto& d : dropped_)
    if (iequals(name, d)) return false;
  put(name, value);
  return true;
}

void head_writer::put(std::string_view name, std::string_view value) {
  out_.append(name).append(": ").append(value).append("\r\n");
}

void head_writer::finish(std::string_view body) {
  out_.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  out_.append(body);
}

namespace {

// Feeds the whole of `wire` to `parser`; returns "" when it holds one complete message and
// nothing else. `eof_ends_body`: a response, whose body may run to the end of `wire`.
// `ignore_rest`: it answers a HEAD, so whatever follows the head is a body to skip.
template <class Parser>
std::string feed(Parser& parser, std::string_view wire, bool eof_ends_body,
                 bool ignore_rest = false) {
  // The head first, then the body: Beast 1.74's response parser, when eager, goes on into the
  // body after reporting a Content-Length over body_limit (the error is then lost) and its string
  // body reserves that many bytes (std::bad_alloc for a huge one); not eager, it stops at that
  // error. Found by scale0_mongrel2_fuzz.
  parser.eager(false);
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(wire.size() + 1, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(wire.size());
  beast::error_code ec;
  std::size_t used = 0;
  while (used < wire.size() && !parser.is_done()) {
    const std::size_t n =
        parser.put(boost::asio::const_buffer(wire.data() + used, wire.size() - used), ec);
    if (ec == bhttp::error::need_more) {
      ec = {};
      if (n == 0) break;
    }
    if (ec) return ec.message();
    used += n;
    if (parser.is_header_done()) parser.eager(true);  // the head was fine: the body at once
  }
  if (!parser.is_done()) {
    if (!eof_ends_body || !parser.is_header_done()) return "incomplete message";
    parser.put_eof(ec);
    if (ec) return ec.message();
  }
  if (used != wire.size() && !ignore_rest) return "bytes after the end of the message";
  return {};
}

}  // namespace

std::string framing_problem(const beast_response& m, bool chunked) {
  // Beast reads any three digits; HTTP's status codes are 100-599 (RFC 9110 §15), and "020"
  // would be re-encoded as an unreadable "20". Found by scale0_http_response_fuzz.
  if (m.result_int() < 100 || m.result_int() > 599) return "status code outside 100-599";
  std::size_t fields = 0;
  std::string joined;
  for (const auto& f : m.base()) {
    if (f.name() != bhttp::field::transfer_encoding) continue;
    ++fields;
    if (!joined.empty()) joined.append(",");
    joined.append(sv(f.value()));
  }
  if (fields == 0) return {};
  if (m.version() < 11) return "Transfer-Encoding in an HTTP/1.0 response";
  const auto tokens = connection_tokens(joined);  // the same list syntax
  if (tokens.size() != 1 || tokens.front() != "chunked" || !chunked)
    return "Transfer-Encoding other than chunked alone: '" + joined.substr(0, 64) + "'";
  return {};
}

std::string parse_response_into(std::string_view wire, beast_response& out, bool to_head) {
  message_parser<false> parser;
  if (to_head) parser.skip(true);
  if (std::string problem = feed(parser, wire, true, to_head); !problem.empty()) return problem;
  if (std::string problem = framing_problem(parser.get(), parser.chunked()); !problem.empty())
    return problem;
  out = parser.release();
  // Connection-specific fields are the front door's business.
  const std::vector<std::string> listed = connection_listed(out);
  for (auto it = out.begin(); it != out.end();) {
    const std::string_view name = sv(it->name_string());
    bool drop = http::hop_by_hop(name);
    for (const auto& l : listed) drop = drop || iequals(name, l);
    it = drop ? out.erase(it) : std::next(it);
  }
  return {};
}

// The app's response in the encoding. Without a body (HEAD, 1xx, 204, 304) the app's own
// Content-Length, if any, is kept: it describes the body a GET would get.
std::string encode_app_response(const beast_response& m, bool head) {
  std::string out;
  out.reserve(256 + m.body().size());
  const unsigned code = m.result_int();
  const std::string_view reason =
      m.reason().empty() ? sv(bhttp::obsolete_reason(m.result())) : sv(m.reason());
  out.append("HTTP/1.1 ").append(std::to_string(code)).append(" ").append(reason).append("\r\n");
  head_writer w(out, connection_listed(m));
  const bool bodyless = head || code < 200 || code == 204 || code == 304;
  for (const auto& f : m) {
    const std::string_view name = sv(f.name_string());
    if (bodyless && iequals(name, "content-length"))
      out.append(name).append(": ").append(sv(f.value())).append("\r\n");
    else
      w.add(name, sv(f.value()));
  }
  if (bodyless)
    out.append("\r\n");
  else
    w.finish(m.body());
  return out;
}

std::string parse_request_into(std::string_view wire, beast_request& out) {
  message_parser<true> parser;
  if (std::string problem = feed(parser, wire, false); !problem.empty()) return problem;
  for (const auto& f : parser.get().base())
    if (f.name() == bhttp::field::transfer_encoding &&
        !(parser.chunked() && iequals(sv(f.value()), "chunked")))
      return "Transfer-Encoding other than chunked alone";
  out = parser.release();
  return {};
}

}  // namespace http_detail

namespace http {
namespace {
template <class Fields>
std::optional<std::string_view> find(const Fields& fields, std::string_view name) {
  for (const auto& f : fields)
    if (http_detail::iequals(f.name, name)) return std::string_view(f.value);
  return std::nullopt;
}

template <class Message>
std::vector<field> copy_fields(const Message& m) {
  std::vector<field> out;
  for (const auto& f : m)
    out.push_back({std::string(f.name_string().data(), f.name_string().size()),
                   std::string(f.value().data(), f.value().size())});
  return out;
}

template <class Message>
std::vector<std::string> dropped_by(const Message& m) {
  std::vector<std::string> out;
  for (const auto& f : m.headers)
    if (http_detail::iequals(f.name, "connection")) {
      auto tokens = http_detail::connection_tokens(f.value);
      out.insert(out.end(), tokens.begin(), tokens.end());
    }
  return out;
}
}  // namespace

bool hop_by_hop(std::string_view name) noexcept {
  for (std::string_view h : {"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                             "trailer", "proxy-connection", "expect"})
    if (http_detail::iequals(name, h)) return true;
  return false;
}

std::optional<std::string_view> request::header(std::string_view name) const {
  return find(headers, name);
}
std::string_view request::path() const {
  return std::string_view(target).substr(0, target.find('?'));
}
std::optional<std::string_view> response::header(std::string_view name) const {
  return find(headers, name);
}
response& response::set(std::string_view name, std::string_view value) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const field& f) { return http_detail::iequals(f.name, name); }),
                headers.end());
  headers.push_back({std::string(name), std::string(value)});
  return *this;
}

request parse_request(std::string_view wire) {
  http_detail::beast_request m;
  if (auto problem = http_detail::parse_request_into(wire, m); !problem.empty())
    throw error(status::bad_request, "not an encoded HTTP request: " + problem);
  request r;
  r.method.assign(m.method_string().data(), m.method_string().size());
  r.target.assign(m.target().data(), m.target().size());
  r.headers = copy_fields(m);
  r.body = std::move(m.body());
  return r;
}

std::string encode_request(const request& r) {
  std::string out;
  out.reserve(64 + r.target.size() + r.body.size() + r.headers.size() * 32);
  out.append(r.method).append(" ").append(r.target).append(" HTTP/1.1\r\n");
  http_detail::head_writer w(out, dropped_by(r));
  for (const auto& f : r.headers) w.add(f.name, f.value);
  w.finish(r.body);
  return out;
}

response parse_response(std::string_view wire) {
  http_detail::beast_response m;
  if (auto problem = http_detail::parse_response_into(wire, m, false); !problem.empty())
    throw error(status::worker_lost, "not an encoded HTTP response: " + problem);
  response r;
  r.status = m.result_int();
  r.reason.assign(m.reason().data(), m.reason().size());
  r.headers = copy_fields(m);
  r.body = std::move(m.body());
  return r;
}

std::string encode_response(const response& r) {
  std::string out;
  out.reserve(64 + r.body.size() + r.headers.size() * 32);
  const std::string_view reason = r.reason.empty()
                                      ? sv(boost::beast::http::obsolete_reason(
                                            static_cast<boost::beast::http::status>(r.status)))
                                      : std::string_view(r.reason);
  out.append("HTTP/1.1 ")
      .append(std::to_string(r.status))
      .append(" ")
      .append(reason)
      .append("\r\n");
  http_detail::head_writer w(out, dropped_by(r));
  for (const auto& f : r.headers) w.add(f.name, f.value);
  w.finish(r.body);
  return out;
}

job_handler serve(request_handler fn) {
  return [fn = std::move(fn)](job& j) {
    request req;
    try {
      req = parse_request(j.text());
    } catch (const error& e) {
      return job_result::failure(status::bad_request, e.message());
    }
    response res;
    try {
      res = fn(req);
    } catch (const std::exception& e) {
      res = response{};
      res.status = 500;
      res.set("Content-Type", "text/plain; charset=utf-8");
      res.body = std::string("handler failed: ") + e.what() + "\n";
    }
    return job_result::ok(encode_response(res));
  };
}

}  // namespace http
}  // namespace scale0
